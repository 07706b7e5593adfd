//! A sandbox for running untrusted programs (the `code_exec` scorer).
//!
//! A program arrives in a job, and a job is data, never authority: the
//! sandbox must hold whatever the program does. It is built from Debian's
//! `bubblewrap` (`bwrap`), so that nothing of it is hand-written mount code:
//!
//! ```text
//! setpriv --reuid U --regid U --clear-groups --no-new-privs   (only when the worker is root)
//!   bwrap --unshare-user --disable-userns --unshare-{ipc,pid,net,uts,cgroup}
//!         --die-with-parent --new-session --cap-drop ALL
//!         --ro-bind <runtime> …   --proc /proc   --dev /dev   --tmpfs /tmp …
//!         --remount-ro /
//!     env -u PWD                (bwrap sets PWD; nothing but PATH, HOME, LANG remains)
//!       prlimit --cpu --as --nproc --fsize --nofile --core
//!         python3 -I -B main.py
//! ```
//!
//! - Files: the root is an empty tmpfs, read-only, holding only the runtime
//!   ([`mounts`]: the interpreter, its standard library, its shared
//!   libraries, `prlimit` and `env`, bound read-only where they are on the host), a
//!   private `/proc` of its own PID namespace, a minimal `/dev`, and a
//!   size-limited private `/tmp` with the program in `/tmp/vigil-<run id>`
//!   (its HOME and working directory). No `/etc`, `/home`, `/root`, `/run`,
//!   `/var`, no secrets, no sockets.
//! - Network: its own namespace, only loopback.
//! - Environment: only `PATH`, `HOME`, `LANG`.
//! - Privileges: a user namespace of its own in which it holds no
//!   capability (bounding, inheritable, ambient sets empty), no_new_privs,
//!   no further user namespaces, so it cannot undo the read-only mounts. A
//!   root worker first drops to an unprivileged uid of its own per slot
//!   (`uid_base + slot`).
//! - Limits: where the worker can have cgroups ([`cgroup`]: a delegated v2
//!   sub-tree, or writable v1 `memory` and `pids` hierarchies), each run
//!   enters a fresh cgroup of its own before anything of it starts (a `sh`
//!   wrapper in front of the chain) that caps the whole sandbox's memory,
//!   processes and CPU; each process may then use the whole memory total
//!   as its address space. Without a cgroup the memory total is split into
//!   per-process address spaces so that all processes together stay within
//!   it ([`Limits::split`]), and kernel memory (tmpfs inodes) is not
//!   bounded. RLIMIT_NPROC counts the processes of the sandbox's own user
//!   namespace either way. Which of the two holds is named in `/readyz`,
//!   the start-up log ([`Isolation::describe`]) and memory failures' details.
//! - Clean-up: on the wall-clock limit bwrap is killed; the sandbox's PID 1
//!   dies with it (`--die-with-parent`) and the kernel kills every process
//!   of its PID namespace. With a cgroup, every process left in it is
//!   killed too, and it is removed.
//!
//! It fails closed: the first use probes the host (tools present, then a
//! self-test program in the full sandbox checks capabilities, network,
//! visible directories and environment from inside). If that fails, every
//! run fails with the reason, and the worker reports it (log, `/readyz`,
//! item errors of kind `sandbox_unavailable`). Only
//! [`SandboxMode::UnsafeFallback`] (`--unsafe-code-exec-without-sandbox`)
//! then runs programs without isolation: `[setpriv] prlimit python3` in a
//! process group of its own, with every score's detail saying so.
//!
//! Runs are bounded by a semaphore (one per CPU by default) and awaited on
//! tokio's process support, so they never block the worker's runtime.

pub mod cgroup;
pub mod limits;
pub mod mounts;
pub mod runner;

use cgroup::{Cgroup, RunCgroup};
use limits::Limits;
use mounts::RuntimeMounts;
use runner::{Runner, SELF_TEST_OK};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::{OnceCell, Semaphore};

/// Whether programs may run without the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum SandboxMode {
    /// Only in the sandbox; where it cannot be set up, nothing runs.
    #[default]
    Required,
    /// In the sandbox where it can be set up, else without isolation
    /// (`--unsafe-code-exec-without-sandbox`).
    UnsafeFallback,
    /// Never isolated (tests of the unsafe path).
    Unsafe,
}

/// How a [`Sandbox`] runs programs.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Programs running at once (default: the number of CPUs).
    pub slots: usize,
    /// First uid of the per-slot uids a root worker runs programs as.
    pub uid_base: u32,
    /// Limits a job does not set.
    pub defaults: Limits,
    /// The largest limits a job may set.
    pub caps: Limits,
    /// Where each run's directory is created (default: the temp directory).
    pub scratch: PathBuf,
    /// Whether programs may run without the sandbox.
    pub mode: SandboxMode,
}

impl Default for SandboxConfig {
    /// Slots = CPUs; uid base from `VIGIL_SANDBOX_UID_BASE`, else
    /// 100000 + 64 × (pid mod 8192), so workers on one host use distinct uids.
    fn default() -> Self {
        let slots = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let uid_base = std::env::var("VIGIL_SANDBOX_UID_BASE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000 + 64 * (std::process::id() % 8192));
        SandboxConfig {
            slots,
            uid_base,
            defaults: Limits::default(),
            caps: Limits::caps(),
            scratch: std::env::temp_dir(),
            mode: SandboxMode::Required,
        }
    }
}

/// What isolation the host gives, found once by a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolation {
    /// Programs run in the bubblewrap sandbox.
    pub sandboxed: bool,
    /// Programs run as a per-slot unprivileged uid (the worker is root).
    pub drop_uid: bool,
    /// The sandbox has a `/proc` of its own PID namespace (else none at all:
    /// the host refused to mount one, as in a container with masked paths).
    pub private_proc: bool,
    /// What is not isolated, when programs run without the sandbox.
    pub note: Option<String>,
    /// Why programs cannot run at all, when they cannot.
    pub error: Option<String>,
    /// The cgroups each run gets, bounding it in aggregate; `None`: the
    /// per-process split of the memory total holds instead.
    pub cgroup: Option<Cgroup>,
    /// Why there is no cgroup, when there is none.
    pub no_cgroup: Option<String>,
    tools: Tools,
    mounts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Tools {
    bwrap: Option<PathBuf>,
    setpriv: Option<PathBuf>,
    prlimit: Option<PathBuf>,
    env: Option<PathBuf>,
}

impl Isolation {
    /// Whether programs can run (in the sandbox, or unsafely when allowed).
    pub fn available(&self) -> bool {
        self.error.is_none()
    }

    /// One line for logs and `/readyz`.
    pub fn describe(&self) -> String {
        if let Some(e) = &self.error {
            return format!("unavailable: {e}");
        }
        if !self.sandboxed {
            return format!(
                "available WITHOUT SANDBOX: {} ({})",
                self.note.as_deref().unwrap_or(""),
                self.bound()
            );
        }
        format!(
            "available: bubblewrap sandbox ({}{}, {})",
            if self.drop_uid {
                "unprivileged uid per slot"
            } else {
                "the worker's uid in a user namespace"
            },
            if self.private_proc {
                ", private /proc"
            } else {
                ", no /proc"
            },
            self.bound()
        )
    }

    /// What bounds a run in aggregate: `cgroup v2 at PATH`, `cgroup v1`, or
    /// `no cgroup: per-process split`.
    pub fn bound(&self) -> String {
        match &self.cgroup {
            Some(c) => c.describe(),
            None => "no cgroup: per-process split".to_string(),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it (SIGXCPU/SIGKILL: CPU limit; SIGXFSZ: file size).
    Signaled(i32),
    /// The wall-clock limit ran out; the sandbox was killed.
    TimedOut,
    /// It could not be started.
    Failed(String),
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How it ended.
    pub status: Status,
    /// The start of its standard output (at most 64 KiB).
    pub stdout: String,
    /// The start of its standard error (at most 64 KiB).
    pub stderr: String,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// A random id, part of the program's `HOME` (tests find leftover
    /// processes by it).
    pub run_id: String,
    /// What was not isolated, when the program ran without the sandbox.
    pub isolation_note: Option<String>,
    /// How its memory was bounded ([`Limits::memory_bound`]).
    pub memory: String,
    /// Whether the kernel's OOM killer killed a process of it (its cgroup
    /// ran out of memory; always false without a cgroup).
    pub oom_killed: bool,
}

impl Outcome {
    /// Whether the program exited 0.
    pub fn success(&self) -> bool {
        self.status == Status::Exited(0)
    }

    fn failed(message: impl Into<String>, note: Option<String>) -> Outcome {
        Outcome {
            status: Status::Failed(message.into()),
            stdout: String::new(),
            stderr: String::new(),
            elapsed: Duration::ZERO,
            run_id: String::new(),
            isolation_note: note,
            memory: String::new(),
            oom_killed: false,
        }
    }
}

/// Runs programs under limits; see the module documentation.
pub struct Sandbox {
    config: SandboxConfig,
    permits: Semaphore,
    free_slots: Mutex<Vec<u32>>,
    isolation: OnceCell<Isolation>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("config", &self.config)
            .finish()
    }
}

const MAX_CAPTURE: usize = 64 * 1024;

/// Where the program's directory is inside the sandbox (`run_id` appended).
const WORK_PREFIX: &str = "/tmp/vigil-";

impl Sandbox {
    /// A sandbox with its own slots.
    pub fn new(config: SandboxConfig) -> Sandbox {
        let slots = config.slots.clamp(1, 64);
        Sandbox {
            permits: Semaphore::new(slots),
            free_slots: Mutex::new((0..slots as u32).rev().collect()),
            isolation: OnceCell::new(),
            config,
        }
    }

    /// The sandbox every worker of this process with this `mode` shares, so
    /// that in-process workers together run at most one program per CPU,
    /// never share a uid, and probe the host once.
    pub fn shared(mode: SandboxMode) -> Arc<Sandbox> {
        type ByMode = Vec<(SandboxMode, Arc<Sandbox>)>;
        static SHARED: OnceLock<Mutex<ByMode>> = OnceLock::new();
        let mut all = SHARED
            .get_or_init(Default::default)
            .lock()
            .expect("shared sandboxes lock");
        if let Some((_, sb)) = all.iter().find(|(m, _)| *m == mode) {
            return sb.clone();
        }
        let sb = Arc::new(Sandbox::new(SandboxConfig {
            mode,
            ..Default::default()
        }));
        all.push((mode, sb.clone()));
        sb
    }

    /// Its configuration.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// The isolation this host gives (probed on first use and logged once,
    /// then remembered).
    pub async fn isolation(&self) -> &Isolation {
        self.isolation
            .get_or_init(|| async {
                let iso = probe(&self.config).await;
                let what = iso.describe();
                if iso.error.is_some() {
                    tracing::error!(code_exec = %what, "code sandbox unavailable: code_exec items fail as sandbox_unavailable");
                } else if !iso.sandboxed {
                    tracing::warn!(code_exec = %what, "code_exec runs programs WITHOUT A SANDBOX");
                } else {
                    tracing::info!(code_exec = %what, "code sandbox ready");
                }
                if iso.error.is_none()
                    && let Some(why) = &iso.no_cgroup
                {
                    tracing::info!(why = %why, "no cgroup for code_exec runs: memory is kept by the per-process split");
                }
                iso
            })
            .await
    }

    /// The isolation, if the host has been probed already.
    pub fn isolation_now(&self) -> Option<&Isolation> {
        self.isolation.get()
    }

    /// Runs `program` with `runner` under `limits`. Never panics: problems
    /// starting it are a [`Status::Failed`].
    pub async fn run(&self, runner: &dyn Runner, program: &str, limits: &Limits) -> Outcome {
        let iso = self.isolation().await.clone();
        if let Some(e) = &iso.error {
            return Outcome::failed(format!("sandbox unavailable: {e}"), iso.note.clone());
        }
        let _permit = self.permits.acquire().await.expect("semaphore open");
        let slot = self
            .free_slots
            .lock()
            .expect("slots lock")
            .pop()
            .expect("a free slot per permit");
        let _slot = SlotGuard {
            slots: &self.free_slots,
            slot,
        };
        let uid = self.config.uid_base + slot;
        run_in(&iso, &self.config.scratch, runner, program, limits, uid).await
    }
}

struct SlotGuard<'a> {
    slots: &'a Mutex<Vec<u32>>,
    slot: u32,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.slots.lock() {
            s.push(self.slot);
        }
    }
}

/// One run as `uid`: its directory, the chain, the clean-up.
async fn run_in(
    iso: &Isolation,
    scratch: &Path,
    runner: &dyn Runner,
    program: &str,
    limits: &Limits,
    uid: u32,
) -> Outcome {
    let command = match runner.command() {
        Ok(c) => c,
        Err(e) => return Outcome::failed(e, iso.note.clone()),
    };
    let run_id = hex::encode(rand::random::<[u8; 8]>());
    let files = runner.files(program);
    let dir = match prepare_dir(scratch, &files, &run_id, iso.drop_uid.then_some(uid)).await {
        Ok(d) => d,
        Err(e) => {
            return Outcome::failed(
                format!("cannot prepare the sandbox directory: {e}"),
                iso.note.clone(),
            );
        }
    };
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let cgroup = match create_cgroup(iso, &run_id, limits).await {
        Ok(c) => c,
        Err(e) => return Outcome::failed(e, iso.note.clone()),
    };
    let run = Run {
        dir: dir.path(),
        files: &names,
        command: &command,
        limits,
        uid,
        cgroup: cgroup.as_ref(),
    };
    let outcome = execute(iso, &run, run_id).await;
    if let Some(c) = cgroup
        && let Err(e) = c.finish().await
    {
        tracing::error!(error = %e, "a sandbox run's cgroup could not be emptied");
    }
    // Removing a directory full of files is blocking work.
    let _ = tokio::task::spawn_blocking(move || drop(dir)).await;
    outcome
}

/// The run's own cgroup, when the host gives cgroups.
async fn create_cgroup(
    iso: &Isolation,
    run_id: &str,
    limits: &Limits,
) -> Result<Option<RunCgroup>, String> {
    let Some(cgroup) = iso.cgroup.clone() else {
        return Ok(None);
    };
    // bwrap's own two processes (outside and PID 1) count too.
    let overhead = if iso.sandboxed { 2 } else { 0 };
    let (run_id, limits) = (run_id.to_string(), limits.clone());
    tokio::task::spawn_blocking(move || cgroup.create(&run_id, &limits, overhead))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map(Some)
        .map_err(|e| format!("cannot create the sandbox's cgroup: {e}"))
}

/// What one run is made of.
struct Run<'a> {
    dir: &'a Path,
    files: &'a [&'a str],
    command: &'a [String],
    limits: &'a Limits,
    uid: u32,
    cgroup: Option<&'a RunCgroup>,
}

/// A directory on the host with the program's files, readable by `owner`
/// (the uid a root worker drops to). In the sandbox its files are bound
/// read-only; without the sandbox the program works in it.
async fn prepare_dir(
    scratch: &Path,
    files: &[(String, String)],
    run_id: &str,
    owner: Option<u32>,
) -> std::io::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("vigil-{run_id}-"))
        .tempdir_in(scratch)?;
    for (name, text) in files {
        tokio::fs::write(dir.path().join(name), text).await?;
    }
    if let Some(uid) = owner {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid))?;
        for (name, _) in files {
            std::os::unix::fs::chown(dir.path().join(name), Some(uid), Some(uid))?;
        }
    }
    Ok(dir)
}

fn env_for(cmd: &mut tokio::process::Command, home: &str) {
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home)
        .env("LANG", "C.UTF-8");
}

/// `setpriv …` when the worker is root: the rest of the chain runs as `uid`.
fn drop_uid_argv(iso: &Isolation, uid: u32) -> Result<Vec<String>, String> {
    if !iso.drop_uid {
        return Ok(Vec::new());
    }
    let setpriv = iso.tools.setpriv.as_ref().ok_or("setpriv missing")?;
    Ok(vec![
        setpriv.to_string_lossy().into_owned(),
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".into(),
        "--no-new-privs".into(),
        "--".into(),
    ])
}

/// `prlimit … -- command`; `nproc` is the RLIMIT_NPROC value, `each` the
/// address space of each process.
fn prlimit_argv(
    iso: &Isolation,
    command: &[String],
    limits: &Limits,
    nproc: u64,
    each: u64,
) -> Result<Vec<String>, String> {
    let prlimit = iso.tools.prlimit.as_ref().ok_or("prlimit missing")?;
    let mut argv = vec![prlimit.to_string_lossy().into_owned()];
    argv.extend(limits.prlimit_args(nproc, each));
    argv.push("--".into());
    argv.extend(command.iter().cloned());
    Ok(argv)
}

/// The bwrap options of the sandbox (see the module documentation).
fn bwrap_argv(
    iso: &Isolation,
    dir: &Path,
    files: &[&str],
    work: &str,
    limits: &Limits,
) -> Result<Vec<String>, String> {
    let bwrap = iso.tools.bwrap.as_ref().ok_or("bwrap missing")?;
    let mut argv: Vec<String> = [
        "--unshare-user",
        "--disable-userns",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "sandbox",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    argv.insert(0, bwrap.to_string_lossy().into_owned());
    argv.extend(iso.mounts.iter().cloned());
    if iso.private_proc {
        argv.extend(["--proc".into(), "/proc".into()]);
    }
    // A tmpfs of size 0 would be unlimited: never less than 1 MiB.
    let size = limits.file_bytes.max(1 << 20).to_string();
    for arg in [
        "--dev",
        "/dev",
        "--size",
        &size,
        "--tmpfs",
        "/dev/shm",
        "--remount-ro",
        "/dev",
        "--size",
        &size,
        "--tmpfs",
        "/tmp",
        "--dir",
        work,
    ] {
        argv.push(arg.into());
    }
    for name in files {
        argv.extend([
            "--ro-bind".into(),
            dir.join(name).to_string_lossy().into_owned(),
            format!("{work}/{name}"),
        ]);
    }
    argv.extend([
        "--remount-ro".into(),
        "/".into(),
        "--chdir".into(),
        work.into(),
        "--".into(),
    ]);
    Ok(argv)
}

fn build_command(
    iso: &Isolation,
    run: &Run<'_>,
    run_id: &str,
) -> Result<tokio::process::Command, String> {
    let Run {
        dir,
        files,
        command,
        limits,
        uid,
        cgroup,
    } = *run;
    let (processes, each) = limits.per_process(cgroup.is_some());
    let mut argv = drop_uid_argv(iso, uid)?;
    let home = if iso.sandboxed {
        let work = format!("{WORK_PREFIX}{run_id}");
        argv.extend(bwrap_argv(iso, dir, files, &work, limits)?);
        let env = iso.tools.env.as_ref().ok_or("env missing")?;
        argv.extend([
            env.to_string_lossy().into_owned(),
            "-u".into(),
            "PWD".into(),
        ]);
        // The count is the sandbox's own user namespace's; bwrap's PID 1 is
        // one of them.
        argv.extend(prlimit_argv(
            iso,
            command,
            limits,
            u64::from(processes) + 1,
            each,
        )?);
        work
    } else {
        let nproc = if iso.drop_uid {
            u64::from(processes)
        } else {
            // Shared uid: the limit counts the worker's own tasks too.
            tasks_of_uid(current_uid()) + u64::from(processes)
        };
        argv.extend(prlimit_argv(iso, command, limits, nproc, each)?);
        dir.to_string_lossy().into_owned()
    };
    if let Some(c) = cgroup {
        argv = c.wrap(argv);
    }
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    env_for(&mut cmd, &home);
    cmd.current_dir(dir)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(cmd)
}

async fn execute(iso: &Isolation, run: &Run<'_>, run_id: String) -> Outcome {
    let note = iso.note.clone();
    let (limits, uid) = (run.limits, run.uid);
    let mut cmd = match build_command(iso, run, &run_id) {
        Ok(c) => c,
        Err(e) => return Outcome::failed(e, note),
    };
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::failed(format!("cannot start the sandbox: {e}"), note),
    };
    let pid = child.id();
    let stdout = tokio::spawn(capture(child.stdout.take()));
    let stderr = tokio::spawn(capture(child.stderr.take()));
    let waited = tokio::time::timeout(limits.wall, child.wait()).await;
    let status = match waited {
        Ok(Ok(status)) => {
            if let Some(sig) = status.signal() {
                Status::Signaled(sig)
            } else {
                let code = status.code().unwrap_or(-1);
                // bwrap reports its child's death by a signal as 128 + n.
                if iso.sandboxed && code > 128 && code < 128 + 65 {
                    Status::Signaled(code - 128)
                } else {
                    Status::Exited(code)
                }
            }
        }
        Ok(Err(e)) => Status::Failed(format!("waiting for the sandbox failed: {e}")),
        Err(_) => {
            // Sandboxed: killing bwrap kills the sandbox's PID 1, and with
            // it every process of its PID namespace.
            let _ = child.start_kill();
            let _ = child.wait().await;
            Status::TimedOut
        }
    };
    if !iso.sandboxed {
        kill_leftovers(iso, pid, uid).await;
    }
    let elapsed = started.elapsed();
    let oom_killed = run.cgroup.is_some_and(|c| c.oom_kills() > 0);
    let memory = limits.memory_bound(iso.cgroup.as_ref().map(Cgroup::describe).as_deref());
    let collect = |h: tokio::task::JoinHandle<String>| async move {
        match tokio::time::timeout(Duration::from_secs(2), h).await {
            Ok(Ok(s)) => s,
            _ => String::new(),
        }
    };
    let stderr = collect(stderr).await;
    let status = match status {
        Status::Exited(125) if run.cgroup.is_some() && stderr.contains(cgroup::ENTER_FAILED) => {
            Status::Failed(stderr.trim().to_string())
        }
        s => s,
    };
    Outcome {
        status,
        stdout: collect(stdout).await,
        stderr,
        elapsed,
        run_id,
        isolation_note: note,
        memory,
        oom_killed,
    }
}

/// Without a PID namespace: kill the process group, and when the program ran
/// as its own uid, every process of that uid (a program may leave its group).
async fn kill_leftovers(iso: &Isolation, pid: Option<u32>, uid: u32) {
    if let Some(pgid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    }
    if iso.drop_uid
        && let (Some(setpriv), Some(kill)) = (&iso.tools.setpriv, which("kill"))
    {
        let _ = tokio::process::Command::new(setpriv)
            .args([
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                "--clear-groups".into(),
                "--".into(),
            ])
            .arg(kill)
            .args(["-KILL", "-1"])
            .env_clear()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
}

async fn capture<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = MAX_CAPTURE.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// The absolute path of `name` on PATH or in the usual system directories.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"]
                .into_iter()
                .map(PathBuf::from),
        )
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn current_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Tasks (threads included: RLIMIT_NPROC counts them) whose real uid is `uid`.
fn tasks_of_uid(uid: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for e in entries.flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        if field("Uid:") == Some(u64::from(uid)) {
            total += field("Threads:").unwrap_or(1);
        }
    }
    total
}

/// Finds the tools and the runtime, then runs the runner's self-test in the
/// sandbox (with a private `/proc`, else without one).
async fn probe_sandbox(config: &SandboxConfig, runner: &'static dyn Runner) -> Isolation {
    let root = current_uid() == 0;
    let mut iso = Isolation {
        sandboxed: true,
        drop_uid: root,
        private_proc: true,
        note: None,
        error: None,
        cgroup: None,
        no_cgroup: None,
        tools: Tools {
            bwrap: bwrap_path(),
            setpriv: which("setpriv"),
            prlimit: which("prlimit"),
            env: which("env"),
        },
        mounts: Vec::new(),
    };
    let missing = if iso.tools.bwrap.is_none() {
        Some(
            "bubblewrap (bwrap) is not installed (or not where VIGIL_BWRAP says): install the bubblewrap package",
        )
    } else if iso.tools.prlimit.is_none() {
        Some("prlimit (util-linux) is not installed")
    } else if iso.tools.env.is_none() {
        Some("env (coreutils) is not installed")
    } else if root && iso.tools.setpriv.is_none() {
        Some(
            "the worker is root and setpriv (util-linux) is not installed to drop to an unprivileged uid",
        )
    } else {
        None
    };
    if let Some(m) = missing {
        iso.error = Some(m.to_string());
        return iso;
    }
    probe_cgroup(&mut iso).await;
    let tools = [
        iso.tools.prlimit.clone().unwrap_or_default(),
        iso.tools.env.clone().unwrap_or_default(),
    ];
    let mounts = tokio::task::spawn_blocking({
        move || -> Result<Vec<String>, String> {
            let mut m = RuntimeMounts::default();
            let mut paths = runner.runtime_paths()?;
            paths.extend(tools);
            for p in &paths {
                m.expose(p)?;
                if p.is_file() {
                    let real =
                        std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))?;
                    m.expose_interpreter(&real)?;
                }
            }
            m.copy_root_links();
            Ok(m.bwrap_args())
        }
    })
    .await;
    iso.mounts = match mounts {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            iso.error = Some(format!(
                "cannot find the {} runtime: {e}",
                runner.language()
            ));
            return iso;
        }
        Err(e) => {
            iso.error = Some(format!("probe failed: {e}"));
            return iso;
        }
    };
    let mut first_error = None;
    for private_proc in [true, false] {
        iso.private_proc = private_proc;
        match self_test(&iso, config, runner).await {
            Ok(()) => return iso,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    iso.error = Some(format!(
        "the sandbox self-test failed{}: {}",
        if root {
            ""
        } else {
            " (user namespaces are needed)"
        },
        first_error.unwrap_or_default()
    ));
    iso
}

/// Finds the cgroups runs get ([`cgroup::probe`]); without, says why.
async fn probe_cgroup(iso: &mut Isolation) {
    match tokio::task::spawn_blocking(cgroup::probe).await {
        Ok(Ok(c)) => iso.cgroup = Some(c),
        Ok(Err(e)) => iso.no_cgroup = Some(e),
        Err(e) => iso.no_cgroup = Some(e.to_string()),
    }
}

/// `VIGIL_BWRAP` when set (an existing file), else `bwrap` on PATH.
fn bwrap_path() -> Option<PathBuf> {
    match std::env::var_os("VIGIL_BWRAP").filter(|p| !p.is_empty()) {
        Some(p) => Some(PathBuf::from(p)).filter(|p| p.is_file()),
        None => which("bwrap"),
    }
}

/// Runs the runner's self-test program with the default limits.
async fn self_test(
    iso: &Isolation,
    config: &SandboxConfig,
    runner: &dyn Runner,
) -> Result<(), String> {
    let out = run_in(
        iso,
        &config.scratch,
        runner,
        runner.self_test(),
        &config.defaults,
        config.uid_base,
    )
    .await;
    if out.success() && out.stdout.contains(SELF_TEST_OK) {
        return Ok(());
    }
    let why = out
        .stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:?}", out.status));
    Err(crate::text::short(&why, 160))
}

/// Without the sandbox: `[setpriv] prlimit` only, tried once with the
/// runner's self-test program (its isolation checks are expected to fail).
async fn probe_unsafe(config: &SandboxConfig, runner: &dyn Runner, why: String) -> Isolation {
    let root = current_uid() == 0;
    let mut iso = Isolation {
        sandboxed: false,
        drop_uid: root,
        private_proc: false,
        note: Some(format!(
            "UNSAFE, no sandbox ({why}): the program sees the host's files and network"
        )),
        error: None,
        cgroup: None,
        no_cgroup: None,
        tools: Tools {
            bwrap: None,
            setpriv: which("setpriv"),
            prlimit: which("prlimit"),
            env: None,
        },
        mounts: Vec::new(),
    };
    if iso.tools.prlimit.is_none() {
        iso.error = Some("prlimit (util-linux) is not installed".into());
    } else if root && iso.tools.setpriv.is_none() {
        iso.error = Some("the worker is root and setpriv (util-linux) is not installed".into());
    } else {
        probe_cgroup(&mut iso).await;
        let out = run_in(
            &iso,
            &config.scratch,
            runner,
            "pass\n",
            &config.defaults,
            config.uid_base,
        )
        .await;
        if !out.success() {
            iso.error = Some(format!(
                "programs do not start: {:?} {}",
                out.status,
                crate::text::short(out.stderr.trim(), 120)
            ));
        }
    }
    iso
}

/// Probes the host for the runner the sandbox serves (Python).
async fn probe(config: &SandboxConfig) -> Isolation {
    let runner = runner::runner_for("python").expect("the python runner");
    match config.mode {
        SandboxMode::Unsafe => probe_unsafe(config, runner, "sandbox turned off".into()).await,
        SandboxMode::Required => probe_sandbox(config, runner).await,
        SandboxMode::UnsafeFallback => {
            let iso = probe_sandbox(config, runner).await;
            match &iso.error {
                None => iso,
                Some(e) => {
                    probe_unsafe(
                        config,
                        runner,
                        format!("--unsafe-code-exec-without-sandbox; {e}"),
                    )
                    .await
                }
            }
        }
    }
}
