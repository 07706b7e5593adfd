//! Helpers shared by the end-to-end tests: suites and datasets written into a
//! temporary directory, and the `vigil` binary run as a real process.
#![allow(dead_code)]

pub mod cluster;
pub mod otel;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `vigil` binary under test.
pub fn vigil() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs a command to completion, printing its output when the test fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("vigil runs");
    eprintln!(
        "--- {:?} exited {:?}",
        cmd.get_args().collect::<Vec<_>>(),
        out.status.code()
    );
    eprintln!("--- stdout:\n{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("--- stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Writes `n` arithmetic items; every `wrong_every`-th reference (index % wrong_every == 0)
/// is deliberately wrong, so a perfect model scores exactly `1 - ceil(n/wrong_every)/n`.
pub fn write_arith_dataset(path: &Path, n: usize, wrong_every: usize) -> usize {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut wrong = 0;
    for i in 0..n {
        let (a, b) = (i % 97 + 1, i % 13 + 2);
        let mut answer = a + b;
        if wrong_every > 0 && i % wrong_every == 0 {
            answer += 1;
            wrong += 1;
        }
        let category = if i % 2 == 0 { "even" } else { "odd" };
        writeln!(f, r#"{{"id": "q{i}", "question": "What is {a} + {b}?", "answer": "{answer}", "category": "{category}"}}"#).unwrap();
    }
    wrong
}

/// A suite over `dataset.jsonl` in `dir` against `base_url`.
pub fn write_suite(dir: &Path, base_url: &str, extra: &str) -> PathBuf {
    let path = dir.join("suite.yaml");
    let text = format!(
        r#"name: arith
dataset:
  path: dataset.jsonl
  id_field: id
  tags: [category]
prompt:
  system: "Answer with the number only."
  user: "{{{{ question }}}}"
targets:
  - name: stub
    kind: chat
    base_url: {base_url}
    model: stub-model
    params: {{ temperature: 0, max_tokens: 16, seed: 7 }}
    timeout_s: 5
    max_concurrency: 64
    max_retries: 1
scorers:
  - name: exact
    kind: exact_match
    reference: "{{{{ answer }}}}"
  - name: num
    kind: numeric
    reference: "{{{{ answer }}}}"
shard_size: 32
{extra}"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Rewrites a suite file, replacing `from` (which must occur) with `to`.
pub fn edit_suite(suite: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(suite).unwrap();
    assert!(
        text.contains(from),
        "`{from}` is not in {}",
        suite.display()
    );
    std::fs::write(suite, text.replace(from, to)).unwrap();
}

/// `vigil run SUITE --no-progress` in embedded mode with its history under
/// `state` (`--state-dir`); expects exit 0 and returns the run id.
pub fn run_embedded(suite: &Path, state: &Path) -> String {
    let out = suite.with_file_name("s.json");
    let o = run(vigil()
        .args(["run", suite.to_str().unwrap(), "--no-progress", "--out"])
        .arg(&out)
        .arg("--state-dir")
        .arg(state));
    assert_eq!(o.status.code(), Some(0));
    read_summary(&out)["run_id"].as_str().unwrap().to_string()
}

/// `vigil run SUITE --nats URL --no-progress --out OUT EXTRA..`, to completion.
pub fn run_suite(suite: &Path, nats: &str, out: &Path, extra: &[&str]) -> Output {
    run(vigil()
        .args([
            "run",
            suite.to_str().unwrap(),
            "--nats",
            nats,
            "--no-progress",
        ])
        .arg("--out")
        .arg(out)
        .args(extra))
}

/// Reads the JSON summary written by `--out`.
pub fn read_summary(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("summary written"))
        .expect("summary is JSON")
}

/// Starts a `vigil worker` process on `nats_url` allowed to call `base_url`.
pub fn spawn_worker(nats_url: &str, base_url: &str, concurrency: usize) -> std::process::Child {
    worker_cmd(nats_url, base_url, concurrency)
        .spawn()
        .expect("vigil worker starts")
}

/// The command [`spawn_worker`] runs, for more flags (`--metrics-addr`).
pub fn worker_cmd(nats_url: &str, base_url: &str, concurrency: usize) -> Command {
    let mut cmd = vigil();
    cmd.args([
        "worker",
        "--nats",
        nats_url,
        "--concurrency",
        &concurrency.to_string(),
        "--allow",
        base_url,
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    cmd
}

/// Sends SIGTERM to a child process.
pub fn sigterm(child: &std::process::Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
}

/// `vigil run SUITE --nats URL --workers N [--out OUT]` (N = 0: only coordinate).
pub fn coordinate(suite: &Path, nats_url: &str, workers: usize, out: Option<&Path>) -> Command {
    let mut cmd = vigil();
    let workers = workers.to_string();
    cmd.args([
        "run",
        suite.to_str().unwrap(),
        "--nats",
        nats_url,
        "--workers",
        &workers,
    ]);
    if let Some(out) = out {
        cmd.arg("--out").arg(out);
    }
    cmd
}

/// Suite lines that turn the response cache off: tests that count backend
/// calls (faults, kills, scaling) must see every call reach the backend.
pub const NO_CACHE: &str = "cache: { enabled: false }\n";

/// A free 127.0.0.1 address to listen on.
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// The body of `GET /metrics`, or `None` while nothing listens.
pub fn scrape(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.contains(" 200 ").then_some(text)
}

/// The value of the sample whose line starts with `series ` (0 when absent).
pub fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

/// Where `scripts/setup.sh` installs nats-py and msgpack for the interop
/// tests (`$VIGIL_HOME/pypi/interop`); fails, naming the fix, when they are missing.
pub fn interop_pythonpath() -> PathBuf {
    let home = std::env::var("VIGIL_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".vigil"));
    let pythonpath = home.join("pypi/interop");
    assert!(
        pythonpath.join("nats").exists() && pythonpath.join("msgpack").exists(),
        "nats-py and msgpack are missing from {}: run scripts/setup.sh",
        pythonpath.display()
    );
    pythonpath
}

/// A nats-server (its URL and a JetStream context on it) whose response-cache
/// bucket an operator (or an older vigil) made beforehand with `bucket`'s
/// settings; the workers use it as it is.
pub async fn nats_with_cache_bucket(
    bucket: async_nats::jetstream::kv::Config,
) -> (
    vigil_testkit::nats_server::NatsServer,
    String,
    async_nats::jetstream::Context,
) {
    let nats = vigil_testkit::nats_server::NatsServer::start(Default::default())
        .await
        .unwrap();
    let url = nats.url();
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    js.create_key_value(async_nats::jetstream::kv::Config {
        bucket: "vigil-cache".into(),
        ..bucket
    })
    .await
    .unwrap();
    (nats, url, js)
}
