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
    /// that a `MemoryError` means the memory limit, named with how it is
    /// kept: [`Outcome::memory`]), if the runner knows one.
    fn hint(&self, outcome: &Outcome) -> Option<String>;
    /// What of the host the language needs in the sandbox: its binary, its
    /// standard library and the directories of its shared libraries
    /// (absolute paths, found by asking the runtime itself). Blocking.
    fn runtime_paths(&self) -> Result<Vec<PathBuf>, String>;
    /// A program that checks, from inside, that the sandbox holds: it exits 0
    /// and prints [`SELF_TEST_OK`] when it does, else names what does not.
    fn self_test(&self) -> &'static str;
}

/// What a [`Runner::self_test`] program prints when the sandbox holds.
pub const SELF_TEST_OK: &str = "vigil-sandbox-self-test-ok";

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

    fn runtime_paths(&self) -> Result<Vec<PathBuf>, String> {
        let command = self.command()?;
        let out = std::process::Command::new(&command[0])
            .args(["-I", "-B", "-c", PYTHON_RUNTIME])
            .env_clear()
            .env("LANG", "C.UTF-8")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", command[0]))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed: {}",
                command[0],
                crate::text::short(String::from_utf8_lossy(&out.stderr).trim(), 120)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with('/'))
            .map(PathBuf::from)
            .collect())
    }

    fn self_test(&self) -> &'static str {
        PYTHON_SELF_TEST
    }

    fn hint(&self, outcome: &Outcome) -> Option<String> {
        let err = &outcome.stderr;
        if outcome.oom_killed {
            Some(format!("out of memory: {}", outcome.memory))
        } else if err.contains("MemoryError") {
            Some(format!("memory limit: {}", outcome.memory))
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

/// Prints, one per line, what the interpreter needs: its executable, the
/// directories on its module path, and the directories of the shared
/// libraries it maps once the standard library's extension modules that
/// exist here are loaded.
const PYTHON_RUNTIME: &str = r#"
import importlib, os, sys
for m in ("ssl", "ctypes", "sqlite3", "decimal", "hashlib", "zlib", "bz2", "lzma",
          "math", "cmath", "random", "datetime", "json", "re", "unicodedata", "array",
          "select", "socket", "struct", "binascii", "pyexpat", "_posixsubprocess",
          "_multiprocessing", "readline", "uuid", "fractions", "statistics"):
    try:
        importlib.import_module(m)
    except Exception:
        pass
exe = os.path.realpath(sys.executable)
print(sys.executable)
print(exe)
for p in sys.path:
    if p.startswith("/") and os.path.isdir(p):
        print(p)
dirs = set()
with open("/proc/self/maps") as maps:
    for line in maps:
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/"):
            path = parts[5].strip()
            if path != exe and os.path.exists(path):
                dirs.add(os.path.dirname(path))
for d in sorted(dirs):
    print(d)
"#;

/// Checks what the sandbox promises, from inside: no capabilities in any
/// set, no_new_privs, no network but loopback, no host directories, no
/// environment but PATH, HOME, LANG.
const PYTHON_SELF_TEST: &str = r#"
import os, socket, sys
problems = []
if os.getuid() == 0 or os.geteuid() == 0:
    problems.append("running as uid 0")
try:
    status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        if int(status[cap].strip(), 16) != 0:
            problems.append("capabilities left (%s)" % cap)
    if status["NoNewPrivs"].strip() != "1":
        problems.append("no_new_privs not set")
except OSError:
    pass
names = [n for _, n in socket.if_nameindex()]
if names != ["lo"]:
    problems.append("network interfaces besides loopback: %s" % names)
for d in ("/etc", "/home", "/root", "/run", "/var", "/srv", "/mnt"):
    if os.path.exists(d):
        problems.append("%s is visible" % d)
extra = sorted(set(os.environ) - {"PATH", "HOME", "LANG"})
if extra:
    problems.append("environment variables %s" % extra)
try:
    open("/vigil-probe", "w")
    problems.append("the root is writable")
except OSError:
    pass
if problems:
    sys.exit("; ".join(problems))
print("vigil-sandbox-self-test-ok")
"#;
