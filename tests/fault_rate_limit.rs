//! A rate-limited target stalls nothing else (issue 15 item 5), checked as a
//! new user would: real nats-server, a real `vigil worker` and `vigil run`,
//! two stub backends. One answers every request 429 with `Retry-After: 30`;
//! the other target's items all finish while the limited target's items are
//! still waiting (no retry of theirs has happened). And a `Retry-After`
//! longer than the time left to the run's deadline fails items as
//! `deadline` at once, instead of sleeping into the deadline.

use crate::common;
use crate::common::cluster;

use cluster::*;
use common::*;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

/// Items per target; with `shard_size: 4` and a worker of concurrency 8 (4
/// working job slots), the limited target's jobs outnumber the worker's
/// working slots, and its items its call slots.
const N: usize = 48;

fn limited_stub() -> StubConfig {
    StubConfig {
        rate_limit_rate: 1.0,
        retry_after_s: 30,
        ..Default::default()
    }
}

/// A suite over `N` items with target `healthy` at `healthy_url` (when
/// given) and target `limited` at `limited_url`.
fn suite(
    dir: &std::path::Path,
    healthy_url: Option<&str>,
    limited_url: &str,
    extra: &str,
) -> std::path::PathBuf {
    write_arith_dataset(&dir.join("dataset.jsonl"), N, 0);
    let suite = write_suite(dir, limited_url, &format!("{extra}{NO_CACHE}"));
    edit_suite(&suite, "  - name: stub\n", "  - name: limited\n");
    edit_suite(&suite, "shard_size: 32", "shard_size: 4");
    if let Some(url) = healthy_url {
        edit_suite(
            &suite,
            "targets:\n",
            &format!(
                "targets:\n  - name: healthy\n    kind: chat\n    base_url: {url}\n    model: stub-model\n    params: {{ temperature: 0, max_tokens: 16, seed: 7 }}\n    timeout_s: 5\n    max_concurrency: 64\n    max_retries: 1\n"
            ),
        );
    }
    suite
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_target_stalls_nothing_else() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let healthy = StubServer::start(StubConfig::default()).await.unwrap();
    let limited = StubServer::start(limited_stub()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let suite = suite(
        dir.path(),
        Some(&healthy.base_url()),
        &limited.base_url(),
        // Longer than the Retry-After: the limited items wait, then retry.
        "deadline_s: 120\n",
    );
    let limited_base = limited.base_url();
    let worker_proc = worker(
        dir.path(),
        "worker",
        &nats.url(),
        &healthy.base_url(),
        8,
        &["--allow", &limited_base],
        &[],
    );
    let (healthy_stats, limited_stats) = (healthy.stats(), limited.stats());
    // The limited run first: its items take the worker's call slots and
    // are told to come back in 30 s.
    let limited_out = dir.path().join("limited.json");
    let mut limited_run = coordinator(
        dir.path(),
        "coordinator-limited",
        &suite,
        &nats.url(),
        &limited_out,
        &["--target", "limited"],
    );
    wait_until(
        "the limited target's first answers (429, Retry-After: 30)",
        Duration::from_secs(60),
        || {
            let seen = limited_stats.rate_limited.load(Relaxed) >= 8;
            async move { seen }
        },
    )
    .await;
    // Then the healthy run, while the limited items wait.
    let healthy_out = dir.path().join("healthy.json");
    let mut healthy_run = coordinator(
        dir.path(),
        "coordinator-healthy",
        &suite,
        &nats.url(),
        &healthy_out,
        &["--target", "healthy"],
    );
    // Before the fix the waiting items held the worker's 8 call slots (and
    // its job slots) through their 30 s sleeps: the healthy items could be
    // answered only after the limited ones had retried.
    assert_eq!(
        healthy_run.wait_exit(Duration::from_secs(120)),
        Some(0),
        "{}",
        healthy_run.log_text()
    );
    let limited_seen = limited_stats.requests.load(Relaxed);
    assert!(
        limited_seen <= N as u64,
        "{limited_seen} requests to the limited target for {N} items: some retried \
         (waited out their 30 s Retry-After) before the healthy run finished"
    );
    let h = read_summary(&healthy_out);
    assert_eq!(h["items_scored"], N, "{h}");
    assert_eq!(healthy_stats.requests.load(Relaxed), N as u64);

    // The limited run then ends: every item rate limited after one retry.
    assert_eq!(
        limited_run.wait_exit(Duration::from_secs(120)),
        Some(1),
        "{}",
        limited_run.log_text()
    );
    let l = read_summary(&limited_out);
    assert_eq!(
        l["errors"]["rate_limited"],
        N,
        "{l}\n{}",
        worker_proc.log_text()
    );
    assert_eq!(limited_stats.requests.load(Relaxed), 2 * N as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_past_the_deadline_fails_items_as_deadline_at_once() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let limited = StubServer::start(limited_stub()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // 20 s to the deadline, 30 s asked for: waiting cannot help.
    let suite = suite(dir.path(), None, &limited.base_url(), "deadline_s: 20\n");
    let _worker = worker(
        dir.path(),
        "worker",
        &nats.url(),
        &limited.base_url(),
        8,
        &[],
        &[],
    );
    let out = dir.path().join("summary.json");
    let mut coord = coordinator(dir.path(), "coordinator", &suite, &nats.url(), &out, &[]);
    assert_eq!(
        coord.wait_exit(Duration::from_secs(60)),
        Some(1),
        "{}",
        coord.log_text()
    );
    let s = read_summary(&out);
    assert_eq!(s["errors"]["deadline"], N, "{s}");
    // The worker answered every item before the deadline (had it slept,
    // the coordinator would have failed them itself at the deadline).
    assert!(s["duration_s"].as_f64().unwrap() < 20.0, "{s}");
    assert_eq!(
        limited.stats().requests.load(Relaxed),
        N as u64,
        "no retries"
    );
    let run_id = s["run_id"].as_str().unwrap();
    let export = run(vigil().args(["export", run_id, "--format", "jsonl", "--nats", &nats.url()]));
    assert_eq!(
        export.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), N);
    for item in &lines {
        assert_eq!(item["error"]["kind"], "deadline", "{item}");
        let message = item["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("before a retry in 30.0 s (Retry-After)")
                && message.contains("last attempt: rate_limited: HTTP 429 after 1 attempt"),
            "{message}"
        );
    }
}
