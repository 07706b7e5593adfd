//! Sampling (`samples: n`) checked against the `code_exec` scorers' k. The
//! `code_exec` keys themselves are [`vigil_protocol::ScorerKind::CodeExec`]'s,
//! read and checked with the other kinds' (`scorers[2].limits.memory_mb`).
//!
//! ```yaml
//! samples: 5                       # completions per item (default 1)
//! scorers:
//!   - name: tests
//!     kind: code_exec
//!     reference: "{{ test }}\ncheck({{ entry_point }})"
//!     include_prompt: true         # prompt + completion form the program
//!     k: 1                         # pass@k, k <= samples
//!     limits: { timeout_s: 10, cpu_s: 5, memory_mb: 1024, processes: 32, file_mb: 16 }
//! ```

use super::{ScorerConfig, SuiteError};
use std::path::Path;
use vigil_protocol::ScorerKind;

pub use vigil_protocol::scorers::LANGUAGES;

/// Most samples per item a suite may ask for.
pub const MAX_SAMPLES: u32 = 1000;

fn invalid(path: &Path, field: String, message: impl Into<String>) -> SuiteError {
    SuiteError::Invalid {
        path: path.to_path_buf(),
        field,
        message: message.into(),
        location: None,
    }
}

/// The suite's `samples` (default 1), checked against every `code_exec`
/// scorer's k: pass@k needs at least k samples.
pub fn check_samples(
    path: &Path,
    samples: Option<u32>,
    scorers: &[ScorerConfig],
) -> Result<u32, SuiteError> {
    let n = samples.unwrap_or(1);
    if !(1..=MAX_SAMPLES).contains(&n) {
        return Err(invalid(
            path,
            "samples".into(),
            format!("must be between 1 and {MAX_SAMPLES}, got {n}"),
        ));
    }
    for (i, s) in scorers.iter().enumerate() {
        if let ScorerKind::CodeExec { k, .. } = &s.kind
            && *k > n
        {
            return Err(invalid(
                path,
                format!("scorers[{i}].k"),
                format!(
                    "pass@{k} needs at least {k} samples per item; the suite samples {n} (set `samples: {k}` or more)"
                ),
            ));
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use crate::suite::{Suite, SuiteFormat};
    use std::path::Path;
    use vigil_protocol::ScorerKind;

    fn load(extra: &str, scorer: &str) -> Result<Suite, String> {
        let text = format!(
            r#"name: code
dataset: {{ path: d.jsonl }}
prompt: {{ completion: "{{{{ prompt }}}}" }}
targets: [{{ name: t, kind: completions, base_url: "http://127.0.0.1:1/v1", model: m }}]
scorers:
  - {scorer}
{extra}"#
        );
        Suite::from_str(&text, SuiteFormat::Yaml, Path::new("s.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_code_exec_with_limits_and_samples() {
        let suite = load(
            "samples: 10",
            r#"{ name: tests, kind: code_exec, reference: "{{ test }}", include_prompt: true, k: 5, limits: { timeout_s: 3, memory_mb: 256 } }"#,
        )
        .unwrap();
        assert_eq!(suite.samples, 10);
        let ScorerKind::CodeExec {
            language,
            k,
            include_prompt,
            limits,
        } = &suite.scorers[0].kind
        else {
            panic!("not code_exec: {:?}", suite.scorers[0].kind);
        };
        assert_eq!(
            (language.as_str(), *k, *include_prompt),
            ("python", 5, true)
        );
        assert_eq!((limits.timeout_s, limits.memory_mb), (Some(3.0), Some(256)));
        assert_eq!(limits.cpu_s, None);
    }

    #[test]
    fn samples_default_to_one_and_k_to_one() {
        let suite = load("", "{ name: tests, kind: code_exec }").unwrap();
        assert_eq!(suite.samples, 1);
        assert!(matches!(
            suite.scorers[0].kind,
            ScorerKind::CodeExec { k: 1, .. }
        ));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                "",
                "{ name: t, kind: code_exec, k: 3 }",
                "s.yaml: scorers[0].k: pass@3 needs at least 3 samples per item; the suite samples 1 (set `samples: 3` or more)",
            ),
            (
                "",
                "{ name: t, kind: code_exec, language: cobol }",
                "s.yaml: scorers[0].language: unknown language `cobol` (known: python)",
            ),
            (
                "",
                "{ name: t, kind: code_exec, limits: { memory_mb: 0 } }",
                "s.yaml: scorers[0].limits.memory_mb: must be at least 1",
            ),
            (
                "",
                "{ name: t, kind: code_exec, limits: { timeout_s: -1 } }",
                "s.yaml: scorers[0].limits.timeout_s: must be a positive number of seconds, got -1",
            ),
            (
                "samples: 0",
                "{ name: t, kind: code_exec }",
                "s.yaml: samples: must be between 1 and 1000, got 0",
            ),
            (
                "",
                "{ name: t, kind: code_exec, k: 0 }",
                "s.yaml: scorers[0].k: must be at least 1",
            ),
        ];
        for (extra, scorer, want) in cases {
            assert_eq!(load(extra, scorer).unwrap_err(), want, "{scorer}");
        }
        let err = load("", "{ name: t, kind: code_exec, limits: { wall: 3 } }").unwrap_err();
        assert!(
            err.starts_with("s.yaml: scorers[0].limits.wall: unknown field `wall`"),
            "{err}"
        );
    }
}
