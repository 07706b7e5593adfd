//! Hostile programs in the code sandbox: each is contained, scored as a
//! failure with a clear detail, and the worker (this test process) survives.
//! Every case runs with namespaces (where the host allows them, as on CI) and
//! without (the fallback), except where the fallback cannot contain it; then
//! the test checks that the detail says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use vigil_protocol::{Item, Job, Prompt, SandboxLimits, Score};
use vigil_worker::sandbox::limits::Limits;
use vigil_worker::sandbox::runner::runner_for;
use vigil_worker::sandbox::{Outcome, Sandbox, SandboxConfig, Status};
use vigil_worker::scorers::code_exec::CodeExec;
use vigil_worker::scorers::{Common, IoScorer, ScoreInput};

/// Distinct uids per sandbox, so parallel tests never share a process count.
fn sandbox(namespaces: bool) -> Arc<Sandbox> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Arc::new(Sandbox::new(SandboxConfig {
        slots: 2,
        uid_base: 400_000 + 64 * (std::process::id() % 1000) * 16 + 4 * n,
        namespaces,
        ..Default::default()
    }))
}

fn limits(spec: SandboxLimits) -> Limits {
    Limits::from_spec(&spec, &Limits::default(), &Limits::caps())
}

async fn run(sb: &Sandbox, program: &str, spec: SandboxLimits) -> Outcome {
    let out = sb
        .run(runner_for("python").unwrap(), program, &limits(spec))
        .await;
    eprintln!(
        "status {:?} in {:?}\nstdout: {}\nstderr: {}\nnote: {:?}",
        out.status,
        out.elapsed,
        out.stdout.trim(),
        out.stderr.trim(),
        out.isolation_note
    );
    out
}

async fn score(sb: Arc<Sandbox>, program: &str, spec: SandboxLimits) -> Score {
    let scorer = CodeExec::new(
        Common {
            name: "tests".into(),
            threshold: None,
        },
        "python",
        1,
        false,
        &spec,
        sb,
    )
    .unwrap();
    let item = Item {
        prompt: Prompt::Completion(String::new()),
        ..Default::default()
    };
    let job = Job::default();
    let samples = vec![program.to_string()];
    let s = scorer
        .score(ScoreInput {
            output: program,
            reference: None,
            samples: &samples,
            item: &item,
            job: &job,
        })
        .await
        .expect("the sandbox runs the program (a sandbox error is an item error)");
    eprintln!("score {} passed {} detail {}", s.value, s.passed, s.detail);
    s
}

/// Processes still alive from run `run_id` (found by the `VIGIL_SANDBOX`
/// variable in their environment), polled until none are left or 10 s pass.
fn leftovers(run_id: &str) -> usize {
    let needle = format!("VIGIL_SANDBOX={run_id}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("environ"))
                    .map(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
                    .unwrap_or(false)
            })
            .count();
        if count == 0 || Instant::now() > deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn namespaces_available(sb: &Sandbox) -> bool {
    sb.isolation().await.namespaces
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_program_passes_and_a_wrong_one_fails() {
    for ns in [true, false] {
        let sb = sandbox(ns);
        let ok = score(
            sb.clone(),
            "def add(a, b):\n    return a + b\nassert add(2, 3) == 5\n",
            Default::default(),
        )
        .await;
        assert!(ok.passed, "{}", ok.detail);
        assert_eq!(ok.value, 1.0);
        let bad = score(
            sb,
            "def add(a, b):\n    return a - b\nassert add(2, 3) == 5, 'add is wrong'\n",
            Default::default(),
        )
        .await;
        assert!(!bad.passed);
        assert!(
            bad.detail
                .starts_with("exit 1: AssertionError: add is wrong"),
            "{}",
            bad.detail
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_is_killed_at_the_wall_clock_limit() {
    for ns in [true, false] {
        let sb = sandbox(ns);
        let spec = SandboxLimits {
            timeout_s: Some(2.0),
            cpu_s: Some(60.0),
            ..Default::default()
        };
        // A child leaves the process group (a new session) to outlive it.
        let program = "import os\nif os.fork() == 0:\n    os.setsid()\nwhile True:\n    pass\n";
        let out = run(&sb, program, spec.clone()).await;
        assert_eq!(out.status, Status::TimedOut);
        assert_eq!(
            leftovers(&out.run_id),
            0,
            "processes of the run survived (namespaces: {ns})"
        );
        let s = score(sb, program, spec).await;
        assert!(!s.passed);
        assert!(
            s.detail
                .starts_with("timed out after 2.0s (wall-clock limit); killed"),
            "{}",
            s.detail
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_loop_is_stopped_by_the_cpu_limit() {
    let sb = sandbox(true);
    let spec = SandboxLimits {
        timeout_s: Some(30.0),
        cpu_s: Some(1.0),
        ..Default::default()
    };
    let s = score(sb, "while True:\n    pass\n", spec).await;
    assert!(!s.passed);
    assert!(s.detail.contains("CPU time limit (1s)"), "{}", s.detail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_bomb_is_held_to_the_process_limit_and_killed() {
    // Forks until refused and reports how many it got, then keeps forking
    // forever (every child too).
    let program = r#"
import os, sys, time
got = 0
for _ in range(1000):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(120)
        os._exit(0)
    got += 1
print("forked", got, flush=True)
while True:
    try:
        os.fork()
    except OSError:
        pass
"#;
    for ns in [true, false] {
        let sb = sandbox(ns);
        let spec = SandboxLimits {
            timeout_s: Some(3.0),
            processes: Some(16),
            ..Default::default()
        };
        let out = run(&sb, program, spec.clone()).await;
        assert_eq!(out.status, Status::TimedOut);
        let got: u32 = out
            .stdout
            .trim()
            .strip_prefix("forked ")
            .and_then(|n| n.parse().ok())
            .expect("the bomb reports its forks");
        // Running as root the limit binds per sandbox uid: at most 16
        // processes, the bomb itself included.
        if sb.isolation().await.drop_uid {
            assert!(got < 16, "forked {got} children with a limit of 16");
        }
        assert_eq!(
            leftovers(&out.run_id),
            0,
            "fork bomb processes survived (namespaces: {ns})"
        );
        let s = score(sb, program, spec).await;
        assert!(!s.passed);
        assert!(s.detail.starts_with("timed out"), "{}", s.detail);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_hits_the_memory_limit() {
    for ns in [true, false] {
        let sb = sandbox(ns);
        let spec = SandboxLimits {
            memory_mb: Some(256),
            ..Default::default()
        };
        let all_at_once = score(sb.clone(), "x = bytearray(4 * 1024 ** 3)\n", spec.clone()).await;
        assert!(!all_at_once.passed);
        assert!(
            all_at_once.detail.contains("MemoryError")
                && all_at_once.detail.contains("(memory limit)"),
            "{}",
            all_at_once.detail
        );
        let growing = score(
            sb,
            "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 * 1024))\n",
            spec,
        )
        .await;
        assert!(!growing.passed);
        assert!(growing.detail.contains("MemoryError"), "{}", growing.detail);
    }
}

/// The secret must be in the worker's own environment, which a test cannot
/// set in its own process without unsafe code: the test runs itself again
/// as a child process with a fake secret in its environment.
#[test]
fn the_workers_environment_secrets_do_not_reach_the_program() {
    const SECRET: &str = "sk-vigil-fake-0123456789abcdef";
    if std::env::var("VIGIL_TEST_FAKE_API_KEY").is_err() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "the_workers_environment_secrets_do_not_reach_the_program",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("VIGIL_TEST_FAKE_API_KEY", SECRET)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{text}");
        assert!(out.status.success(), "the child test failed");
        assert!(text.contains("1 passed"), "the child test did not run");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Looks everywhere a process could find it: its environment, every
        // readable /proc/*/environ and cmdline.
        let program = format!(
            r#"
import os
secret = "{SECRET}"
found = [k for k, v in os.environ.items() if secret in v]
for pid in os.listdir("/proc"):
    for f in ("environ", "cmdline"):
        try:
            if secret.encode() in open("/proc/%s/%s" % (pid, f), "rb").read():
                found.append("/proc/%s/%s" % (pid, f))
        except OSError:
            pass
print("env:", sorted(os.environ))
print("found:", found)
assert not found, "leaked"
raise SystemExit("no secret found")
"#
        );
        for ns in [true, false] {
            let sb = sandbox(ns);
            let out = run(&sb, &program, Default::default()).await;
            assert!(out.stdout.contains("found: []"), "{}", out.stdout);
            assert!(!out.stdout.contains(SECRET));
            // Only the sandbox's own variables (and the shell's PWD/OLDPWD).
            let line = out.stdout.lines().find(|l| l.starts_with("env: ")).unwrap();
            for name in line
                .trim_start_matches("env: [")
                .trim_end_matches(']')
                .split(", ")
            {
                let name = name.trim_matches('\'');
                assert!(
                    [
                        "HOME",
                        "LANG",
                        "PATH",
                        "TMPDIR",
                        "VIGIL_SANDBOX",
                        "PWD",
                        "OLDPWD"
                    ]
                    .contains(&name),
                    "{name} in {line}"
                );
            }
            let s = score(sb, &program, Default::default()).await;
            assert!(!s.passed);
            assert!(s.detail.contains("no secret found"), "{}", s.detail);
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_outside_its_directory_fail() {
    // A directory of the worker's (0700, like every tempdir) and a system one.
    let worker_dir = tempfile::tempdir().unwrap();
    let worker_file = worker_dir.path().join("tampered.txt");
    let name = format!("vigil-escape-{}", std::process::id());
    let etc_file = std::path::Path::new("/etc").join(&name);
    let host_tmp = std::path::Path::new("/tmp").join(&name);
    let program = format!(
        r#"
open("inside.txt", "w").write("fine")  # its own directory: allowed
open("/tmp/{name}", "w").write("x")    # /tmp: allowed, but private with namespaces
tampered = []
for path in ({worker:?}, "/etc/{name}"):
    try:
        open(path, "w").write("tampered")
        tampered.append(path)
    except OSError as e:
        print("refused", path, e)
assert tampered, "could not write outside its directory"
"#,
        worker = worker_file.to_string_lossy(),
    );
    for ns in [true, false] {
        let sb = sandbox(ns);
        let s = score(sb.clone(), &program, Default::default()).await;
        assert!(!s.passed, "{}", s.detail);
        assert!(
            s.detail.contains("could not write outside its directory"),
            "{}",
            s.detail
        );
        assert!(
            !worker_file.exists(),
            "wrote into the worker's directory (namespaces: {ns})"
        );
        assert!(!etc_file.exists(), "wrote into /etc (namespaces: {ns})");
        if namespaces_available(&sb).await {
            assert!(!host_tmp.exists(), "wrote into the host's /tmp");
        } else {
            // Without namespaces world-writable directories are shared, and
            // every detail says so.
            assert!(host_tmp.exists());
            let _ = std::fs::remove_file(&host_tmp);
            assert!(s.detail.contains("shared /tmp"), "{}", s.detail);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_reach_nothing() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let program = format!(
        r#"
import socket
s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
s.sendall(b"escaped")
print("connected")
"#
    );
    for ns in [true, false] {
        let sb = sandbox(ns);
        let s = score(sb.clone(), &program, Default::default()).await;
        if namespaces_available(&sb).await {
            assert!(!s.passed, "{}", s.detail);
            assert!(
                s.detail.contains("OSError")
                    || s.detail.contains("unreachable")
                    || s.detail.contains("refused"),
                "{}",
                s.detail
            );
            assert!(
                listener.accept().is_err(),
                "the program reached the worker's network"
            );
        } else {
            // No network namespace: the detail says the network is not isolated.
            assert!(s.detail.contains("no network isolation"), "{}", s.detail);
            while listener.accept().is_ok() {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_used_where_the_host_allows_them() {
    // On Linux hosts with util-linux (CI: root in a VM) the full sandbox is
    // expected; a host without it must say why in the note.
    let sb = sandbox(true);
    let iso = sb.isolation().await.clone();
    eprintln!("{iso:?}");
    assert!(iso.error.is_none(), "{:?}", iso.error);
    assert!(iso.namespaces || iso.note.is_some());
    let sb = sandbox(false);
    let iso = sb.isolation().await.clone();
    assert!(!iso.namespaces);
    assert_eq!(
        iso.note.as_deref(),
        Some("no network isolation and shared /tmp: namespaces turned off")
    );
}
