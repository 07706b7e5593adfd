//! Text normalisation shared by `exact_match` and `contains`, applied to the
//! output and the reference alike. The order follows the SQuAD evaluation
//! script (case, punctuation, articles, whitespace), so its well-known
//! behaviour carries over: "The Eiffel-Tower!" and "eiffeltower" compare
//! equal with everything on.

use regex::Regex;
use std::borrow::Cow;
use std::sync::LazyLock;
use vigil_protocol::Normalization;

/// Unicode punctuation plus the ASCII symbols (`$`, `+`, `<`, `|`, ...) that
/// Unicode files under "symbol" but people call punctuation.
static PUNCTUATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[\p{P}[[:punct:]]]").expect("static regex"));
/// An English article as a whole word, with the space after it, so removing
/// it leaves no double space behind.
static ARTICLES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(?:a|an|the)\b\s*").expect("static regex"));
static WHITESPACE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s+").expect("static regex"));

/// Applies `n` to `text`.
///
/// ```
/// use vigil_protocol::Normalization;
/// use vigil_worker::scorers::normalize::normalize;
/// let all = Normalization {
///     trim: true,
///     ignore_case: true,
///     collapse_whitespace: true,
///     remove_punctuation: true,
///     remove_articles: true,
/// };
/// assert_eq!(normalize("  The  Eiffel Tower! ", &all), "eiffel tower");
/// assert_eq!(normalize("  x ", &Normalization::default()), "x");
/// ```
pub fn normalize<'t>(text: &'t str, n: &Normalization) -> Cow<'t, str> {
    // Borrowed until a step changes the text: the default (trim only) of an
    // answer and a reference copies neither.
    let mut out: Cow<'t, str> = Cow::Borrowed(text);
    if n.ignore_case {
        out = Cow::Owned(out.to_lowercase());
    }
    if n.remove_punctuation {
        out = replace(out, &PUNCTUATION, "");
    }
    if n.remove_articles {
        out = replace(out, &ARTICLES, "");
    }
    if n.collapse_whitespace {
        out = replace(out, &WHITESPACE, " ");
    }
    if n.trim {
        out = match out {
            Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
            Cow::Owned(s) if s.trim().len() == s.len() => Cow::Owned(s),
            Cow::Owned(s) => Cow::Owned(s.trim().to_string()),
        };
    }
    out
}

/// `text` with every match of `re` replaced by `with`, copied only when
/// something matched.
fn replace<'t>(text: Cow<'t, str>, re: &Regex, with: &str) -> Cow<'t, str> {
    match text {
        Cow::Borrowed(s) => re.replace_all(s, with),
        Cow::Owned(s) => {
            let changed = match re.replace_all(&s, with) {
                Cow::Owned(r) => Some(r),
                Cow::Borrowed(_) => None,
            };
            Cow::Owned(changed.unwrap_or(s))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(f: impl FnOnce(&mut Normalization)) -> Normalization {
        let mut n = Normalization {
            trim: false,
            ignore_case: false,
            collapse_whitespace: false,
            remove_punctuation: false,
            remove_articles: false,
        };
        f(&mut n);
        n
    }

    #[test]
    fn nothing_on_changes_nothing() {
        assert_eq!(normalize(" A, the  B ", &only(|_| {})), " A, the  B ");
    }

    #[test]
    fn trim_is_the_default() {
        assert_eq!(normalize("\n\t x y \r\n", &Normalization::default()), "x y");
    }

    #[test]
    fn ignore_case_lowercases_unicode() {
        assert_eq!(
            normalize("ÉCOLE Straße", &only(|n| n.ignore_case = true)),
            "école straße"
        );
    }

    #[test]
    fn punctuation_ascii_and_unicode() {
        let n = only(|n| n.remove_punctuation = true);
        assert_eq!(
            normalize("«Hello», world! $5 + 3 — ok¿", &n),
            "Hello world 5  3  ok"
        );
        assert_eq!(normalize("don't", &n), "dont");
    }

    #[test]
    fn articles_are_whole_words_only() {
        let n = only(|n| n.remove_articles = true);
        assert_eq!(
            normalize("The cat and a dog ate an apple", &n),
            "cat and dog ate apple"
        );
        assert_eq!(normalize("theatre ants banana", &n), "theatre ants banana");
    }

    #[test]
    fn collapse_whitespace_keeps_ends() {
        let n = only(|n| n.collapse_whitespace = true);
        assert_eq!(normalize(" a \n\n b\t", &n), " a b ");
    }
}
