//! Redaction: every string that goes into a capture passes through a
//! [`Redactor`] first. Built-in kinds are the `pii` scorer's
//! ([`vigil_protocol::pii::BUILTIN`]; card numbers only when Luhn-valid);
//! custom kinds are regexes, as a suite's `pii` scorer takes them.

use regex::{Regex, RegexSet};
use std::collections::BTreeMap;
use std::path::Path;

/// A redaction rule could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    /// A pattern is not a valid regex.
    #[error("redaction pattern `{name}` is not a valid regex: {reason}")]
    Regex {
        /// The pattern's name.
        name: String,
        /// Why (not a `source`: the message says it once).
        reason: regex::Error,
    },
    /// The redaction file cannot be read or parsed.
    #[error("redaction file {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// The redaction file: `patterns: {name: regex}`, the shape of a suite's
/// `pii` scorer's `patterns`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactFile {
    /// Custom kinds, by name.
    #[serde(default)]
    pub patterns: BTreeMap<String, String>,
}

impl RedactFile {
    /// Reads a YAML redaction file.
    pub fn load(path: &Path) -> Result<RedactFile, RedactError> {
        let err = |message: String| RedactError::File {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let file: RedactFile = serde_norway::from_str(&text).map_err(|e| err(e.to_string()))?;
        // A bad pattern is named with its file, not only by its name.
        for (name, pattern) in &file.patterns {
            if let Err(e) = Regex::new(pattern) {
                return Err(err(format!("pattern `{name}` is not a valid regex: {e}")));
            }
        }
        Ok(file)
    }
}

/// Replaces PII and secrets with `[REDACTED:<kind>]`.
#[derive(Debug, Clone)]
pub struct Redactor {
    kinds: Vec<(String, Regex)>,
    /// Quick rejection: most strings match nothing.
    any: RegexSet,
}

impl Redactor {
    /// The built-in kinds plus `custom` (name, regex) pairs.
    pub fn new(custom: &[(String, String)]) -> Result<Redactor, RedactError> {
        let mut sources: Vec<(String, String)> = vigil_protocol::pii::BUILTIN
            .iter()
            .map(|(n, p)| (n.to_string(), p.to_string()))
            .collect();
        sources.extend(custom.iter().cloned());
        let mut kinds = Vec::with_capacity(sources.len());
        for (name, pattern) in &sources {
            let re = Regex::new(pattern).map_err(|reason| RedactError::Regex {
                name: name.clone(),
                reason,
            })?;
            kinds.push((name.clone(), re));
        }
        let any =
            RegexSet::new(sources.iter().map(|(_, p)| p)).map_err(|reason| RedactError::Regex {
                name: "(set)".into(),
                reason,
            })?;
        Ok(Redactor { kinds, any })
    }

    /// `text` with every finding replaced; adds the replacements to `count`.
    ///
    /// ```
    /// let r = vigil_proxy::redact::Redactor::new(&[("ticket".into(), r"TCK-\d+".into())]).unwrap();
    /// let mut n = 0;
    /// let out = r.redact("mail ann@example.com, key sk-abcdefghijklmnopqrstuvwx, TCK-42", &mut n);
    /// assert_eq!(out, "mail [REDACTED:email], key [REDACTED:api_key], [REDACTED:ticket]");
    /// assert_eq!(n, 3);
    /// ```
    pub fn redact(&self, text: &str, count: &mut u32) -> String {
        if !self.any.is_match(text) {
            return text.to_string();
        }
        let mut out = text.to_string();
        for (name, re) in &self.kinds {
            let mut n = 0u32;
            let replaced = re.replace_all(&out, |caps: &regex::Captures<'_>| {
                let found = &caps[0];
                if name == "credit_card" {
                    let digits: Vec<u8> = found
                        .bytes()
                        .filter(u8::is_ascii_digit)
                        .map(|b| b - b'0')
                        .collect();
                    if !vigil_protocol::pii::luhn(&digits) {
                        return found.to_string();
                    }
                }
                n += 1;
                format!("[REDACTED:{name}]")
            });
            if n > 0 {
                out = replaced.into_owned();
                *count += n;
            }
        }
        out
    }

    /// Redacts every string of a JSON value in place (keys are kept).
    pub fn redact_json(&self, value: &mut serde_json::Value, count: &mut u32) {
        match value {
            serde_json::Value::String(s) => *s = self.redact(s, count),
            serde_json::Value::Array(items) => {
                items.iter_mut().for_each(|v| self.redact_json(v, count))
            }
            serde_json::Value::Object(map) => {
                map.values_mut().for_each(|v| self.redact_json(v, count))
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_pattern_in_a_redaction_file_names_the_file_and_the_pattern() {
        let path = std::env::temp_dir().join(format!("vigil-redact-{}.yaml", std::process::id()));
        std::fs::write(&path, "patterns:\n  order: \"(\"\n").unwrap();
        let e = RedactFile::load(&path).unwrap_err().to_string();
        std::fs::remove_file(&path).ok();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("pattern `order` is not a valid regex"), "{e}");
        // The reason is said once, and the error has no source to repeat it.
        let e = Redactor::new(&[("x".into(), "(".into())]).unwrap_err();
        assert_eq!(e.to_string().matches("unclosed group").count(), 1, "{e}");
        assert!(std::error::Error::source(&e).is_none());
    }

    #[test]
    fn builtins_redact_and_plain_text_passes() {
        let r = Redactor::new(&[]).unwrap();
        let mut n = 0;
        assert_eq!(r.redact("What is 2 + 2?", &mut n), "What is 2 + 2?");
        assert_eq!(n, 0);
        let out = r.redact(
            "call +1 415 555 0100, card 4111 1111 1111 1111, Bearer abcdefghijklmnopqrstuvwxyz",
            &mut n,
        );
        assert!(
            !out.contains("4111") && !out.contains("555") && !out.contains("abcdefghijkl"),
            "{out}"
        );
        // Not Luhn-valid: an order number, kept.
        let mut m = 0;
        assert_eq!(
            r.redact("order 4111 1111 1111 1112", &mut m),
            "order 4111 1111 1111 1112"
        );
        assert_eq!(m, 0);
    }

    #[test]
    fn json_strings_are_redacted_keys_kept() {
        let r = Redactor::new(&[]).unwrap();
        let mut v =
            serde_json::json!({"messages": [{"role": "user", "content": "I am bob@example.org"}]});
        let mut n = 0;
        r.redact_json(&mut v, &mut n);
        assert_eq!(v["messages"][0]["content"], "I am [REDACTED:email]");
        assert_eq!(n, 1);
    }

    #[test]
    fn a_bad_custom_regex_is_named() {
        let e = Redactor::new(&[("mine".into(), "(".into())]).unwrap_err();
        assert!(e.to_string().contains("`mine`"), "{e}");
    }
}
