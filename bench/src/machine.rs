//! A description of the machine a benchmark ran on.

use std::path::Path;

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
        (
            "load average at start (1/5/15 min)".into(),
            std::fs::read_to_string("/proc/loadavg")
                .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".into()),
        ),
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
