//! Multi-process helpers for the fault tests: `vigil worker` and `vigil run`
//! as real child processes with their logs in files, kill -9 and SIGTERM, and
//! reading the numbers a coordinator logs when a run finishes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The AckWait the fault tests give their servers' worker consumer, seconds:
/// a killed worker's jobs come back this fast.
pub const FAST_ACK_WAIT_S: &str = "2";

/// A child `vigil` process whose stderr goes to a file.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// Its log.
    pub log: PathBuf,
}

impl Proc {
    /// Starts `vigil ARGS` with `envs`, logging JSON lines at info level into `log`.
    pub fn spawn(args: &[&str], envs: &[(&str, &str)], log: &Path) -> Proc {
        let file = std::fs::File::create(log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
        cmd.args(["--log-format", "json"])
            .args(args)
            .env("VIGIL_LOG", "info")
            .env("VIGIL_ACK_WAIT_S", FAST_ACK_WAIT_S)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Proc {
            child: cmd.spawn().expect("vigil starts"),
            log: log.to_path_buf(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// kill -9, and reap it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
    }

    /// Waits up to `timeout` for the exit code (None: still running, then killed).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            if Instant::now() >= end {
                self.kill9();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `fields` of every JSON log line whose message is `message`.
    pub fn log_events(&self, message: &str) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v.get("fields").cloned())
            .filter(|f| f["message"] == message)
            .collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
}

/// Starts a `vigil worker` against `nats` allowed to call `base_url`.
pub fn worker(
    dir: &Path,
    name: &str,
    nats: &str,
    base_url: &str,
    concurrency: usize,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Proc {
    let concurrency = concurrency.to_string();
    let mut args = vec![
        "worker",
        "--nats",
        nats,
        "--allow",
        base_url,
        "--concurrency",
        &concurrency,
    ];
    args.extend_from_slice(extra);
    Proc::spawn(&args, envs, &dir.join(format!("{name}.log")))
}

/// Starts `vigil run SUITE --nats URL --workers 0 --out OUT EXTRA..`.
pub fn coordinator(
    dir: &Path,
    name: &str,
    suite: &Path,
    nats: &str,
    out: &Path,
    extra: &[&str],
) -> Proc {
    coordinator_with_env(dir, name, suite, nats, out, extra, &[])
}

/// [`coordinator`] with more environment variables.
pub fn coordinator_with_env(
    dir: &Path,
    name: &str,
    suite: &Path,
    nats: &str,
    out: &Path,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Proc {
    let mut args = vec![
        "run",
        suite.to_str().unwrap(),
        "--nats",
        nats,
        "--workers",
        "0",
        "--no-progress",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Proc::spawn(&args, envs, &dir.join(format!("{name}.log")))
}

/// Messages in a stream's subject filter (for example how many results a run has).
pub async fn count_messages(
    js: &async_nats::jetstream::Context,
    stream: &str,
    subject: &str,
) -> u64 {
    let Ok(stream) = js.get_stream(stream).await else {
        return 0; // not created yet
    };
    match stream.info_with_subjects(subject).await {
        Ok(mut subjects) => {
            use futures::TryStreamExt;
            let mut total = 0;
            while let Ok(Some((_, n))) = subjects.try_next().await {
                total += n as u64;
            }
            total
        }
        Err(_) => 0,
    }
}

/// Polls `check` every 50 ms until it holds; panics after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The streams and the default pool's worker consumer with a low MaxDeliver
/// and a 2 s AckWait, as `vigil setup-streams` would make them.
pub async fn topology_with_max_deliver(
    url: &str,
    max_deliver: i64,
) -> async_nats::jetstream::Context {
    let client = async_nats::connect(url).await.unwrap();
    let topology = vigil_nats::topology::TopologyConfig {
        max_deliver,
        ack_wait: Duration::from_secs(2),
        ..Default::default()
    };
    vigil_nats::topology::ensure_topology(&client, &topology, "default")
        .await
        .unwrap()
}

/// A broken worker: pulls jobs of the default pool and naks every delivery,
/// `deliveries` times; the task returns how many it nak'd.
pub async fn nak_every_delivery(
    js: &async_nats::jetstream::Context,
    deliveries: u64,
) -> tokio::task::JoinHandle<u64> {
    use futures::StreamExt;
    let consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream("VIGIL_JOBS")
        .await
        .unwrap()
        .get_consumer("vigil-workers-default")
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut nakked = 0u64;
        let mut messages = consumer.messages().await.unwrap();
        while let Some(Ok(message)) = messages.next().await {
            message
                .ack_with(async_nats::jetstream::AckKind::Nak(None))
                .await
                .unwrap();
            nakked += 1;
            if nakked == deliveries {
                break;
            }
        }
        nakked
    })
}
