//! Every run ends (issue 12, part 3), with real processes: jobs a worker
//! cannot read are answered with failed items, a job that vanished from the
//! queue is found by reconciliation, a dataset error during dispatch ends
//! the run with exit 2, and a worker told to stop while nats-server is down
//! exits within its grace period.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage};
use cluster::*;
use common::*;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

/// A real job as the coordinator published it: stream sequence, headers, job.
struct Captured {
    seq: u64,
    headers: HeaderMap,
    job: vigil_protocol::Job,
}

/// Waits until `jobs` jobs are in `VIGIL_JOBS` and reads them all.
async fn capture_jobs(js: &jetstream::Context, jobs: u64) -> Vec<Captured> {
    wait_until("every job published", Duration::from_secs(30), || async {
        count_messages(js, "VIGIL_JOBS", "vigil.jobs.>").await >= jobs
    })
    .await;
    let mut stream = js.get_stream("VIGIL_JOBS").await.unwrap();
    let first = stream.info().await.unwrap().state.first_sequence;
    let mut captured = Vec::new();
    for seq in first..first + jobs {
        let message = stream.get_raw_message(seq).await.unwrap();
        captured.push(Captured {
            seq,
            job: vigil_protocol::decode(&message.payload).unwrap(),
            headers: message.headers,
        });
    }
    captured.sort_by_key(|c| c.job.job_index);
    captured
}

/// Replaces a job's message with a forged one (same `Nats-Msg-Id`),
/// re-publishing until the server's short duplicate window has let go of the id.
async fn replace_job(
    js: &jetstream::Context,
    old: &Captured,
    headers: HeaderMap,
    payload: Vec<u8>,
) {
    let stream = js.get_stream("VIGIL_JOBS").await.unwrap();
    assert!(stream.delete_message(old.seq).await.unwrap());
    let subject = "vigil.jobs.default".to_string();
    let mut attempts = 0;
    loop {
        let publish = PublishMessage::build()
            .headers(headers.clone())
            .payload(payload.clone().into());
        let ack = js
            .send_publish(subject.clone(), publish)
            .await
            .unwrap()
            .await
            .unwrap();
        if !ack.duplicate {
            return;
        }
        attempts += 1;
        assert!(attempts < 200, "the duplicate window never let go");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn with_header(headers: &HeaderMap, name: &str, value: &str) -> HeaderMap {
    let mut h = headers.clone();
    h.insert(name, value);
    h
}

/// The stream topology of these tests: a short duplicate window, so a job
/// can be replaced by a forged one with the same dedup id.
async fn short_dedup_topology(url: &str) {
    let client = async_nats::connect(url).await.unwrap();
    let topology = vigil_nats::topology::TopologyConfig {
        duplicate_window: Duration::from_millis(300),
        ack_wait: Duration::from_secs(2),
        ..Default::default()
    };
    vigil_nats::topology::ensure_topology(&client, &topology, "default")
        .await
        .unwrap();
}

/// A run of `jobs` jobs of 32 items dispatched by a coordinator process
/// (reconciling after `reconcile_s` without progress), with no worker yet.
struct Dispatched {
    _nats: NatsServer,
    _stub: StubServer,
    dir: tempfile::TempDir,
    url: String,
    base: String,
    out: std::path::PathBuf,
    coordinator: Proc,
    js: jetstream::Context,
    jobs: Vec<Captured>,
}

async fn dispatched(jobs: u64, reconcile_s: &str, short_dedup: bool) -> Dispatched {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), 32 * jobs as usize, 0);
    let suite = write_suite(dir.path(), &stub.base_url(), NO_CACHE);
    let (url, base) = (nats.url(), stub.base_url());
    if short_dedup {
        short_dedup_topology(&url).await;
    }
    let out = dir.path().join("summary.json");
    let coordinator = coordinator_with_env(
        dir.path(),
        "coordinator",
        &suite,
        &url,
        &out,
        &[],
        &[("VIGIL_RECONCILE_S", reconcile_s)],
    );
    let js = jetstream::new(async_nats::connect(&url).await.unwrap());
    let captured = capture_jobs(&js, jobs).await;
    Dispatched {
        _nats: nats,
        _stub: stub,
        dir,
        url,
        base,
        out,
        coordinator,
        js,
        jobs: captured,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_a_worker_cannot_read_end_their_run_with_failed_items() {
    let n = 32 * 5; // five jobs
    // Reconciliation would fail the replaced jobs as `job_lost`: keep it out of the way.
    let Dispatched {
        dir,
        url,
        base,
        out,
        mut coordinator,
        js,
        jobs,
        _nats,
        _stub,
    } = dispatched(5, "3600", true).await;

    // Every run has a deadline: 24 h by default.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let deadline = jobs[0].job.deadline_unix_ms.expect("a default deadline");
    let day_ms = 24 * 3600 * 1000;
    assert!(
        deadline > now_ms + day_ms - 600_000 && deadline <= now_ms + day_ms,
        "deadline {deadline} is not 24 h from {now_ms}"
    );

    // Job 0: a schema this worker cannot read (a breaking change: Min = N).
    let next = (vigil_protocol::SCHEMA_VERSION + 1).to_string();
    let newer = with_header(&jobs[0].headers, "Vigil-Schema", &next);
    let newer = with_header(&newer, "Vigil-Schema-Min", &next);
    replace_job(
        &js,
        &jobs[0],
        newer,
        vigil_protocol::encode(&jobs[0].job).unwrap(),
    )
    .await;
    // Job 1: an endpoint kind this worker does not know.
    let mut value = serde_json::to_value(&jobs[1].job).unwrap();
    value["target"]["kind"] = "grpc".into();
    replace_job(
        &js,
        &jobs[1],
        jobs[1].headers.clone(),
        vigil_protocol::encode(&value).unwrap(),
    )
    .await;
    // Job 2: not MessagePack at all; only its Nats-Msg-Id names it.
    replace_job(
        &js,
        &jobs[2],
        jobs[2].headers.clone(),
        b"\xc1\xc1 not a job".to_vec(),
    )
    .await;
    // Job 3: a newer schema with an added field only (Min stays 1): read and evaluated.
    let mut value = serde_json::to_value(&jobs[3].job).unwrap();
    value["a_field_from_the_future"] = serde_json::json!({"x": [1, 2]});
    let additive = with_header(&jobs[3].headers, "Vigil-Schema", &next);
    let additive = with_header(&additive, "Vigil-Schema-Min", "1");
    replace_job(
        &js,
        &jobs[3],
        additive,
        vigil_protocol::encode(&value).unwrap(),
    )
    .await;

    let w = worker(dir.path(), "worker", &url, &base, 16, &[], &[]);
    let code = coordinator.wait_exit(Duration::from_secs(60));
    // Whether 96 failed items of 160 pass the run is the error budget's business;
    // this test is about the run ending with every item accounted.
    assert!(
        matches!(code, Some(0 | 1)),
        "the run ended: {code:?}\n{}\n{}",
        coordinator.log_text(),
        w.log_text()
    );
    let s = read_summary(&out);
    assert_eq!(s["items_total"], n);
    assert_eq!(s["items_scored"], 64, "jobs 3 and 4: {s}");
    assert_eq!(s["items_failed"], 96, "{s}");
    assert_eq!(s["errors"]["unsupported_schema"], 32, "{s}");
    assert_eq!(s["errors"]["unknown_kind"], 32, "{s}");
    assert_eq!(s["errors"]["malformed"], 32, "{s}");
    let answered = w.log_events("terminating malformed job message");
    assert_eq!(answered.len(), 3, "{}", w.log_text());
    assert!(
        answered.iter().all(|e| e["run_id"] != "None"),
        "{answered:?}"
    );
    let mut stream = js.get_stream("VIGIL_JOBS").await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        0,
        "nothing left in the queue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_fails_the_items_of_a_job_deleted_from_the_stream() {
    let Dispatched {
        dir,
        url,
        base,
        out,
        mut coordinator,
        js,
        jobs,
        _nats,
        _stub,
    } = dispatched(3, "0.5", false).await;
    // Reconciliations while the jobs wait for a worker find nothing lost.
    wait_until("a reconciliation", Duration::from_secs(20), || async {
        !coordinator
            .log_events("reconciled outstanding jobs with the jobs stream")
            .is_empty()
    })
    .await;
    // An operator deletes a job: no worker sees it, no advisory is sent.
    let stream = js.get_stream("VIGIL_JOBS").await.unwrap();
    assert!(stream.delete_message(jobs[1].seq).await.unwrap());

    let _w = worker(dir.path(), "worker", &url, &base, 16, &[], &[]);
    let code = coordinator.wait_exit(Duration::from_secs(60));
    assert!(
        matches!(code, Some(0 | 1)),
        "the run ended: {code:?}\n{}",
        coordinator.log_text()
    );
    let s = read_summary(&out);
    assert_eq!(s["items_scored"], 64, "{s}");
    assert_eq!(s["errors"]["job_lost"], 32, "{s}");
    assert!(
        coordinator
            .log_text()
            .contains("job 1 left the queue without a result"),
        "{}",
        coordinator.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_fails_the_jobs_given_up_while_no_coordinator_watched() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 64; // two jobs
    write_arith_dataset(&dir.path().join("dataset.jsonl"), n, 0);
    let suite = write_suite(dir.path(), &stub.base_url(), NO_CACHE);
    let url = nats.url();
    let js = topology_with_max_deliver(&url, 2).await;
    let run_id = "0190f0e0-0000-7000-8000-00000000beef";
    let out = dir.path().join("summary.json");
    let mut first = coordinator(
        dir.path(),
        "first",
        &suite,
        &url,
        &out,
        &["--run-id", run_id],
    );
    // Killed once both jobs are published and recorded as such.
    let runs = js.get_key_value("vigil-runs").await.unwrap();
    wait_until("dispatch recorded", Duration::from_secs(30), || async {
        match runs.get(run_id).await {
            Ok(Some(state)) => {
                let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
                state["dispatch_done"] == true
            }
            _ => false,
        }
    })
    .await;
    first.kill9();
    // A broken worker: every delivery nak'd, until the server gives both jobs
    // up. Its advisories reach no coordinator.
    let broken = nak_every_delivery(&js, 4).await;
    assert_eq!(broken.await.unwrap(), 4, "2 jobs x MaxDeliver 2");
    let stream = js.get_stream("VIGIL_JOBS").await.unwrap();
    wait_until("both jobs given up", Duration::from_secs(20), || async {
        let info = stream.consumer_info("vigil-workers-default").await.unwrap();
        info.num_pending == 0 && info.num_ack_pending == 0
    })
    .await;

    let mut resumed = coordinator_with_env(
        dir.path(),
        "resumed",
        &suite,
        &url,
        &out,
        &["--resume", run_id],
        &[("VIGIL_RECONCILE_S", "0.5")],
    );
    let code = resumed.wait_exit(Duration::from_secs(60));
    assert!(
        matches!(code, Some(0 | 1)),
        "the resumed run ended: {code:?}\n{}",
        resumed.log_text()
    );
    let s = read_summary(&out);
    assert_eq!(s["items_failed"], n, "{s}");
    assert_eq!(s["errors"]["max_deliveries"], n, "{s}");
    assert!(
        resumed.log_text().contains("will not be delivered again"),
        "{}",
        resumed.log_text()
    );
    assert_eq!(
        stub.stats()
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_error_during_dispatch_ends_the_run_with_exit_2_and_the_place() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let suite = write_suite(dir.path(), &stub.base_url(), NO_CACHE);
    // The dataset is a pipe: validation reads a good dataset, dispatch then
    // reads one with a bad line 101 (a file that changed after validation).
    let fifo = dir.path().join("dataset.jsonl");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let good = dir.path().join("good.jsonl");
    write_arith_dataset(&good, 300, 0);
    let good = std::fs::read_to_string(&good).unwrap();
    let mut bad: Vec<&str> = good.lines().collect();
    bad[100] = "{\"id\": \"q100\", \"question\": ";
    let bad = bad.join("\n") + "\n";
    let (url, base) = (nats.url(), stub.base_url());
    let _w = worker(dir.path(), "worker", &url, &base, 16, &[], &[]);
    let out = dir.path().join("summary.json");
    let mut coordinator = coordinator(dir.path(), "coordinator", &suite, &url, &out, &[]);
    let writer = {
        let (fifo, log) = (fifo.clone(), coordinator.log.clone());
        std::thread::spawn(move || {
            let write = |text: &str| {
                let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
                // The reader stops at the bad line: the rest may not be read.
                let _ = f.write_all(text.as_bytes());
            };
            write(&good);
            // Validation has read to the end once the run starts.
            let end = std::time::Instant::now() + Duration::from_secs(60);
            while !std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("run starting")
            {
                assert!(std::time::Instant::now() < end, "the run never started");
                std::thread::sleep(Duration::from_millis(20));
            }
            write(&bad);
        })
    };
    let code = coordinator.wait_exit(Duration::from_secs(60));
    let log = coordinator.log_text();
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("dataset.jsonl:101"),
        "names file and line: {log}"
    );
    assert!(!out.exists(), "no summary for a run that could not be read");
    writer.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_told_to_stop_while_nats_is_down_exits_within_its_grace_period() {
    let mut nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = nats.url();
    let mut w = worker(
        dir.path(),
        "worker",
        &url,
        "http://127.0.0.1:9/v1",
        4,
        &["--grace-period-s", "1"],
        &[],
    );
    // The worker is in its pull loop once its pull requests wait on the consumer.
    let js = jetstream::new(async_nats::connect(&url).await.unwrap());
    wait_until("the worker to pull", Duration::from_secs(20), || async {
        let Ok(stream) = js.get_stream("VIGIL_JOBS").await else {
            return false;
        };
        match stream.consumer_info("vigil-workers-default").await {
            Ok(info) => info.num_waiting > 0,
            Err(_) => false,
        }
    })
    .await;
    nats.kill_and_wait().await;
    w.sigterm();
    // Grace 1 s, plus the bounded hand-back and flush, plus runtime shutdown.
    let code = w.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", w.log_text());
    assert!(
        !w.log_events("worker stopped").is_empty(),
        "{}",
        w.log_text()
    );
}
