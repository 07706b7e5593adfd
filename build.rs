//! Stamps the `vigil` binary with the commit it was built from, so that
//! `vigil --version` names it (`vigil 0.1.0 (commit e56c180)`) and a
//! benchmark of any binary names the code it measured (vigil-bench).
//!
//! The short hash of `HEAD`; `unknown` outside a git checkout. Whether the
//! work tree had uncommitted changes is not stamped: it changes without
//! anything cargo can watch (vigil-bench checks that of its own checkout).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=VIGIL_COMMIT={commit}");
    // Run again when HEAD moves: a commit, a checkout, a reset. Only files
    // that exist are named (cargo reruns every time for a missing one).
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
