//! `external`: a custom scorer in any language, run as a long-lived child
//! process that speaks JSON lines.
//!
//! Per item the worker writes one line to the process's stdin:
//!
//! ```json
//! {"id": "q7", "index": 6, "scorer": "tone", "output": "...", "reference": "..." | null,
//!  "prompt": "...", "samples": ["..."], "tags": {"lang": "en"}}
//! ```
//!
//! and reads one line from its stdout:
//!
//! ```json
//! {"value": 0.8, "passed": true, "detail": "polite"}      or      {"error": "why not"}
//! ```
//!
//! `value` is in [0, 1]; `passed` and `detail` are optional. The process is
//! started once per worker and command (on first use) and answers one item
//! at a time; stderr is for its logs. An item that gets no answer within the
//! timeout, a process that exits, or an answer that is not such a JSON line
//! fails that item's score with the reason, and the process is killed (with
//! its process group) and started again for the next item.
//!
//! A job is data, never authority: the worker runs a command only when the
//! whole command (program and arguments) equals one its own configuration
//! allows (`--allow-scorer-command`), and runs it with a scrubbed
//! environment, so its API keys never reach the process.

use super::io_env::{IoEnv, IoStats};
use super::{Common, IoScorer, MAX_DETAIL, ScoreInput, ScoreOutcome, ScorerError, quote};
use crate::text::short;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use vigil_protocol::scorers::io::ExternalParams;
use vigil_protocol::{Score, ScorerSpec};

/// The pass mark when neither the suite nor the process says.
pub const DEFAULT_THRESHOLD: f64 = 0.5;
/// Longest answer line read, bytes.
const MAX_LINE: u64 = 1 << 20;
/// Lines of a process's stderr kept to explain its exit.
const STDERR_TAIL: usize = 5;
/// Environment variables a scorer process keeps; everything else (API keys,
/// NATS credentials) is removed.
const KEPT_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
];

/// The external commands a worker may run, each an exact argument vector.
///
/// ```
/// use vigil_worker::scorers::external::AllowedCommands;
/// let allowed = AllowedCommands::parse(["python3 /opt/scorers/tone.py --strict"]).unwrap();
/// let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
/// assert!(allowed.allows(&argv("python3 /opt/scorers/tone.py --strict")));
/// assert!(!allowed.allows(&argv("python3 /opt/scorers/tone.py")));
/// assert!(!allowed.allows(&argv("python3 -c print(1)")));
/// ```
#[derive(Debug, Clone, Default)]
pub struct AllowedCommands(Vec<Vec<String>>);

/// An `--allow-scorer-command` entry could not be read.
#[derive(Debug, thiserror::Error)]
#[error("--allow-scorer-command {0:?}: expected a command line (shell quoting allowed)")]
pub struct CommandError(pub String);

impl AllowedCommands {
    /// Parses command lines, split into words the way a POSIX shell would
    /// (quotes and backslashes), without expanding anything.
    pub fn parse<I, S>(entries: I) -> Result<AllowedCommands, CommandError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = AllowedCommands::default();
        for entry in entries {
            let entry = entry.as_ref();
            if entry.trim().is_empty() {
                continue;
            }
            match shlex::split(entry) {
                Some(words) if !words.is_empty() => list.push(words),
                _ => return Err(CommandError(entry.to_string())),
            }
        }
        Ok(list)
    }

    /// Allows one command.
    pub fn push(&mut self, argv: Vec<String>) {
        if !self.0.contains(&argv) {
            self.0.push(argv);
        }
    }

    /// Whether `argv` is exactly an allowed command.
    pub fn allows(&self, argv: &[String]) -> bool {
        self.0.iter().any(|a| a == argv)
    }

    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The allowed commands as shell lines, for logs.
    pub fn lines(&self) -> Vec<String> {
        self.0.iter().map(|a| shell_line(a)).collect()
    }
}

/// A command as one shell line.
fn shell_line(argv: &[String]) -> String {
    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "))
}

/// The long-lived processes of a worker, one per command.
pub struct Processes {
    map: Mutex<HashMap<Vec<String>, Arc<Process>>>,
    stats: Arc<IoStats>,
}

impl Processes {
    /// No processes yet.
    pub(crate) fn new(stats: Arc<IoStats>) -> Self {
        Processes {
            map: Mutex::new(HashMap::new()),
            stats,
        }
    }

    /// The process of `argv` (started on its first request).
    fn get(&self, argv: &[String]) -> Arc<Process> {
        let mut map = self.map.lock().expect("processes lock");
        map.entry(argv.to_vec())
            .or_insert_with(|| {
                Arc::new(Process {
                    argv: argv.to_vec(),
                    state: tokio::sync::Mutex::new(None),
                    stats: self.stats.clone(),
                })
            })
            .clone()
    }
}

/// One command's process, restarted after a failure.
struct Process {
    argv: Vec<String>,
    state: tokio::sync::Mutex<Option<Running>>,
    stats: Arc<IoStats>,
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    stderr_task: tokio::task::JoinHandle<()>,
}

/// Why an exchange with the process ended without an answer.
enum Broken {
    /// Stdin or stdout closed: the process exited.
    Closed,
    /// The answer line is longer than [`MAX_LINE`].
    TooLong,
}

impl Process {
    fn spawn(&self) -> Result<Running, String> {
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .env_clear()
            .envs(
                KEPT_ENV
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
            )
            .env("VIGIL_SCORER", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Its own process group, so a timeout kills what it started too.
        #[cfg(unix)]
        cmd.process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{}`: {e}", shell_line(&self.argv)))?;
        self.stats.process_starts.fetch_add(1, Ordering::Relaxed);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("the process has no pipes".into());
        };
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        let stderr_task = {
            let tail = tail.clone();
            let command = shell_line(&self.argv);
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(command = %command, "external scorer: {line}");
                    let mut tail = tail.lock().expect("stderr lock");
                    if tail.len() == STDERR_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            })
        };
        tracing::info!(command = %shell_line(&self.argv), pid = child.id(), "external scorer started");
        Ok(Running {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            stderr: tail,
            stderr_task,
        })
    }

    /// Sends one request line and reads one answer line, within `timeout`.
    async fn request(&self, line: &str, timeout: Duration) -> Result<String, String> {
        let mut state = self.state.lock().await;
        if state.is_none() {
            *state = Some(self.spawn()?);
        }
        let running = state.as_mut().expect("just started");
        let exchange = async {
            running
                .stdin
                .write_all(line.as_bytes())
                .await
                .map_err(|_| Broken::Closed)?;
            running
                .stdin
                .write_all(b"\n")
                .await
                .map_err(|_| Broken::Closed)?;
            running.stdin.flush().await.map_err(|_| Broken::Closed)?;
            let mut answer = Vec::new();
            let n = (&mut running.stdout)
                .take(MAX_LINE)
                .read_until(b'\n', &mut answer)
                .await
                .map_err(|_| Broken::Closed)?;
            if n == 0 {
                return Err(Broken::Closed);
            }
            if !answer.ends_with(b"\n") {
                return Err(if n as u64 >= MAX_LINE {
                    Broken::TooLong
                } else {
                    Broken::Closed
                });
            }
            Ok(String::from_utf8_lossy(&answer).trim().to_string())
        };
        let outcome = tokio::time::timeout(timeout, exchange).await;
        let reason = match outcome {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(Broken::Closed)) => {
                let running = state.take().expect("running");
                let (status, stderr) = finish(running, false).await;
                format!(
                    "the scorer process exited ({status}){stderr}; it restarts for the next item"
                )
            }
            Ok(Err(Broken::TooLong)) => {
                let running = state.take().expect("running");
                finish(running, true).await;
                format!("answer line longer than {MAX_LINE} bytes; the process was restarted")
            }
            Err(_) => {
                let running = state.take().expect("running");
                finish(running, true).await;
                format!(
                    "no answer within {} ms; the process was killed and restarts for the next item",
                    timeout.as_millis()
                )
            }
        };
        tracing::warn!(command = %shell_line(&self.argv), %reason, "external scorer failed");
        Err(reason)
    }

    /// Whether the process is running now (for tests).
    #[cfg(test)]
    async fn running(&self) -> bool {
        self.state.lock().await.is_some()
    }
}

/// Ends a process (killing it and its group when `kill`), and says how it
/// ended and what it last wrote to stderr.
async fn finish(mut running: Running, kill: bool) -> (String, String) {
    if kill {
        #[cfg(unix)]
        if let Some(pid) = running.child.id() {
            // The whole group: a shell script's children die with it.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
        }
        let _ = running.child.start_kill();
    }
    drop(running.stdin);
    let status = match tokio::time::timeout(Duration::from_secs(5), running.child.wait()).await {
        Ok(Ok(status)) => status.to_string(),
        Ok(Err(e)) => format!("unknown status: {e}"),
        Err(_) => {
            let _ = running.child.start_kill();
            "still running; killed".to_string()
        }
    };
    // The stderr reader ends at EOF; a grandchild holding the pipe must not stall us.
    let _ = tokio::time::timeout(Duration::from_secs(1), &mut running.stderr_task).await;
    running.stderr_task.abort();
    let tail: Vec<String> = running
        .stderr
        .lock()
        .expect("stderr lock")
        .iter()
        .cloned()
        .collect();
    let stderr = if tail.is_empty() {
        String::new()
    } else {
        format!(", stderr: {}", tail.join(" | "))
    };
    (status, stderr)
}

/// The `external` scorer of one job.
pub struct External {
    common: Common,
    timeout: Duration,
    process: Arc<Process>,
}

/// Builds an `external` scorer: the command must be one the worker allows.
pub fn build(
    spec: &ScorerSpec,
    params: &ExternalParams,
    env: &IoEnv,
) -> Result<External, ScorerError> {
    super::validated(spec)?;
    if !env.commands().allows(&params.command) {
        let line = shell_line(&params.command);
        return Err(ScorerError::NotAllowed {
            scorer: spec.name.clone(),
            message: format!(
                "command `{line}` is not allowed by this worker (start it with --allow-scorer-command {})",
                shlex::try_quote(&line)
                    .map(|q| q.into_owned())
                    .unwrap_or(line.clone())
            ),
        });
    }
    let timeout = match params.timeout_ms {
        0 => ExternalParams::default().timeout_ms,
        ms => ms,
    };
    Ok(External {
        common: Common {
            name: spec.name.clone(),
            threshold: spec.threshold,
        },
        timeout: Duration::from_millis(timeout),
        process: env.processes().get(&params.command),
    })
}

impl External {
    fn score_of(&self, value: f64, passed: bool, detail: String) -> Score {
        Score {
            scorer: self.common.name.clone(),
            value,
            passed,
            detail: short(&detail, MAX_DETAIL),
            ..Default::default()
        }
    }

    fn fail(&self, reason: impl Into<String>) -> ScoreOutcome {
        Err(self.common.failed(reason))
    }

    /// Reads an answer line into a score; an answer with an `error`, or one
    /// that is not a score, is a [`super::ScoreFailure`].
    fn read(&self, answer: &str) -> ScoreOutcome {
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(answer) else {
            return self.fail(format!("answer is not a JSON object: {}", quote(answer)));
        };
        if let Some(error) = map.get("error").filter(|e| !e.is_null()) {
            let error = error
                .as_str()
                .map_or_else(|| error.to_string(), str::to_string);
            return self.fail(format!("the scorer failed: {error}"));
        }
        let Some(value) = map.get("value").and_then(Value::as_f64) else {
            return self.fail(format!("answer has no numeric `value`: {}", quote(answer)));
        };
        if !(0.0..=1.0).contains(&value) {
            return self.fail(format!("value {value} is outside [0, 1]"));
        }
        let detail = map
            .get("detail")
            .map(|d| d.as_str().map_or_else(|| d.to_string(), str::to_string))
            .unwrap_or_default();
        // The suite's threshold decides when set; else the process; else 0.5.
        let passed = match (
            self.common.threshold,
            map.get("passed").and_then(Value::as_bool),
        ) {
            (Some(t), _) => value >= t,
            (None, Some(p)) => p,
            (None, None) => value >= DEFAULT_THRESHOLD,
        };
        Ok(self.score_of(value, passed, detail))
    }
}

impl IoScorer for External {
    fn name(&self) -> &str {
        &self.common.name
    }

    fn score<'a>(&'a self, input: ScoreInput<'a>) -> BoxFuture<'a, ScoreOutcome> {
        Box::pin(async move {
            let request = json!({
                "id": input.item.id,
                "index": input.item.index,
                "scorer": self.common.name,
                "output": input.output,
                "reference": input.reference,
                "prompt": super::llm_judge::prompt_text(&input.item.prompt),
                "samples": input.samples,
                "tags": input.item.tags,
            });
            match self
                .process
                .request(&request.to_string(), self.timeout)
                .await
            {
                Ok(answer) => self.read(&answer),
                Err(reason) => self.fail(reason),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::ErrorKind;

    fn process(script: &str) -> (Arc<Process>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scorer.py");
        std::fs::write(&path, script).unwrap();
        let stats = Arc::new(IoStats::default());
        let processes = Processes::new(stats);
        let argv = vec!["python3".to_string(), path.to_string_lossy().into_owned()];
        (processes.get(&argv), dir)
    }

    const ECHO: &str = r#"
import json, sys, time, os
for line in sys.stdin:
    req = json.loads(line)
    out = req["output"]
    if out == "hang":
        time.sleep(3600)
    if out == "crash":
        print("dying", file=sys.stderr, flush=True)
        sys.exit(3)
    if out == "env":
        print(json.dumps({"value": 1.0, "detail": ",".join(sorted(os.environ))}), flush=True)
        continue
    print(json.dumps({"value": 1.0 if out == req["reference"] else 0.0, "detail": "pid %d" % os.getpid()}), flush=True)
"#;

    fn line(output: &str) -> String {
        json!({"output": output, "reference": "a"}).to_string()
    }

    #[tokio::test]
    async fn answers_restarts_after_hang_and_crash() {
        let (p, _dir) = process(ECHO);
        let t = Duration::from_secs(20);
        let first = p.request(&line("a"), t).await.unwrap();
        assert!(first.contains("\"value\": 1.0"), "{first}");
        let again = p.request(&line("b"), t).await.unwrap();
        assert!(again.contains("\"value\": 0.0"), "{again}");
        let pid = |s: &str| {
            s.split("pid ")
                .nth(1)
                .unwrap()
                .trim_end_matches("\"}")
                .to_string()
        };
        assert_eq!(pid(&first), pid(&again), "one long-lived process");

        let hung = p
            .request(&line("hang"), Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(hung.contains("no answer within 500 ms"), "{hung}");
        assert!(!p.running().await);
        let after = p.request(&line("a"), t).await.unwrap();
        assert_ne!(pid(&after), pid(&first), "restarted");

        let crashed = p.request(&line("crash"), t).await.unwrap_err();
        assert!(crashed.contains("exit status: 3"), "{crashed}");
        assert!(crashed.contains("dying"), "{crashed}");
        assert!(p.request(&line("a"), t).await.is_ok());
    }

    #[tokio::test]
    async fn the_environment_is_scrubbed() {
        // `cargo test` runs tests with CARGO_* variables set; none may reach
        // the child (python3 may be a launcher script that adds its own).
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let (p, _dir) = process(ECHO);
        let answer = p
            .request(&line("env"), Duration::from_secs(20))
            .await
            .unwrap();
        let answer: Value = serde_json::from_str(&answer).unwrap();
        let names = answer["detail"].as_str().unwrap();
        assert!(
            !names.contains("CARGO"),
            "the worker's environment leaked: {names}"
        );
        assert!(names.split(',').any(|n| n == "VIGIL_SCORER"), "{names}");
    }

    #[tokio::test]
    async fn a_missing_program_is_a_reason() {
        let processes = Processes::new(Arc::new(IoStats::default()));
        let p = processes.get(&["/nonexistent/scorer".to_string()]);
        let err = p.request("{}", Duration::from_secs(5)).await.unwrap_err();
        assert!(
            err.starts_with("cannot start `/nonexistent/scorer`"),
            "{err}"
        );
    }

    #[test]
    fn answers_become_scores() {
        let s = External {
            common: Common {
                name: "x".into(),
                threshold: None,
            },
            timeout: Duration::from_secs(1),
            process: Processes::new(Arc::new(IoStats::default())).get(&["true".into()]),
        };
        let r = s.read(r#"{"value": 0.7, "detail": "ok"}"#).unwrap();
        assert_eq!((r.value, r.passed, r.detail.as_str()), (0.7, true, "ok"));
        assert!(!s.read(r#"{"value": 0.9, "passed": false}"#).unwrap().passed);
        // What is not a score is a scorer error naming the scorer, never a 0.
        let failure = |answer: &str| s.read(answer).unwrap_err();
        assert_eq!(failure(r#"{"error": "boom"}"#).kind, ErrorKind::Scorer);
        assert!(failure(r#"{"error": "boom"}"#).message.contains("boom"));
        assert!(failure(r#"{"value": 2}"#).message.contains("outside"));
        assert!(failure("hello").message.contains("not a JSON object"));
        assert!(
            failure(r#"{"passed": true}"#)
                .message
                .contains("no numeric")
        );
        assert!(
            failure("hello")
                .message
                .starts_with(&format!("scorer `{}`", s.common.name))
        );
    }

    #[test]
    fn allowed_commands_parse_shell_words() {
        let a = AllowedCommands::parse(["python3 '/opt/my scorers/x.py'", " "]).unwrap();
        assert!(a.allows(&["python3".into(), "/opt/my scorers/x.py".into()]));
        assert_eq!(
            a.lines(),
            vec!["python3 '/opt/my scorers/x.py'".to_string()]
        );
        assert!(AllowedCommands::parse(["python3 'unterminated"]).is_err());
    }
}
