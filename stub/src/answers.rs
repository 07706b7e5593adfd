//! What the stub answers: deterministic functions of the prompt text.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

/// The stub's answer to a prompt text.
///
/// A judge's rubric (see [`judge`]) gets a verdict; else `[[reply: TEXT]]`
/// gives TEXT verbatim (up to the last `]]`); else the first
/// integer expression `a OP b` (OP one of `+ - * /`) gives its value; else the
/// text is echoed.
///
/// ```
/// use vigil_stub::answer;
/// assert_eq!(answer("What is 12 + 7?"), "19");
/// assert_eq!(answer("7 / 2"), "3.5");
/// assert_eq!(answer(r#"say [[reply: {"ok": true}]]"#), r#"{"ok": true}"#);
/// assert_eq!(answer("hello there"), "hello there");
/// ```
pub fn answer(text: &str) -> String {
    if let Some(verdict) = judge(text) {
        return verdict;
    }
    const MARK: &str = "[[reply:";
    if let Some(start) = text.find(MARK) {
        let rest = &text[start + MARK.len()..];
        if let Some(end) = rest.rfind("]]") {
            return rest[..end].trim_start().to_string();
        }
    }
    if let Some(v) = arithmetic(text) {
        return v;
    }
    text.to_string()
}

/// The text between `<name>` and `</name>`, trimmed.
fn tagged<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&close)?;
    Some(text[start..end].trim())
}

/// Lowercase alphanumeric words.
fn words(text: &str) -> std::collections::BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The Jaccard similarity of two texts' word sets (1 when both are empty).
///
/// ```
/// use vigil_stub::similarity;
/// assert_eq!(similarity("the cat sat", "The cat sat."), 1.0);
/// assert_eq!(similarity("a b", "c d"), 0.0);
/// assert_eq!(similarity("a b", "b c"), 1.0 / 3.0);
/// ```
pub fn similarity(a: &str, b: &str) -> f64 {
    let (a, b) = (words(a), words(b));
    let union = a.union(&b).count();
    if union == 0 {
        return 1.0;
    }
    a.intersection(&b).count() as f64 / union as f64
}

/// What the stub model would answer to a question (a `[[reply: ..]]`
/// directive or arithmetic), if anything but an echo.
fn expected_answer(question: &str) -> Option<String> {
    let answered = answer(question);
    (answered != question).then_some(answered)
}

/// The stub as a judge. A rubric is recognised by its tags, as vigil's
/// default rubrics write them:
///
/// - `<response>..</response>`: a grade `Score: N` on the scale the text
///   names (`scale of 1 to 5`, default 1–5): the response's word overlap
///   (Jaccard) with `<reference>..</reference>`, else with the stub's own
///   answer to `<question>..</question>`, mapped onto the scale;
/// - `<response_a>..</response_a>` and `<response_b>..</response_b>`: the
///   one closer to that expected answer, `[[A]]`, `[[B]]` or `[[C]]` (tie).
///
/// ```
/// use vigil_stub::judge;
/// let rubric = "Grade on a scale of 1 to 5.\n<question>2 + 3</question>\n<response>5</response>";
/// assert!(judge(rubric).unwrap().ends_with("Score: 5"));
/// let rubric = "<question>2 + 3</question><response_a>6</response_a><response_b>5</response_b>";
/// assert!(judge(rubric).unwrap().ends_with("[[B]]"));
/// assert_eq!(judge("What is 2 + 3?"), None);
/// ```
pub fn judge(text: &str) -> Option<String> {
    // The hot path of every other request: one scan, no allocation.
    if !text.contains("<response") {
        return None;
    }
    let expected = || {
        tagged(text, "reference")
            .map(str::to_string)
            .or_else(|| tagged(text, "question").and_then(expected_answer))
    };
    if let (Some(a), Some(b)) = (tagged(text, "response_a"), tagged(text, "response_b")) {
        let (sa, sb) = match expected() {
            Some(e) => (similarity(a, &e), similarity(b, &e)),
            None => (0.0, 0.0),
        };
        let verdict = if sa > sb {
            "[[A]]"
        } else if sb > sa {
            "[[B]]"
        } else {
            "[[C]]"
        };
        return Some(format!(
            "Response A matches {:.0}% and response B {:.0}% of the expected answer.\n{verdict}",
            sa * 100.0,
            sb * 100.0
        ));
    }
    let response = tagged(text, "response")?;
    static SCALE: OnceLock<regex::Regex> = OnceLock::new();
    let scale = SCALE.get_or_init(|| {
        regex::Regex::new(r"(?i)scale (?:of|from) (-?\d+) to (-?\d+)").expect("valid regex")
    });
    let (lo, hi) = scale
        .captures(text)
        .and_then(|c| Some((c[1].parse::<i64>().ok()?, c[2].parse::<i64>().ok()?)))
        .filter(|(lo, hi)| lo < hi)
        .unwrap_or((1, 5));
    let sim = expected().map_or(0.5, |e| similarity(response, &e));
    let score = lo + (sim * (hi - lo) as f64).round() as i64;
    Some(format!(
        "The response shares {:.0}% of its words with the expected answer.\nScore: {score}",
        sim * 100.0
    ))
}

/// Dimensions of the stub's embeddings.
pub const EMBEDDING_DIMS: usize = 64;

/// The stub's embedding of a text: a hashed bag of its lowercase words
/// (each word adds ±1 to one of [`EMBEDDING_DIMS`] components), L2-normalised.
/// Texts with the same words are identical, texts sharing no words are
/// nearly orthogonal.
///
/// ```
/// use vigil_stub::embed;
/// let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
/// let cat = embed("The cat sat on the mat");
/// assert!((dot(&cat, &embed("the mat, the cat sat on")) - 1.0).abs() < 1e-9);
/// assert!(dot(&cat, &embed("quarterly revenue grew strongly")) < 0.5);
/// ```
pub fn embed(text: &str) -> Vec<f64> {
    let mut v = vec![0.0; EMBEDDING_DIMS];
    let mut any = false;
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        any = true;
        let mut h = std::hash::DefaultHasher::new();
        word.to_lowercase().hash(&mut h);
        let h = h.finish();
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        v[(h % EMBEDDING_DIMS as u64) as usize] += sign;
    }
    if !any {
        v[0] = 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    } else {
        v[0] = 1.0;
    }
    v
}

fn arithmetic(text: &str) -> Option<String> {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re =
        RE.get_or_init(|| regex::Regex::new(r"(-?\d+)\s*([-+*/])\s*(-?\d+)").expect("valid regex"));
    for c in re.captures_iter(text) {
        let (Ok(a), Ok(b)) = (c[1].parse::<i128>(), c[3].parse::<i128>()) else {
            continue;
        };
        let v = match &c[2] {
            "+" => a.checked_add(b),
            "-" => a.checked_sub(b),
            "*" => a.checked_mul(b),
            _ if b == 0 => None,
            _ if a % b == 0 => Some(a / b),
            _ => return Some(format!("{}", a as f64 / b as f64)),
        };
        if let Some(v) = v {
            return Some(v.to_string());
        }
    }
    None
}

/// Whitespace-separated words, at least 1.
pub(crate) fn tokens(text: &str) -> u64 {
    (text.split_whitespace().count() as u64).max(1)
}

/// Truncates to `max` words; true if it cut.
pub(crate) fn truncate(text: String, max: Option<u64>) -> (String, bool) {
    match max {
        Some(max) if text.split_whitespace().count() as u64 > max.max(1) => (
            text.split_whitespace()
                .take(max.max(1) as usize)
                .collect::<Vec<_>>()
                .join(" "),
            true,
        ),
        _ => (text, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_answers() {
        assert_eq!(answer("12+7"), "19");
        assert_eq!(answer("What is -3 * 4?"), "-12");
        assert_eq!(answer("5 - -3"), "8");
        assert_eq!(answer("10 / 5"), "2");
        assert_eq!(answer("1 / 4"), "0.25");
        assert_eq!(answer("1 / 0"), "1 / 0");
        assert_eq!(answer("no numbers"), "no numbers");
    }

    #[test]
    fn reply_directive_wins_and_keeps_json() {
        assert_eq!(answer("2+2 [[reply: four]]"), "four");
        assert_eq!(answer("[[reply:{\"a\": [[1]]}]]"), "{\"a\": [[1]]}");
        assert_eq!(answer("[[reply: unterminated"), "[[reply: unterminated");
    }

    #[test]
    fn truncation_counts_words() {
        assert_eq!(
            truncate("a b c d".into(), Some(2)),
            ("a b".to_string(), true)
        );
        assert_eq!(truncate("a b".into(), Some(2)), ("a b".to_string(), false));
        assert_eq!(tokens(""), 1);
        assert_eq!(tokens("one two  three"), 3);
    }
}
