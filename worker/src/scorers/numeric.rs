//! `numeric`: the answer's number is within tolerance of the reference's.
//!
//! Which number is "the answer" follows what graders of math datasets do:
//! a GSM8K-style `#### 42` line wins, then a LaTeX `\boxed{42}`, then the
//! number right after the last "answer is" / "answer:", and otherwise the
//! last number in the output (chain-of-thought ends with its answer).

use super::{Common, ReferenceScorer, quote};
use regex::Regex;
use std::sync::LazyLock;
use vigil_protocol::Score;

/// A number as written: optional sign, digits with optional `,` thousands
/// separators, decimals, exponent, an optional `/denominator`, optional `%`.
static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        (?P<sign>[-−]?)
        (?P<mantissa>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)
        (?P<exp>[eE][-+]?\d+)?
        (?:/(?P<den>\d+(?:\.\d+)?))?
        (?P<pct>\s*%)?",
    )
    .expect("static regex")
});
/// The markers that say where the answer is, strongest first.
static GSM8K: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"####").expect("static regex"));
static BOXED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\\boxed\{([^{}]*)\}").expect("static regex"));
static ANSWER_IS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\banswer\s*(?:is|:|=)\s*(?:[:=]\s*)?").expect("static regex")
});

/// A number found in a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// Its value (a percent keeps its written value: `50%` is 50).
    pub value: f64,
    /// Whether it was written with `%`.
    pub percent: bool,
    /// The text it was read from.
    pub text: String,
}

/// Extracts the answer's number from `text` (see the module docs for which
/// number wins).
///
/// ```
/// use vigil_worker::scorers::numeric::extract_number;
/// assert_eq!(extract_number("so 3 + 4 = 7\n#### 1,234").unwrap().value, 1234.0);
/// assert_eq!(extract_number("x is 2, y is -0.5").unwrap().value, -0.5);
/// assert_eq!(extract_number("3/4 of it").unwrap().value, 0.75);
/// assert!(extract_number("no digits here").is_none());
/// ```
pub fn extract_number(text: &str) -> Option<Extracted> {
    if let Some(m) = GSM8K.find_iter(text).last() {
        let rest = &text[m.end()..];
        if let Some(n) = numbers(rest).next() {
            return Some(n);
        }
    }
    if let Some(c) = BOXED.captures_iter(text).last()
        && let Some(n) = numbers(&c[1]).last()
    {
        return Some(n);
    }
    if let Some(m) = ANSWER_IS.find_iter(text).last() {
        let rest = &text[m.end()..];
        // Only a number that starts the answer ("The answer is $42."), not
        // one further down the line after words.
        let head = rest.trim_start_matches(|c: char| "$€£(*".contains(c) || c.is_whitespace());
        if let Some(n) = numbers(head).next()
            && head.starts_with(|c: char| c.is_ascii_digit() || "-−.".contains(c))
        {
            return Some(n);
        }
    }
    numbers(text).last()
}

/// Every number in `text`, in order (unparseable ones, like `1/0`, skipped).
fn numbers(text: &str) -> impl Iterator<Item = Extracted> + '_ {
    NUMBER.captures_iter(text).filter_map(move |c| {
        let whole = c.get(0)?;
        // A `-` right after a letter or digit is a hyphen or a minus between
        // operands ("5-3", "COVID-19"), not a sign.
        let signed = !c["sign"].is_empty()
            && !text[..whole.start()]
                .chars()
                .next_back()
                .is_some_and(char::is_alphanumeric);
        let mantissa = c["mantissa"].replace(',', "");
        let exp = c.name("exp").map_or("", |m| m.as_str());
        let mut value: f64 = format!("{mantissa}{exp}").parse().ok()?;
        if let Some(den) = c.name("den") {
            let den: f64 = den.as_str().parse().ok()?;
            if den == 0.0 {
                return None;
            }
            value /= den;
        }
        if signed {
            value = -value;
        }
        if !value.is_finite() {
            return None;
        }
        let start = if signed {
            whole.start()
        } else {
            c.name("mantissa")?.start()
        };
        Some(Extracted {
            value,
            percent: c.name("pct").is_some(),
            text: text[start..whole.end()].trim().to_string(),
        })
    })
}

/// Scores 1 when the extracted numbers agree within tolerance.
#[derive(Debug, Clone)]
pub struct Numeric {
    common: Common,
    tolerance: f64,
    relative_tolerance: f64,
}

impl Numeric {
    /// A numeric scorer; [`super::build`] has checked the tolerances
    /// ([`vigil_protocol::ScorerKind::validate`]: finite and non-negative).
    pub fn new(common: Common, tolerance: f64, relative_tolerance: f64) -> Self {
        Numeric {
            common,
            tolerance,
            relative_tolerance,
        }
    }

    fn close(&self, got: f64, want: f64) -> bool {
        let diff = (got - want).abs();
        // A few ulps of slack so that `0.1+0.2`-style representation noise
        // never fails a zero-tolerance comparison.
        let ulps = 4.0 * f64::EPSILON * got.abs().max(want.abs());
        diff <= self.tolerance.max(ulps) || diff <= self.relative_tolerance * want.abs()
    }

    fn agree(&self, got: &Extracted, want: &Extracted) -> bool {
        if self.close(got.value, want.value) {
            return true;
        }
        // "50%" against "0.5" (or the other way round) is the same answer.
        match (got.percent, want.percent) {
            (true, false) => self.close(got.value / 100.0, want.value),
            (false, true) => self.close(got.value, want.value / 100.0),
            _ => false,
        }
    }
}

impl ReferenceScorer for Numeric {
    fn common(&self) -> &Common {
        &self.common
    }

    fn score_against(&self, output: &str, reference: &str) -> Score {
        let Some(want) = extract_number(reference) else {
            return self
                .common
                .verdict(0.0, format!("reference {} has no number", quote(reference)));
        };
        let Some(got) = extract_number(output) else {
            return self
                .common
                .verdict(0.0, format!("no number in output, expected {}", want.value));
        };
        let detail = format!(
            "extracted {} from {}, expected {}",
            got.value,
            quote(&got.text),
            want.value
        );
        self.common
            .verdict(if self.agree(&got, &want) { 1.0 } else { 0.0 }, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorers::Scorer;

    fn value(text: &str) -> Option<f64> {
        extract_number(text).map(|n| n.value)
    }

    fn scorer(tolerance: f64, relative_tolerance: f64) -> Numeric {
        Numeric::new(
            Common {
                name: "num".into(),
                threshold: None,
            },
            tolerance,
            relative_tolerance,
        )
    }

    #[test]
    fn extraction_prefers_the_last_number() {
        assert_eq!(value("First 3 apples, then 4, so 7"), Some(7.0));
        assert_eq!(value("The total is 42."), Some(42.0));
        assert_eq!(value("7\n"), Some(7.0));
    }

    #[test]
    fn extraction_formats() {
        assert_eq!(value("-12"), Some(-12.0));
        assert_eq!(value("x = −3"), Some(-3.0), "unicode minus");
        assert_eq!(
            value("5-3"),
            Some(3.0),
            "a hyphen between numbers is no sign"
        );
        assert_eq!(value("COVID-19"), Some(19.0));
        assert_eq!(value("costs $1,234,567.89"), Some(1_234_567.89));
        assert_eq!(value("e is about 2.71"), Some(2.71));
        assert_eq!(value("about .5"), Some(0.5));
        assert_eq!(value("3/4"), Some(0.75));
        assert_eq!(value("-1/2"), Some(-0.5));
        assert_eq!(value("2.5e3 items"), Some(2500.0));
        assert_eq!(
            value("1,2,3"),
            Some(3.0),
            "a list is not a thousands number"
        );
        let pct = extract_number("grew by 12.5 %").unwrap();
        assert_eq!(
            (pct.value, pct.percent, pct.text.as_str()),
            (12.5, true, "12.5 %")
        );
    }

    #[test]
    fn extraction_markers() {
        assert_eq!(value("Natalia sold 48/2 = 24 clips.\n#### 72"), Some(72.0));
        assert_eq!(value("#### 1,000\nThen 5 more words 6"), Some(1000.0));
        assert_eq!(value(r"so $x = \boxed{17}$ and 3 checks"), Some(17.0));
        assert_eq!(value("The answer is 12. Check: 12*2 = 24"), Some(12.0));
        assert_eq!(value("Answer: $-4.5. Indeed 1 + 1"), Some(-4.5));
        assert_eq!(value("the answer is not obvious; 5 and then 9"), Some(9.0));
    }

    #[test]
    fn extraction_garbage() {
        assert_eq!(value(""), None);
        assert_eq!(value("no digits ¯\\_(ツ)_/¯"), None);
        assert_eq!(value("1/0"), None, "division by zero is no number");
        assert_eq!(value("9".repeat(400).as_str()), None, "overflows to inf");
        assert_eq!(value("####"), None);
    }

    #[test]
    fn exact_comparison() {
        let s = scorer(0.0, 0.0);
        let ok = s.score("So she has 1,234 left.", Some("#### 1234"));
        assert!(ok.passed, "{ok:?}");
        assert_eq!(ok.detail, "extracted 1234 from `1,234`, expected 1234");
        let miss = s.score("It is 1233", Some("1234"));
        assert!(!miss.passed);
        assert_eq!(miss.value, 0.0);
        assert!(s.score("0.30", Some("0.3")).passed);
    }

    #[test]
    fn tolerances() {
        assert!(scorer(0.01, 0.0).score("3.14", Some("3.14159")).passed);
        assert!(!scorer(0.001, 0.0).score("3.14", Some("3.14159")).passed);
        assert!(scorer(0.0, 0.01).score("990", Some("1000")).passed);
        assert!(!scorer(0.0, 0.001).score("990", Some("1000")).passed);
        assert!(
            scorer(0.0, 0.0)
                .score("0.1", Some(&(0.1f64 + 0.2 - 0.2).to_string()))
                .passed
        );
    }

    #[test]
    fn percent_against_fraction() {
        let s = scorer(0.0, 0.0);
        assert!(s.score("50%", Some("0.5")).passed);
        assert!(s.score("0.25", Some("25%")).passed);
        assert!(s.score("25%", Some("25")).passed);
    }

    #[test]
    fn missing_numbers() {
        let s = scorer(0.0, 0.0);
        assert_eq!(
            s.score("no idea", Some("4")).detail,
            "no number in output, expected 4"
        );
        assert_eq!(
            s.score("4", Some("four")).detail,
            "reference `four` has no number"
        );
        assert_eq!(s.score("4", None).detail, "no reference");
    }
}
