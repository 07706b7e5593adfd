//! The command line (DESIGN §10).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// What `vigil --version` prints: the version and the commit the binary
/// was built from (build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("VIGIL_COMMIT"),
    ")"
);

/// Continuous QA for open-source language models, over NATS JetStream.
#[derive(Debug, Parser)]
#[command(name = "vigil", version = VERSION, about, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "VIGIL_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log formats.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Evaluate a suite: every target, or the one named with --target.
    Run(RunArgs),
    /// Pull jobs from a pool and evaluate them.
    Worker(WorkerArgs),
    /// Check a suite and its dataset without running anything.
    Validate(ValidateArgs),
    /// Create the streams, buckets and the pool's durable consumer.
    SetupStreams(SetupStreamsArgs),
    /// Serve the OpenAI-compatible stub backend (for examples, tests, benchmarks).
    Stub(StubArgs),
    /// Serve a local GGUF model over OpenAI-compatible /v1/chat/completions and /v1/completions.
    ServeModel(ServeModelArgs),
    /// Read the run history, pin a baseline, set retention.
    Runs(RunsArgs),
    /// Compare two runs item by item (paired tests, Holm-corrected).
    Compare(CompareArgs),
    /// Follow live progress and finished summaries.
    Watch(WatchArgs),
    /// Write a run's HTML page, JUnit XML and Markdown summary.
    Report(ReportArgs),
    /// Write every item result of a run (JSONL or CSV).
    Export(ExportArgs),
    /// Reverse-proxy an OpenAI-compatible server and capture sampled, redacted traffic to VIGIL_CAPTURE.
    Proxy(ProxyArgs),
    /// Score captured production traffic (VIGIL_CAPTURE) in windows, with drift alarms.
    Monitor(MonitorArgs),
    /// Versioned datasets in NATS: push, list, show, pull, promote captures.
    Dataset(DatasetArgs),
    /// Replay an app's captured prompts against a candidate and compare it with production, stopping early.
    Shadow(ShadowArgs),
}

/// `vigil dataset`.
#[derive(Debug, Args)]
pub struct DatasetArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DatasetCommand,
}

/// `vigil dataset ...`.
#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Store a JSONL or CSV file as a version of a dataset (the version is
    /// its SHA-256; the same content pushed twice is one version) and make it
    /// the latest.
    Push {
        /// The file (.jsonl, .ndjson or .csv).
        file: PathBuf,
        /// The dataset's name (ASCII letters, digits, `-`, `_`).
        #[arg(long)]
        name: String,
        /// The file's format; default: from its extension.
        #[arg(long, value_enum)]
        format: Option<DatasetFileFormat>,
        /// Add the file's items to the latest version instead of replacing
        /// it (items already in it, by content hash, are left out). JSONL.
        #[arg(long)]
        append: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the datasets: versions, latest version, its items.
    List {
        /// One JSON object per version instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print a version's metadata (items, source, created, provenance) and the dataset's versions.
    Show {
        /// NAME or NAME@VERSION (default: latest).
        dataset: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write a version's content to a file (default: standard output).
    Pull {
        /// NAME or NAME@VERSION (default: latest).
        dataset: String,
        /// The file to write.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Select captures of an app (and their online scores) with a filter and
    /// push them as a new version of a dataset (or write them for review).
    Promote {
        /// The app whose captures are read (`vigil.capture.<app>`).
        #[arg(long)]
        app: String,
        /// How far back to read captures and monitor runs (e.g. `24h`, `7d`).
        #[arg(long, default_value = "24h")]
        since: humantime::Duration,
        /// The filter over scores, metadata and model, e.g.
        /// `json_valid.passed == false and model == "llama-3.1-8b"`.
        #[arg(long = "where", value_name = "EXPR")]
        filter: String,
        /// The dataset to add the selected captures to.
        #[arg(long)]
        to: String,
        /// Only this monitor's runs give scores (default: every monitor of the app).
        #[arg(long)]
        monitor: Option<String>,
        /// Write the candidates (JSONL) here for review instead of pushing;
        /// push the reviewed file with `vigil dataset push FILE --name NAME --append`.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Dataset file formats.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DatasetFileFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
}

/// `vigil shadow` (docs/production.md, "Shadow a candidate").
#[derive(Debug, Args)]
pub struct ShadowArgs {
    /// The app whose captures (`VIGIL_CAPTURE`, `vigil.capture.<app>`) are replayed.
    #[arg(long)]
    pub app: String,
    /// The shadow suite: the candidate target and the scorers (its dataset and
    /// prompt may be left out: the captures fill them in).
    #[arg(long, value_name = "FILE")]
    pub suite: PathBuf,
    /// The candidate: a target of the suite (default: its only target).
    #[arg(long, value_name = "TARGET")]
    pub candidate: Option<String>,
    /// Replay captures stored at most this long ago.
    #[arg(long, default_value = "24h")]
    pub since: humantime::Duration,
    /// Most captures replayed.
    #[arg(long, default_value_t = 1000)]
    pub budget: u64,
    /// Captures dispatched per wave (the rule looks after each wave).
    #[arg(long, default_value_t = 25)]
    pub wave: u64,
    /// The error rate: the chance of calling equal models different.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// What the rule observes: `win_rate`, `difference` or `judge` (default:
    /// `judge` when the suite has a pairwise llm_judge, else `win_rate`).
    #[arg(long, value_name = "METRIC")]
    pub compare: Option<String>,
    /// Never answer the candidate from the response cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Write the verdict and both summaries as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Write report.html, junit.xml and summary.md of the candidate (with the verdict) here.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// Where the history lives: a NATS server, or the embedded mode's store.
#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// The embedded mode's state directory (used without --nats).
    #[arg(long, default_value = ".vigil", env = "VIGIL_STATE_DIR")]
    pub state_dir: PathBuf,
}

/// `vigil runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// What to do with the history.
    #[command(subcommand)]
    pub command: RunsCommand,
}

/// `vigil runs ...`.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List finished runs, oldest first.
    List {
        /// Only this suite.
        #[arg(long)]
        suite: Option<String>,
        /// Only this target.
        #[arg(long)]
        target: Option<String>,
        /// One JSON summary per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print one run's summary as JSON.
    Show {
        /// The run id.
        run: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Pin a run as the baseline of its suite and target.
    Pin {
        /// The run id.
        run: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Cancel a run: mark it cancelled in `vigil-runs`; its coordinator
    /// stops and workers skip its remaining jobs.
    Cancel {
        /// The run id.
        run: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Keep summaries this long (e.g. `90d`; `0s`: forever).
    Retention {
        /// The maximum age.
        max_age: humantime::Duration,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `vigil compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline run.
    pub baseline: String,
    /// The candidate run.
    pub candidate: String,
    /// Print the comparison as JSON.
    #[arg(long)]
    pub json: bool,
    /// Bootstrap seed.
    #[arg(long, default_value_t = 20_240_611)]
    pub seed: u64,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `vigil watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Stop after this many finished summaries.
    #[arg(long)]
    pub summaries: Option<usize>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `vigil report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run id.
    pub run: String,
    /// The directory to write report.html, junit.xml and summary.md into.
    #[arg(long, default_value = "vigil-report")]
    pub out: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per item.
    Jsonl,
    /// One row per item, one column per scorer.
    Csv,
    /// The CSV's columns with their types (Apache Parquet, in row groups).
    Parquet,
}

/// `vigil export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run id.
    pub run: String,
    /// The format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    pub format: ExportFormat,
    /// The file to write (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Parquet: most rows in a row group (what the writer holds in memory).
    #[arg(long, default_value_t = 16 * 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub row_group_rows: u32,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// NATS connection options shared by every command that connects.
#[derive(Debug, Args, Clone)]
pub struct NatsArgs {
    /// NATS server URL. Without it, `vigil run` starts a private nats-server.
    /// Credentials come from VIGIL_NATS_* variables (see docs/kubernetes.md), never from here.
    /// One URL or a comma-separated list (`nats://a:4222,nats://b:4222`).
    #[arg(long, env = "VIGIL_NATS_URL", value_parser = ServerList)]
    pub nats: Option<String>,
}

/// Checks a `--nats` value with the parser `connect` uses, so a malformed
/// list is a usage error (exit 2) before anything connects. The message is
/// ours, not clap's: clap's would quote the value, user info and all.
#[derive(Debug, Clone, Copy)]
struct ServerList;

impl clap::builder::TypedValueParser for ServerList {
    type Value = String;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        use clap::error::ErrorKind;
        let text = value
            .to_str()
            .ok_or_else(|| clap::Error::raw(ErrorKind::InvalidUtf8, "--nats is not UTF-8\n"))?;
        crate::nats_connect::server_addrs(text)
            .map_err(|e| clap::Error::raw(ErrorKind::ValueValidation, format!("--nats: {e}\n")))?;
        Ok(text.to_string())
    }
}

/// `vigil run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The suite file (.yaml, .yml or .toml).
    pub suite: PathBuf,
    /// Run only this target (repeatable); default: every target of the suite.
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
    #[command(flatten)]
    pub nats: NatsArgs,
    /// In-process workers (0: only coordinate, for workers that run elsewhere).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Model calls in flight per in-process worker.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Write the summary as JSON (an array when several targets run).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Use this run id instead of a new UUIDv7 (one target only).
    #[arg(long, conflicts_with = "scheduled_date")]
    pub run_id: Option<String>,
    /// Derive the run id from suite, target and this date (YYYY-MM-DD, or
    /// `today` in UTC), so a re-fired scheduled job does not run twice; a run
    /// with that id left `running` (its coordinator died) is resumed.
    #[arg(long, value_name = "DATE")]
    pub scheduled_date: Option<String>,
    /// Resume the run RUN_ID after its coordinator died: rebuild the aggregate
    /// from its results and publish only the jobs not yet published (one target only).
    #[arg(long, value_name = "RUN_ID", conflicts_with_all = ["run_id", "scheduled_date"])]
    pub resume: Option<String>,
    /// Do not draw the progress bar even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// Serve Prometheus metrics on /metrics here (coordinator and in-process workers).
    #[arg(long, env = "VIGIL_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Where the embedded mode keeps its nats-server store.
    #[arg(long, default_value = ".vigil", env = "VIGIL_STATE_DIR")]
    pub state_dir: PathBuf,
    /// Serve /healthz and /readyz here while the run lasts.
    #[arg(long, env = "VIGIL_HEALTH_ADDR")]
    pub health_addr: Option<SocketAddr>,
    /// Compare with this run (default: the pinned baseline, else the latest passing run).
    #[arg(long, value_name = "RUN")]
    pub baseline: Option<String>,
    /// Never answer from the response cache (wins over --cache and the suite).
    #[arg(long)]
    pub no_cache: bool,
    /// Use the response cache (`vigil-cache`, 24 h TTL unless the suite's
    /// `cache.ttl_s` says otherwise) even when the suite does not turn it on.
    #[arg(long)]
    pub cache: bool,
    /// An external scorer command the in-process workers may run (the whole
    /// command line, exactly as the suite names it). Repeatable.
    #[arg(long = "allow-scorer-command", value_name = "COMMAND")]
    pub allow_scorer_command: Vec<String>,
    /// Where the code sandbox cannot be set up, let the in-process workers
    /// run `code_exec` programs WITHOUT ISOLATION (they see this host's files
    /// and network). In-process workers run programs only when the suite
    /// has a `code_exec` scorer.
    #[arg(long, env = "VIGIL_UNSAFE_CODE_EXEC_WITHOUT_SANDBOX", value_parser = clap::builder::BoolishValueParser::new())]
    pub unsafe_code_exec_without_sandbox: bool,
}

/// `vigil worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// The pool to pull from.
    #[arg(long, default_value = "default", env = "VIGIL_POOL")]
    pub pool: String,
    /// Model calls in flight across all jobs.
    #[arg(long, default_value_t = 64, env = "VIGIL_CONCURRENCY")]
    pub concurrency: usize,
    /// Most jobs evaluating at once (unacked; 0: max(concurrency / 8, 4)).
    /// Lower it to bound the items a worker holds when its concurrency is
    /// far above its targets' max_concurrency.
    #[arg(long, default_value_t = 0, env = "VIGIL_MAX_JOBS")]
    pub max_jobs: usize,
    /// A backend this worker may call: BASE_URL or BASE_URL=KEY_ENV, where
    /// KEY_ENV names the variable holding its API key. Repeatable; also read
    /// comma-separated from VIGIL_ALLOW.
    #[arg(long = "allow", value_name = "BASE_URL[=KEY_ENV]")]
    pub allow: Vec<String>,
    /// Allow the targets of these suites, with their `api_key_env` (repeatable).
    #[arg(long = "suite", value_name = "FILE")]
    pub suites: Vec<PathBuf>,
    /// An external scorer command this worker may run: the whole command
    /// line (program and arguments, shell quoting allowed), which a job's
    /// `external` scorer must name exactly. Repeatable. Jobs naming any
    /// other command fail their items.
    #[arg(long = "allow-scorer-command", value_name = "COMMAND")]
    pub allow_scorer_command: Vec<String>,
    /// A GGUF model file this worker may load for `local` targets and judges. Repeatable;
    /// also read comma-separated from VIGIL_ALLOW_MODEL.
    #[arg(long = "allow-model", value_name = "FILE")]
    pub allow_models: Vec<PathBuf>,
    /// Run the programs of `code_exec` scorers (a job's code and tests), in
    /// the code sandbox (docs/scorers.md). Without it their items fail as
    /// `not_allowed`; where the sandbox cannot be set up, as `sandbox_unavailable`.
    #[arg(long, env = "VIGIL_ALLOW_CODE_EXEC", value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_code_exec: bool,
    /// Where the code sandbox cannot be set up, run `code_exec` programs
    /// WITHOUT ISOLATION: they see this host's files and network and run as
    /// this worker's user (or an unprivileged uid when root). Implies
    /// --allow-code-exec. Never use it where jobs may come from others.
    #[arg(long, env = "VIGIL_UNSAFE_CODE_EXEC_WITHOUT_SANDBOX", value_parser = clap::builder::BoolishValueParser::new())]
    pub unsafe_code_exec_without_sandbox: bool,
    /// Seconds in-flight jobs may finish after SIGTERM before they are handed
    /// back; the worker exits at most 2 s later, even with NATS unreachable.
    #[arg(long, default_value_t = 25.0, env = "VIGIL_GRACE_PERIOD_S")]
    pub grace_period_s: f64,
    /// Serve /healthz and /readyz here.
    #[arg(long, env = "VIGIL_HEALTH_ADDR")]
    pub health_addr: Option<SocketAddr>,
    /// Serve Prometheus metrics on /metrics here.
    #[arg(long, env = "VIGIL_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Largest job payload accepted, bytes; the items of larger ones fail as `oversized`.
    #[arg(long, default_value_t = 8 * 1024 * 1024, env = "VIGIL_MAX_JOB_BYTES", hide = true)]
    pub max_job_bytes: usize,
}

/// `vigil serve-model`.
#[derive(Debug, Args)]
pub struct ServeModelArgs {
    /// The GGUF model file.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8090)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Generations run at once (default: one per core, at most 2).
    #[arg(long)]
    pub concurrency: Option<usize>,
}

/// `vigil validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The suite file.
    pub suite: PathBuf,
    /// Where a suite's named dataset (`dataset: { name }`) is read from;
    /// unused for a dataset file.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `vigil setup-streams`.
#[derive(Debug, Args)]
pub struct SetupStreamsArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// The pool whose durable consumer to create.
    #[arg(long, default_value = "default", env = "VIGIL_POOL")]
    pub pool: String,
    /// Replicas of every stream, bucket and the object store (3 in a
    /// three-node cluster); existing ones with fewer are raised to it.
    /// Default: VIGIL_REPLICAS, else 1.
    #[arg(long)]
    pub replicas: Option<usize>,
}

/// `vigil stub`.
#[derive(Debug, Args)]
pub struct StubArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub listen: SocketAddr,
    /// Added latency per request, milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Fraction of requests answered with HTTP 500.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Fraction of requests answered with HTTP 429.
    #[arg(long, default_value_t = 0.0)]
    pub rate_limit_rate: f64,
    /// Fraction of requests answered with invalid JSON.
    #[arg(long, default_value_t = 0.0)]
    pub garbage_rate: f64,
    /// Most concurrent requests before answering 429.
    #[arg(long)]
    pub max_concurrency: Option<usize>,
    /// Serve at most N completion requests at once; the others wait for a
    /// slot (capacity = N / latency, however many clients).
    #[arg(long, value_name = "N")]
    pub slots: Option<usize>,
    /// The `created` of the model's `/v1/models` entry (restart with another
    /// value to play another model behind the same URL and name).
    #[arg(long, default_value_t = 0)]
    pub model_created: u64,
}

/// `vigil proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// The OpenAI-compatible server to forward to, e.g. http://127.0.0.1:8000/v1.
    #[arg(long)]
    pub upstream: String,
    /// The application name: captures go to vigil.capture.<app>.
    #[arg(long)]
    pub app: String,
    /// Fraction of chat/completions/embeddings requests captured (0..=1),
    /// decided on the X-Request-Id header (else a hash of the request).
    #[arg(long, default_value_t = 1.0)]
    pub sample: f64,
    /// An extra redaction regex (repeatable), on top of the built-in kinds.
    #[arg(long, value_name = "REGEX")]
    pub redact: Vec<String>,
    /// A YAML file of named redaction regexes (`patterns: {name: regex}`).
    #[arg(long, value_name = "FILE")]
    pub redact_file: Option<PathBuf>,
    /// Most captures waiting to be published; beyond it they are dropped and counted.
    #[arg(long, default_value_t = 10_000)]
    pub queue_capacity: usize,
    /// Replicas of VIGIL_CAPTURE when the proxy creates it (3 in a three-node cluster).
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Serve Prometheus metrics on /metrics here (captured, sampled out, dropped, queue depth).
    #[arg(long, env = "VIGIL_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

/// `vigil monitor`.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// The monitor file (YAML): captures to score, scorers, windows, drift (docs/production.md).
    pub monitor: PathBuf,
    #[command(flatten)]
    pub nats: NatsArgs,
}
