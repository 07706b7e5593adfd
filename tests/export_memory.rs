//! `vigil export` streams (issue 15 item 6): its peak memory does not grow
//! with the number of items. A real run of a few items and a stored run of
//! tens of thousands of items with 8 KiB outputs (far more output than the
//! bound below) are exported as JSONL, CSV and Parquet by the real binary;
//! the peak RSS (`VmHWM`) of each export of the big run stays within a fixed
//! margin of the small run's. An export that held every item (as JSONL and
//! CSV did), or a replay that let the client buffer hundreds of results
//! ahead (as `history::replay` did), needs far more and fails this.

use crate::common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use vigil_protocol::{ItemResult, JobResult, Score, subjects};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

/// How much more than the small run's export the big run's may take.
/// (A streaming export of the big run peaks 35–45 MiB above a 20-item one,
/// the results on their way and the row being written; one holding every
/// item needs the 234 MiB of outputs on top.)
const MARGIN_MB: f64 = 96.0;

/// The big run: how many items, bytes of output each, items per stored
/// result (a message stays under the server's 1 MiB), and Parquet's
/// `--row-group-rows` (a row group is what Parquet buffers).
#[derive(Clone, Copy)]
struct Shape {
    items: u64,
    output_bytes: usize,
    per_result: u64,
    row_group_rows: u32,
}

/// Publishes a run of `shape.items` results the way workers do.
async fn publish_big_run(nats_url: &str, run_id: &str, shape: Shape) {
    let client = async_nats::connect(nats_url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let output = "x".repeat(shape.output_bytes);
    let per = shape.per_result;
    for job in 0..shape.items.div_ceil(per) {
        let items = (job * per..((job + 1) * per).min(shape.items))
            .map(|index| ItemResult {
                index,
                id: format!("item-{index}"),
                output: Some(output.clone()),
                scores: vec![Score {
                    scorer: "exact".into(),
                    value: (index % 2) as f64,
                    passed: index % 2 == 0,
                    ..Default::default()
                }],
                latency_ms: 1.0,
                attempts: 1,
                tags: BTreeMap::from([("category".into(), format!("c{}", index % 3))]),
                ..Default::default()
            })
            .collect();
        let result = JobResult {
            run_id: run_id.into(),
            job_index: job,
            worker_id: "test".into(),
            delivery: 1,
            items,
            error: None,
        };
        let payload = vigil_protocol::encode(&result).unwrap();
        js.publish(subjects::result(run_id, job), payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

/// Runs `vigil export RUN --format FORMAT --out FILE --row-group-rows N`
/// and returns its peak RSS, MiB, read from `/proc/<pid>/status` until it
/// exits (the high-water mark only grows, so the last reading is the peak
/// up to then). `VIGIL_EXPORT_BIN` names another binary (a release build,
/// for measuring).
fn export_peak_mb(nats_url: &str, run_id: &str, format: &str, out: &Path, rows: u32) -> f64 {
    let mut command = match std::env::var_os("VIGIL_EXPORT_BIN") {
        Some(bin) => std::process::Command::new(bin),
        None => vigil(),
    };
    let mut child = command
        .args([
            "export", run_id, "--format", format, "--nats", nats_url, "--out",
        ])
        .arg(out)
        .args(["--row-group-rows", &rows.to_string()])
        // mimalloc returns freed memory at once: the peak is then what the
        // export holds, not what the allocator keeps for later.
        .env("MIMALLOC_PURGE_DELAY", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak_kb = 0;
    loop {
        if let Some(sample) = vigil_bench::procfs::sample(pid) {
            peak_kb = peak_kb.max(sample.hwm_kb);
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert!(
                status.success(),
                "export {format} of {run_id} failed: {err}"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(peak_kb > 0, "no VmHWM read for the export of {run_id}");
    peak_kb as f64 / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_memory_does_not_grow_with_the_items() {
    // 234 MiB of outputs, more than twice the margin.
    check_export_memory(Shape {
        items: 30_000,
        output_bytes: 8192,
        per_result: 100,
        row_group_rows: 1024,
    })
    .await;
}

/// The measurement of docs/performance.md "Memory (issue 15)": a million
/// items of 64-byte outputs in results of 32 (the default shard), Parquet at
/// its default row groups; with `VIGIL_EXPORT_BIN=target/release/vigil`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: a million items take minutes (cargo test --test export_memory -- --ignored --nocapture)"]
async fn export_memory_at_a_million_items() {
    check_export_memory(Shape {
        items: 1_000_000,
        output_bytes: 64,
        per_result: 32,
        row_group_rows: 16 * 1024,
    })
    .await;
}

/// Exports a 20-item real run and a stored run of `shape` in every format;
/// the big run's exports must stay within [`MARGIN_MB`] of the small one's.
async fn check_export_memory(shape: Shape) {
    let big_items = shape.items;
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A small real run (it also sets up the streams).
    write_arith_dataset(&dir.path().join("dataset.jsonl"), 20, 0);
    let suite = write_suite(dir.path(), &stub.base_url(), "");
    let out = dir.path().join("summary.json");
    let o = run_suite(&suite, &nats.url(), &out, &["--workers", "1"]);
    assert_eq!(o.status.code(), Some(0));
    let small = read_summary(&out)["run_id"].as_str().unwrap().to_string();
    let big = "export-memory-big";
    publish_big_run(&nats.url(), big, shape).await;

    for (format, ext) in [("jsonl", "jsonl"), ("csv", "csv"), ("parquet", "parquet")] {
        let small_file = dir.path().join(format!("small.{ext}"));
        let big_file = dir.path().join(format!("big.{ext}"));
        let rows = shape.row_group_rows;
        let small_mb = export_peak_mb(&nats.url(), &small, format, &small_file, rows);
        let big_mb = export_peak_mb(&nats.url(), big, format, &big_file, rows);
        let big_len = std::fs::metadata(&big_file).unwrap().len();
        eprintln!(
            "EXPORT MEMORY {format}: 20 items {small_mb:.1} MiB, {big_items} items {big_mb:.1} MiB ({:.0} MiB written)",
            big_len as f64 / (1 << 20) as f64
        );
        // (Parquet compresses the repeated outputs to almost nothing.)
        assert!(
            format == "parquet"
                || big_len as f64 > (big_items as usize * shape.output_bytes) as f64,
            "the big {format} export holds every output"
        );
        assert!(
            big_mb <= small_mb + MARGIN_MB,
            "{format}: exporting {big_items} items took {big_mb:.1} MiB, 20 items {small_mb:.1} MiB: \
             the export holds items in memory"
        );
    }
    // Every row is there, once.
    let jsonl = std::fs::read_to_string(dir.path().join("big.jsonl")).unwrap();
    let mut indices: Vec<u64> = jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["index"]
                .as_u64()
                .unwrap()
        })
        .collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..big_items).collect::<Vec<_>>());
    let csv = std::fs::read_to_string(dir.path().join("big.csv")).unwrap();
    assert_eq!(csv.lines().count() as u64, big_items + 1);
}
