//! A private nats-server process with JetStream: `vigil run`'s embedded mode
//! (and every history command without `--nats`), every test that touches
//! NATS (through `vigil_testkit::nats_server`, which re-exports this module)
//! and the benchmarks.
//!
//! The server is started with `-js -sd <store>` on loopback. Its log goes to
//! stderr, which a background task drains (a full pipe would stall the server)
//! into a bounded tail that error messages quote. The child is killed when the
//! [`NatsServer`] is dropped, also while a panicking test unwinds.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// The nats-server release scripts/setup.sh installs.
pub const PINNED_VERSION: &str = "2.15.1";

/// How long [`NatsServer::start`] waits for the client port.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`NatsServer::stop`] waits after SIGTERM before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Log lines kept for error messages.
const TAIL_LINES: usize = 40;

/// Starting, finding or checking a nats-server failed.
#[derive(Debug, thiserror::Error)]
pub enum NatsServerError {
    /// No nats-server binary in any of the usual places.
    #[error(
        "nats-server not found; looked at: {}. Run `scripts/setup.sh` (installs it into \
         $VIGIL_HOME/bin) or set VIGIL_NATS_SERVER to the binary's path",
        looked.join(", ")
    )]
    NotFound {
        /// The places looked at, in order, each with why it did not fit.
        looked: Vec<String>,
    },
    /// `nats-server --version` ([`server_version`]) could not be run or said
    /// nothing readable, or a started server's INFO greeting names no version.
    #[error("cannot read the version of {}: {reason}", binary.display())]
    Version {
        /// The binary.
        binary: PathBuf,
        /// Why.
        reason: String,
    },
    /// The binary is older than vigil supports.
    #[error("{} is nats-server {version}: {source}", binary.display())]
    TooOld {
        /// The binary.
        binary: PathBuf,
        /// The version it reported.
        version: String,
        /// The protocol crate's verdict.
        source: crate::topology::TopologyError,
    },
    /// The process could not be spawned.
    #[error("cannot start {}: {source}", binary.display())]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The store directory could not be made.
    #[error("cannot create the JetStream store directory: {0}")]
    StoreDir(std::io::Error),
    /// The server exited before it accepted connections.
    #[error("{} exited during startup ({status}); its log ends with:\n{tail}", binary.display())]
    Exited {
        /// The binary.
        binary: PathBuf,
        /// Its exit status.
        status: String,
        /// The last lines of its log.
        tail: String,
    },
    /// The server did not accept connections in time.
    #[error(
        "{} did not accept client connections within {}s; its log ends with:\n{tail}",
        binary.display(),
        timeout.as_secs()
    )]
    Timeout {
        /// The binary.
        binary: PathBuf,
        /// How long it was given.
        timeout: Duration,
        /// The last lines of its log.
        tail: String,
    },
}

/// `$VIGIL_HOME`, defaulting to `$HOME/.vigil`; `None` when neither is set.
///
/// ```
/// let _home = vigil_nats::server::vigil_home();
/// ```
pub fn vigil_home() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("VIGIL_HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(h));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".vigil"))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Finds the nats-server binary: `$VIGIL_NATS_SERVER`, then
/// `$VIGIL_HOME/bin/nats-server` (where scripts/setup.sh installs it), then `PATH`.
///
/// A set but wrong `VIGIL_NATS_SERVER` is an error rather than a silent
/// fallback, so a test never runs against a server its author did not pick.
///
/// ```no_run
/// let bin = vigil_nats::server::find_nats_server()?;
/// println!("using {}", bin.display());
/// # Ok::<(), vigil_nats::server::NatsServerError>(())
/// ```
pub fn find_nats_server() -> Result<PathBuf, NatsServerError> {
    let mut looked = Vec::new();
    if let Some(p) = std::env::var_os("VIGIL_NATS_SERVER").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if is_executable(&p) {
            return Ok(p);
        }
        looked.push(format!(
            "VIGIL_NATS_SERVER={} (not an executable file)",
            p.display()
        ));
        return Err(NatsServerError::NotFound { looked });
    }
    looked.push("VIGIL_NATS_SERVER (unset)".to_string());
    match vigil_home() {
        Some(home) => {
            let p = home.join("bin").join("nats-server");
            if is_executable(&p) {
                return Ok(p);
            }
            looked.push(p.display().to_string());
        }
        None => looked
            .push("$VIGIL_HOME/bin/nats-server (neither VIGIL_HOME nor HOME is set)".to_string()),
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join("nats-server");
        if is_executable(&p) {
            return Ok(p);
        }
    }
    looked.push("every directory on PATH".to_string());
    Err(NatsServerError::NotFound { looked })
}

/// Runs `nats-server --version` and returns the version, e.g. `"2.15.1"`.
///
/// ```no_run
/// let bin = vigil_nats::server::find_nats_server()?;
/// let v = vigil_nats::server::server_version(&bin)?;
/// assert!(v.starts_with('2'));
/// # Ok::<(), vigil_nats::server::NatsServerError>(())
/// ```
pub fn server_version(binary: &Path) -> Result<String, NatsServerError> {
    let verr = |reason: String| NatsServerError::Version {
        binary: binary.to_path_buf(),
        reason,
    };
    let out = std::process::Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| verr(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // The output is "nats-server: v2.15.1".
    let version = text
        .rsplit(['v', ' '])
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if !out.status.success() || crate::topology::parse_version(&version).is_none() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(verr(format!(
            "`--version` gave {:?} ({}) {}",
            text,
            out.status,
            stderr.trim()
        )));
    }
    Ok(version)
}

/// Checks that `binary` is nats-server 2.10 or newer; returns its version.
pub fn check_server_binary(binary: &Path) -> Result<String, NatsServerError> {
    let version = server_version(binary)?;
    crate::topology::check_version(&version).map_err(|source| NatsServerError::TooOld {
        binary: binary.to_path_buf(),
        version: version.clone(),
        source,
    })?;
    Ok(version)
}

/// How to start a [`NatsServer`]; `Default` is a random port on 127.0.0.1 with a
/// temporary store.
///
/// ```
/// let cfg = vigil_nats::server::NatsServerConfig { monitor_port: Some(0), ..Default::default() };
/// assert_eq!(cfg.host, "127.0.0.1");
/// ```
#[derive(Debug, Clone)]
pub struct NatsServerConfig {
    /// The binary; `None` uses [`find_nats_server`].
    pub binary: Option<PathBuf>,
    /// The JetStream store; `None` makes a temporary one, removed on drop.
    pub store_dir: Option<PathBuf>,
    /// The address to listen on.
    pub host: String,
    /// The client port; `None` picks a free one.
    pub port: Option<u16>,
    /// The HTTP monitoring port: `None` is off, `Some(0)` a free one.
    pub monitor_port: Option<u16>,
    /// A nats-server config file (`-c`); the flags above override it.
    pub config_file: Option<PathBuf>,
    /// More command-line arguments, passed last.
    pub extra_args: Vec<String>,
}

impl Default for NatsServerConfig {
    fn default() -> Self {
        NatsServerConfig {
            binary: None,
            store_dir: None,
            host: "127.0.0.1".to_string(),
            port: None,
            monitor_port: None,
            config_file: None,
            extra_args: Vec::new(),
        }
    }
}

/// What the log reader learned from the server's stderr.
#[derive(Debug, Clone, Default)]
struct Seen {
    client: Option<u16>,
    monitor: Option<u16>,
}

type Tail = Arc<Mutex<VecDeque<String>>>;

/// A running (or stopped) private nats-server with JetStream.
///
/// ```no_run
/// # async fn demo() -> Result<(), vigil_nats::server::NatsServerError> {
/// use vigil_nats::server::{NatsServer, NatsServerConfig};
/// let mut server = NatsServer::start(NatsServerConfig::default()).await?;
/// let url = server.url(); // nats://127.0.0.1:PORT
/// server.restart().await?; // same port, same store
/// server.stop().await;
/// # let _ = url; Ok(()) }
/// ```
#[derive(Debug)]
pub struct NatsServer {
    // Field order matters: the child is killed (Drop below) before the temp
    // store is removed.
    child: Option<Child>,
    binary: PathBuf,
    cfg: NatsServerConfig,
    store: PathBuf,
    port: u16,
    monitor_port: Option<u16>,
    tail: Tail,
    _temp_store: Option<tempfile::TempDir>,
}

impl NatsServer {
    /// Starts a server and waits (up to [`START_TIMEOUT`]) until its client port
    /// accepts connections; a server older than 2.10 (by the version its
    /// INFO greeting names) is stopped and refused ([`NatsServerError::TooOld`]).
    pub async fn start(cfg: NatsServerConfig) -> Result<NatsServer, NatsServerError> {
        let binary = match &cfg.binary {
            Some(b) => b.clone(),
            None => find_nats_server()?,
        };
        // The version is not asked with `--version` (a second process
        // start): the server says it in the INFO line every client gets,
        // read when its port is probed (see `launch_once`).
        let (store, temp) = match &cfg.store_dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(NatsServerError::StoreDir)?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("vigil-nats-")
                    .tempdir()
                    .map_err(NatsServerError::StoreDir)?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let mut server = NatsServer {
            child: None,
            binary,
            port: cfg.port.unwrap_or(0),
            monitor_port: cfg.monitor_port,
            cfg,
            store,
            tail: Arc::new(Mutex::new(VecDeque::new())),
            _temp_store: temp,
        };
        server.launch().await?;
        Ok(server)
    }

    /// Spawns the process with the current port settings and waits for it.
    async fn launch(&mut self) -> Result<(), NatsServerError> {
        // A fixed port (restart, or asked for) can be briefly taken by someone
        // else; a random one (`-p -1`, chosen by the server) cannot race.
        let mut last_err = None;
        for attempt in 0..5 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            match self.launch_once().await {
                Ok(()) => return Ok(()),
                Err(e @ NatsServerError::Exited { .. }) if self.port != 0 && port_in_use(&e) => {
                    last_err = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    async fn launch_once(&mut self) -> Result<(), NatsServerError> {
        let port_arg = if self.port == 0 {
            "-1".to_string()
        } else {
            self.port.to_string()
        };
        let mut cmd = Command::new(&self.binary);
        if let Some(c) = &self.cfg.config_file {
            cmd.arg("-c").arg(c);
        }
        cmd.arg("-js")
            .arg("-sd")
            .arg(&self.store)
            .arg("-a")
            .arg(&self.cfg.host)
            .arg("-p")
            .arg(&port_arg);
        if let Some(m) = self.monitor_port {
            let m = if m == 0 {
                "-1".to_string()
            } else {
                m.to_string()
            };
            cmd.arg("-m").arg(m);
        }
        cmd.args(&self.cfg.extra_args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| NatsServerError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        self.tail.lock().expect("tail lock").clear();
        let stderr = child.stderr.take().expect("stderr is piped");
        let (seen_tx, mut seen_rx) = watch::channel(Seen::default());
        tokio::spawn(read_log(stderr, self.tail.clone(), seen_tx));
        self.child = Some(child);

        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let want_monitor = self.monitor_port.is_some();
        loop {
            let seen = seen_rx.borrow_and_update().clone();
            if let Some(port) = seen.client
                && (!want_monitor || seen.monitor.is_some())
            {
                // The log line comes right after listen(); make sure, and
                // read the version from the INFO line the server greets
                // every connection with.
                let addr = format!("{}:{}", connect_host(&self.cfg.host), port);
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if let Ok(Ok(Some(info))) = tokio::time::timeout(left, read_info_line(&addr)).await
                {
                    if let Err(e) = self.check_info(&info) {
                        self.kill();
                        return Err(e);
                    }
                    self.port = port;
                    if want_monitor {
                        self.monitor_port = seen.monitor;
                    }
                    return Ok(());
                }
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                // Let the reader catch the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.child = None;
                return Err(NatsServerError::Exited {
                    binary: self.binary.clone(),
                    status: describe(status),
                    tail: self.log_tail(),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                self.kill();
                return Err(NatsServerError::Timeout {
                    binary: self.binary.clone(),
                    timeout: START_TIMEOUT,
                    tail: self.log_tail(),
                });
            }
            // Wake on a new log line, or poll for exit every 50 ms.
            let _ = tokio::time::timeout(Duration::from_millis(50), seen_rx.changed()).await;
        }
    }

    /// Checks the version in the server's INFO line (JSON after `INFO `)
    /// against [`crate::topology::MIN_SERVER_VERSION`].
    fn check_info(&self, info: &str) -> Result<(), NatsServerError> {
        let version = serde_json::from_str::<async_nats::ServerInfo>(info)
            .map(|i| i.version)
            .unwrap_or_default();
        if crate::topology::parse_version(&version).is_none() {
            return Err(NatsServerError::Version {
                binary: self.binary.clone(),
                reason: format!("its INFO line names no version: {info:.200}"),
            });
        }
        crate::topology::check_version(&version).map_err(|source| NatsServerError::TooOld {
            binary: self.binary.clone(),
            version,
            source,
        })
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}:{}", connect_host(&self.cfg.host), self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The client address.
    pub fn addr(&self) -> SocketAddr {
        let host = connect_host(&self.cfg.host)
            .parse()
            .unwrap_or([127, 0, 0, 1].into());
        SocketAddr::new(host, self.port)
    }

    /// The HTTP monitoring URL (`http://127.0.0.1:PORT`), if monitoring is on.
    pub fn monitor_url(&self) -> Option<String> {
        self.monitor_port
            .map(|p| format!("http://{}:{}", connect_host(&self.cfg.host), p))
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        &self.store
    }

    /// The binary in use.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The last lines of the server's log (stderr).
    pub fn log_tail(&self) -> String {
        let tail = self.tail.lock().expect("tail lock");
        tail.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops the server gracefully (SIGTERM, so JetStream flushes its store) and
    /// waits for it; after [`STOP_TIMEOUT`] it is killed.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            // `kill` keeps this crate free of unsafe signal calls.
            let sent = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .map(|s| s.success())
                .unwrap_or(false);
            if sent
                && tokio::time::timeout(STOP_TIMEOUT, child.wait())
                    .await
                    .is_ok()
            {
                return;
            }
            tracing::warn!(pid, "nats-server did not stop on SIGTERM; killing it");
        }
        let _ = child.kill().await;
    }

    /// Kills the server at once (SIGKILL), as a crash would. Does not wait.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            // Reap it in the background so no zombie is left behind.
            if tokio::runtime::Handle::try_current().is_ok() {
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
            }
        }
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub async fn kill_and_wait(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Stops the server if it runs and starts it again on the same port, with
    /// the same store directory (and the same monitoring port).
    pub async fn restart(&mut self) -> Result<(), NatsServerError> {
        self.stop().await;
        self.launch().await
    }

    /// Starts the server again after [`stop`](Self::stop) or [`kill`](Self::kill),
    /// on the same port and store; does nothing if it runs.
    pub async fn start_again(&mut self) -> Result<(), NatsServerError> {
        if self.is_running() {
            return Ok(());
        }
        self.kill_and_wait().await;
        self.launch().await
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// The address to dial for a listen address (`0.0.0.0` is not dialable everywhere).
fn connect_host(host: &str) -> &str {
    match host {
        "0.0.0.0" | "" => "127.0.0.1",
        "::" | "[::]" => "::1",
        h => h,
    }
}

fn describe(status: ExitStatus) -> String {
    status.to_string()
}

fn port_in_use(e: &NatsServerError) -> bool {
    match e {
        NatsServerError::Exited { tail, .. } => tail.contains("address already in use"),
        _ => false,
    }
}

/// Connects to `addr` and reads the server's greeting, `INFO {json}`;
/// returns the JSON, or `None` when the greeting is not one (at most 64 KiB
/// are read). Errors are the connection's.
async fn read_info_line(addr: &str) -> std::io::Result<Option<String>> {
    use tokio::io::AsyncReadExt;
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let mut line = Vec::new();
    BufReader::new(stream.take(64 << 10))
        .read_until(b'\n', &mut line)
        .await?;
    let line = String::from_utf8_lossy(&line);
    Ok(line
        .trim_end()
        .strip_prefix("INFO ")
        .map(|json| json.trim().to_string()))
}

/// The port at the end of a log line like
/// `... Listening for client connections on 127.0.0.1:4222`.
fn port_after(line: &str, marker: &str) -> Option<u16> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.trim().rsplit(':').next()?.trim().parse().ok()
}

async fn read_log(stderr: tokio::process::ChildStderr, tail: Tail, seen: watch::Sender<Seen>) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(p) = port_after(&line, "Listening for client connections on") {
            seen.send_modify(|s| s.client = Some(p));
        }
        if let Some(p) = port_after(&line, "Starting http monitor on") {
            seen.send_modify(|s| s.monitor = Some(p));
        }
        let mut t = tail.lock().expect("tail lock");
        if t.len() == TAIL_LINES {
            t.pop_front();
        }
        t.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_log_ports() {
        let l = "[123] 2026/11/26 22:40:00.000000 [INF] Listening for client connections on 127.0.0.1:41234";
        assert_eq!(
            port_after(l, "Listening for client connections on"),
            Some(41234)
        );
        let m = "[1] [INF] Starting http monitor on 127.0.0.1:8222";
        assert_eq!(port_after(m, "Starting http monitor on"), Some(8222));
        assert_eq!(
            port_after("[INF] Server is ready", "Starting http monitor on"),
            None
        );
    }

    #[test]
    fn dial_host() {
        assert_eq!(connect_host("0.0.0.0"), "127.0.0.1");
        assert_eq!(connect_host("127.0.0.2"), "127.0.0.2");
    }
}
