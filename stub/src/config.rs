//! How a stub behaves.

use std::time::Duration;

/// How the stub behaves; `Default` is a perfect, instant backend.
///
/// Fault rates are probabilities in `[0, 1]`, checked in the order listed
/// (fail, rate limit, reset, hang, garbage, empty); their sum should stay ≤ 1.
///
/// ```
/// use vigil_stub::StubConfig;
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
