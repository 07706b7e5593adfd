//! The real processes a scenario runs: `vigil stub`, `vigil run`,
//! `vigil worker`, and the files they read (an arithmetic dataset and a
//! suite pointing at the stub).

use anyhow::{Context, anyhow, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The operands of item `i`: the first is `i + 1`, so no two items of a
/// dataset share a prompt (a run of N items is N distinct model calls, never
/// cache hits of one another).
pub fn operands(i: u64) -> (u64, u64) {
    (i + 1, i % 13 + 2)
}

/// The question of item `i` (distinct for every `i`).
pub fn question(i: u64) -> String {
    let (a, b) = operands(i);
    format!("What is {a} + {b}?")
}

/// Writes `n` distinct arithmetic items (`id`, `question`, `answer`) as JSON lines.
pub fn write_dataset(path: &Path, n: u64) -> anyhow::Result<()> {
    write_items(path, 0..n)
}

/// Writes the arithmetic items `items` (their numbers; distinct prompts for
/// distinct numbers) as JSON lines.
pub fn write_items(path: &Path, items: std::ops::Range<u64>) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in items {
        let (a, b) = operands(i);
        writeln!(
            f,
            r#"{{"id": "q{i}", "question": "{}", "answer": "{}"}}"#,
            question(i),
            a + b
        )?;
    }
    f.flush()?;
    Ok(())
}

/// How a suite's single target and sharding are set.
#[derive(Debug, Clone)]
pub struct SuiteSpec {
    /// The suite's name (runs of one name on one store compare with the
    /// previous one).
    pub name: &'static str,
    /// The stub's base URL.
    pub base_url: String,
    /// The target's `max_concurrency` (its adaptive limit's ceiling).
    pub max_concurrency: usize,
    /// Items per job; `None`: the suite leaves `shard_size` out, so the run
    /// chooses (`Suite::shard_size_for`), as a user's suite would.
    pub shard_size: Option<usize>,
}

/// Writes `suite.yaml` over `dataset.jsonl` in `dir` and returns its path.
pub fn write_suite(dir: &Path, spec: &SuiteSpec) -> anyhow::Result<PathBuf> {
    let path = dir.join("suite.yaml");
    let text = format!(
        r#"name: {name}
dataset:
  path: dataset.jsonl
  id_field: id
prompt:
  system: "Answer with the number only."
  user: "{{{{ question }}}}"
targets:
  - name: stub
    kind: chat
    base_url: {base_url}
    model: stub-model
    params: {{ temperature: 0, max_tokens: 16, seed: 7 }}
    timeout_s: 30
    max_concurrency: {max_concurrency}
    max_retries: 1
scorers:
  - name: exact
    kind: exact_match
    reference: "{{{{ answer }}}}"
{shard_size}"#,
        name = spec.name,
        base_url = spec.base_url,
        max_concurrency = spec.max_concurrency,
        shard_size = spec
            .shard_size
            .map(|n| format!("shard_size: {n}\n"))
            .unwrap_or_default(),
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A child process whose output goes to a log file.
pub struct Proc {
    /// The child.
    pub child: Child,
    /// Its pid.
    pub pid: u32,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Proc {
    /// Sends SIGTERM (through `kill`, keeping this crate free of unsafe) and
    /// waits up to `grace`, then kills.
    pub async fn terminate(mut self, grace: Duration) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await;
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }

    /// Waits for the process to exit, at most `limit`; an error names the log.
    pub async fn wait_ok(mut self, limit: Duration) -> anyhow::Result<()> {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                let _ = self.child.kill().await;
                bail!(
                    "process {} did not finish within {limit:?}; log: {}",
                    self.pid,
                    self.log.display()
                );
            }
        };
        if !status.success() {
            bail!(
                "process {} exited with {status}; log {}:\n{}",
                self.pid,
                self.log.display(),
                tail(&self.log)
            );
        }
        Ok(())
    }
}

/// The last lines of a log file.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn command(vigil: &Path, log: &Path) -> anyhow::Result<Command> {
    let mut cmd = Command::new(vigil);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .kill_on_drop(true);
    Ok(cmd)
}

fn spawned(mut cmd: Command, log: PathBuf) -> anyhow::Result<Proc> {
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.as_std().get_program()))?;
    let pid = child.id().ok_or_else(|| anyhow!("child exited at once"))?;
    Ok(Proc { child, pid, log })
}

/// How a `vigil stub` process behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct StubSpec {
    /// `--latency-ms`.
    pub latency_ms: u64,
    /// `--slots`: completion requests served at once (the rest wait).
    pub slots: Option<usize>,
}

/// A running `vigil stub` process.
pub struct Stub {
    /// The process.
    pub proc: Proc,
    /// Its base URL (`http://127.0.0.1:PORT/v1`).
    pub url: String,
    drain: tokio::task::JoinHandle<Option<u64>>,
}

impl Stub {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.proc.pid
    }

    /// Stops it and returns how many completion requests it was sent over
    /// its life (it says so on exit).
    pub async fn terminate(self) -> anyhow::Result<u64> {
        self.proc.terminate(Duration::from_secs(5)).await?;
        tokio::time::timeout(Duration::from_secs(5), self.drain)
            .await
            .context("the stub's stderr did not close")??
            .ok_or_else(|| anyhow!("the stub did not say how many requests it served"))
    }
}

type Lines = tokio::io::Lines<BufReader<tokio::process::ChildStderr>>;

/// Spawns `cmd` with stderr piped and waits (10 s at most) for the line
/// starting with `prefix`; returns the child, its pid, the rest of that line
/// and the rest of its stderr.
async fn announced(mut cmd: Command, prefix: &str) -> anyhow::Result<(Child, u32, String, Lines)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.as_std().get_program()))?;
    let pid = child.id().ok_or_else(|| anyhow!("exited at once"))?;
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.trim().strip_prefix(prefix) {
                return Ok::<_, std::io::Error>(Some(rest.to_string()));
            }
        }
        Ok(None)
    })
    .await
    .with_context(|| format!("no line `{prefix}...` within 10 s"))??
    .ok_or_else(|| anyhow!("exited before saying `{prefix}...`"))?;
    Ok((child, pid, rest, lines))
}

/// Starts `vigil stub` on a free port.
pub async fn stub(vigil: &Path, spec: StubSpec) -> anyhow::Result<Stub> {
    let mut cmd = Command::new(vigil);
    cmd.args(["stub", "--listen", "127.0.0.1:0", "--latency-ms"])
        .arg(spec.latency_ms.to_string())
        .env("VIGIL_LOG", "warn");
    if let Some(n) = spec.slots {
        cmd.arg("--slots").arg(n.to_string());
    }
    let (child, pid, url, mut lines) = announced(cmd, "stub backend on ")
        .await
        .context("starting vigil stub")?;
    // Keep draining its stderr so it never blocks on a full pipe, and keep
    // the count it prints on exit.
    let drain = tokio::spawn(async move {
        let mut served = None;
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.trim().strip_prefix("stub served ") {
                served = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            }
        }
        served
    });
    Ok(Stub {
        proc: Proc {
            child,
            pid,
            log: PathBuf::from("(stub stderr drained)"),
        },
        url,
        drain,
    })
}

/// Starts `vigil proxy --listen 127.0.0.1:0 --upstream UPSTREAM --app APP
/// --sample 1 --nats NATS --metrics-addr METRICS`; returns it and the base
/// URL it proxies on (`http://ADDR/v1`).
pub async fn proxy(
    vigil: &Path,
    upstream: &str,
    app: &str,
    nats: &str,
    metrics: std::net::SocketAddr,
) -> anyhow::Result<(Proc, String)> {
    let mut cmd = Command::new(vigil);
    cmd.args(["proxy", "--listen", "127.0.0.1:0", "--upstream", upstream])
        .args(["--app", app, "--sample", "1", "--nats", nats])
        .arg("--metrics-addr")
        .arg(metrics.to_string())
        .env("VIGIL_LOG", "warn");
    let (child, pid, rest, mut lines) = announced(cmd, "vigil proxy on ")
        .await
        .context("starting vigil proxy")?;
    let addr = rest
        .split_whitespace()
        .next()
        .ok_or_else(|| anyhow!("vigil proxy said `{rest}`"))?
        .to_string();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((
        Proc {
            child,
            pid,
            log: PathBuf::from("(proxy stderr drained)"),
        },
        format!("{}/v1", addr.trim_end_matches('/')),
    ))
}

/// Starts `vigil run SUITE --no-progress --out DIR/summary.json` with the
/// extra arguments (`--nats URL --workers 0`, or embedded flags).
pub fn run(vigil: &Path, dir: &Path, suite: &Path, extra: &[String]) -> anyhow::Result<Proc> {
    let log = dir.join("run.log");
    let mut cmd = command(vigil, &log)?;
    cmd.arg("run")
        .arg(suite)
        .arg("--no-progress")
        .arg("--out")
        .arg(dir.join("summary.json"))
        .args(extra)
        .current_dir(dir);
    spawned(cmd, log)
}

/// Starts `vigil worker --nats URL --concurrency K --allow BASE_URL`.
pub fn worker(
    vigil: &Path,
    dir: &Path,
    index: usize,
    nats: &str,
    concurrency: usize,
    base_url: &str,
) -> anyhow::Result<Proc> {
    let log = dir.join(format!("worker-{index}.log"));
    let mut cmd = command(vigil, &log)?;
    cmd.args(["worker", "--nats", nats, "--concurrency"])
        .arg(concurrency.to_string())
        .args(["--allow", base_url, "--grace-period-s", "5"])
        .env("VIGIL_LOG", "warn");
    spawned(cmd, log)
}

/// Reads the summary a run wrote.
pub fn read_summary(dir: &Path) -> anyhow::Result<serde_json::Value> {
    let path = dir.join("summary.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("no {}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}
