//! Hostile programs in the code sandbox: each is contained, scored as a
//! failure with a clear detail, nothing of the host reaches the outcome,
//! and the worker (the test process) survives.
//!
//! Every test runs in both privilege modes: the test binary runs itself
//! again as a child process, once with this process's uid and, when that is
//! root, once more as an unprivileged uid (through `setpriv`), each child
//! with a fake API key in its environment. Where a child cannot get the
//! sandbox on this host, the test asserts that code execution fails closed
//! (`sandbox_unavailable`, the program never starts) instead.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use vigil_protocol::{ErrorKind, Item, Job, Prompt, SandboxLimits, Score, ScorerKind, ScorerSpec};
use vigil_worker::sandbox::limits::Limits;
use vigil_worker::sandbox::runner::runner_for;
use vigil_worker::sandbox::{Outcome, Sandbox, SandboxConfig, SandboxMode, Status};
use vigil_worker::scorers::code_exec;
use vigil_worker::scorers::{IoScorer, ScoreInput, ScorerEnv};

/// Set in the children: which mode they run in.
const MODE_ENV: &str = "VIGIL_TEST_PRIVILEGE_MODE";
/// A fake API key in every child's environment.
const FAKE_KEY_ENV: &str = "VIGIL_TEST_FAKE_API_KEY";
const FAKE_KEY: &str = "sk-vigil-fake-0123456789abcdef";
/// What the host file outside the sandbox holds.
const HOST_SECRET: &str = "host-secret-7f3e9a1c";

fn is_root() -> bool {
    rustix::process::getuid().is_root()
}

/// Runs `test` (this function's own name) in child processes, once per
/// privilege mode, unless this process is such a child: then `body` runs.
fn in_both_privilege_modes<F: Future<Output = ()>>(test: &str, body: impl FnOnce() -> F) {
    in_both_privilege_modes_with(test, &[], body)
}

fn in_both_privilege_modes_with<F: Future<Output = ()>>(
    test: &str,
    envs: &[(&str, &str)],
    body: impl FnOnce() -> F,
) {
    if let Ok(mode) = std::env::var(MODE_ENV) {
        eprintln!(
            "== {test} as {mode} (uid {})",
            rustix::process::getuid().as_raw()
        );
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(body());
        return;
    }
    // The host file the programs try to read, readable by every uid.
    host_secret_file();
    let mut modes = vec![("same-uid", None)];
    if is_root() {
        modes.push(("unprivileged", Some(61_000 + std::process::id() % 2000)));
    } else {
        eprintln!("not root: only the unprivileged mode can run here");
    }
    // The test's name in this binary: its module path without the crate's name
    // (`sandbox_hostile::busy_loop_is_stopped_by_the_cpu_limit`).
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let name = if module.is_empty() {
        test.to_string()
    } else {
        format!("{module}::{test}")
    };
    for (mode, uid) in modes {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = match uid {
            None => std::process::Command::new(&exe),
            Some(uid) => {
                let mut c = std::process::Command::new("setpriv");
                c.args([
                    format!("--reuid={uid}"),
                    format!("--regid={uid}"),
                    "--clear-groups".into(),
                    "--".into(),
                ])
                .arg(&exe);
                c
            }
        };
        let out = cmd
            .args(["--exact", &name, "--nocapture", "--test-threads=1"])
            .env(MODE_ENV, mode)
            .env(FAKE_KEY_ENV, FAKE_KEY)
            .env("TMPDIR", "/tmp")
            .envs(envs.iter().copied())
            .output()
            .expect("the test binary runs again");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{text}");
        assert!(out.status.success(), "{test} failed as {mode}");
        assert!(text.contains("1 passed"), "{test} did not run as {mode}");
    }
}

/// A 0644 file outside the sandbox, in a 0755 directory outside /tmp.
fn host_secret_file() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile-host-files");
    let file = dir.join("secret.txt");
    if !file.exists() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(&file, HOST_SECRET).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    file
}

/// A fresh sandbox with uids of its own (parallel tests never share a count).
fn new_sandbox(mode: SandboxMode) -> Arc<Sandbox> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Arc::new(Sandbox::new(SandboxConfig {
        slots: 2,
        uid_base: 400_000 + 64 * (std::process::id() % 1000) * 16 + 4 * n,
        mode,
        ..Default::default()
    }))
}

fn spec(limits: SandboxLimits) -> ScorerSpec {
    ScorerSpec {
        name: "tests".into(),
        threshold: None,
        kind: ScorerKind::CodeExec {
            language: "python".into(),
            k: 1,
            include_prompt: false,
            limits,
        },
    }
}

/// The sandbox, probed; `None` when it is unavailable here, after checking
/// that code execution then fails closed: the scorer is refused as
/// `sandbox_unavailable` and a direct run never starts the program.
async fn sandbox_or_fail_closed() -> Option<Arc<Sandbox>> {
    let sb = new_sandbox(SandboxMode::Required);
    let iso = sb.isolation().await.clone();
    eprintln!("isolation: {}", iso.describe());
    let Some(reason) = iso.error.clone() else {
        assert!(iso.sandboxed);
        assert_eq!(iso.drop_uid, is_root());
        assert_cgroup_as_expected(&iso);
        return Some(sb);
    };
    assert_fails_closed(&sb, &reason).await;
    eprintln!("FAIL-CLOSED: {reason}");
    None
}

/// Whether the probe must find a cgroup on this host: where cgroup v1's
/// `memory` hierarchy is mounted (so no cgroup v2 can have that controller),
/// exactly when this process may create cgroups in the `memory` and `pids`
/// hierarchies (root on CI); `None` elsewhere (a cgroup v2 host: delegation
/// decides).
fn cgroup_expected() -> Option<bool> {
    let root = Path::new("/sys/fs/cgroup");
    if !root.join("memory/cgroup.procs").exists() {
        return None;
    }
    let writable = ["memory", "pids"].iter().all(|h| {
        let d = root
            .join(h)
            .join(format!("vigil-test-writable-{}", std::process::id()));
        let made = std::fs::create_dir(&d).is_ok();
        if made {
            std::fs::remove_dir(&d).unwrap();
        }
        made
    });
    Some(writable)
}

/// The sandbox bounds runs with a cgroup where it can have one, and says
/// which way runs are bounded.
fn assert_cgroup_as_expected(iso: &vigil_worker::sandbox::Isolation) {
    match cgroup_expected() {
        Some(true) => assert!(
            iso.cgroup.is_some(),
            "cgroup v1's memory and pids hierarchies are writable here, yet the probe found no cgroup: {:?}",
            iso.no_cgroup
        ),
        Some(false) => {
            assert!(iso.cgroup.is_none(), "{:?}", iso.cgroup);
            assert!(iso.no_cgroup.is_some());
        }
        None => {}
    }
    let bound = match &iso.cgroup {
        Some(c) => c.describe(),
        None => "no cgroup: per-process split".to_string(),
    };
    assert!(iso.describe().contains(&bound), "{}", iso.describe());
}

/// Cgroup directories of run `run_id` still there, anywhere under
/// `/sys/fs/cgroup`.
fn cgroup_leftovers(run_id: &str) -> Vec<PathBuf> {
    assert!(!run_id.is_empty());
    run_cgroups(run_id)
}

/// The cgroup directories of runs whose id contains `run_id` (all runs for
/// ""), anywhere under `/sys/fs/cgroup`.
fn run_cgroups(run_id: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: u32, run_id: &str, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("vigil-run-") && name.contains(run_id) {
                found.push(e.path());
            } else if depth > 0 {
                walk(&e.path(), depth - 1, run_id, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), 8, run_id, &mut found);
    found
}

async fn assert_fails_closed(sb: &Arc<Sandbox>, reason: &str) {
    let env = ScorerEnv {
        sandbox: Some(sb.clone()),
        ..Default::default()
    };
    let err = code_exec::build(&spec(Default::default()), &env)
        .err()
        .expect("no scorer without a sandbox");
    assert_eq!(err.kind(), ErrorKind::SandboxUnavailable, "{err}");
    assert!(err.to_string().contains(reason), "{err}");
    let marker = std::env::temp_dir().join(format!("vigil-fail-closed-{}", std::process::id()));
    let program = format!("open({:?}, 'w').write('ran')\n", marker.to_string_lossy());
    let out = sb
        .run(runner_for("python").unwrap(), &program, &Limits::default())
        .await;
    assert!(
        matches!(&out.status, Status::Failed(m) if m.starts_with("sandbox unavailable")),
        "{:?}",
        out.status
    );
    assert!(!marker.exists(), "the program ran without its sandbox");
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
    if !out.run_id.is_empty() {
        assert_eq!(
            cgroup_leftovers(&out.run_id),
            Vec::<PathBuf>::new(),
            "the run's cgroup was left behind"
        );
    }
    out
}

/// Scores `program` with a scorer built as a worker builds it.
async fn score(sb: Arc<Sandbox>, program: &str, limits: SandboxLimits) -> Score {
    let env = ScorerEnv {
        sandbox: Some(sb),
        ..Default::default()
    };
    let scorer = code_exec::build(&spec(limits), &env).unwrap();
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

/// Nothing of the host in what a run gives back.
fn assert_nothing_of_the_host(texts: &[&str]) {
    for t in texts {
        assert!(!t.contains(HOST_SECRET), "the host file leaked: {t}");
        assert!(
            !t.contains(FAKE_KEY),
            "the worker's environment leaked: {t}"
        );
    }
}

/// Processes still alive from run `run_id` (found by the HOME in their
/// environment), polled until none are left or 10 s pass.
fn leftovers(run_id: &str) -> usize {
    assert!(!run_id.is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("environ"))
                    .map(|env| {
                        env.split(|b| *b == 0).any(|kv| {
                            kv.starts_with(b"HOME=") && String::from_utf8_lossy(kv).contains(run_id)
                        })
                    })
                    .unwrap_or(false)
            })
            .count();
        if count == 0 || Instant::now() > deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_correct_program_passes_and_a_wrong_one_fails() {
    in_both_privilege_modes("a_correct_program_passes_and_a_wrong_one_fails", || async {
        let Some(sb) = sandbox_or_fail_closed().await else {
            return;
        };
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
        assert_eq!(bad.value, 0.0);
        assert_eq!(bad.detail, "exit 1: AssertionError: add is wrong");
    });
}

#[test]
fn infinite_loop_is_killed_at_the_wall_clock_limit() {
    in_both_privilege_modes(
        "infinite_loop_is_killed_at_the_wall_clock_limit",
        || async {
            let Some(sb) = sandbox_or_fail_closed().await else {
                return;
            };
            let spec = SandboxLimits {
                timeout_s: Some(2.0),
                cpu_s: Some(60.0),
                ..Default::default()
            };
            // A child leaves the process group (a new session) to outlive it.
            let program = "import os\nif os.fork() == 0:\n    os.setsid()\nwhile True:\n    pass\n";
            let out = run(&sb, program, spec.clone()).await;
            assert_eq!(out.status, Status::TimedOut);
            assert_eq!(leftovers(&out.run_id), 0, "processes of the run survived");
            let s = score(sb, program, spec).await;
            assert!(!s.passed);
            assert_eq!(s.detail, "timed out after 2.0s (wall-clock limit); killed");
        },
    );
}

#[test]
fn busy_loop_is_stopped_by_the_cpu_limit() {
    in_both_privilege_modes("busy_loop_is_stopped_by_the_cpu_limit", || async {
        let Some(sb) = sandbox_or_fail_closed().await else {
            return;
        };
        let spec = SandboxLimits {
            timeout_s: Some(30.0),
            cpu_s: Some(1.0),
            ..Default::default()
        };
        let s = score(sb, "while True:\n    pass\n", spec).await;
        assert!(!s.passed);
        assert!(s.detail.contains("CPU time limit (1s)"), "{}", s.detail);
    });
}

#[test]
fn fork_bomb_is_held_to_the_process_limit_and_killed() {
    in_both_privilege_modes(
        "fork_bomb_is_held_to_the_process_limit_and_killed",
        || async {
            let Some(sb) = sandbox_or_fail_closed().await else {
                return;
            };
            // Forks until refused and reports how many it got, then keeps
            // forking forever (every child too).
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
            // The count is the sandbox's own (its user namespace), whatever
            // the worker's uid: at most 16 processes, the bomb included.
            assert!(got < 16, "forked {got} children with a limit of 16");
            assert!(
                got >= 8,
                "forked only {got}: the limit counts other processes"
            );
            assert_eq!(leftovers(&out.run_id), 0, "fork bomb processes survived");
            let s = score(sb, program, spec).await;
            assert!(!s.passed);
            assert!(s.detail.starts_with("timed out"), "{}", s.detail);
        },
    );
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    in_both_privilege_modes("memory_bomb_hits_the_memory_limit", || async {
        let Some(sb) = sandbox_or_fail_closed().await else {
            return;
        };
        let spec = SandboxLimits {
            memory_mb: Some(256),
            ..Default::default()
        };
        let iso = sb.isolation().await.clone();
        let all_at_once = score(sb.clone(), "x = bytearray(4 * 1024 ** 3)\n", spec.clone()).await;
        assert!(!all_at_once.passed);
        // The detail names how memory is kept: the cgroup, or the split.
        let cgroup = iso.cgroup.as_ref().map(|c| c.describe());
        assert_eq!(
            all_at_once.detail,
            format!(
                "exit 1: MemoryError (memory limit: {})",
                limits(spec.clone()).memory_bound(cgroup.as_deref())
            )
        );
        let growing = score(
            sb,
            "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 * 1024))\n",
            spec,
        )
        .await;
        assert!(!growing.passed);
        assert!(growing.detail.contains("MemoryError"), "{}", growing.detail);
    });
}

#[test]
fn a_forking_memory_bomb_stays_within_the_sandbox_total() {
    in_both_privilege_modes(
        "a_forking_memory_bomb_stays_within_the_sandbox_total",
        || async {
            let Some(sb) = sandbox_or_fail_closed().await else {
                return;
            };
            let iso = sb.isolation().await.clone();
            // Every child takes (and touches) what it can in 8 MiB steps and
            // reports it, then keeps it until the parent is gone. The parent
            // waits until each child has reported or died (pidfds), then
            // names what the children still alive hold.
            let program = r#"
import os, select, sys
def hog():
    got, chunks = 0, []
    try:
        while True:
            chunks.append(bytearray(8 << 20))
            got += 8
    except MemoryError:
        pass
    return got, chunks
report_r, report_w = os.pipe()
gate_r, gate_w = os.pipe()
children = {}
for i in range(64):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        os.close(gate_w)
        got, chunks = hog()
        os.write(report_w, b"%d %d\n" % (i, got))
        os.read(gate_r, 1)
        os._exit(0)
    children[os.pidfd_open(pid)] = (i, pid)
os.close(gate_r)
os.close(report_w)
reported, dead, killed, pending = {}, set(), 0, b""
while len(set(reported) | dead) < len(children):
    watched = [f for f, (i, _) in children.items() if i not in dead]
    ready, _, _ = select.select([report_r] + watched, [], [])
    for f in ready:
        if f == report_r:
            pending += os.read(report_r, 4096)
            *lines, pending = pending.split(b"\n")
            for line in lines:
                i, got = map(int, line.split())
                reported[i] = got
        else:
            i, pid = children[f]
            _, status = os.waitpid(pid, 0)
            dead.add(i)
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9:
                killed += 1
held = sum(got for i, got in reported.items() if i not in dead)
print("children", len(children), "held", held, "killed", killed, flush=True)
sys.exit("bomb done")
"#;
            let total_mb = 512;
            let spec = SandboxLimits {
                memory_mb: Some(total_mb),
                processes: Some(10),
                timeout_s: Some(60.0),
                ..Default::default()
            };
            let l = limits(spec.clone());
            let out = run(&sb, program, spec.clone()).await;
            let counts: Vec<u64> = out
                .stdout
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            let [children, held, killed] = counts[..] else {
                panic!("the bomb reports: {}", out.stdout)
            };
            assert!(children >= 4, "the bomb forked {children}");
            assert!(
                held <= total_mb,
                "{held} MiB held beyond the total of {total_mb}"
            );
            let s = score(sb, program, spec).await;
            assert!(!s.passed);
            match &iso.cgroup {
                Some(c) => {
                    // Each process alone may take the whole total; together
                    // they would take many times it, but the cgroup holds.
                    let (n, each) = l.per_process(true);
                    assert!(u64::from(n) * each > 4 * l.memory_bytes);
                    assert!(killed >= 1, "no child was killed: {}", out.stdout);
                    assert!(out.oom_killed);
                    assert_eq!(
                        s.detail,
                        format!(
                            "exit 1: bomb done (out of memory: {total_mb} MiB for the whole sandbox, {})",
                            c.describe()
                        )
                    );
                }
                None => {
                    // The split: each child is refused beyond its share.
                    assert_eq!(killed, 0);
                    assert!(!out.oom_killed);
                    assert_eq!(s.detail, "exit 1: bomb done");
                }
            }
            assert_eq!(leftovers(&out.run_id), 0, "bomb processes survived");
        },
    );
}

#[test]
fn forked_sleepers_leave_no_process_and_no_cgroup_behind() {
    in_both_privilege_modes(
        "forked_sleepers_leave_no_process_and_no_cgroup_behind",
        || async {
            let Some(sb) = sandbox_or_fail_closed().await else {
                return;
            };
            // Half of them leave the session; the program exits at once.
            let program = r#"
import os, time
for i in range(10):
    if os.fork() == 0:
        if i % 2:
            os.setsid()
        time.sleep(300)
        os._exit(0)
print("forked 10", flush=True)
"#;
            let out = run(&sb, program, Default::default()).await;
            assert!(out.success(), "{:?}", out.status);
            assert_eq!(out.stdout.trim(), "forked 10");
            assert_eq!(leftovers(&out.run_id), 0, "sleepers survived the run");
        },
    );
}

#[test]
fn a_runs_cgroup_holds_its_memory_processes_and_cpu() {
    in_both_privilege_modes(
        "a_runs_cgroup_holds_its_memory_processes_and_cpu",
        || async {
            let Some(sb) = sandbox_or_fail_closed().await else {
                return;
            };
            let iso = sb.isolation().await.clone();
            let spec = SandboxLimits {
                memory_mb: Some(333),
                processes: Some(7),
                timeout_s: Some(5.0),
                ..Default::default()
            };
            // The program waits (until the wall-clock limit) while the test
            // finds its cgroup by its memory limit and reads the others.
            let running = tokio::spawn({
                let sb = sb.clone();
                let spec = spec.clone();
                async move { run(&sb, "import time\ntime.sleep(600)\n", spec).await }
            });
            let Some(_) = &iso.cgroup else {
                // No cgroup (asserted where expected): nothing to find.
                running.abort();
                return;
            };
            let read = |p: PathBuf| {
                std::fs::read_to_string(p)
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            };
            let memory = (333u64 << 20).to_string();
            let deadline = Instant::now() + Duration::from_secs(5);
            let dirs = loop {
                let name = run_cgroups("").into_iter().find_map(|d| {
                    let m = read(d.join("memory.max"));
                    let m1 = read(d.join("memory.limit_in_bytes"));
                    (m == memory || m1 == memory).then(|| d.file_name().unwrap().to_owned())
                });
                if let Some(name) = name {
                    break run_cgroups(&name.to_string_lossy());
                }
                assert!(Instant::now() < deadline, "the run's cgroup never appeared");
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            let file = |names: &[&str]| {
                dirs.iter()
                    .flat_map(|d| names.iter().map(move |n| d.join(n)))
                    .find(|p| p.exists())
                    .map(read)
            };
            // bwrap's two processes on top of the program's 7.
            assert_eq!(file(&["pids.max"]).as_deref(), Some("9"));
            match (file(&["cpu.max"]), file(&["cpu.cfs_quota_us"])) {
                (Some(v2), _) => assert_eq!(v2, "100000 100000"),
                (None, Some(quota)) => {
                    assert_eq!(quota, "100000");
                    assert_eq!(file(&["cpu.cfs_period_us"]).as_deref(), Some("100000"));
                }
                (None, None) => eprintln!("no cpu controller for the cgroup here"),
            }
            if let Some(swap) = file(&["memory.memsw.limit_in_bytes", "memory.swap.max"]) {
                assert!(swap == memory || swap == "0", "{swap}");
            }
            // Stop waiting: the sandbox's wall clock ends it, the cgroup goes.
            let out = running.await.unwrap();
            assert_eq!(out.status, Status::TimedOut);
        },
    );
}

#[test]
fn host_files_and_the_workers_environment_are_out_of_reach() {
    in_both_privilege_modes(
        "host_files_and_the_workers_environment_are_out_of_reach",
        || async {
            let Some(sb) = sandbox_or_fail_closed().await else {
                return;
            };
            assert_eq!(std::env::var(FAKE_KEY_ENV).unwrap(), FAKE_KEY);
            let worker = std::process::id();
            let secret_file = host_secret_file();
            // Looks everywhere: the host file, well-known secrets, the worker's
            // environ, every /proc/*/environ and cmdline, its own environment.
            let program = format!(
                r#"
import os, sys
found = []
def look(path):
    try:
        data = open(path, "rb").read()
    except OSError:
        return
    if b"{HOST_SECRET}" in data or b"{FAKE_KEY}" in data:
        found.append(path)
        sys.stderr.write(data.decode(errors="replace") + "\n")
for path in ({secret:?}, "/proc/{worker}/environ", "/etc/passwd", "/etc/shadow",
             "/var/run/secrets/kubernetes.io/serviceaccount/token", "/root/.bash_history"):
    look(path)
for pid in os.listdir("/proc"):
    if pid.isdigit():
        look("/proc/%s/environ" % pid)
        look("/proc/%s/cmdline" % pid)
visible = [d for d in ("/etc", "/home", "/root", "/run", "/var", {dir:?}) if os.path.exists(d)]
print("env:", sorted(os.environ))
print("visible:", visible)
if found:
    sys.exit("LEAKED %s" % found)
sys.exit("nothing found")
"#,
                secret = secret_file.to_string_lossy(),
                dir = secret_file.parent().unwrap().to_string_lossy(),
            );
            let out = run(&sb, &program, Default::default()).await;
            assert_nothing_of_the_host(&[&out.stdout, &out.stderr]);
            assert!(out.stdout.contains("visible: []"), "{}", out.stdout);
            assert!(
                out.stdout.contains("env: ['HOME', 'LANG', 'PATH']"),
                "{}",
                out.stdout
            );
            let s = score(sb, &program, Default::default()).await;
            assert!(!s.passed);
            assert_eq!(s.detail, "exit 1: nothing found");
        },
    );
}

#[test]
fn the_root_cannot_be_remounted_writable() {
    in_both_privilege_modes("the_root_cannot_be_remounted_writable", || async {
        let Some(sb) = sandbox_or_fail_closed().await else {
            return;
        };
        // Through libc directly (no mount binary in the sandbox): remount
        // the root and /usr read-write, or get a new user namespace (where
        // it would hold CAP_SYS_ADMIN) and try there.
        let program = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
done = []
def attempt(what, rc):
    if rc == 0:
        done.append(what)
    else:
        print(what, "refused:", os.strerror(ctypes.get_errno()))
for target in (b"/", b"/usr"):
    attempt("remount " + target.decode(), libc.mount(None, target, None, MS_REMOUNT | MS_BIND, None))
    attempt("remount " + target.decode() + " rw", libc.mount(None, target, None, MS_REMOUNT, None))
attempt("unshare", libc.unshare(CLONE_NEWUSER | CLONE_NEWNS))
for path in ("/written", "/usr/written"):
    try:
        open(path, "w").write("x")
        done.append("wrote " + path)
    except OSError as e:
        print(path, "refused:", e)
if done:
    sys.exit("ESCAPED: %s" % done)
sys.exit("could not remount")
"#;
        let out = run(&sb, program, Default::default()).await;
        assert!(out.stdout.contains("unshare refused"), "{}", out.stdout);
        let s = score(sb, program, Default::default()).await;
        assert!(!s.passed);
        assert_eq!(s.detail, "exit 1: could not remount");
        assert!(!Path::new("/usr/written").exists());
    });
}

#[test]
fn the_worker_cannot_be_killed() {
    in_both_privilege_modes("the_worker_cannot_be_killed", || async {
        let Some(sb) = sandbox_or_fail_closed().await else {
            return;
        };
        let worker = std::process::id();
        let parent = std::os::unix::process::parent_id();
        let program = format!(
            r#"
import os, signal, sys
killed = []
for pid in ({worker}, {parent}, 1, -1):
    try:
        os.kill(pid, signal.SIGKILL)
        if pid != -1:
            killed.append(pid)
    except OSError as e:
        print(pid, "refused:", e)
print("killed", killed, flush=True)
sys.exit("still here")
"#
        );
        let s = score(sb.clone(), &program, Default::default()).await;
        assert!(!s.passed);
        // The sandbox's own PID 1 ignores signals from inside; the
        // worker's pids are not in its PID namespace.
        assert_eq!(s.detail, "exit 1: still here");
        // Still alive, and the sandbox still works.
        let ok = score(sb, "assert 1 + 1 == 2\n", Default::default()).await;
        assert!(ok.passed, "{}", ok.detail);
    });
}

#[test]
fn the_workers_nats_port_and_the_network_are_out_of_reach() {
    // The worker's NATS server, started here (an unprivileged child could
    // not run the root-installed nats-server) and named to the children.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let nats = match std::env::var("VIGIL_TEST_NATS_PORT") {
        Ok(_) => None,
        Err(_) => Some(
            rt.block_on(vigil_testkit::nats_server::NatsServer::start(
                Default::default(),
            ))
            .unwrap(),
        ),
    };
    let port = nats
        .as_ref()
        .map(|n| n.port().to_string())
        .unwrap_or_default();
    in_both_privilege_modes_with(
        "the_workers_nats_port_and_the_network_are_out_of_reach",
        &[("VIGIL_TEST_NATS_PORT", &port)],
        || async {
            let Some(sb) = sandbox_or_fail_closed().await else {
                return;
            };
            let nats_port: u16 = std::env::var("VIGIL_TEST_NATS_PORT")
                .unwrap()
                .parse()
                .unwrap();
            // The server is there for the worker.
            assert!(std::net::TcpStream::connect(("127.0.0.1", nats_port)).is_ok());
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let program = format!(
                r#"
import socket, sys
reached = []
for port in ({nats}, {other}):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(b"CONNECT {{}}\r\n")
        reached.append(port)
    except OSError as e:
        print(port, "refused:", e)
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    reached.append("internet")
except OSError as e:
    print("internet:", e)
print("interfaces:", [n for _, n in socket.if_nameindex()])
if reached:
    sys.exit("REACHED %s" % reached)
sys.exit("no network")
"#,
                nats = nats_port,
                other = listener.local_addr().unwrap().port(),
            );
            let out = run(&sb, &program, Default::default()).await;
            assert!(out.stdout.contains("interfaces: ['lo']"), "{}", out.stdout);
            let s = score(sb, &program, Default::default()).await;
            assert!(!s.passed);
            assert_eq!(s.detail, "exit 1: no network");
            assert!(
                listener.accept().is_err(),
                "the program reached the worker's network"
            );
        },
    );
    drop(nats);
}

#[test]
fn writes_outside_its_directory_fail() {
    in_both_privilege_modes("writes_outside_its_directory_fail", || async {
        let Some(sb) = sandbox_or_fail_closed().await else {
            return;
        };
        // A directory of the worker's and system ones.
        let worker_dir = tempfile::tempdir().unwrap();
        let worker_file = worker_dir.path().join("tampered.txt");
        let name = format!("vigil-escape-{}", std::process::id());
        let host_tmp = Path::new("/tmp").join(&name);
        let program = format!(
            r#"
open("inside.txt", "w").write("fine")  # its own directory: allowed
open("/tmp/{name}", "w").write("x")    # its private /tmp: allowed
tampered = []
for path in ({worker:?}, "/etc/{name}", "/{name}", "/usr/{name}", "/dev/{name}"):
    try:
        open(path, "w").write("tampered")
        tampered.append(path)
    except OSError as e:
        print("refused", path, e)
assert not tampered, "wrote %s" % tampered
raise SystemExit("could not write outside its directory")
"#,
            worker = worker_file.to_string_lossy(),
        );
        let s = score(sb, &program, Default::default()).await;
        assert!(!s.passed, "{}", s.detail);
        assert_eq!(s.detail, "exit 1: could not write outside its directory");
        assert!(!worker_file.exists(), "wrote into the worker's directory");
        assert!(!host_tmp.exists(), "wrote into the host's /tmp");
        assert!(!Path::new("/etc").join(&name).exists());
    });
}

#[test]
fn without_a_sandbox_code_execution_fails_closed() {
    // A bwrap that refuses to set anything up (as on a host without user
    // namespaces, or a pod whose seccomp profile forbids them).
    in_both_privilege_modes_with(
        "without_a_sandbox_code_execution_fails_closed",
        &[("VIGIL_BWRAP", "/bin/false")],
        || async {
            let sb = new_sandbox(SandboxMode::Required);
            let iso = sb.isolation().await.clone();
            let reason = iso.error.clone().expect("no sandbox with a failing bwrap");
            assert!(reason.contains("self-test failed"), "{reason}");
            assert!(iso.describe().starts_with("unavailable: "));
            assert_fails_closed(&sb, &reason).await;
            // Only the explicit unsafe flag runs programs then, and says so.
            let unsafe_sb = new_sandbox(SandboxMode::UnsafeFallback);
            let iso = unsafe_sb.isolation().await.clone();
            assert!(iso.error.is_none() && !iso.sandboxed, "{iso:?}");
            let note = iso.note.clone().unwrap();
            assert!(note.starts_with("UNSAFE, no sandbox (--unsafe-code-exec-without-sandbox; the sandbox self-test failed"), "{note}");
            let s = score(unsafe_sb, "assert False, 'ran'\n", Default::default()).await;
            assert!(
                s.detail
                    .starts_with("exit 1: AssertionError: ran [UNSAFE, no sandbox"),
                "{}",
                s.detail
            );
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_does_not_allow_code_execution_refuses_it() {
    let err = code_exec::build(&spec(Default::default()), &ScorerEnv::default())
        .err()
        .expect("refused");
    assert_eq!(err.kind(), ErrorKind::NotAllowed);
    assert!(err.to_string().contains("--allow-code-exec"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unsafe_mode_runs_without_isolation_and_says_so() {
    let sb = new_sandbox(SandboxMode::Unsafe);
    let iso = sb.isolation().await.clone();
    assert!(iso.error.is_none(), "{:?}", iso.error);
    assert!(!iso.sandboxed);
    assert!(iso.describe().starts_with("available WITHOUT SANDBOX"));
    assert_cgroup_as_expected(&iso);
    let s = score(
        sb.clone(),
        "import os\nassert os.path.exists('/etc'), 'no host'\n",
        Default::default(),
    )
    .await;
    assert!(s.passed, "{}", s.detail);
    let bad = score(sb.clone(), "assert False, 'wrong'\n", Default::default()).await;
    assert!(!bad.passed);
    assert!(bad.detail.contains("UNSAFE, no sandbox"), "{}", bad.detail);
    // Its leftovers are still killed with the process group (and the uid).
    let spec = SandboxLimits {
        timeout_s: Some(2.0),
        ..Default::default()
    };
    let out = run(&sb, "import os\nos.fork()\nwhile True:\n    pass\n", spec).await;
    assert_eq!(out.status, Status::TimedOut);
    assert_eq!(leftovers(&out.run_id), 0);
}

#[test]
fn the_private_tmp_is_bounded_even_when_a_job_asks_for_no_file_size() {
    in_both_privilege_modes(
        "the_private_tmp_is_bounded_even_when_a_job_asks_for_no_file_size",
        || async {
            let Some(sb) = sandbox_or_fail_closed().await else {
                return;
            };
            // A tmpfs of size 0 would be unlimited.
            let program = "import os\nfor d in ('/tmp', '/dev/shm'):\n    s = os.statvfs(d)\n    print(d, s.f_blocks * s.f_frsize)\n";
            let spec = SandboxLimits {
                file_mb: Some(0),
                ..Default::default()
            };
            let out = run(&sb, program, spec).await;
            assert!(out.success(), "{:?}", out.status);
            for line in out.stdout.lines() {
                let bytes: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
                assert!(bytes > 0 && bytes <= 1 << 20, "{line}");
            }
            assert_eq!(out.stdout.lines().count(), 2);
        },
    );
}
