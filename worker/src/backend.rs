//! The OpenAI-compatible HTTP client: one pooled `reqwest` client per
//! worker, one call per item with a per-attempt timeout, retries with
//! full-jitter backoff (or the server's `Retry-After`), and the call's
//! [`Slots`] (its target's [`AdaptiveLimit`](crate::retry::AdaptiveLimit),
//! the worker's bound) held around every attempt and given back while a
//! retry waits; no wait goes past the run's deadline. It is the engine of
//! [`crate::backends::HttpBackend`]; [`Completion`] and [`CallFailure`] are
//! what every backend answers.
//!
//! API keys go into the `Authorization` header and nowhere else: error
//! messages are built from redacted parts (reqwest errors without their
//! URL, bodies with the key and the URL's userinfo blanked out).

use crate::retry::{DeadlinePassed, RetryPolicy, Slots, parse_retry_after};
use bytes::Bytes;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use vigil_protocol::{EndpointKind, ErrorKind, Prompt, TargetSpec, TokenUsage, openai};

/// Largest response body read; a backend sending more is broken or hostile.
const MAX_BODY: usize = 16 << 20;
/// Characters of a response body quoted in an error message.
const EXCERPT: usize = 200;
/// Per-attempt timeout when a target sets none: a call must never hang a job.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A model backend's answer to one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The generated text (the first choice's).
    pub text: String,
    /// Token counts, when the backend reported them (else zeros).
    pub usage: TokenUsage,
    /// The first choice's finish reason.
    pub finish_reason: Option<String>,
    /// The model name the backend reported.
    pub model: Option<String>,
    /// Duration of the successful attempt, milliseconds.
    pub latency_ms: f64,
    /// HTTP attempts made, the successful one included.
    pub attempts: u32,
}

/// Why a call failed, after its retries. The message never holds a secret.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct CallFailure {
    /// The kind of the last attempt's failure.
    pub kind: ErrorKind,
    /// What happened, for example `HTTP 503 after 4 attempts: <excerpt>`.
    pub message: String,
    /// HTTP attempts made (0 when the request was refused before any).
    pub attempts: u32,
}

/// A pooled HTTP client for OpenAI-compatible backends: plain `http://`
/// endpoints on hyper's HTTP/1 connections ([`crate::http1`]), the rest
/// (TLS, userinfo in the URL) through reqwest.
#[derive(Debug, Clone)]
pub struct BackendClient {
    /// Built on first use ([`BackendClient::http`]): building it loads the
    /// system's root certificates (10–25 ms of a process's start), which
    /// plain `http://` targets never need.
    http: Arc<OnceLock<reqwest::Client>>,
    plain: crate::http1::Pool,
    base: Duration,
    cap: Duration,
    urls: UrlCache,
}

/// Most endpoint URLs [`UrlCache`] remembers before it starts afresh (a
/// worker calls a handful of targets; the bound only keeps a stream of
/// jobs naming ever new URLs from growing it without end).
const URL_CACHE_MAX: usize = 64;

/// Endpoint URLs parsed once and reused: parsing (with IDNA processing of
/// the host) cost several µs per item when every call parsed its URL again.
#[derive(Debug, Clone, Default)]
struct UrlCache(Arc<Mutex<Vec<UrlEntry>>>);

/// `{base_url}/{path}` and what it parsed to.
type UrlEntry = (String, Arc<ParsedUrl>);

/// An endpoint URL, and how it is called.
#[derive(Debug)]
struct ParsedUrl {
    url: reqwest::Url,
    /// Set for plain `http://` without userinfo: sent through [`crate::http1`].
    plain: Option<crate::http1::Endpoint>,
}

impl UrlCache {
    /// `{base_url}/{path}` parsed, from the cache when seen before; `None`
    /// when it does not parse (the caller then lets reqwest report it).
    fn get(&self, base_url: &str, path: &str) -> Option<Arc<ParsedUrl>> {
        let base_url = base_url.trim_end_matches('/');
        let mut urls = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up without building the joined string (a few entries: one
        // per target and path, so a scan).
        if let Some(url) = urls
            .iter()
            .find(|(k, _)| {
                k.len() == base_url.len() + 1 + path.len()
                    && k.starts_with(base_url)
                    && k.ends_with(path)
                    && k.as_bytes()[base_url.len()] == b'/'
            })
            .map(|(_, v)| v.clone())
        {
            return Some(url);
        }
        let joined = format!("{base_url}/{path}");
        let url = reqwest::Url::parse(&joined).ok()?;
        let parsed = Arc::new(ParsedUrl {
            plain: crate::http1::Endpoint::of(&url),
            url,
        });
        if urls.len() >= URL_CACHE_MAX {
            urls.clear();
        }
        urls.push((joined, parsed.clone()));
        Some(parsed)
    }
}

impl Default for BackendClient {
    fn default() -> Self {
        Self::new()
    }
}

/// A successful call's parsed answer, its latency and attempts.
#[derive(Debug, Clone)]
pub(crate) struct Answered<T> {
    /// What `parse` made of the body.
    pub value: T,
    /// Duration of the successful attempt, milliseconds.
    pub latency_ms: f64,
    /// HTTP attempts made, the successful one included.
    pub attempts: u32,
}

/// One failed attempt, before it becomes a [`CallFailure`].
pub(crate) struct Failed {
    pub(crate) kind: ErrorKind,
    head: String,
    excerpt: Option<String>,
    retry_after: Option<Duration>,
}

impl Failed {
    pub(crate) fn new(kind: ErrorKind, head: impl Into<String>) -> Self {
        Failed {
            kind,
            head: head.into(),
            excerpt: None,
            retry_after: None,
        }
    }

    pub(crate) fn excerpt(mut self, excerpt: impl Into<String>) -> Self {
        let excerpt = excerpt.into();
        self.excerpt = (!excerpt.is_empty()).then_some(excerpt);
        self
    }

    fn retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Connection
                | ErrorKind::Timeout
                | ErrorKind::RateLimited
                | ErrorKind::ServerError
                | ErrorKind::InvalidResponse
                | ErrorKind::EmptyResponse
        )
    }

    fn into_failure(self, attempts: u32, secrets: &Secrets) -> CallFailure {
        let plural = if attempts == 1 { "" } else { "s" };
        let mut message = format!("{} after {attempts} attempt{plural}", self.head);
        if let Some(excerpt) = &self.excerpt {
            message.push_str(": ");
            message.push_str(excerpt);
        }
        CallFailure {
            kind: self.kind,
            message: secrets.redact(&message),
            attempts,
        }
    }
}

/// Strings that must not appear in any message.
struct Secrets(Vec<String>);

impl Secrets {
    fn new(api_key: Option<&str>, base_url: &str) -> Self {
        let mut secrets: Vec<String> = api_key.into_iter().map(str::to_string).collect();
        if let Ok(url) = reqwest::Url::parse(base_url) {
            secrets.extend(url.password().map(str::to_string));
            secrets.push(url.username().to_string());
        }
        // Tiny "secrets" would blank out ordinary words; a key that short
        // is not a secret worth the damage.
        secrets.retain(|s| s.len() >= 4);
        Secrets(secrets)
    }

    fn redact(&self, text: &str) -> String {
        self.0.iter().fold(text.to_string(), |acc, s| {
            acc.replace(s.as_str(), "[redacted]")
        })
    }
}

/// The first characters of a body, on one line.
pub(crate) fn excerpt(body: &[u8]) -> String {
    crate::text::short(String::from_utf8_lossy(body).trim(), EXCERPT)
}

/// A reqwest error and its causes, without the URL (which may carry userinfo).
fn describe(err: reqwest::Error) -> String {
    describe_error(&err.without_url())
}

/// An error and its causes, on one line (a cause whose text the line holds
/// already is not repeated).
pub(crate) fn describe_error(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn classify(err: reqwest::Error) -> Failed {
    if err.is_builder() {
        return Failed::new(ErrorKind::ClientError, "invalid request").excerpt(describe(err));
    }
    if err.is_timeout() {
        return Failed::new(ErrorKind::Timeout, "timeout").excerpt(describe(err));
    }
    // Refused, reset, DNS, TLS, a body cut short: all "could not talk to it".
    Failed::new(ErrorKind::Connection, "connection error").excerpt(describe(err))
}

/// The request body for `prompt` at `target`, or why it cannot be sent. It
/// borrows the prompt and the target's strings.
fn request_body<'a>(
    target: &'a TargetSpec,
    prompt: &'a Prompt,
) -> Result<openai::CompletionRequest<'a>, Failed> {
    let p = &target.params;
    let mut body = openai::CompletionRequest {
        model: Some(Cow::Borrowed(&target.model)),
        temperature: p.temperature,
        top_p: p.top_p,
        max_tokens: p.max_tokens.map(u64::from),
        seed: p.seed,
        stop: (!p.stop.is_empty()).then(|| {
            openai::OneOrMany::Many(p.stop.iter().map(|s| Cow::Borrowed(s.as_str())).collect())
        }),
        ..Default::default()
    };
    match (target.kind, prompt) {
        (EndpointKind::Chat, Prompt::Chat(messages)) => {
            body.messages = Some(
                messages
                    .iter()
                    .map(|m| openai::Message::text(m.role.as_str(), m.content.as_str()))
                    .collect(),
            );
        }
        (EndpointKind::Completions, Prompt::Completion(text)) => {
            body.prompt = Some(openai::OneOrMany::One(Cow::Borrowed(text)));
        }
        (EndpointKind::Chat, Prompt::Completion(_)) => {
            return Err(Failed::new(
                ErrorKind::ClientError,
                format!(
                    "target `{}` is a chat endpoint but the prompt is a completion prompt",
                    target.name
                ),
            ));
        }
        (EndpointKind::Local | EndpointKind::Recorded, _) => {
            return Err(Failed::new(
                ErrorKind::ClientError,
                format!("target `{}` is not an HTTP endpoint", target.name),
            ));
        }
        (EndpointKind::Completions, Prompt::Chat(_)) => {
            return Err(Failed::new(
                ErrorKind::ClientError,
                format!(
                    "target `{}` is a completions endpoint but the prompt is chat messages",
                    target.name
                ),
            ));
        }
    }
    Ok(body)
}

/// Reads a response body the way a call does: the completion, or the error
/// kind the item would record. Public for the fuzz targets (bodies come from
/// the network and must never panic the worker).
///
/// ```
/// use vigil_protocol::{EndpointKind, ErrorKind};
/// let ok = br#"{"choices":[{"message":{"content":"4"}}]}"#;
/// assert_eq!(vigil_worker::backend::parse_response(EndpointKind::Chat, ok).unwrap().text, "4");
/// let empty = br#"{"choices":[]}"#;
/// assert_eq!(vigil_worker::backend::parse_response(EndpointKind::Chat, empty).unwrap_err(), ErrorKind::EmptyResponse);
/// ```
pub fn parse_response(kind: EndpointKind, body: &[u8]) -> Result<Completion, ErrorKind> {
    parse_completion(kind, body).map_err(|failed| failed.kind)
}

/// Reads a successful response body into a completion (latency and
/// attempts filled in by the caller). The body is read into the typed
/// [`openai::CompletionResponse`], borrowing its strings; only the first
/// choice's text is copied out.
fn parse_completion(kind: EndpointKind, body: &[u8]) -> Result<Completion, Failed> {
    // A body that is UTF-8 as a whole (any real one: one pass, fast for
    // ASCII) is read as a `str`, so serde_json does not check each string
    // again; any other is read as bytes, as before (its stray bytes may sit
    // in a value the reader skips, which is no error).
    let parsed = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    };
    let response: openai::CompletionResponse = parsed.map_err(|e| {
        let head = if e.is_data() && !is_object(body) {
            "response is not a JSON object".to_string()
        } else {
            format!("invalid JSON in response ({e})")
        };
        Failed::new(ErrorKind::InvalidResponse, head).excerpt(excerpt(body))
    })?;
    // serde reads a struct from an array too; a response is an object.
    if !is_object(body) {
        return Err(
            Failed::new(ErrorKind::InvalidResponse, "response is not a JSON object")
                .excerpt(excerpt(body)),
        );
    }
    let Some(first) = response.choices.as_ref().and_then(|c| c.first()) else {
        return Err(
            Failed::new(ErrorKind::EmptyResponse, "no choices in response").excerpt(excerpt(body)),
        );
    };
    let text = match kind {
        EndpointKind::Chat | EndpointKind::Local | EndpointKind::Recorded => first
            .message
            .as_ref()
            .and_then(openai::Message::content_text),
        EndpointKind::Completions => first.text.as_deref().map(Cow::Borrowed),
    };
    // An empty string is an answer (the model stopped at once) and gets
    // scored; a missing or null text is not.
    let Some(text) = text else {
        return Err(
            Failed::new(ErrorKind::EmptyResponse, "no text in the first choice")
                .excerpt(excerpt(body)),
        );
    };
    let usage = response.usage.unwrap_or_default();
    Ok(Completion {
        text: text.into_owned(),
        usage: TokenUsage {
            input: usage.prompt_tokens,
            output: usage.completion_tokens,
        },
        finish_reason: first.finish_reason.as_deref().map(str::to_string),
        model: response.model.map(Cow::into_owned),
        latency_ms: 0.0,
        attempts: 0,
    })
}

/// Whether a JSON body is an object (its first non-blank byte is `{`).
fn is_object(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

impl BackendClient {
    /// A client with connection pooling, no global timeout (each attempt
    /// has the target's), no redirects (a redirect could carry the
    /// `Authorization` header somewhere the configuration never allowed),
    /// and backoff from 250 ms up to 10 s.
    ///
    /// # Panics
    ///
    /// The first call that needs reqwest (an `https://` target, userinfo in
    /// the URL, `GET /models`) panics if the TLS stack cannot be initialised,
    /// which would be a build defect.
    pub fn new() -> Self {
        let defaults = RetryPolicy::default();
        BackendClient {
            http: Arc::default(),
            plain: crate::http1::Pool::default(),
            base: defaults.base,
            cap: defaults.cap,
            urls: UrlCache::default(),
        }
    }

    /// reqwest's client (TLS, userinfo, `GET /models`), built the first time
    /// it is needed and shared by every clone of this client.
    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            // reqwest is built with `rustls-no-provider`: without a
            // process-wide provider every https call would fail. Another part
            // of the process may have installed one already, which is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_idle_timeout(Duration::from_secs(90))
                .tcp_nodelay(true)
                .user_agent(crate::http1::AGENT)
                .build()
                .expect("the HTTP client builds with a rustls provider installed")
        })
    }

    /// The same client with another backoff range (the number of retries
    /// comes from each target).
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.base = base;
        self.cap = cap;
        self
    }

    /// Sends `prompt` to `target` and returns the first choice's text,
    /// retrying retryable failures up to `target.max_retries` times.
    ///
    /// Every attempt holds the call's `slots` (given back while a retry
    /// waits; a plain `&AdaptiveLimit` is slots too); a 429 shrinks the
    /// target's limit, a success grows it. A wait that would pass the
    /// deadline fails the call as `deadline` at once. `extra_headers` (for example `traceparent`) go with every
    /// attempt; invalid ones are skipped.
    pub async fn complete(
        &self,
        target: &TargetSpec,
        api_key: Option<&str>,
        prompt: &Prompt,
        slots: impl Into<Slots<'_>>,
        extra_headers: &[(String, String)],
    ) -> Result<Completion, CallFailure> {
        let body = request_body(target, prompt)
            .map_err(|f| f.into_failure(0, &Secrets::new(api_key, &target.base_url)))?;
        let path = match target.kind {
            EndpointKind::Chat | EndpointKind::Local | EndpointKind::Recorded => "chat/completions",
            EndpointKind::Completions => "completions",
        };
        let kind = target.kind;
        let answered = self
            .post(
                target,
                api_key,
                path,
                &body,
                slots,
                extra_headers,
                |bytes| parse_completion(kind, bytes),
            )
            .await?;
        let mut completion = answered.value;
        completion.latency_ms = answered.latency_ms;
        completion.attempts = answered.attempts;
        Ok(completion)
    }

    /// The server's `/v1/models` entry for `target.model` (`GET
    /// {base_url}/models`, the target's timeout, one attempt): `Ok(None)`
    /// when the server has no such route (404, 405) or lists no entry with
    /// that id. Errors never hold the key.
    pub async fn model_entry(
        &self,
        target: &TargetSpec,
        api_key: Option<&str>,
    ) -> Result<Option<Map<String, Value>>, CallFailure> {
        let secrets = Secrets::new(api_key, &target.base_url);
        let url = format!("{}/models", target.base_url.trim_end_matches('/'));
        let timeout = match target.timeout_ms {
            0 => DEFAULT_TIMEOUT,
            ms => Duration::from_millis(ms),
        };
        let read = async {
            // Plain HTTP without a proxy: the calls' own client (building
            // reqwest's loads the system's root certificates).
            let plain = reqwest::Url::parse(&url)
                .ok()
                .and_then(|u| crate::http1::Endpoint::of(&u));
            let (status, bytes) = match plain {
                Some(endpoint) => {
                    let answer = self
                        .plain
                        .get(&endpoint, &headers(api_key, &[]), MAX_BODY)
                        .await?;
                    (answer.status, answer.body)
                }
                None => {
                    let mut response = self
                        .http()
                        .get(&url)
                        .headers(headers(api_key, &[]))
                        .send()
                        .await
                        .map_err(classify)?;
                    (response.status(), read_body(&mut response).await?)
                }
            };
            if matches!(status.as_u16(), 404 | 405) {
                return Ok(None);
            }
            if !status.is_success() {
                return Err(Failed::new(
                    ErrorKind::ClientError,
                    format!("GET /models: HTTP {}", status.as_u16()),
                )
                .excerpt(excerpt(&bytes)));
            }
            let list: Value = serde_json::from_slice(&bytes).map_err(|_| {
                Failed::new(ErrorKind::InvalidResponse, "GET /models: not JSON")
                    .excerpt(excerpt(&bytes))
            })?;
            let entry = list
                .get("data")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
                .find(|e| e.get("id").and_then(Value::as_str) == Some(target.model.as_str()))
                .cloned();
            Ok(entry)
        };
        tokio::time::timeout(timeout, read)
            .await
            .unwrap_or_else(|_| {
                Err(Failed::new(
                    ErrorKind::Timeout,
                    format!("GET /models: timeout ({} ms)", timeout.as_millis()),
                ))
            })
            .map_err(|f| f.into_failure(1, &secrets))
    }

    /// POSTs a JSON `body` to `{target.base_url}/{path}` with the target's
    /// timeout, retries and `slots` (as [`BackendClient::complete`] does) and
    /// reads a successful response with `parse`.
    #[allow(clippy::too_many_arguments)] // one call's inputs; a struct would only rename them
    pub(crate) async fn post<T>(
        &self,
        target: &TargetSpec,
        api_key: Option<&str>,
        path: &str,
        body: &(impl serde::Serialize + ?Sized),
        slots: impl Into<Slots<'_>>,
        extra_headers: &[(String, String)],
        parse: impl Fn(&[u8]) -> Result<T, Failed>,
    ) -> Result<Answered<T>, CallFailure> {
        let slots = slots.into();
        let limit = slots.target;
        // The first attempt's slots before the request is built: the many
        // calls waiting for one (a worker holds several times its
        // concurrency in items) hold no body, URL or headers meanwhile.
        let mut first = Some(
            slots
                .acquire()
                .await
                .map_err(|passed| past_deadline(passed, "waiting for a call slot", 0, None))?,
        );
        // Only a failure needs the secrets (to redact its message).
        let secrets = || Secrets::new(api_key, &target.base_url);
        // Room for a typical request at once (`to_vec` starts at 128 bytes
        // and grows two or three times).
        let mut buf = Vec::with_capacity(512);
        serde_json::to_writer(&mut buf, body)
            .expect("a request body serialises (string keys, no maps of other keys)");
        let body = Bytes::from(buf);
        // A URL that does not parse goes to reqwest as text, which reports it.
        let url = self
            .urls
            .get(&target.base_url, path)
            .ok_or_else(|| format!("{}/{path}", target.base_url.trim_end_matches('/')));
        let headers = headers(api_key, extra_headers);
        let timeout = match target.timeout_ms {
            0 => DEFAULT_TIMEOUT,
            ms => Duration::from_millis(ms),
        };
        let policy = RetryPolicy {
            max_retries: target.max_retries,
            base: self.base,
            cap: self.cap,
        };

        let mut attempt: u32 = 0;
        // The previous attempt's failure, for a deadline's message.
        let mut last: Option<CallFailure> = None;
        loop {
            attempt += 1;
            let acquired = match first.take() {
                Some(permit) => Ok(permit),
                None => slots.acquire().await,
            };
            let permit = match acquired {
                Ok(permit) => permit,
                Err(passed) => {
                    return Err(past_deadline(
                        passed,
                        "waiting for a call slot",
                        attempt - 1,
                        last.as_ref(),
                    ));
                }
            };
            let started = Instant::now();
            let outcome =
                tokio::time::timeout(timeout, self.attempt(&url, &headers, body.clone(), &parse))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Failed::new(
                            ErrorKind::Timeout,
                            format!("timeout ({} ms)", timeout.as_millis()),
                        ))
                    });
            let elapsed = started.elapsed();
            drop(permit);
            let failed = match outcome {
                Ok(value) => {
                    limit.on_success();
                    return Ok(Answered {
                        value,
                        latency_ms: elapsed.as_secs_f64() * 1000.0,
                        attempts: attempt,
                    });
                }
                Err(failed) => failed,
            };
            if failed.kind == ErrorKind::RateLimited {
                limit.on_rate_limited_sent(started);
            }
            let retries_done = attempt - 1;
            if !failed.retryable() || retries_done >= policy.max_retries {
                return Err(failed.into_failure(attempt, &secrets()));
            }
            let (wait, why) = match failed.retry_after {
                Some(wait) => (wait, "Retry-After"),
                None => (policy.backoff(retries_done), "backoff"),
            };
            tracing::debug!(
                target_name = %target.name,
                kind = %failed.kind,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "backend call failed, retrying"
            );
            let failure = failed.into_failure(attempt, &secrets());
            if let Err(passed) = slots.wait(wait).await {
                let waiting = format!("before a retry in {:.1} s ({why})", wait.as_secs_f64());
                return Err(past_deadline(passed, &waiting, attempt, Some(&failure)));
            }
            last = Some(failure);
        }
    }

    /// One HTTP attempt, body read included.
    async fn attempt<T>(
        &self,
        url: &Result<Arc<ParsedUrl>, String>,
        headers: &HeaderMap,
        body: Bytes,
        parse: &impl Fn(&[u8]) -> Result<T, Failed>,
    ) -> Result<T, Failed> {
        let retry_after = |headers: &HeaderMap| {
            headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()))
        };
        let (status, retry_after, bytes) = match url {
            Ok(parsed) if parsed.plain.is_some() => {
                let endpoint = parsed.plain.as_ref().expect("checked");
                let answer = self.plain.post(endpoint, headers, body, MAX_BODY).await?;
                (answer.status, retry_after(&answer.headers), answer.body)
            }
            _ => {
                let request = match url {
                    Ok(parsed) => self.http().post(parsed.url.clone()),
                    Err(text) => self.http().post(text.as_str()),
                };
                let mut response = request
                    .headers(headers.clone())
                    .body(body)
                    .send()
                    .await
                    .map_err(classify)?;
                let status = response.status();
                let retry_after = retry_after(response.headers());
                (status, retry_after, read_body(&mut response).await?)
            }
        };
        if status.is_success() {
            return parse(&bytes);
        }
        let kind = match status.as_u16() {
            429 => ErrorKind::RateLimited,
            500..=599 => ErrorKind::ServerError,
            _ => ErrorKind::ClientError,
        };
        let mut failed =
            Failed::new(kind, format!("HTTP {}", status.as_u16())).excerpt(excerpt(&bytes));
        failed.retry_after = retry_after;
        Err(failed)
    }
}

/// A call the deadline stopped `waiting` (for example `before a retry in
/// 30.0 s (Retry-After)`) after `attempts`, the last of which failed as `last`.
pub(crate) fn past_deadline(
    passed: DeadlinePassed,
    waiting: &str,
    attempts: u32,
    last: Option<&CallFailure>,
) -> CallFailure {
    let mut message = format!("{passed}, {waiting}");
    if let Some(last) = last {
        // `last` is redacted already.
        message.push_str(&format!("; last attempt: {}: {}", last.kind, last.message));
    }
    CallFailure {
        kind: ErrorKind::Deadline,
        message,
        attempts,
    }
}

/// A response's body, at most [`MAX_BODY`] bytes.
async fn read_body(response: &mut reqwest::Response) -> Result<Vec<u8>, Failed> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(classify)? {
        if bytes.len() + chunk.len() > MAX_BODY {
            return Err(Failed::new(
                ErrorKind::InvalidResponse,
                format!("response body larger than {} MiB", MAX_BODY >> 20),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The headers of every attempt.
fn headers(api_key: Option<&str>, extra: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    map.insert(ACCEPT, HeaderValue::from_static("application/json"));
    for (name, value) in extra {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                map.insert(name, value);
            }
            // The value is not logged: it might be anything.
            _ => tracing::warn!(header = %name, "skipping an invalid extra header"),
        }
    }
    if let Some(key) = api_key {
        match HeaderValue::from_str(&format!("Bearer {key}")) {
            Ok(mut value) => {
                value.set_sensitive(true);
                map.insert(AUTHORIZATION, value);
            }
            Err(_) => tracing::warn!("the API key is not a valid header value; sending none"),
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vigil_protocol::{ChatMessage, SamplingParams};

    fn target(kind: EndpointKind) -> TargetSpec {
        TargetSpec {
            name: "t".into(),
            kind,
            model: "m".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_body_that_is_not_utf8_reads_as_before() {
        // Stray bytes in a field the reader skips: still an answer.
        let mut body = br#"{"choices":[{"message":{"content":"4"}}],"x":"?"}"#.to_vec();
        let stray = body.len() - 3;
        body[stray] = 0xff;
        assert_eq!(parse_response(EndpointKind::Chat, &body).unwrap().text, "4");
        // In the text: invalid JSON, with the same message as before.
        let mut body = br#"{"choices":[{"message":{"content":"?"}}]}"#.to_vec();
        let stray = body.len() - 6;
        body[stray] = 0xff;
        let failed = parse_completion(EndpointKind::Chat, &body).err().unwrap();
        assert_eq!(failed.kind, ErrorKind::InvalidResponse);
        let expected = serde_json::from_slice::<openai::CompletionResponse>(&body).unwrap_err();
        assert!(
            failed.head.contains(&expected.to_string()),
            "{}",
            failed.head
        );
        // A UTF-8 body: the same answer as read from bytes, escapes included.
        let body = r#"{"choices":[{"message":{"content":"é \u00e9 \n"}}]}"#;
        assert_eq!(
            parse_response(EndpointKind::Chat, body.as_bytes())
                .unwrap()
                .text,
            "é é \n"
        );
    }

    #[test]
    fn chat_body_has_only_the_set_params() {
        let mut t = target(EndpointKind::Chat);
        t.params = SamplingParams {
            temperature: Some(0.0),
            seed: Some(7),
            ..Default::default()
        };
        let prompt = Prompt::Chat(vec![ChatMessage {
            role: "user".into(),
            content: "hi".into(),
        }]);
        let body = serde_json::to_value(request_body(&t, &prompt).ok().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.0, "seed": 7})
        );
    }

    #[test]
    fn completions_body() {
        let mut t = target(EndpointKind::Completions);
        t.params = SamplingParams {
            max_tokens: Some(5),
            stop: vec!["\n".into()],
            top_p: Some(0.9),
            ..Default::default()
        };
        let prompt = Prompt::Completion("2+2=".into());
        let body = serde_json::to_value(request_body(&t, &prompt).ok().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"model": "m", "prompt": "2+2=", "max_tokens": 5, "stop": ["\n"], "top_p": 0.9})
        );
    }

    #[test]
    fn parse_chat_and_completions() {
        let chat = br#"{"model":"x","choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
        let c = parse_completion(EndpointKind::Chat, chat).ok().unwrap();
        assert_eq!(
            (
                c.text.as_str(),
                c.usage,
                c.finish_reason.as_deref(),
                c.model.as_deref()
            ),
            (
                "hi",
                TokenUsage {
                    input: 3,
                    output: 1
                },
                Some("stop"),
                Some("x")
            )
        );
        let parts = br#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#;
        assert_eq!(
            parse_completion(EndpointKind::Chat, parts)
                .ok()
                .unwrap()
                .text,
            "ab"
        );
        let comp = br#"{"choices":[{"text":""}]}"#;
        assert_eq!(
            parse_completion(EndpointKind::Completions, comp)
                .ok()
                .unwrap()
                .text,
            ""
        );
    }

    #[test]
    fn parse_failures() {
        let kind = |body: &[u8]| {
            parse_completion(EndpointKind::Chat, body)
                .err()
                .unwrap()
                .kind
        };
        assert_eq!(kind(b"<html>"), ErrorKind::InvalidResponse);
        assert_eq!(kind(b"[1]"), ErrorKind::InvalidResponse);
        assert_eq!(kind(b"  \"x\""), ErrorKind::InvalidResponse);
        // Fields of another type read as absent, as the untyped reader did.
        assert_eq!(kind(br#"{"choices": [1]}"#), ErrorKind::EmptyResponse);
        assert_eq!(
            kind(br#"{"choices": [{"message": {"content": 5}}]}"#),
            ErrorKind::EmptyResponse
        );
        let odd = br#"{"model": 1, "choices": [{"message": {"content": "a"}, "finish_reason": 2}], "usage": {"prompt_tokens": "x", "completion_tokens": 4}}"#;
        let c = parse_completion(EndpointKind::Chat, odd).ok().unwrap();
        assert_eq!((c.model, c.finish_reason), (None, None));
        assert_eq!(
            c.usage,
            TokenUsage {
                input: 0,
                output: 4
            }
        );
        assert_eq!(kind(br#"{"choices": 3}"#), ErrorKind::InvalidResponse);
        assert_eq!(kind(br#"{"choices": []}"#), ErrorKind::EmptyResponse);
        assert_eq!(kind(br#"{"object": "x"}"#), ErrorKind::EmptyResponse);
        assert_eq!(
            kind(br#"{"choices": [{"message": {"content": null}}]}"#),
            ErrorKind::EmptyResponse
        );
        assert_eq!(
            parse_completion(
                EndpointKind::Completions,
                br#"{"choices":[{"message":{"content":"x"}}]}"#
            )
            .err()
            .unwrap()
            .kind,
            ErrorKind::EmptyResponse
        );
    }

    #[test]
    fn endpoint_urls_are_parsed_once_and_the_cache_stays_bounded() {
        let urls = UrlCache::default();
        let url = urls.get("http://h:8000/v1/", "chat/completions").unwrap();
        assert_eq!(url.url.as_str(), "http://h:8000/v1/chat/completions");
        assert!(url.plain.is_some(), "plain http goes through hyper");
        assert_eq!(urls.0.lock().unwrap().len(), 1);
        let again = urls.get("http://h:8000/v1", "chat/completions").unwrap();
        assert!(Arc::ptr_eq(&again, &url));
        assert_eq!(
            urls.0.lock().unwrap().len(),
            1,
            "the same URL is not parsed again"
        );
        // A longer path under the same base is another entry.
        let other = urls.get("http://h:8000/v1", "completions").unwrap();
        assert_eq!(other.url.as_str(), "http://h:8000/v1/completions");
        let tls = urls.get("https://h/v1", "completions").unwrap();
        assert!(tls.plain.is_none(), "TLS goes through reqwest");
        assert!(urls.get("not a url", "completions").is_none());
        for i in 0..(URL_CACHE_MAX + 10) {
            urls.get(&format!("http://h{i}/v1"), "completions").unwrap();
        }
        assert!(urls.0.lock().unwrap().len() <= URL_CACHE_MAX);
    }

    #[test]
    fn secrets_are_redacted() {
        let s = Secrets::new(Some("sk-secret-123"), "http://alice:hunter22@h/v1");
        assert_eq!(
            s.redact("bad key sk-secret-123 for alice:hunter22"),
            "bad key [redacted] for [redacted]:[redacted]"
        );
        let none = Secrets::new(None, "not a url");
        assert_eq!(none.redact("as is"), "as is");
    }
}
