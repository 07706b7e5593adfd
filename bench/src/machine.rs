//! A description of the machine a benchmark ran on.

use std::path::{Path, PathBuf};

fn first_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn proc_field(file: &str, key: &str) -> Option<String> {
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// The load average now (1, 5 and 15 minutes), as `/proc/loadavg` gives it.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The date and time now, UTC (`date -u`).
pub fn now_utc() -> String {
    first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
}

/// The workspace this bench was built from.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The commit a `vigil --version` line names (`vigil 0.1.0 (commit
/// e56c180)`, stamped by the workspace's build.rs); `None` for a binary
/// built before that, or outside a git checkout.
///
/// ```
/// use vigil_bench::machine::stamped_commit;
/// assert_eq!(stamped_commit("vigil 0.1.0 (commit e56c180)"), Some("e56c180"));
/// assert_eq!(stamped_commit("vigil 0.1.0 (commit unknown)"), None);
/// assert_eq!(stamped_commit("vigil 0.1.0"), None);
/// ```
pub fn stamped_commit(version: &str) -> Option<&str> {
    let commit = version.split_once("(commit ")?.1.split_once(')')?.0.trim();
    (!commit.is_empty() && commit != "unknown").then_some(commit)
}

/// The commit the measured binary was built from, as far as can be told:
/// the one it names (`vigil --version`) when that is not `repo`'s HEAD, so
/// an older binary's rows say its own commit. Otherwise (the binary of this
/// checkout, or one that names none) `git rev-parse --short HEAD` of
/// `repo`, `-dirty` when tracked files differ from it, and a warning when
/// `binary` is older than a tracked source file (then it was not built from
/// what the commit says).
pub fn commit(repo: &Path, binary: &Path) -> String {
    let version = first_line(&binary.display().to_string(), &["--version"]);
    let stamped = stamped_commit(&version);
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return stamped.unwrap_or("unknown (not a git checkout)").into();
    };
    let head = head.trim();
    if let Some(stamped) = stamped
        && stamped != head
    {
        return format!("{stamped} (the binary's; this checkout is at {head})");
    }
    let mut out = head.to_string();
    if git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.trim().is_empty())
    {
        out.push_str("-dirty");
    }
    let built = std::fs::metadata(binary).and_then(|m| m.modified()).ok();
    let newest_source = git(&["ls-files"]).and_then(|files| {
        files
            .lines()
            .filter(|f| {
                f.ends_with(".rs") || f.ends_with("Cargo.toml") || f.ends_with("Cargo.lock")
            })
            .filter_map(|f| {
                std::fs::metadata(repo.join(f))
                    .and_then(|m| m.modified())
                    .ok()
            })
            .max()
    });
    if let (Some(built), Some(newest)) = (built, newest_source)
        && newest > built
    {
        out.push_str(" (binary older than the sources: rebuild)");
    }
    if stamped.is_none() {
        out.push_str(" (this checkout's: the binary names no commit)");
    }
    out
}

/// (name, value) pairs: CPUs, CPU model, memory, kernel, load, versions.
pub fn describe(vigil: &Path) -> Vec<(String, String)> {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = proc_field("/proc/meminfo", "MemTotal")
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    let nats = vigil_testkit::nats_server::find_nats_server()
        .ok()
        .and_then(|b| vigil_testkit::nats_server::server_version(&b).ok())
        .unwrap_or_else(|| "not found".into());
    vec![
        ("CPUs (nproc)".into(), nproc.to_string()),
        (
            "CPU model".into(),
            proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into()),
        ),
        ("memory".into(), mem),
        (
            "kernel".into(),
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
        ),
        ("load average at start (1/5/15 min)".into(), loadavg()),
        (
            "vigil".into(),
            format!(
                "{} ({})",
                first_line(&vigil.display().to_string(), &["--version"]),
                vigil.display()
            ),
        ),
        ("nats-server".into(), nats),
        ("rustc".into(), first_line("rustc", &["--version"])),
    ]
}
