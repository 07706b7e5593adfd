//! An OpenAI-compatible stub model server for tests, benchmarks, examples and
//! `vigil stub`.
//!
//! Answers are deterministic functions of the prompt (see [`answer`]); faults
//! (500, 429, dropped connections, hangs, invalid JSON, empty choices) are drawn
//! per request from a seeded RNG, or scripted with
//! [`StubConfig::fail_first_attempts`], or keyed on the prompt with
//! [`StubConfig::fail_marker`] (500) and [`StubConfig::hang_marker`] (hang).
//!
//! The routes are axum handlers, but connections are served with hyper
//! directly (one task per connection) instead of `axum::serve`: that is what
//! lets a handler drop its own TCP connection without any HTTP response, which
//! `axum::serve` cannot do. The hot path takes no global lock: counters are
//! atomics and each request seeds its own RNG from (seed, request index).
//!
//! `"stream": true` is answered with server-sent events as OpenAI sends
//! them: one `chat.completion.chunk` (or `text_completion`) per word, a last
//! chunk with the finish reason, a usage chunk when `stream_options.include_usage`
//! is set, then `data: [DONE]`.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vigil_protocol::openai::{
    Choice, CompletionRequest, CompletionResponse, ErrorResponse, Message, OneOrMany, Usage,
};

/// How long a "hang" fault sleeps: far past any client timeout.
pub const HANG_FOR: Duration = Duration::from_secs(3600);

/// How long open connections get to finish when the server shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Distinct Authorization header values remembered.
const MAX_AUTH_RECORDED: usize = 64;

/// Shards of the per-prompt attempt counter (only used with `fail_first_attempts`).
const ATTEMPT_SHARDS: usize = 64;

/// How the stub behaves; `Default` is a perfect, instant backend.
///
/// Fault rates are probabilities in `[0, 1]`, checked in the order listed
/// (fail, rate limit, reset, hang, garbage, empty); their sum should stay ≤ 1.
///
/// ```
/// use vigil_testkit::stub::StubConfig;
/// let flaky = StubConfig { fail_rate: 0.1, seed: 7, ..Default::default() };
/// assert_eq!(flaky.model, "stub-model");
/// ```
#[derive(Debug, Clone)]
pub struct StubConfig {
    /// Added to every completion request.
    pub latency: Duration,
    /// A uniform random extra in `[0, latency_jitter]`.
    pub latency_jitter: Duration,
    /// Share of requests answered 500.
    pub fail_rate: f64,
    /// Share of requests answered 429 with `Retry-After`.
    pub rate_limit_rate: f64,
    /// The `Retry-After` seconds of a 429.
    pub retry_after_s: u64,
    /// Share of requests whose TCP connection is dropped with no response.
    pub reset_rate: f64,
    /// Share of requests that sleep for [`HANG_FOR`].
    pub hang_rate: f64,
    /// Share of requests answered 200 with a body that is not JSON.
    pub garbage_rate: f64,
    /// Share of requests answered 200 with `"choices": []`.
    pub empty_rate: f64,
    /// Requests in flight beyond this are answered 429 at once.
    pub max_concurrency: Option<usize>,
    /// At most this many completion requests are served at once; the others
    /// wait for a free slot (a server with a fixed number of batch slots:
    /// its capacity is `slots / latency`, however many clients it has).
    pub slots: Option<usize>,
    /// The first N requests for each distinct prompt are answered 500.
    pub fail_first_attempts: u32,
    /// Every request whose prompt text contains this is answered 500 (a
    /// backend that always fails on some items; two stubs that differ only
    /// here serve a baseline and a candidate that fails those items).
    pub fail_marker: Option<String>,
    /// Every request whose prompt text contains this hangs for [`HANG_FOR`]
    /// (a backend that times out on some items).
    pub hang_marker: Option<String>,
    /// Seeds the per-request fault draws.
    pub seed: u64,
    /// The model named when a request names none, and in `/v1/models`.
    pub model: String,
    /// The `created` of the model's `/v1/models` entry (what identifies the
    /// model behind the name; change it live with [`StubServer::set_model_created`]).
    pub model_created: u64,
    /// Pause between the events of a streamed answer (zero: all at once).
    pub stream_chunk_delay: Duration,
}

impl Default for StubConfig {
    fn default() -> Self {
        StubConfig {
            latency: Duration::ZERO,
            latency_jitter: Duration::ZERO,
            fail_rate: 0.0,
            rate_limit_rate: 0.0,
            retry_after_s: 1,
            reset_rate: 0.0,
            hang_rate: 0.0,
            garbage_rate: 0.0,
            empty_rate: 0.0,
            max_concurrency: None,
            slots: None,
            fail_first_attempts: 0,
            fail_marker: None,
            hang_marker: None,
            seed: 0,
            model: "stub-model".to_string(),
            model_created: 0,
            stream_chunk_delay: Duration::ZERO,
        }
    }
}

/// Live counters of a stub; completion requests only (not `/v1/models` or `/health`).
#[derive(Debug, Default)]
pub struct StubStats {
    /// Completion requests received.
    pub requests: AtomicU64,
    /// Answered 200 with a valid completion.
    pub ok: AtomicU64,
    /// Answered 500 (random or scripted).
    pub server_errors: AtomicU64,
    /// Of `server_errors`, those scripted by `fail_first_attempts` or `fail_marker`.
    pub scripted_failures: AtomicU64,
    /// Answered 429 by `rate_limit_rate`.
    pub rate_limited: AtomicU64,
    /// Answered 429 because `max_concurrency` was exceeded.
    pub over_capacity: AtomicU64,
    /// Connections dropped without a response.
    pub resets: AtomicU64,
    /// Requests left hanging.
    pub hangs: AtomicU64,
    /// Answered 200 with invalid JSON.
    pub garbage: AtomicU64,
    /// Answered 200 with no choices.
    pub empty: AtomicU64,
    /// Answered 400 (unreadable request).
    pub bad_requests: AtomicU64,
    /// Requests in flight now.
    pub in_flight: AtomicU64,
    /// The most requests in flight at once.
    pub max_in_flight: AtomicU64,
    /// Requests that carried an Authorization header.
    pub with_authorization: AtomicU64,
    /// Requests that carried none.
    pub without_authorization: AtomicU64,
    /// `/v1/embeddings` requests (not counted in `requests`).
    pub embeddings: AtomicU64,
    /// `/v1/models` requests (not counted in `requests`).
    pub models: AtomicU64,
    authorization: RwLock<Vec<String>>,
    traceparent: RwLock<Option<String>>,
}

/// A copy of [`StubStats`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StubStatsSnapshot {
    /// Completion requests received.
    pub requests: u64,
    /// Answered 200 with a valid completion.
    pub ok: u64,
    /// Answered 500 (random or scripted).
    pub server_errors: u64,
    /// Of `server_errors`, those scripted by `fail_first_attempts` or `fail_marker`.
    pub scripted_failures: u64,
    /// Answered 429 by `rate_limit_rate`.
    pub rate_limited: u64,
    /// Answered 429 because `max_concurrency` was exceeded.
    pub over_capacity: u64,
    /// Connections dropped without a response.
    pub resets: u64,
    /// Requests left hanging.
    pub hangs: u64,
    /// Answered 200 with invalid JSON.
    pub garbage: u64,
    /// Answered 200 with no choices.
    pub empty: u64,
    /// Answered 400 (unreadable request).
    pub bad_requests: u64,
    /// Requests in flight then.
    pub in_flight: u64,
    /// The most requests in flight at once.
    pub max_in_flight: u64,
    /// Requests that carried an Authorization header.
    pub with_authorization: u64,
    /// Requests that carried none.
    pub without_authorization: u64,
    /// `/v1/embeddings` requests (not counted in `requests`).
    pub embeddings: u64,
    /// `/v1/models` requests (not counted in `requests`).
    pub models: u64,
}

impl StubStats {
    /// The distinct Authorization header values seen, in first-seen order (at
    /// most 64 are kept).
    pub fn authorization_headers(&self) -> Vec<String> {
        self.authorization.read().expect("auth lock").clone()
    }

    /// The `traceparent` header of the latest completion request that had one.
    pub fn last_traceparent(&self) -> Option<String> {
        self.traceparent.read().expect("traceparent lock").clone()
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StubStatsSnapshot {
        StubStatsSnapshot {
            requests: self.requests.load(Relaxed),
            ok: self.ok.load(Relaxed),
            server_errors: self.server_errors.load(Relaxed),
            scripted_failures: self.scripted_failures.load(Relaxed),
            rate_limited: self.rate_limited.load(Relaxed),
            over_capacity: self.over_capacity.load(Relaxed),
            resets: self.resets.load(Relaxed),
            hangs: self.hangs.load(Relaxed),
            garbage: self.garbage.load(Relaxed),
            empty: self.empty.load(Relaxed),
            bad_requests: self.bad_requests.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            max_in_flight: self.max_in_flight.load(Relaxed),
            with_authorization: self.with_authorization.load(Relaxed),
            without_authorization: self.without_authorization.load(Relaxed),
            embeddings: self.embeddings.load(Relaxed),
            models: self.models.load(Relaxed),
        }
    }

    fn record_authorization(&self, value: Option<&HeaderValue>) {
        let Some(v) = value else {
            self.without_authorization.fetch_add(1, Relaxed);
            return;
        };
        self.with_authorization.fetch_add(1, Relaxed);
        let v = String::from_utf8_lossy(v.as_bytes());
        // Read first: the common case (a known key) never takes the write lock.
        {
            let seen = self.authorization.read().expect("auth lock");
            if seen.len() >= MAX_AUTH_RECORDED || seen.iter().any(|s| *s == v) {
                return;
            }
        }
        let mut seen = self.authorization.write().expect("auth lock");
        if seen.len() < MAX_AUTH_RECORDED && !seen.iter().any(|s| *s == v) {
            seen.push(v.into_owned());
        }
    }
}

/// Counts a request in flight until dropped (also when its connection is aborted).
struct InFlight<'a>(&'a StubStats);

impl<'a> InFlight<'a> {
    fn enter(stats: &'a StubStats) -> (Self, u64) {
        let now = stats.in_flight.fetch_add(1, Relaxed) + 1;
        stats.max_in_flight.fetch_max(now, Relaxed);
        (InFlight(stats), now)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// The stub's answer to a prompt text.
///
/// A judge's rubric (see [`judge`]) gets a verdict; else `[[reply: TEXT]]`
/// gives TEXT verbatim (up to the last `]]`); else the first
/// integer expression `a OP b` (OP one of `+ - * /`) gives its value; else the
/// text is echoed.
///
/// ```
/// use vigil_testkit::stub::answer;
/// assert_eq!(answer("What is 12 + 7?"), "19");
/// assert_eq!(answer("7 / 2"), "3.5");
/// assert_eq!(answer(r#"say [[reply: {"ok": true}]]"#), r#"{"ok": true}"#);
/// assert_eq!(answer("hello there"), "hello there");
/// ```
pub fn answer(text: &str) -> String {
    if let Some(verdict) = judge(text) {
        return verdict;
    }
    const MARK: &str = "[[reply:";
    if let Some(start) = text.find(MARK) {
        let rest = &text[start + MARK.len()..];
        if let Some(end) = rest.rfind("]]") {
            return rest[..end].trim_start().to_string();
        }
    }
    if let Some(v) = arithmetic(text) {
        return v;
    }
    text.to_string()
}

/// The text between `<name>` and `</name>`, trimmed.
fn tagged<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&close)?;
    Some(text[start..end].trim())
}

/// Lowercase alphanumeric words.
fn words(text: &str) -> std::collections::BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The Jaccard similarity of two texts' word sets (1 when both are empty).
///
/// ```
/// use vigil_testkit::stub::similarity;
/// assert_eq!(similarity("the cat sat", "The cat sat."), 1.0);
/// assert_eq!(similarity("a b", "c d"), 0.0);
/// assert_eq!(similarity("a b", "b c"), 1.0 / 3.0);
/// ```
pub fn similarity(a: &str, b: &str) -> f64 {
    let (a, b) = (words(a), words(b));
    let union = a.union(&b).count();
    if union == 0 {
        return 1.0;
    }
    a.intersection(&b).count() as f64 / union as f64
}

/// What the stub model would answer to a question (a `[[reply: ..]]`
/// directive or arithmetic), if anything but an echo.
fn expected_answer(question: &str) -> Option<String> {
    let answered = answer(question);
    (answered != question).then_some(answered)
}

/// The stub as a judge. A rubric is recognised by its tags, as vigil's
/// default rubrics write them:
///
/// - `<response>..</response>`: a grade `Score: N` on the scale the text
///   names (`scale of 1 to 5`, default 1–5): the response's word overlap
///   (Jaccard) with `<reference>..</reference>`, else with the stub's own
///   answer to `<question>..</question>`, mapped onto the scale;
/// - `<response_a>..</response_a>` and `<response_b>..</response_b>`: the
///   one closer to that expected answer, `[[A]]`, `[[B]]` or `[[C]]` (tie).
///
/// ```
/// use vigil_testkit::stub::judge;
/// let rubric = "Grade on a scale of 1 to 5.\n<question>2 + 3</question>\n<response>5</response>";
/// assert!(judge(rubric).unwrap().ends_with("Score: 5"));
/// let rubric = "<question>2 + 3</question><response_a>6</response_a><response_b>5</response_b>";
/// assert!(judge(rubric).unwrap().ends_with("[[B]]"));
/// assert_eq!(judge("What is 2 + 3?"), None);
/// ```
pub fn judge(text: &str) -> Option<String> {
    // The hot path of every other request: one scan, no allocation.
    if !text.contains("<response") {
        return None;
    }
    let expected = || {
        tagged(text, "reference")
            .map(str::to_string)
            .or_else(|| tagged(text, "question").and_then(expected_answer))
    };
    if let (Some(a), Some(b)) = (tagged(text, "response_a"), tagged(text, "response_b")) {
        let (sa, sb) = match expected() {
            Some(e) => (similarity(a, &e), similarity(b, &e)),
            None => (0.0, 0.0),
        };
        let verdict = if sa > sb {
            "[[A]]"
        } else if sb > sa {
            "[[B]]"
        } else {
            "[[C]]"
        };
        return Some(format!(
            "Response A matches {:.0}% and response B {:.0}% of the expected answer.\n{verdict}",
            sa * 100.0,
            sb * 100.0
        ));
    }
    let response = tagged(text, "response")?;
    static SCALE: OnceLock<regex::Regex> = OnceLock::new();
    let scale = SCALE.get_or_init(|| {
        regex::Regex::new(r"(?i)scale (?:of|from) (-?\d+) to (-?\d+)").expect("valid regex")
    });
    let (lo, hi) = scale
        .captures(text)
        .and_then(|c| Some((c[1].parse::<i64>().ok()?, c[2].parse::<i64>().ok()?)))
        .filter(|(lo, hi)| lo < hi)
        .unwrap_or((1, 5));
    let sim = expected().map_or(0.5, |e| similarity(response, &e));
    let score = lo + (sim * (hi - lo) as f64).round() as i64;
    Some(format!(
        "The response shares {:.0}% of its words with the expected answer.\nScore: {score}",
        sim * 100.0
    ))
}

/// Dimensions of the stub's embeddings.
pub const EMBEDDING_DIMS: usize = 64;

/// The stub's embedding of a text: a hashed bag of its lowercase words
/// (each word adds ±1 to one of [`EMBEDDING_DIMS`] components), L2-normalised.
/// Texts with the same words are identical, texts sharing no words are
/// nearly orthogonal.
///
/// ```
/// use vigil_testkit::stub::embed;
/// let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
/// let cat = embed("The cat sat on the mat");
/// assert!((dot(&cat, &embed("the mat, the cat sat on")) - 1.0).abs() < 1e-9);
/// assert!(dot(&cat, &embed("quarterly revenue grew strongly")) < 0.5);
/// ```
pub fn embed(text: &str) -> Vec<f64> {
    let mut v = vec![0.0; EMBEDDING_DIMS];
    let mut any = false;
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        any = true;
        let mut h = std::hash::DefaultHasher::new();
        word.to_lowercase().hash(&mut h);
        let h = h.finish();
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        v[(h % EMBEDDING_DIMS as u64) as usize] += sign;
    }
    if !any {
        v[0] = 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    } else {
        v[0] = 1.0;
    }
    v
}

fn arithmetic(text: &str) -> Option<String> {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re =
        RE.get_or_init(|| regex::Regex::new(r"(-?\d+)\s*([-+*/])\s*(-?\d+)").expect("valid regex"));
    for c in re.captures_iter(text) {
        let (Ok(a), Ok(b)) = (c[1].parse::<i128>(), c[3].parse::<i128>()) else {
            continue;
        };
        let v = match &c[2] {
            "+" => a.checked_add(b),
            "-" => a.checked_sub(b),
            "*" => a.checked_mul(b),
            _ if b == 0 => None,
            _ if a % b == 0 => Some(a / b),
            _ => return Some(format!("{}", a as f64 / b as f64)),
        };
        if let Some(v) = v {
            return Some(v.to_string());
        }
    }
    None
}

/// Whitespace-separated words, at least 1.
fn tokens(text: &str) -> u64 {
    (text.split_whitespace().count() as u64).max(1)
}

/// Truncates to `max` words; true if it cut.
fn truncate(text: String, max: Option<u64>) -> (String, bool) {
    match max {
        Some(max) if text.split_whitespace().count() as u64 > max.max(1) => (
            text.split_whitespace()
                .take(max.max(1) as usize)
                .collect::<Vec<_>>()
                .join(" "),
            true,
        ),
        _ => (text, false),
    }
}

/// What a request asked, reduced to what the stub needs.
struct Asked {
    model: Option<String>,
    /// The text answered: the last user message, or the prompt.
    text: String,
    /// Identifies the prompt for `fail_first_attempts`.
    key: u64,
    prompt_tokens: u64,
    max_tokens: Option<u64>,
    stream: bool,
    /// Streamed: whether to send a usage chunk before `[DONE]`.
    include_usage: bool,
}

/// Reads a request body; `field` is the input the endpoint needs.
fn parse_request<'a>(body: &'a [u8], field: &str) -> Result<CompletionRequest<'a>, String> {
    let req: CompletionRequest = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let missing = match field {
        "messages" => req.messages.is_none(),
        _ => req.prompt.is_none(),
    };
    if missing {
        return Err(format!("missing field `{field}`"));
    }
    Ok(req)
}

fn parse_chat(body: &[u8]) -> Result<Asked, String> {
    let req = parse_request(body, "messages")?;
    let messages = req.messages.as_deref().unwrap_or_default();
    if messages.is_empty() {
        return Err("messages must not be empty".to_string());
    }
    let texts: Vec<(&str, Cow<'_, str>)> = messages
        .iter()
        .map(|m| {
            (
                m.role.as_ref(),
                m.content
                    .as_ref()
                    .and_then(|c| c.joined("\n"))
                    .unwrap_or_default(),
            )
        })
        .collect();
    let text = texts
        .iter()
        .rev()
        .find(|(r, _)| *r == "user")
        .or(texts.last())
        .map(|(_, t)| t.to_string())
        .unwrap_or_default();
    let mut h = std::hash::DefaultHasher::new();
    texts.hash(&mut h);
    Ok(Asked {
        model: req.model.as_deref().map(str::to_string),
        text,
        key: h.finish(),
        prompt_tokens: tokens(
            &texts
                .iter()
                .map(|(_, t)| t.as_ref())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        max_tokens: req.token_limit(),
        stream: req.stream,
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
    })
}

fn parse_completion(body: &[u8]) -> Result<Asked, String> {
    let req = parse_request(body, "prompt")?;
    let text = match &req.prompt {
        Some(OneOrMany::One(t)) => t.to_string(),
        Some(OneOrMany::Many(v)) => v.join("\n"),
        None => String::new(),
    };
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    Ok(Asked {
        model: req.model.as_deref().map(str::to_string),
        key: h.finish(),
        prompt_tokens: tokens(&text),
        text,
        max_tokens: req.max_tokens,
        stream: req.stream,
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
    })
}

/// State shared by all connections.
#[derive(Debug)]
struct Shared {
    cfg: StubConfig,
    stats: Arc<StubStats>,
    /// The `created` of the `/v1/models` entry now.
    model_created: AtomicU64,
    attempts: Box<[Mutex<HashMap<u64, u32>>]>,
    /// [`StubConfig::slots`] as permits.
    slots: Option<tokio::sync::Semaphore>,
}

impl Shared {
    /// Counts an attempt at a prompt; true while it must still fail.
    fn scripted_failure(&self, key: u64) -> bool {
        if self.cfg.fail_first_attempts == 0 {
            return false;
        }
        let shard = &self.attempts[(key as usize) % ATTEMPT_SHARDS];
        let mut map = shard.lock().expect("attempt lock");
        let n = map.entry(key).or_insert(0);
        *n += 1;
        *n <= self.cfg.fail_first_attempts
    }
}

/// A handle on the request's own TCP connection: cancelling it drops the
/// connection without a response.
#[derive(Clone)]
struct ConnReset(CancellationToken);

#[derive(Clone, Copy)]
enum Kind {
    Chat,
    Text,
}

enum Fault {
    Fail,
    RateLimit,
    Reset,
    Hang,
    Garbage,
    Empty,
}

fn draw(cfg: &StubConfig, rng: &mut SmallRng) -> Option<Fault> {
    let u: f64 = rng.random();
    let mut edge = 0.0;
    for (rate, fault) in [
        (cfg.fail_rate, Fault::Fail),
        (cfg.rate_limit_rate, Fault::RateLimit),
        (cfg.reset_rate, Fault::Reset),
        (cfg.hang_rate, Fault::Hang),
        (cfg.garbage_rate, Fault::Garbage),
        (cfg.empty_rate, Fault::Empty),
    ] {
        edge += rate.max(0.0);
        if u < edge {
            return Some(fault);
        }
    }
    None
}

fn error_response(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, Json(ErrorResponse::new(kind, message))).into_response()
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn complete(
    st: &Shared,
    kind: Kind,
    reset: &ConnReset,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let stats = &*st.stats;
    let idx = stats.requests.fetch_add(1, Relaxed);
    stats.record_authorization(headers.get(header::AUTHORIZATION));
    if let Some(t) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        *stats.traceparent.write().expect("traceparent lock") = Some(t.to_string());
    }
    let (_guard, now) = InFlight::enter(stats);
    if st.cfg.max_concurrency.is_some_and(|m| now > m as u64) {
        stats.over_capacity.fetch_add(1, Relaxed);
        let mut r = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "stub: too many concurrent requests",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(st.cfg.retry_after_s));
        return r;
    }
    let asked = match kind {
        Kind::Chat => parse_chat(body),
        Kind::Text => parse_completion(body),
    };
    let asked = match asked {
        Ok(a) => a,
        Err(e) => {
            stats.bad_requests.fetch_add(1, Relaxed);
            return error_response(StatusCode::BAD_REQUEST, "invalid_request_error", &e);
        }
    };

    // Each request gets its own RNG: deterministic for a seed and arrival order,
    // and no lock shared between requests.
    let mut rng = SmallRng::seed_from_u64(st.cfg.seed ^ idx.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let marked =
        |marker: &Option<String>| marker.as_deref().is_some_and(|m| asked.text.contains(m));
    let scripted = st.scripted_failure(asked.key) || marked(&st.cfg.fail_marker);
    let fault = if marked(&st.cfg.hang_marker) {
        Some(Fault::Hang)
    } else {
        draw(&st.cfg, &mut rng)
    };
    // A slot is held through the latency and the answer.
    let _slot = match &st.slots {
        Some(slots) => Some(slots.acquire().await.expect("the slots are never closed")),
        None => None,
    };
    let mut delay = st.cfg.latency;
    if !st.cfg.latency_jitter.is_zero() {
        delay += st.cfg.latency_jitter.mul_f64(rng.random::<f64>());
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if scripted {
        stats.server_errors.fetch_add(1, Relaxed);
        stats.scripted_failures.fetch_add(1, Relaxed);
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "stub: scripted failure",
        );
    }
    match fault {
        None => {}
        Some(Fault::Fail) => {
            stats.server_errors.fetch_add(1, Relaxed);
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "stub: injected server error",
            );
        }
        Some(Fault::RateLimit) => {
            stats.rate_limited.fetch_add(1, Relaxed);
            let mut r = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "stub: rate limited",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(st.cfg.retry_after_s));
            return r;
        }
        Some(Fault::Reset) => {
            stats.resets.fetch_add(1, Relaxed);
            reset.0.cancel();
            // The connection task drops the connection, and this future with it.
            std::future::pending::<()>().await;
        }
        Some(Fault::Hang) => {
            stats.hangs.fetch_add(1, Relaxed);
            tokio::time::sleep(HANG_FOR).await;
            return error_response(StatusCode::GATEWAY_TIMEOUT, "timeout", "stub: hung");
        }
        Some(Fault::Garbage) => {
            stats.garbage.fetch_add(1, Relaxed);
            return (
                [(header::CONTENT_TYPE, "application/json")],
                "{\"id\": \"stub-garbage\", \"choices\": [{\"ind",
            )
                .into_response();
        }
        Some(Fault::Empty) => {}
    }

    let model = asked.model.as_deref().unwrap_or(&st.cfg.model);
    let (text, cut) = truncate(answer(&asked.text), asked.max_tokens);
    let finish_reason = if cut { "length" } else { "stop" };
    let completion_tokens = tokens(&text);
    let usage = Usage::new(asked.prompt_tokens, completion_tokens);
    let empty = matches!(fault, Some(Fault::Empty));
    if empty {
        stats.empty.fetch_add(1, Relaxed);
    } else {
        stats.ok.fetch_add(1, Relaxed);
    }
    let created = now_s();
    if asked.stream {
        let id = format!(
            "{}-stub-{idx}",
            if matches!(kind, Kind::Chat) {
                "chatcmpl"
            } else {
                "cmpl"
            }
        );
        let text = if empty { "" } else { text.as_str() };
        let usage = asked.include_usage.then_some(usage);
        return sse(kind, &id, created, model, text, finish_reason, usage)
            .delayed(st.cfg.stream_chunk_delay);
    }
    let choice = match kind {
        Kind::Chat => Choice {
            message: Some(Message::text("assistant", text.as_str())),
            ..Default::default()
        },
        Kind::Text => Choice {
            text: Some(Cow::Borrowed(&text)),
            ..Default::default()
        },
    };
    let (prefix, object) = match kind {
        Kind::Chat => ("chatcmpl", "chat.completion"),
        Kind::Text => ("cmpl", "text_completion"),
    };
    let body = CompletionResponse {
        id: Some(format!("{prefix}-stub-{idx}").into()),
        object: Some(object.into()),
        created: Some(created),
        model: Some(model.into()),
        choices: Some(if empty {
            vec![]
        } else {
            vec![Choice {
                finish_reason: Some(finish_reason.into()),
                ..choice
            }]
        }),
        usage: Some(usage),
    };
    Json(body).into_response()
}

/// The events of a streamed answer, each a separate body frame.
struct Sse(Vec<Bytes>);

impl Sse {
    /// The response, pausing `delay` between events.
    fn delayed(self, delay: Duration) -> Response {
        use futures::StreamExt;
        let frames = futures::stream::iter(self.0.into_iter().enumerate()).then(
            move |(i, frame)| async move {
                if i > 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok::<_, std::convert::Infallible>(frame)
            },
        );
        (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            axum::body::Body::from_stream(frames),
        )
            .into_response()
    }
}

/// A streamed answer: one chunk per word of `text`, the finish reason, the
/// usage when asked, `[DONE]`.
fn sse(
    kind: Kind,
    id: &str,
    created: u64,
    model: &str,
    text: &str,
    finish_reason: &str,
    usage: Option<Usage>,
) -> Sse {
    let (object, piece): (&str, fn(&str) -> serde_json::Value) = match kind {
        Kind::Chat => (
            "chat.completion.chunk",
            |t| serde_json::json!({"index": 0, "delta": {"content": t}, "finish_reason": null}),
        ),
        Kind::Text => (
            "text_completion",
            |t| serde_json::json!({"index": 0, "text": t, "logprobs": null, "finish_reason": null}),
        ),
    };
    let chunk = |choices: serde_json::Value| serde_json::json!({"id": id, "object": object, "created": created, "model": model, "choices": choices});
    let mut events = Vec::new();
    if matches!(kind, Kind::Chat) {
        events.push(chunk(serde_json::json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}])));
    }
    for word in text.split_inclusive(' ') {
        events.push(chunk(serde_json::json!([piece(word)])));
    }
    let mut last = piece("");
    last["finish_reason"] = serde_json::json!(finish_reason);
    if matches!(kind, Kind::Chat) {
        last["delta"] = serde_json::json!({});
    }
    events.push(chunk(serde_json::json!([last])));
    if let Some(usage) = usage {
        let mut c = chunk(serde_json::json!([]));
        c["usage"] = serde_json::to_value(usage).unwrap_or_default();
        events.push(c);
    }
    let mut frames: Vec<Bytes> = events
        .iter()
        .map(|e| Bytes::from(format!("data: {e}\n\n")))
        .collect();
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Sse(frames)
}

async fn chat(
    State(st): State<Arc<Shared>>,
    Extension(reset): Extension<ConnReset>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    complete(&st, Kind::Chat, &reset, &headers, &body).await
}

async fn text(
    State(st): State<Arc<Shared>>,
    Extension(reset): Extension<ConnReset>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    complete(&st, Kind::Text, &reset, &headers, &body).await
}

#[derive(Deserialize)]
struct EmbeddingsRequest<'a> {
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    input: OneOrMany<'a>,
}

async fn embeddings(State(st): State<Arc<Shared>>, body: Bytes) -> Response {
    st.stats.embeddings.fetch_add(1, Relaxed);
    let req: EmbeddingsRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            st.stats.bad_requests.fetch_add(1, Relaxed);
            return error_response(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &e.to_string(),
            );
        }
    };
    let inputs = req.input.into_vec();
    let tokens_in: u64 = inputs.iter().map(|t| tokens(t)).sum();
    let data: Vec<serde_json::Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, t)| serde_json::json!({"object": "embedding", "index": index, "embedding": embed(t)}))
        .collect();
    Json(serde_json::json!({
        "object": "list",
        "data": data,
        "model": req.model.as_deref().unwrap_or(&st.cfg.model),
        "usage": {"prompt_tokens": tokens_in, "total_tokens": tokens_in},
    }))
    .into_response()
}

async fn models(State(st): State<Arc<Shared>>) -> Response {
    st.stats.models.fetch_add(1, Relaxed);
    let created = st.model_created.load(Relaxed);
    Json(serde_json::json!({
        "object": "list",
        "data": [{"id": st.cfg.model, "object": "model", "created": created, "owned_by": "vigil-stub"}]
    }))
    .into_response()
}

async fn health() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(text))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .with_state(shared)
}

/// A TCP stream that closes with RST (SO_LINGER 0) when its request asked for a reset.
struct ConnIo {
    stream: TcpStream,
    reset: CancellationToken,
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if self.reset.is_cancelled() {
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

async fn serve_connection(stream: TcpStream, app: Router, shutdown: CancellationToken) {
    use tower_service::Service;
    let _ = stream.set_nodelay(true);
    let reset = CancellationToken::new();
    let io = hyper_util::rt::TokioIo::new(ConnIo {
        stream,
        reset: reset.clone(),
    });
    let handle = ConnReset(reset.clone());
    let svc =
        hyper::service::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(handle.clone());
            let mut app = app.clone();
            async move { app.call(req).await }
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        // hyper's default 30 s header timeout also closes idle keep-alive
        // connections, which races with pooled clients sending on them.
        .header_read_timeout(None)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        // Dropping the connection closes the socket mid-request: no response.
        _ = reset.cancelled() => {}
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await;
        }
    }
}

async fn serve_shared(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = router(shared);
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tracker.spawn(serve_connection(stream, app.clone(), stop.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "stub: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    drop(listener);
    stop.cancel();
    tracker.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE * 2, tracker.wait()).await;
    Ok(())
}

fn shared(cfg: StubConfig, stats: Arc<StubStats>) -> Arc<Shared> {
    let attempts = (0..ATTEMPT_SHARDS)
        .map(|_| Mutex::new(HashMap::new()))
        .collect();
    Arc::new(Shared {
        model_created: AtomicU64::new(cfg.model_created),
        slots: cfg.slots.map(|n| tokio::sync::Semaphore::new(n.max(1))),
        cfg,
        stats,
        attempts,
    })
}

/// Serves the stub on `listener` until `shutdown` completes; then lets open
/// requests finish for about a second. For `vigil stub`.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
/// let stop = async { let _ = tokio::signal::ctrl_c().await; };
/// vigil_testkit::stub::serve(listener, Default::default(), stop).await
/// # }
/// ```
pub async fn serve(
    listener: TcpListener,
    cfg: StubConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_shared(
        listener,
        shared(cfg, Arc::new(StubStats::default())),
        shutdown,
    )
    .await
}

/// [`serve`], counting into the given stats.
pub async fn serve_with_stats(
    listener: TcpListener,
    cfg: StubConfig,
    stats: Arc<StubStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_shared(listener, shared(cfg, stats), shutdown).await
}

/// A stub running in the background on 127.0.0.1 and a random port; shuts
/// down when dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use vigil_testkit::stub::{StubConfig, StubServer};
/// let stub = StubServer::start(StubConfig::default()).await?;
/// assert!(stub.base_url().starts_with("http://127.0.0.1:"));
/// assert!(stub.base_url().ends_with("/v1"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct StubServer {
    addr: SocketAddr,
    stats: Arc<StubStats>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

impl StubServer {
    /// Binds 127.0.0.1:0 and starts serving.
    pub async fn start(cfg: StubConfig) -> io::Result<StubServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(StubStats::default());
        let shared = shared(cfg, stats.clone());
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(serve_shared(listener, shared.clone(), async move {
            s.cancelled().await
        }));
        Ok(StubServer {
            addr,
            stats,
            shared,
            stop,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT/v1`, the OpenAI base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<StubStats> {
        self.stats.clone()
    }

    /// Swaps the model behind the same URL and name, as far as `/v1/models`
    /// tells: its entry's `created` becomes `created` (answers stay the same).
    pub fn set_model_created(&self, created: u64) {
        self.shared.model_created.store(created, Relaxed);
    }

    /// Stops accepting, lets open requests finish briefly, and waits.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_answers() {
        assert_eq!(answer("12+7"), "19");
        assert_eq!(answer("What is -3 * 4?"), "-12");
        assert_eq!(answer("5 - -3"), "8");
        assert_eq!(answer("10 / 5"), "2");
        assert_eq!(answer("1 / 4"), "0.25");
        assert_eq!(answer("1 / 0"), "1 / 0");
        assert_eq!(answer("no numbers"), "no numbers");
    }

    #[test]
    fn reply_directive_wins_and_keeps_json() {
        assert_eq!(answer("2+2 [[reply: four]]"), "four");
        assert_eq!(answer("[[reply:{\"a\": [[1]]}]]"), "{\"a\": [[1]]}");
        assert_eq!(answer("[[reply: unterminated"), "[[reply: unterminated");
    }

    #[test]
    fn truncation_counts_words() {
        assert_eq!(
            truncate("a b c d".into(), Some(2)),
            ("a b".to_string(), true)
        );
        assert_eq!(truncate("a b".into(), Some(2)), ("a b".to_string(), false));
        assert_eq!(tokens(""), 1);
        assert_eq!(tokens("one two  three"), 3);
    }

    #[test]
    fn draws_follow_rates() {
        let cfg = StubConfig {
            fail_rate: 0.25,
            empty_rate: 0.25,
            ..Default::default()
        };
        let mut rng = SmallRng::seed_from_u64(1);
        let n = 10_000;
        let (mut fails, mut empties) = (0, 0);
        for _ in 0..n {
            match draw(&cfg, &mut rng) {
                Some(Fault::Fail) => fails += 1,
                Some(Fault::Empty) => empties += 1,
                None => {}
                _ => panic!("unexpected fault"),
            }
        }
        assert!((2200..2800).contains(&fails), "{fails}");
        assert!((2200..2800).contains(&empties), "{empties}");
    }
}
