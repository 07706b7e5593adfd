//! What a stub counted.

use axum::http::HeaderValue;
use serde::Serialize;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Distinct Authorization header values remembered.
const MAX_AUTH_RECORDED: usize = 64;

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
    pub(crate) traceparent: RwLock<Option<String>>,
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

    pub(crate) fn record_authorization(&self, value: Option<&HeaderValue>) {
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
pub(crate) struct InFlight<'a>(&'a StubStats);

impl<'a> InFlight<'a> {
    pub(crate) fn enter(stats: &'a StubStats) -> (Self, u64) {
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
