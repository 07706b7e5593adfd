//! `code_exec` jobs forged on a real nats-server, as an attacker who can
//! publish on `vigil.jobs.<pool>` would, against `vigil worker` processes
//! started the way the docs say, as root and as an unprivileged user:
//!
//! - without `--allow-code-exec`, no program runs: items fail `not_allowed`
//!   and the model is not even called;
//! - with it, where the sandbox cannot be set up, items fail
//!   `sandbox_unavailable` and `/readyz` says so;
//! - with it and a sandbox, a program that reads a host file and the
//!   worker's environment, connects to the NATS port and writes outside
//!   its directory gets nothing out: a failed score whose detail holds
//!   nothing of the host.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use cluster::Proc;
use futures::StreamExt;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;
use vigil_protocol::{
    ChatMessage, ErrorKind, Item, ItemResult, Job, JobResult, Prompt, ScorerKind, ScorerSpec,
    TargetSpec, subjects,
};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

const HOST_SECRET: &str = "host-secret-5c1d8e2b";
const FAKE_KEY: &str = "sk-vigil-fake-forged-0123456789";

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
    uid.split_whitespace().next() == Some("0")
}

/// Starts `vigil worker` as the given uid (through `setpriv`) or as this
/// process's, with a fake API key in its environment, serving /readyz.
fn start_worker(
    dir: &Path,
    name: &str,
    nats: &str,
    stub: &str,
    uid: Option<u32>,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> (Proc, u16) {
    let health = free_port();
    let addr = format!("127.0.0.1:{health}");
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = match uid {
        Some(uid) => {
            let mut c = std::process::Command::new("setpriv");
            c.args([
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                "--clear-groups".into(),
                "--".into(),
            ]);
            c.arg(env!("CARGO_BIN_EXE_vigil"));
            c
        }
        None => std::process::Command::new(env!("CARGO_BIN_EXE_vigil")),
    };
    cmd.args([
        "--log-format",
        "json",
        "worker",
        "--nats",
        nats,
        "--allow",
        stub,
    ])
    .args(["--health-addr", &addr])
    .args(extra)
    .env("VIGIL_LOG", "info")
    .env("VIGIL_ACK_WAIT_S", cluster::FAST_ACK_WAIT_S)
    .env("VIGIL_FAKE_API_KEY", FAKE_KEY)
    .env("TMPDIR", "/tmp")
    .envs(envs.iter().copied())
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(file);
    let proc = Proc {
        child: cmd.spawn().expect("vigil worker starts"),
        log,
    };
    (proc, health)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET /readyz, once the worker is ready (connected, its stream there)
/// and the answer has a code_exec line.
async fn readyz(port: u16) -> String {
    for _ in 0..600 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(b"GET /readyz HTTP/1.0\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut body = String::new();
            let _ = s.read_to_string(&mut body);
            if body.starts_with("HTTP/1.0 200") && body.contains("code_exec:") {
                return body;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/readyz never answered with a code_exec line");
}

/// A job of one item whose model answer (the stub's `[[reply: …]]`) is `program`.
fn forged_job(run_id: &str, stub: &str, program: &str) -> Job {
    Job {
        run_id: run_id.into(),
        job_index: 0,
        suite: "forged".into(),
        target: TargetSpec {
            name: "stub".into(),
            base_url: stub.into(),
            model: "stub-model".into(),
            timeout_ms: 5_000,
            max_concurrency: 4,
            ..Default::default()
        },
        scorers: vec![ScorerSpec {
            name: "tests".into(),
            threshold: None,
            kind: ScorerKind::CodeExec {
                language: "python".into(),
                k: 1,
                include_prompt: false,
                limits: Default::default(),
            },
        }],
        items: vec![Item {
            index: 0,
            id: "forged-0".into(),
            prompt: Prompt::Chat(vec![ChatMessage {
                role: "user".into(),
                content: format!("write code [[reply: {program}]]"),
            }]),
            ..Default::default()
        }],
        samples: 1,
        ..Default::default()
    }
}

/// Publishes the job and waits for its result.
async fn forge(nats: &str, job: &Job) -> ItemResult {
    let client = async_nats::connect(nats).await.unwrap();
    let mut results = client
        .subscribe(subjects::results_of_run(&job.run_id))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    js.publish_with_headers(
        subjects::jobs("default"),
        vigil_nats::headers::message_headers(&job.run_id),
        vigil_protocol::encode(job).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(60), results.next())
        .await
        .expect("a result within 60 s")
        .unwrap();
    let result: JobResult = vigil_protocol::decode(&msg.payload).unwrap();
    assert_eq!(result.items.len(), 1);
    let item = result.items.into_iter().next().unwrap();
    eprintln!("{item:?}");
    item
}

/// The hostile program: everything it finds goes to stderr (whose last
/// line reaches the score's detail) and to the marker file.
fn hostile_program(secret: &Path, marker: &Path, nats_port: u16, worker_pid: u32) -> String {
    format!(
        r#"import os, socket, sys
found = []
for path in ("{secret}", "/proc/{worker_pid}/environ", "/etc/passwd"):
    try:
        found.append(open(path, "rb").read().decode(errors="replace").replace(chr(0), " "))
    except OSError as e:
        pass
for pid in os.listdir("/proc"):
    try:
        data = open("/proc/" + pid + "/environ", "rb").read()
        if b"VIGIL_FAKE_API_KEY" in data:
            found.append(data.decode(errors="replace").replace(chr(0), " "))
    except OSError:
        pass
try:
    s = socket.create_connection(("127.0.0.1", {nats_port}), timeout=2)
    found.append(s.recv(200).decode(errors="replace"))
except OSError:
    pass
try:
    open("{marker}", "w").write("ran outside: " + " ".join(found))
except OSError:
    pass
sys.stderr.write("found: " + " | ".join(found) + "\n")
sys.exit(1)
"#,
        secret = secret.display(),
        marker = marker.display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_code_exec_jobs_get_nothing_out_as_root_and_unprivileged() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // Readable and writable by every uid: the host file the program wants,
    // and where a program running outside a sandbox would leave a mark.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, HOST_SECRET).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let marker = dir.path().join("marker.txt");

    let mut modes: Vec<(&str, Option<u32>)> = vec![("same-uid", None)];
    if is_root() {
        modes.push(("unprivileged", Some(62_000 + std::process::id() % 2000)));
    }
    let (url, base) = (nats.url(), stub.base_url());
    for (mode, uid) in modes {
        eprintln!("== {mode}");
        // 1. No opt-in: no program, no model call.
        let (mut w, health) = start_worker(
            dir.path(),
            &format!("{mode}-off"),
            &url,
            &base,
            uid,
            &[],
            &[],
        );
        let ready = readyz(health).await;
        assert!(ready.contains("code_exec: not allowed"), "{ready}");
        let calls = stub.stats().requests.load(Ordering::Relaxed);
        let program = hostile_program(&secret, &marker, nats.port(), w.pid());
        let item = forge(
            &url,
            &forged_job(&format!("forged-off-{mode}"), &base, &program),
        )
        .await;
        let err = item.error.expect("an item error");
        assert_eq!(err.kind, ErrorKind::NotAllowed, "{}", err.message);
        assert!(err.message.contains("--allow-code-exec"), "{}", err.message);
        assert_eq!(
            stub.stats().requests.load(Ordering::Relaxed),
            calls,
            "the model was called"
        );
        assert!(!marker.exists(), "a program ran");
        w.kill9();

        // 2. Opted in where the sandbox cannot be set up: fails closed.
        let (mut w, health) = start_worker(
            dir.path(),
            &format!("{mode}-broken"),
            &url,
            &base,
            uid,
            &["--allow-code-exec"],
            &[("VIGIL_BWRAP", "/bin/false")],
        );
        let ready = readyz(health).await;
        assert!(ready.contains("code_exec: unavailable: "), "{ready}");
        let item = forge(
            &url,
            &forged_job(&format!("forged-broken-{mode}"), &base, &program),
        )
        .await;
        let err = item.error.expect("an item error");
        assert_eq!(err.kind, ErrorKind::SandboxUnavailable, "{}", err.message);
        assert!(err.message.contains("self-test failed"), "{}", err.message);
        assert!(!marker.exists(), "a program ran without its sandbox");
        assert_eq!(
            w.log_events("code sandbox unavailable: code_exec items fail as sandbox_unavailable")
                .len(),
            1,
            "logged once at start"
        );
        w.kill9();

        // 3. Opted in with the sandbox: the program runs and gets nothing.
        let (mut w, health) = start_worker(
            dir.path(),
            &format!("{mode}-on"),
            &url,
            &base,
            uid,
            &["--allow-code-exec"],
            &[],
        );
        let ready = readyz(health).await;
        assert!(
            ready.contains("code_exec: available: bubblewrap sandbox"),
            "{ready}"
        );
        // It names what bounds runs in aggregate: where cgroup v1's memory
        // hierarchy is mounted (CI), a cgroup exactly when the worker may
        // create one there (root), else the per-process split.
        let memory = Path::new("/sys/fs/cgroup/memory");
        if memory.join("cgroup.procs").exists() {
            let probe = memory.join(format!("vigil-e2e-writable-{}", std::process::id()));
            let writable = uid.is_none() && std::fs::create_dir(&probe).is_ok();
            let _ = std::fs::remove_dir(&probe);
            let bound = if writable {
                ", cgroup v1)"
            } else {
                ", no cgroup: per-process split)"
            };
            assert!(ready.contains(bound), "{ready}");
        }
        let program = hostile_program(&secret, &marker, nats.port(), w.pid());
        let item = forge(
            &url,
            &forged_job(&format!("forged-on-{mode}"), &base, &program),
        )
        .await;
        assert!(item.error.is_none(), "{:?}", item.error);
        let score = &item.scores[0];
        assert_eq!(
            (score.value, score.passed),
            (0.0, false),
            "{}",
            score.detail
        );
        // It ran, and found nothing (its last line of stderr is the detail).
        assert_eq!(score.detail, "exit 1: found:");
        let everything = format!("{item:?}");
        for leak in [HOST_SECRET, FAKE_KEY, "server_id", "root:x:0"] {
            assert!(
                !everything.contains(leak),
                "{leak} reached the result: {everything}"
            );
        }
        assert!(!marker.exists(), "the program wrote outside its directory");
        // The worker survived.
        assert!(w.child.try_wait().unwrap().is_none(), "the worker died");
        w.kill9();
    }
}

/// The in-process workers of `vigil run` run programs only for a suite with
/// a `code_exec` scorer: during a run of a suite without one, a forged
/// `code_exec` job on the same pool fails `not_allowed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_workers_of_a_suite_without_code_exec_refuse_forged_programs() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    // Slow answers and one call at a time keep the run going (40 × 300 ms).
    let stub = StubServer::start(StubConfig {
        latency: Duration::from_millis(300),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    common::write_arith_dataset(&dir.path().join("dataset.jsonl"), 40, 0);
    let suite = common::write_suite(dir.path(), &stub.base_url(), common::NO_CACHE);
    let url = nats.url();
    let out = dir.path().join("summary.json");
    let mut run = Proc::spawn(
        &[
            "run",
            suite.to_str().unwrap(),
            "--nats",
            &url,
            "--workers",
            "1",
            "--concurrency",
            "1",
            "--no-progress",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
        &dir.path().join("run.log"),
    );
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    cluster::wait_until("the run's job stream", Duration::from_secs(30), || async {
        js.get_stream(subjects::STREAM_JOBS).await.is_ok()
    })
    .await;
    let marker = dir.path().join("marker.txt");
    let program = format!("open({:?}, 'w').write('ran')\n", marker.to_string_lossy());
    let item = forge(
        &url,
        &forged_job("forged-in-run", &stub.base_url(), &program),
    )
    .await;
    let err = item.error.expect("an item error");
    assert_eq!(err.kind, ErrorKind::NotAllowed, "{}", err.message);
    assert!(!marker.exists(), "a program ran");
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "the run ended before the forged job was answered: the test proves nothing"
    );
    assert_eq!(
        run.wait_exit(Duration::from_secs(60)),
        Some(0),
        "{}",
        run.log_text()
    );
    assert_eq!(common::read_summary(&out)["items_scored"], 40);
}
