//! Language runners: how a program in one language is written to the
//! sandbox's directory and started. Python is the first; a new language is a
//! new [`Runner`] in [`runner_for`].

use super::Outcome;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Runs programs of one language.
pub trait Runner: Send + Sync {
    /// The language's name in suites (`python`).
    fn language(&self) -> &str;
    /// The files to write into the sandbox's directory for `program`.
    fn files(&self, program: &str) -> Vec<(String, String)>;
    /// The command, run in that directory: absolute program path, arguments.
    /// `None` with a reason when the language's tools are missing.
    fn command(&self) -> Result<Vec<String>, String>;
    /// A hint about why a failed run failed, from its outcome (for example
    /// that a `MemoryError` means the memory limit), if the runner knows one.
    fn hint(&self, outcome: &Outcome) -> Option<String>;
}

/// The runner of `language`, if there is one.
pub fn runner_for(language: &str) -> Option<&'static dyn Runner> {
    static PYTHON: Python = Python;
    match language {
        "python" => Some(&PYTHON),
        _ => None,
    }
}

/// CPython 3: `python3 -I -B main.py` (isolated mode: no environment
/// variables, no user site-packages, the script's directory not on the path).
pub struct Python;

/// The interpreter the sandbox runs: `VIGIL_PYTHON` when set, else the first
/// of `/usr/bin/python3`, `/usr/local/bin/python3`, then `python3` on PATH.
/// System paths come first because the sandbox may run as an unprivileged uid
/// that cannot enter a per-user install (pyenv under /root).
pub fn python_path() -> Option<PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("VIGIL_PYTHON").filter(|p| !p.is_empty()) {
                return Some(PathBuf::from(p));
            }
            let fixed = ["/usr/bin/python3", "/usr/local/bin/python3"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.is_file());
            fixed.or_else(|| super::which("python3"))
        })
        .clone()
}

impl Runner for Python {
    fn language(&self) -> &str {
        "python"
    }

    fn files(&self, program: &str) -> Vec<(String, String)> {
        vec![("main.py".to_string(), program.to_string())]
    }

    fn command(&self) -> Result<Vec<String>, String> {
        let python = python_path()
            .ok_or_else(|| "no python3 found (set VIGIL_PYTHON or install python3)".to_string())?;
        Ok(vec![
            python.to_string_lossy().into_owned(),
            "-I".into(),
            "-B".into(),
            "main.py".into(),
        ])
    }

    fn hint(&self, outcome: &Outcome) -> Option<String> {
        let err = &outcome.stderr;
        if err.contains("MemoryError") {
            Some("memory limit".into())
        } else if err.contains("Resource temporarily unavailable")
            || err.contains("can't start new thread")
        {
            Some("process limit".into())
        } else if err.contains("File too large") {
            Some("file size limit".into())
        } else {
            None
        }
    }
}
