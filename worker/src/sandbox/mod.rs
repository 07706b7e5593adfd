//! A sandbox for running untrusted programs (the `code_exec` scorer).
//!
//! Each run gets its own directory, an empty environment (nothing of the
//! worker's, so no API keys), resource limits and, where the host allows it,
//! its own network, PID and mount namespaces. The workspace forbids unsafe
//! code, so nothing is set up in the child with `pre_exec`: the run is a
//! chain of well-known util-linux wrappers, each of which execs the next.
//!
//! ```text
//! unshare --net --pid --fork --kill-child --mount --mount-proc [--user --map-root-user]
//!   sh -c INIT          (root read-only, private tmpfs on /tmp /var/tmp /dev/shm /run/lock,
//!                        the program copied into /tmp/work)
//!     setpriv --reuid U --regid U --clear-groups --no-new-privs      (only when root)
//!       prlimit --cpu --as --nproc --fsize --nofile --core
//!         python3 -I -B main.py
//! ```
//!
//! - No network: the new network namespace has only a loopback that is down.
//! - Fork bombs: RLIMIT_NPROC counts the processes of a real uid and does not
//!   bind root. A root worker therefore runs each program as an unprivileged
//!   uid of its own (`uid_base + slot`, one per concurrent sandbox), so the
//!   limit binds and counts only that sandbox. A non-root worker's programs
//!   share its uid: the limit is set to the uid's current task count plus the
//!   process limit.
//! - Timeouts and clean-up: on the wall-clock limit the `unshare` process is
//!   killed; `--kill-child` kills the namespace's init, and the kernel kills
//!   every process of a PID namespace whose init dies, so nothing survives
//!   and nothing is left to reap.
//! - Without namespaces (`unshare` missing or refused), the chain starts at
//!   `setpriv`/`prlimit` in a new process group; at the end the group (and,
//!   when root, every process of the sandbox uid) is killed. The network and
//!   /tmp are then not isolated: every score's detail and a warning in the
//!   log say so.
//!
//! Runs are bounded by a semaphore (one per CPU by default) and awaited on
//! tokio's process support, so they never block the worker's runtime.

pub mod limits;
pub mod runner;

use limits::Limits;
use runner::Runner;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::{OnceCell, Semaphore};

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
    /// Use namespaces when the host allows them (tests turn this off to
    /// exercise the fallback).
    pub namespaces: bool,
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
            namespaces: true,
        }
    }
}

/// What isolation the host gives, found once by a probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolation {
    /// Network, PID and mount namespaces (private /tmp, read-only root).
    pub namespaces: bool,
    /// The namespaces sit in a user namespace (the worker is not root).
    pub user_namespace: bool,
    /// Programs run as a per-slot unprivileged uid (the worker is root).
    pub drop_uid: bool,
    /// What is not isolated on this host, when something is not.
    pub note: Option<String>,
    /// Why programs cannot run at all, when they cannot.
    pub error: Option<String>,
    tools: Tools,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Tools {
    sh: PathBuf,
    unshare: Option<PathBuf>,
    setpriv: Option<PathBuf>,
    prlimit: Option<PathBuf>,
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
    /// A random id, in the program's environment as `VIGIL_SANDBOX` (tests
    /// find leftover processes by it).
    pub run_id: String,
    /// What was not isolated, when something was not.
    pub isolation_note: Option<String>,
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

    /// The sandbox every worker of this process shares, so that in-process
    /// workers together run at most one program per CPU and never share a uid.
    pub fn shared() -> Arc<Sandbox> {
        static SHARED: OnceLock<Arc<Sandbox>> = OnceLock::new();
        SHARED
            .get_or_init(|| Arc::new(Sandbox::new(SandboxConfig::default())))
            .clone()
    }

    /// Its configuration.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// The isolation this host gives (probed on first use, then remembered).
    pub async fn isolation(&self) -> &Isolation {
        self.isolation
            .get_or_init(|| async {
                let iso = probe(&self.config).await;
                match (&iso.error, &iso.note) {
                    (Some(e), _) => tracing::error!(error = %e, "code sandbox unavailable"),
                    (None, Some(n)) => tracing::warn!(note = %n, "code sandbox: partial isolation"),
                    (None, None) => tracing::info!(
                        drop_uid = iso.drop_uid,
                        user_namespace = iso.user_namespace,
                        "code sandbox: network, pid and mount namespaces"
                    ),
                }
                iso
            })
            .await
    }

    /// Runs `program` with `runner` under `limits`. Never panics: problems
    /// starting it are a [`Status::Failed`].
    pub async fn run(&self, runner: &dyn Runner, program: &str, limits: &Limits) -> Outcome {
        let iso = self.isolation().await.clone();
        if let Some(e) = &iso.error {
            return Outcome::failed(e.clone(), iso.note.clone());
        }
        let command = match runner.command() {
            Ok(c) => c,
            Err(e) => return Outcome::failed(e, iso.note.clone()),
        };
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
        let dir = match prepare_dir(&self.config.scratch, runner, program, &iso, uid).await {
            Ok(d) => d,
            Err(e) => {
                return Outcome::failed(
                    format!("cannot prepare the sandbox directory: {e}"),
                    iso.note.clone(),
                );
            }
        };
        let outcome = execute(&iso, dir.path(), &command, limits, uid).await;
        // Removing a directory full of files is blocking work.
        let _ = tokio::task::spawn_blocking(move || drop(dir)).await;
        outcome
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

async fn prepare_dir(
    scratch: &Path,
    runner: &dyn Runner,
    program: &str,
    iso: &Isolation,
    uid: u32,
) -> std::io::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("vigil-sandbox-")
        .tempdir_in(scratch)?;
    for (name, text) in runner.files(program) {
        tokio::fs::write(dir.path().join(name), text).await?;
    }
    if iso.drop_uid {
        // Without namespaces the program works in this directory as `uid`.
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid))?;
    }
    Ok(dir)
}

/// The mount set-up inside the namespaces: everything read-only, private
/// size-limited tmpfs where the world may write, the program's files copied
/// into a tmpfs (so the files it writes count against that size, not the
/// worker's disk). `$1..` is the command.
fn init_script(tmpfs_bytes: u64, owner: Option<u32>) -> String {
    let chown = owner
        .map(|u| format!("chown -R {u}:{u} /tmp/work\n"))
        .unwrap_or_default();
    format!(
        "set -e\n\
         mount -o remount,bind,ro /\n\
         for d in /tmp /var/tmp /dev/shm /run/lock; do\n\
           if [ -d \"$d\" ]; then mount -t tmpfs -o size={tmpfs_bytes},mode=1777,nosuid,nodev vigil \"$d\"; fi\n\
         done\n\
         mkdir /tmp/work\n\
         cp -R ./. /tmp/work/\n\
         {chown}cd /tmp/work\n\
         set +e\n\
         \"$@\"\n\
         exit $?\n"
    )
}

fn env_for(cmd: &mut tokio::process::Command, home: &str, run_id: &str) {
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home)
        .env("TMPDIR", "/tmp")
        .env("LANG", "C.UTF-8")
        .env("VIGIL_SANDBOX", run_id);
}

/// The `setpriv … prlimit … command` part of the chain.
fn inner_argv(
    iso: &Isolation,
    command: &[String],
    limits: &Limits,
    uid: u32,
) -> Result<Vec<String>, String> {
    let mut argv = Vec::new();
    if iso.drop_uid {
        let setpriv = iso.tools.setpriv.as_ref().ok_or("setpriv missing")?;
        argv.extend([
            setpriv.to_string_lossy().into_owned(),
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
            "--no-new-privs".into(),
            "--".into(),
        ]);
    }
    let prlimit = iso.tools.prlimit.as_ref().ok_or("prlimit missing")?;
    let nproc = if iso.drop_uid {
        u64::from(limits.processes)
    } else {
        // Shared uid: the limit counts the worker's own tasks too.
        tasks_of_uid(current_uid()) + u64::from(limits.processes)
    };
    argv.push(prlimit.to_string_lossy().into_owned());
    argv.extend(limits.prlimit_args(nproc));
    argv.push("--".into());
    argv.extend(command.iter().cloned());
    Ok(argv)
}

fn build_command(
    iso: &Isolation,
    dir: &Path,
    command: &[String],
    limits: &Limits,
    uid: u32,
    run_id: &str,
) -> Result<tokio::process::Command, String> {
    let inner = inner_argv(iso, command, limits, uid)?;
    let mut cmd = if iso.namespaces {
        let unshare = iso.tools.unshare.as_ref().ok_or("unshare missing")?;
        let mut cmd = tokio::process::Command::new(unshare);
        if iso.user_namespace {
            cmd.args(["--user", "--map-root-user"]);
        }
        cmd.args([
            "--net",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount",
            "--mount-proc",
            "--",
        ]);
        cmd.arg(&iso.tools.sh)
            .arg("-c")
            .arg(init_script(limits.file_bytes, iso.drop_uid.then_some(uid)))
            .arg("vigil-sandbox")
            .args(&inner);
        env_for(&mut cmd, "/tmp/work", run_id);
        cmd
    } else {
        let mut cmd = tokio::process::Command::new(&inner[0]);
        cmd.args(&inner[1..]);
        env_for(&mut cmd, &dir.to_string_lossy(), run_id);
        cmd.process_group(0);
        cmd
    };
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(cmd)
}

async fn execute(
    iso: &Isolation,
    dir: &Path,
    command: &[String],
    limits: &Limits,
    uid: u32,
) -> Outcome {
    let run_id = hex::encode(rand::random::<[u8; 8]>());
    let note = iso.note.clone();
    let mut cmd = match build_command(iso, dir, command, limits, uid, &run_id) {
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
                // The init shell reports a signal as 128 + n.
                if iso.namespaces && code > 128 && code < 128 + 65 {
                    Status::Signaled(code - 128)
                } else {
                    Status::Exited(code)
                }
            }
        }
        Ok(Err(e)) => Status::Failed(format!("waiting for the sandbox failed: {e}")),
        Err(_) => {
            // Namespaces: killing unshare kills the namespace's init, and
            // with it every process in the namespace.
            let _ = child.start_kill();
            let _ = child.wait().await;
            Status::TimedOut
        }
    };
    if !iso.namespaces {
        kill_leftovers(iso, pid, uid).await;
    }
    let elapsed = started.elapsed();
    let collect = |h: tokio::task::JoinHandle<String>| async move {
        match tokio::time::timeout(Duration::from_secs(2), h).await {
            Ok(Ok(s)) => s,
            _ => String::new(),
        }
    };
    Outcome {
        status,
        stdout: collect(stdout).await,
        stderr: collect(stderr).await,
        elapsed,
        run_id,
        isolation_note: note,
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

/// Finds the tools and tries the full chain once with `true`.
async fn probe(config: &SandboxConfig) -> Isolation {
    let root = current_uid() == 0;
    let tools = Tools {
        sh: which("sh").unwrap_or_else(|| PathBuf::from("/bin/sh")),
        unshare: which("unshare"),
        setpriv: which("setpriv"),
        prlimit: which("prlimit"),
    };
    let mut iso = Isolation {
        namespaces: false,
        user_namespace: !root,
        drop_uid: root,
        note: None,
        error: None,
        tools,
    };
    if iso.tools.prlimit.is_none() {
        iso.error = Some("prlimit (util-linux) not found: programs cannot run with limits".into());
        return iso;
    }
    if root && iso.tools.setpriv.is_none() {
        iso.error = Some("the worker is root and setpriv (util-linux) is missing: programs would run as root without a process limit".into());
        return iso;
    }
    let Some(truth) = which("true") else {
        iso.error = Some("`true` not found".into());
        return iso;
    };
    let limits = config.defaults.clone();
    let uid = config.uid_base;
    let try_chain = |iso: &Isolation| {
        let iso = iso.clone();
        let truth = truth.clone();
        let limits = limits.clone();
        let scratch = config.scratch.clone();
        async move {
            let dir = tempfile::Builder::new()
                .prefix("vigil-sandbox-probe-")
                .tempdir_in(&scratch)
                .map_err(|e| format!("cannot create a directory in {}: {e}", scratch.display()))?;
            if iso.drop_uid {
                std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid))
                    .map_err(|e| format!("cannot chown to uid {uid}: {e}"))?;
            }
            let command = [truth.to_string_lossy().into_owned()];
            let out = execute(&iso, dir.path(), &command, &limits, uid).await;
            if out.success() {
                Ok(())
            } else {
                Err(format!("{:?}: {}", out.status, out.stderr.trim()))
            }
        }
    };
    if config.namespaces && iso.tools.unshare.is_some() {
        let mut with_ns = iso.clone();
        with_ns.namespaces = true;
        match try_chain(&with_ns).await {
            Ok(()) => return with_ns,
            Err(e) => {
                iso.note = Some(format!(
                    "no network isolation and shared /tmp: namespaces unavailable ({})",
                    crate::scorers::short(&e, 120)
                ));
            }
        }
    } else {
        iso.note = Some(if config.namespaces {
            "no network isolation and shared /tmp: unshare (util-linux) not found".into()
        } else {
            "no network isolation and shared /tmp: namespaces turned off".into()
        });
    }
    if let Err(e) = try_chain(&iso).await {
        iso.error = Some(format!("the sandbox does not start: {e}"));
    }
    iso
}
