//! vigil on a JetStream cluster of real nats-server processes: `--nats`
//! server lists, replicated streams, and a run that loses a server (kill -9)
//! and loses nothing else; the history and the comparison survive the loss;
//! losing a majority gives a clear error within the command's own timeout.

use crate::common;
use crate::common::cluster;

use async_nats::jetstream;
use cluster::*;
use common::*;
use futures::TryStreamExt;
use std::time::{Duration, Instant};
use vigil_testkit::nats_cluster::NatsCluster;
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

/// What the processes of the cluster test see: 3 replicas, and a JetStream
/// timeout long enough to ride out a leader election after a kill (4–9 s
/// per raft group on an idle machine, more on a loaded one). A command
/// waits this long only while nothing answers; `vigil runs list` retries
/// its history read for as long (it used a fixed 10 s, which a loaded CI
/// machine's election outlasted twice).
const JS_TIMEOUT_S: u64 = 30;
/// The JetStream timeout of the command that finds no majority left.
const LOST_JS_TIMEOUT_S: u64 = 5;

/// A loopback URL nothing listens on.
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("nats://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_takes_a_comma_separated_server_list_with_a_dead_first_entry() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let list = format!("{}, {}", dead_url(), nats.url());
    // Both the flag and the variable take the list.
    let o = run(vigil().args(["setup-streams", "--nats", &list]));
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("ok:"));
    let o = run(vigil()
        .args(["runs", "list", "--json"])
        .env("VIGIL_NATS_URL", &list));
    assert_eq!(o.status.code(), Some(0));
    // A malformed entry is a usage error, named.
    let o = run(vigil().args([
        "setup-streams",
        "--nats",
        &format!("{},,{}", nats.url(), nats.url()),
    ]));
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("entry 2 is empty"), "{stderr}");
    let o = run(vigil()
        .args(["runs", "list"])
        .env("VIGIL_NATS_URL", "nats://vigil:pw-0a9f@127.0.0.1:notaport"));
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("invalid NATS server URL"), "{stderr}");
    assert!(
        !stderr.contains("pw-0a9f"),
        "the password is not printed: {stderr}"
    );
}

/// Server `n<i>` of a leader name.
fn index_of(server_name: &str) -> usize {
    server_name
        .trim_start_matches('n')
        .parse()
        .unwrap_or_else(|_| panic!("unexpected server name {server_name}"))
}

/// The leader of `stream`, asked until the cluster answers.
async fn leader_of(js: &jetstream::Context, stream: &str) -> usize {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = js.get_stream(stream).await
            && let Ok(info) = s.info().await
            && let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone())
        {
            return index_of(&leader);
        }
        assert!(Instant::now() < end, "no leader of {stream}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every stream's replicas, by name.
async fn replicas(js: &jetstream::Context) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = js
        .streams()
        .map_ok(|info| (info.config.name.clone(), info.config.num_replicas))
        .try_collect()
        .await
        .unwrap();
    out.sort();
    out
}

/// Whether every replica of every stream is current and online.
async fn all_current(js: &jetstream::Context, size: usize) -> bool {
    let Ok(infos) = js.streams().try_collect::<Vec<_>>().await else {
        return false;
    };
    infos.iter().all(|info| {
        info.cluster.as_ref().is_some_and(|c| {
            c.leader.is_some()
                && c.replicas.len() == size - 1
                && c.replicas.iter().all(|p| p.current && !p.offline)
        })
    })
}

fn run_id_of(out: &std::path::Path) -> String {
    read_summary(out)["run_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_server_cluster_loses_a_server_and_nothing_else() {
    let started = Instant::now();
    let mut nats = NatsCluster::start(3).await.unwrap();
    let urls = nats.urls();
    eprintln!("CLUSTER: 3 servers ready in {:?}", started.elapsed());
    let stub = StubServer::start(StubConfig {
        latency: Duration::from_millis(5),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 2000;
    let wrong = write_arith_dataset(&dir.path().join("dataset.jsonl"), n, 10);
    let suite = write_suite(dir.path(), &stub.base_url(), NO_CACHE);
    let expected = (n - wrong) as f64 / n as f64;
    let timeout = JS_TIMEOUT_S.to_string();
    let envs = [
        ("VIGIL_REPLICAS", "3"),
        ("VIGIL_JS_TIMEOUT_S", timeout.as_str()),
    ];
    let vigil_env = || {
        let mut cmd = vigil();
        cmd.envs(envs);
        cmd
    };

    // Streams made with one replica (as an older setup left them) are
    // reported and raised by `setup-streams --replicas 3`.
    let o = run(vigil().args(["setup-streams", "--nats", &urls, "--replicas", "1"]));
    assert_eq!(o.status.code(), Some(0));
    let o = run(vigil().args(["setup-streams", "--nats", &urls, "--replicas", "3"]));
    assert_eq!(o.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&o.stdout);
    for stream in [
        "VIGIL_JOBS",
        "VIGIL_RESULTS",
        "VIGIL_RUNS",
        "VIGIL_ALERTS",
        "KV_vigil-runs",
        "OBJ_vigil-artifacts",
    ] {
        assert!(
            stdout.contains(&format!("stream {stream} had 1 replica(s): raised to 3")),
            "{stream}: {stdout}"
        );
    }
    let client = async_nats::connect((0..3).map(|i| nats.url(i)).collect::<Vec<String>>())
        .await
        .unwrap();
    let js = jetstream::new(client);
    let counts = replicas(&js).await;
    assert!(counts.iter().all(|(_, r)| *r == 3), "{counts:?}");

    let base = stub.base_url();
    // Workers on different servers, each knowing only its own (the others
    // are learned from the cluster, as any NATS client does).
    let workers: Vec<Proc> = (0..3)
        .map(|i| {
            worker(
                dir.path(),
                &format!("worker-{i}"),
                &nats.url(i),
                &base,
                16,
                &[],
                &envs,
            )
        })
        .collect();

    // A first run with every server up: the baseline of the comparison.
    let out_a = dir.path().join("a.json");
    let mut coord = coordinator_with_env(dir.path(), "run-a", &suite, &urls, &out_a, &[], &envs);
    assert_eq!(
        coord.wait_exit(Duration::from_secs(60)),
        Some(0),
        "{}",
        coord.log_text()
    );
    let run_a = run_id_of(&out_a);
    eprintln!("CLUSTER: run a took {:?} in all", started.elapsed());

    // The second run loses the leader of VIGIL_RESULTS once some results are
    // in, and gets it back later.
    let out_b = dir.path().join("b.json");
    let mut coord = coordinator_with_env(dir.path(), "run-b", &suite, &urls, &out_b, &[], &envs);
    let results_of_b = || count_messages(&js, "VIGIL_RESULTS", "vigil.results.>");
    let jobs = n.div_ceil(32) as u64;
    wait_until(
        "results of the second run",
        Duration::from_secs(60),
        || async { results_of_b().await >= jobs + jobs / 4 },
    )
    .await;
    let victim = leader_of(&js, "VIGIL_RESULTS").await;
    nats.server(victim).kill();
    eprintln!("CLUSTER: killed n{victim} (leader of VIGIL_RESULTS)");
    wait_until(
        "results after the kill",
        Duration::from_secs(60),
        || async { results_of_b().await >= jobs + jobs * 3 / 5 },
    )
    .await;
    nats.server(victim).start_again().await.unwrap();
    eprintln!("CLUSTER: n{victim} is back");
    let code = coord.wait_exit(Duration::from_secs(90));
    assert_eq!(code, Some(0), "{}", coord.log_text());
    let s = read_summary(&out_b);
    assert_eq!(s["items_total"], n);
    assert_eq!(s["items_scored"], n, "every item scored: {s}");
    assert_eq!(s["items_failed"], 0, "{s}");
    for scorer in ["exact", "num"] {
        assert_eq!(s["scores"][scorer]["n"], n, "{scorer}: each item once");
        let rate = s["scores"][scorer]["pass_rate"].as_f64().unwrap();
        assert!((rate - expected).abs() < 1e-12, "{scorer}: {rate}");
    }
    let run_b = run_id_of(&out_b);
    drop(workers);
    eprintln!("CLUSTER: run b done at {:?}", started.elapsed());

    // Lose the leader of the history (after the restarted server caught up):
    // the history and the comparison still work.
    wait_until("every replica current", Duration::from_secs(60), || {
        all_current(&js, 3)
    })
    .await;
    let second = leader_of(&js, "VIGIL_RUNS").await;
    nats.server(second).kill();
    eprintln!(
        "CLUSTER: killed n{second} (leader of VIGIL_RUNS) at {:?}",
        started.elapsed()
    );
    let o = run(vigil_env().args(["runs", "list", "--json", "--nats", &urls]));
    assert_eq!(o.status.code(), Some(0));
    let listed = String::from_utf8_lossy(&o.stdout);
    assert!(
        listed.contains(&run_a) && listed.contains(&run_b),
        "{listed}"
    );
    let o = run(vigil_env().args(["compare", &run_a, &run_b, "--json", "--nats", &urls]));
    assert_eq!(o.status.code(), Some(0));
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(c["baseline_run_id"], run_a.as_str());
    // Both runs' scores are readable: every item paired, none missing.
    assert_eq!(
        c["note"],
        format!("{n} items paired by id (0 added, 0 removed)").as_str(),
        "scores of both runs readable: {c}"
    );
    assert_eq!(c["paired_items"], n, "{c}");

    eprintln!(
        "CLUSTER: history and comparison done at {:?}",
        started.elapsed()
    );

    // Lose a majority: a clear error, within the command's own timeout.
    let third = (0..3).find(|i| *i != second).unwrap();
    nats.server(third).kill();
    eprintln!("CLUSTER: killed n{third}: one of three left");
    let t0 = Instant::now();
    // This command's own JetStream timeout is short: what it must report is
    // that nothing answers, and waiting 20 s for that only lengthens the test.
    let short = LOST_JS_TIMEOUT_S.to_string();
    let mut lost = Proc::spawn(
        &["runs", "list", "--nats", &urls],
        &[
            ("VIGIL_REPLICAS", "3"),
            ("VIGIL_JS_TIMEOUT_S", short.as_str()),
        ],
        &dir.path().join("no-quorum.log"),
    );
    let code = lost.wait_exit(Duration::from_secs(JS_TIMEOUT_S * 4));
    let took = t0.elapsed();
    let log = lost.log_text();
    assert_eq!(code, Some(3), "infrastructure error, not a hang: {log}");
    eprintln!("CLUSTER: {}", log.lines().last().unwrap_or_default());
    assert!(
        log.contains("did not answer") && log.contains("majority"),
        "{log}"
    );
    // The topology lookups take at most VIGIL_JS_TIMEOUT_S in all; a history
    // read after them is retried for VIGIL_JS_TIMEOUT_S too, plus one
    // unanswered request (5 s).
    assert!(
        took < Duration::from_secs(LOST_JS_TIMEOUT_S + 20),
        "bounded by VIGIL_JS_TIMEOUT_S: took {took:?}"
    );
    eprintln!(
        "CLUSTER: quorum loss reported in {took:?}; test took {:?}",
        started.elapsed()
    );
}
