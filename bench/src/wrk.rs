//! The stub's ceiling under `wrk` (a C load generator, cheaper per request
//! than any client vigil could be), where it is installed. Its absence is
//! reported, never an error: `apt-get install wrk` adds it.

use anyhow::{Context, bail};
use std::path::Path;
use std::time::{Duration, Instant};

/// What one `wrk` run measured.
#[derive(Debug, Clone, Copy)]
pub struct WrkDrive {
    /// Requests completed.
    pub requests: u64,
    /// The run's own duration, as wrk reports it.
    pub duration_s: f64,
    /// From spawning wrk to its exit.
    pub wall_s: f64,
    /// Answers other than 2xx/3xx.
    pub non_2xx: u64,
    /// Socket errors (connect, read, write, timeout) summed.
    pub socket_errors: u64,
}

impl WrkDrive {
    /// Requests per second over wrk's own duration.
    pub fn per_s(&self) -> f64 {
        self.requests as f64 / self.duration_s.max(1e-9)
    }
}

/// Whether `wrk` can be run from `PATH`.
pub fn installed() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// A duration as wrk prints it (`812.00us`, `1.50ms`, `5.00s`, `1.00m`, `1.00h`).
fn seconds(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = text.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    })
}

/// Reads wrk's summary: `N requests in 5.00s, ...`, `Non-2xx or 3xx
/// responses: N`, `Socket errors: connect a, read b, write c, timeout d`.
pub fn parse(stdout: &str) -> Option<(u64, f64, u64, u64)> {
    let mut found = None;
    let (mut non_2xx, mut socket) = (0, 0);
    for line in stdout.lines().map(str::trim) {
        if let Some((n, rest)) = line.split_once(" requests in ") {
            let duration = seconds(rest.split(',').next()?.trim())?;
            found = Some((n.trim().parse().ok()?, duration));
        } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = n.trim().parse().ok()?;
        } else if let Some(list) = line.strip_prefix("Socket errors:") {
            socket = list
                .split(',')
                .filter_map(|kv| kv.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        }
    }
    found.map(|(n, d)| (n, d, non_2xx, socket))
}

/// Runs `wrk -t THREADS -c CONNECTIONS -d SECONDS` against
/// `<base_url>/chat/completions`, POSTing one chat request (the stub does
/// the same work for every prompt, so one body costs the client least).
/// `Ok(None)` when wrk is not installed.
pub async fn drive(
    dir: &Path,
    base_url: &str,
    threads: usize,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<Option<WrkDrive>> {
    if !installed() {
        return Ok(None);
    }
    let body = String::from_utf8(crate::loadgen::body(0))?;
    let script = dir.join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = [[{body}]]\n"
        ),
    )?;
    let url = format!("{}/chat/completions", base_url.trim_end_matches('/'));
    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(seconds + 30),
        tokio::process::Command::new("wrk")
            .arg("-t")
            .arg(threads.max(1).to_string())
            .arg("-c")
            .arg(connections.max(threads.max(1)).to_string())
            .arg("-d")
            .arg(format!("{}s", seconds.max(1)))
            .arg("-s")
            .arg(&script)
            .arg(&url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("wrk did not finish")??;
    let wall_s = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk exited with {}: {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (requests, duration_s, non_2xx, socket_errors) =
        parse(&stdout).with_context(|| format!("cannot read wrk's output:\n{stdout}"))?;
    Ok(Some(WrkDrive {
        requests,
        duration_s,
        wall_s,
        non_2xx,
        socket_errors,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_summary() {
        let out = "Running 5s test @ http://127.0.0.1:1/v1/chat/completions\n  2 threads and 64 connections\n  \
                   Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     1.00ms  300.00us   9.00ms   90.00%\n  \
                   327683 requests in 5.00s, 95.13MB read\n  Socket errors: connect 0, read 3, write 0, timeout 1\n  \
                   Non-2xx or 3xx responses: 2\nRequests/sec:  65536.60\nTransfer/sec:     19.03MB\n";
        assert_eq!(parse(out), Some((327_683, 5.0, 2, 4)));
        assert_eq!(seconds("1.50ms"), Some(0.0015));
        assert_eq!(seconds("1.00m"), Some(60.0));
        assert_eq!(parse("no summary here"), None);
    }
}
