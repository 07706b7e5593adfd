//! Retries and adaptive concurrency for backend calls: full-jitter
//! exponential backoff, `Retry-After` parsing, an AIMD limit per target
//! that halves on 429 and grows back by one per window of successes, and
//! the [`Slots`] a call's attempts hold: its target's, the worker's, and
//! its job's, all given back while a retry waits, every wait ending at the
//! run's [`Deadline`].

use rand::Rng;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, SemaphorePermit};

/// Longest wait a server's `Retry-After` can impose: longer than this is
/// better reported as a failure than spent sleeping inside a job.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How often and how long to back off between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The backoff ceiling of the first retry.
    pub base: Duration,
    /// The largest backoff ceiling.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0 for the first retry):
    /// uniform in `[0, min(cap, base * 2^attempt)]` ("full jitter"), so that
    /// many workers rejected together do not come back together.
    ///
    /// ```
    /// use std::time::Duration;
    /// use vigil_worker::retry::RetryPolicy;
    /// let p = RetryPolicy { max_retries: 5, base: Duration::from_millis(100), cap: Duration::from_secs(1) };
    /// assert!(p.backoff(0) <= Duration::from_millis(100));
    /// assert!(p.backoff(30) <= Duration::from_secs(1));
    /// ```
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        if ceiling.is_zero() {
            return ceiling;
        }
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }

    /// The upper bound of [`backoff`](Self::backoff) for `attempt`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.cap)
    }
}

/// Parses an HTTP `Retry-After` value: delta-seconds (fractions tolerated)
/// or an HTTP-date, as a wait from `now`, at most [`MAX_RETRY_AFTER`]. A date
/// in the past is a wait of zero; anything unparseable is `None`.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use vigil_worker::retry::parse_retry_after;
/// let now = SystemTime::now();
/// assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
/// assert_eq!(parse_retry_after("99999", now), Some(Duration::from_secs(300)));
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let wait = if value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits but too large for u64 is still "a very long time".
        value
            .parse::<u64>()
            .map_or(MAX_RETRY_AFTER, Duration::from_secs)
    } else if let Ok(secs) = value.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        Duration::try_from_secs_f64(secs).unwrap_or(MAX_RETRY_AFTER)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// An AIMD concurrency limit for one target: at most [`limit`](Self::limit)
/// permits are out at a time; a 429 halves the limit, each success adds
/// `1/limit` (exactly one per window of `limit` successes) up to the maximum.
///
/// Cloning shares the limit. Shrinking works while permits are out: the
/// surplus permits simply are not replaced when they come back.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use vigil_worker::retry::AdaptiveLimit;
/// let limit = AdaptiveLimit::new(8);
/// let permit = limit.acquire().await;
/// limit.on_rate_limited();
/// assert_eq!(limit.limit(), 4);
/// drop(permit);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    max: usize,
    cooldown: Duration,
    state: Mutex<State>,
    /// Woken when a permit comes back or the limit grows.
    freed: Notify,
}

#[derive(Debug)]
struct State {
    /// Fractional, so additive increase can add `1/limit` per success.
    limit: f64,
    in_flight: usize,
    last_decrease: Option<Instant>,
}

impl State {
    fn whole(&self) -> usize {
        // `limit` stays in [1, max]; the cast cannot truncate a real value.
        (self.limit.floor() as usize).max(1)
    }
}

/// A slot in an [`AdaptiveLimit`]; the slot is freed on drop.
#[derive(Debug)]
#[must_use = "the permit is released as soon as it is dropped"]
pub struct AdaptivePermit {
    shared: Arc<Shared>,
}

impl Drop for AdaptivePermit {
    fn drop(&mut self) {
        let free = {
            let mut state = self.shared.lock();
            state.in_flight -= 1;
            state.in_flight < state.whole()
        };
        if free {
            self.shared.freed.notify_one();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a few numbers updated atomically under the lock; a
        // panic elsewhere cannot leave it half-written, so poison is moot.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl AdaptiveLimit {
    /// A limit starting at (and never above) `max` (at least 1), halving at
    /// most once per 100 ms (and once per burst of 429s: see
    /// [`on_rate_limited_sent`](Self::on_rate_limited_sent)).
    pub fn new(max: usize) -> Self {
        Self::with_cooldown(max, Duration::from_millis(100))
    }

    /// Like [`new`](Self::new) with the shortest time between two halvings:
    /// a burst of 429s answering requests sent together is one signal, not
    /// many, and must not collapse the limit to 1.
    pub fn with_cooldown(max: usize, cooldown: Duration) -> Self {
        let max = max.max(1);
        AdaptiveLimit {
            shared: Arc::new(Shared {
                max,
                cooldown,
                state: Mutex::new(State {
                    limit: max as f64,
                    in_flight: 0,
                    last_decrease: None,
                }),
                freed: Notify::new(),
            }),
        }
    }

    /// Waits for a free slot. Cancel-safe: dropping the future gives nothing up.
    pub async fn acquire(&self) -> AdaptivePermit {
        loop {
            // A free slot is taken without registering as a waiter.
            if let Some(permit) = self.try_acquire() {
                return permit;
            }
            let freed = self.shared.freed.notified();
            tokio::pin!(freed);
            // Register before checking again, so a release between the
            // check and the await still wakes us.
            freed.as_mut().enable();
            if let Some(permit) = self.try_acquire() {
                return permit;
            }
            freed.await;
        }
    }

    /// A free slot now, or `None` when every slot is taken.
    pub fn try_acquire(&self) -> Option<AdaptivePermit> {
        let mut state = self.shared.lock();
        if state.in_flight >= state.whole() {
            return None;
        }
        state.in_flight += 1;
        let more = state.in_flight < state.whole();
        drop(state);
        if more {
            // We may have consumed a wake-up meant for several slots (the
            // limit grew by more than one): pass it on.
            self.shared.freed.notify_one();
        }
        Some(AdaptivePermit {
            shared: self.shared.clone(),
        })
    }

    /// The target said 429 to an attempt sent just now: see
    /// [`on_rate_limited_sent`](Self::on_rate_limited_sent).
    pub fn on_rate_limited(&self) {
        self.on_rate_limited_sent(Instant::now());
    }

    /// The target answered 429 to an attempt sent at `sent`: halve the limit
    /// unless that attempt was sent before the last halving (it belongs to
    /// the burst that halving already answered) or the last halving was
    /// less than the cooldown ago. Attempts waiting to retry hold
    /// no slot, so a target over its capacity refuses the excess at once and
    /// the freed slots are taken again at once: the limit must come down
    /// within a round trip, not a second, or most attempts are refused.
    pub fn on_rate_limited_sent(&self, sent: Instant) {
        let mut state = self.shared.lock();
        let now = Instant::now();
        if state
            .last_decrease
            .is_some_and(|at| sent < at || now.duration_since(at) < self.shared.cooldown)
        {
            return;
        }
        state.limit = (state.whole() / 2).max(1) as f64;
        state.last_decrease = Some(now);
    }

    /// A call succeeded: grow the limit by `1/limit`, up to the maximum, so
    /// that a full window of successes adds one.
    pub fn on_success(&self) {
        let grew = {
            let mut state = self.shared.lock();
            let before = state.whole();
            // 1/whole, not 1/limit: exactly +1 after `whole` successes.
            state.limit = (state.limit + 1.0 / before as f64).min(self.shared.max as f64);
            state.whole() > before
        };
        if grew {
            self.shared.freed.notify_one();
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.shared.lock().whole()
    }

    /// Permits currently out.
    pub fn in_flight(&self) -> usize {
        self.shared.lock().in_flight
    }

    /// The most the limit can grow to.
    pub fn max(&self) -> usize {
        self.shared.max
    }
}

/// One [`AdaptiveLimit`] per endpoint and model (`base_url|model`), created
/// on first use from the target's `max_concurrency` and shared by every job
/// of the worker that calls it.
#[derive(Debug, Default)]
pub struct EndpointLimits(Mutex<std::collections::HashMap<String, Arc<AdaptiveLimit>>>);

impl EndpointLimits {
    /// The limit of `target`'s endpoint and model.
    pub fn of(&self, target: &vigil_protocol::TargetSpec) -> Arc<AdaptiveLimit> {
        let key = format!("{}|{}", target.base_url, target.model);
        let mut limits = self.0.lock().expect("limits lock");
        limits
            .entry(key)
            .or_insert_with(|| Arc::new(AdaptiveLimit::new(target.max_concurrency.max(1) as usize)))
            .clone()
    }
}

/// When a job's run must be done: every wait of a call (for a slot, a
/// backoff, a `Retry-After`) ends there.
///
/// ```
/// use std::time::Duration;
/// use vigil_worker::retry::Deadline;
/// assert_eq!(Deadline::NONE.left(), None);
/// assert!(Deadline::at_unix_ms(Some(1)).passed());
/// assert!(Deadline::at_unix_ms(Some(u64::MAX / 2)).left().unwrap() > Duration::from_secs(3600));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deadline(Option<SystemTime>);

impl Deadline {
    /// No deadline: waits are bounded by nothing but themselves.
    pub const NONE: Deadline = Deadline(None);

    /// A job's `deadline_unix_ms`.
    pub fn at_unix_ms(ms: Option<u64>) -> Self {
        Deadline(ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)))
    }

    /// Time until the deadline (zero once it passed); `None` without one.
    pub fn left(&self) -> Option<Duration> {
        self.0.map(|at| {
            at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        })
    }

    /// Whether the deadline has passed.
    pub fn passed(&self) -> bool {
        self.left().is_some_and(|left| left.is_zero())
    }
}

/// A wait that the run's deadline cut short (or would have: a retry wait
/// longer than the time left is not begun at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the run's deadline {}", if self.left.is_zero() { "has passed".to_string() } else { format!("comes in {:.1} s", self.left.as_secs_f64()) })]
pub struct DeadlinePassed {
    /// Time that was left to the deadline when the wait was refused.
    pub left: Duration,
}

/// Jobs a worker holds, in two kinds of slots: a job evaluating holds a
/// *working* slot (as many as the worker pulls jobs for); a job every
/// unfinished call of which waits to retry (a backoff or a `Retry-After`)
/// swaps it for a *parked* slot, so the worker pulls other work meanwhile,
/// and takes a working slot again when a call wakes up. There are
/// [`PARKED_PER_WORKING`] times as many parked slots as working ones, so at
/// most `(1 + PARKED_PER_WORKING) × working` jobs are held at once, whatever
/// the targets do; a job that finds no parked slot free keeps its working
/// slot while it waits.
///
/// ```
/// let slots = vigil_worker::retry::JobSlots::new(8);
/// assert_eq!((slots.working.available_permits(), slots.parked.available_permits()), (8, 32));
/// ```
#[derive(Debug, Clone)]
pub struct JobSlots {
    /// The working slots the pull loop also takes before pulling.
    pub working: Arc<Semaphore>,
    /// The parked slots.
    pub parked: Arc<Semaphore>,
}

/// Parked job slots per working one: jobs waiting out a long `Retry-After`
/// cost only their items' memory, not calls.
pub const PARKED_PER_WORKING: usize = 4;

impl JobSlots {
    /// `working` working slots and [`PARKED_PER_WORKING`] times as many parked ones.
    pub fn new(working: usize) -> Self {
        JobSlots {
            working: Arc::new(Semaphore::new(working)),
            parked: Arc::new(Semaphore::new(working * PARKED_PER_WORKING)),
        }
    }
}

/// One job's hold on the worker's [`JobSlots`]: created with the working
/// slot the job was pulled with, it parks while every unfinished call of
/// the job waits to retry and unparks when one of them wakes up.
#[derive(Debug)]
pub struct JobGate {
    slots: JobSlots,
    state: Mutex<GateState>,
    /// Held by the one call of the job that takes a working slot back: its
    /// siblings wait here, not in the slots' queue (where, holding no slot
    /// they would use, they could keep every slot's job from finishing).
    unparking: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct GateState {
    /// Calls of the job not finished (one per item and sample).
    unfinished: usize,
    /// Calls waiting to retry.
    waiting: usize,
    working: Option<OwnedSemaphorePermit>,
    parked: Option<OwnedSemaphorePermit>,
}

impl JobGate {
    /// The gate of a job of `calls` calls (items × samples), pulled with
    /// the `working` slot.
    pub fn new(slots: JobSlots, working: OwnedSemaphorePermit, calls: usize) -> Self {
        JobGate {
            slots,
            state: Mutex::new(GateState {
                unfinished: calls,
                waiting: 0,
                working: Some(working),
                parked: None,
            }),
            unparking: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        // A few counters and permits, each update complete under the lock.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the job holds a parked slot (not a working one) now.
    pub fn is_parked(&self) -> bool {
        self.lock().parked.is_some()
    }

    /// `calls` calls of the job are done (an item's samples).
    pub fn calls_done(&self, calls: usize) {
        let mut state = self.lock();
        state.unfinished = state.unfinished.saturating_sub(calls);
        self.park_if_idle(&mut state);
    }

    fn park_if_idle(&self, state: &mut GateState) {
        if state.unfinished == 0 || state.waiting < state.unfinished || state.parked.is_some() {
            return;
        }
        // No parked slot free: keep the working one (the bound holds).
        if let Ok(parked) = self.slots.parked.clone().try_acquire_owned() {
            state.parked = Some(parked);
            state.working = None;
        }
    }

    fn wait_begins(&self) {
        let mut state = self.lock();
        state.waiting += 1;
        self.park_if_idle(&mut state);
    }

    /// A call's wait ended: the job works again, so it takes a working
    /// slot back if it had parked (waiting for one, at most until `deadline`).
    async fn wait_ends(&self, deadline: Deadline) -> Result<(), DeadlinePassed> {
        {
            let mut state = self.lock();
            state.waiting = state.waiting.saturating_sub(1);
            if state.working.is_some() {
                return Ok(());
            }
        }
        let _unparking = bounded(deadline, self.unparking.lock()).await?;
        if self.lock().working.is_some() {
            return Ok(()); // a sibling took one back meanwhile
        }
        let working = bounded(deadline, self.slots.working.clone().acquire_owned())
            .await?
            .expect("job slots are never closed");
        let mut state = self.lock();
        if state.working.is_none() {
            state.working = Some(working);
            state.parked = None;
        }
        Ok(())
    }
}

/// `wait`, cut short by `deadline`.
async fn bounded<T>(
    deadline: Deadline,
    wait: impl std::future::Future<Output = T>,
) -> Result<T, DeadlinePassed> {
    match deadline.left() {
        None => Ok(wait.await),
        Some(left) => tokio::time::timeout(left, wait)
            .await
            .map_err(|_| DeadlinePassed {
                left: Duration::ZERO,
            }),
    }
}

/// The slots a call's attempts take and the deadline its waits end at:
/// its target's [`AdaptiveLimit`], then (when set) one of the worker's
/// call slots, both held only while an attempt runs, never while a retry
/// waits; and (when set) its job's [`JobGate`], parked while every call of
/// the job waits. A target answering 429 with a long `Retry-After` thus
/// holds nothing another target needs.
///
/// ```
/// use vigil_worker::retry::{AdaptiveLimit, Slots};
/// let limit = AdaptiveLimit::new(4);
/// let slots: Slots<'_> = (&limit).into();
/// assert!(slots.worker.is_none() && slots.job.is_none());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Slots<'a> {
    /// The target's adaptive limit (taken first: an attempt waiting for its
    /// own target holds nothing another target needs).
    pub target: &'a AdaptiveLimit,
    /// The worker-wide bound on calls in flight, if any.
    pub worker: Option<&'a Semaphore>,
    /// The job the call belongs to, if any.
    pub job: Option<&'a JobGate>,
    /// When every wait ends.
    pub deadline: Deadline,
}

impl<'a> From<&'a AdaptiveLimit> for Slots<'a> {
    fn from(target: &'a AdaptiveLimit) -> Self {
        Slots {
            target,
            worker: None,
            job: None,
            deadline: Deadline::NONE,
        }
    }
}

/// The slots one attempt holds; freed on drop.
#[derive(Debug)]
#[must_use = "the slots are released as soon as they are dropped"]
pub struct AttemptPermit<'a> {
    _target: AdaptivePermit,
    _worker: Option<SemaphorePermit<'a>>,
}

impl<'a> Slots<'a> {
    /// Waits for the target's slot, then the worker's, at most until the deadline.
    pub async fn acquire(&self) -> Result<AttemptPermit<'a>, DeadlinePassed> {
        if self.deadline.passed() {
            return Err(DeadlinePassed {
                left: Duration::ZERO,
            });
        }
        // Free slots are taken at once; only a wait is bounded by the
        // deadline (a timer per wait, none per call).
        let target = match self.target.try_acquire() {
            Some(permit) => permit,
            None => bounded(self.deadline, self.target.acquire()).await?,
        };
        let worker = match self.worker {
            Some(worker) => Some(match worker.try_acquire() {
                Ok(permit) => permit,
                Err(_) => bounded(self.deadline, worker.acquire())
                    .await?
                    .expect("the worker's call slots are never closed"),
            }),
            None => None,
        };
        Ok(AttemptPermit {
            _target: target,
            _worker: worker,
        })
    }

    /// Waits `wait` before a retry, holding no slot (the caller dropped its
    /// [`AttemptPermit`]); the job parks meanwhile if none of its calls is
    /// working. A wait that would end past the deadline is not begun.
    pub async fn wait(&self, wait: Duration) -> Result<(), DeadlinePassed> {
        if let Some(left) = self.deadline.left()
            && wait >= left
        {
            return Err(DeadlinePassed { left });
        }
        match self.job {
            None => tokio::time::sleep(wait).await,
            Some(job) => {
                job.wait_begins();
                tokio::time::sleep(wait).await;
                job.wait_ends(self.deadline).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn backoff_stays_under_an_exponential_ceiling() {
        let p = RetryPolicy {
            max_retries: 9,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(200),
        };
        assert_eq!(p.ceiling(0), Duration::from_millis(10));
        assert_eq!(p.ceiling(3), Duration::from_millis(80));
        assert_eq!(p.ceiling(5), Duration::from_millis(200));
        assert_eq!(p.ceiling(u32::MAX), Duration::from_millis(200));
        for attempt in 0..40 {
            for _ in 0..50 {
                assert!(p.backoff(attempt) <= p.ceiling(attempt));
            }
        }
    }

    #[test]
    fn backoff_is_jittered() {
        let p = RetryPolicy {
            max_retries: 1,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(1),
        };
        let waits: Vec<_> = (0..20).map(|_| p.backoff(0)).collect();
        assert!(
            waits.iter().any(|w| *w != waits[0]),
            "20 equal draws: no jitter"
        );
        let zero = RetryPolicy {
            max_retries: 1,
            base: Duration::ZERO,
            cap: Duration::ZERO,
        };
        assert_eq!(zero.backoff(3), Duration::ZERO);
    }

    #[test]
    fn retry_after_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_retry_after("301", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        for bad in ["", "-1", "NaN", "inf", "soon", "1s", "Wed, 99 Foo"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Thu, 22 Oct 2015 07:28:00 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn aimd_halves_with_cooldown_and_grows_per_window() {
        let limit = AdaptiveLimit::with_cooldown(16, Duration::from_secs(3600));
        assert_eq!(limit.limit(), 16);
        limit.on_rate_limited();
        assert_eq!(limit.limit(), 8);
        limit.on_rate_limited();
        assert_eq!(limit.limit(), 8, "a burst of 429s halves once");
        // One window (8 successes at limit 8) adds about one.
        for _ in 0..8 {
            limit.on_success();
        }
        assert_eq!(limit.limit(), 9);
        for _ in 0..1000 {
            limit.on_success();
        }
        assert_eq!(limit.limit(), 16, "capped at max");
    }

    #[test]
    fn aimd_never_below_one() {
        let limit = AdaptiveLimit::with_cooldown(3, Duration::ZERO);
        for _ in 0..10 {
            limit.on_rate_limited();
        }
        assert_eq!(limit.limit(), 1);
        assert_eq!(AdaptiveLimit::new(0).limit(), 1);
    }

    #[tokio::test]
    async fn shrinking_while_permits_are_out() {
        let limit = AdaptiveLimit::with_cooldown(4, Duration::ZERO);
        let held: Vec<_> = futures_join(&limit, 4).await;
        assert_eq!(limit.in_flight(), 4);
        limit.on_rate_limited(); // 4 -> 2 while 4 are out
        assert_eq!(limit.limit(), 2);
        let mut held = held;
        held.truncate(2); // two come back: still 2 out = the limit
        let blocked = tokio::time::timeout(Duration::from_millis(50), limit.acquire()).await;
        assert!(blocked.is_err(), "no slot while in_flight == limit");
        held.pop();
        let got = tokio::time::timeout(Duration::from_secs(1), limit.acquire()).await;
        assert!(
            got.is_ok(),
            "a slot frees when in_flight drops below the limit"
        );
    }

    #[test]
    fn a_429_halves_once_per_burst_it_answers() {
        let limit = AdaptiveLimit::with_cooldown(16, Duration::ZERO);
        let burst = Instant::now();
        limit.on_rate_limited_sent(burst); // 16 -> 8
        // The rest of the burst, sent before that halving: no more halvings.
        limit.on_rate_limited_sent(burst);
        limit.on_rate_limited_sent(burst);
        assert_eq!(limit.limit(), 8);
        // An attempt sent after it is a new signal.
        limit.on_rate_limited_sent(Instant::now());
        assert_eq!(limit.limit(), 4);
    }

    async fn futures_join(limit: &AdaptiveLimit, n: usize) -> Vec<AdaptivePermit> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(limit.acquire().await);
        }
        out
    }

    #[tokio::test]
    async fn growth_wakes_waiters() {
        let limit = AdaptiveLimit::with_cooldown(2, Duration::ZERO);
        limit.on_rate_limited();
        assert_eq!(limit.limit(), 1);
        let _first = limit.acquire().await;
        let waiter = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        limit.on_success(); // 1 -> 2
        let permit = tokio::time::timeout(Duration::from_secs(1), waiter).await;
        assert!(permit.is_ok(), "growing the limit must wake a waiter");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_more_than_the_limit_in_flight() {
        let limit = AdaptiveLimit::new(3);
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let (limit, now, peak) = (limit.clone(), now.clone(), peak.clone());
                tokio::spawn(async move {
                    let _permit = limit.acquire().await;
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1 + i % 3)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        assert_eq!(limit.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_job_whose_calls_all_wait_parks_and_takes_a_slot_back() {
        let slots = JobSlots::new(1);
        let held = slots.working.clone().acquire_owned().await.unwrap();
        let gate = JobGate::new(slots.clone(), held, 2);
        gate.wait_begins();
        assert!(!gate.is_parked(), "one of two items still works");
        gate.calls_done(1);
        assert!(gate.is_parked(), "the only unfinished call waits");
        assert_eq!(slots.working.available_permits(), 1);
        assert_eq!(slots.parked.available_permits(), PARKED_PER_WORKING - 1);
        // Another job takes the working slot; waking up waits for it.
        let other = slots.working.clone().acquire_owned().await.unwrap();
        let woke = gate.wait_ends(Deadline::NONE);
        tokio::pin!(woke);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut woke)
                .await
                .is_err(),
            "no working slot free"
        );
        drop(other);
        woke.await.unwrap();
        assert!(!gate.is_parked());
        assert_eq!(slots.parked.available_permits(), PARKED_PER_WORKING);
        assert_eq!(slots.working.available_permits(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_of_parked_jobs_waking_together_take_one_slot_per_job() {
        // Two working slots, four jobs of three calls, all parked; every
        // call wakes at once. Each job must get going and finish: a call
        // must not queue for a slot its job already has back (the queue
        // would then hold every slot's job hostage).
        let slots = JobSlots::new(2);
        let mut gates = Vec::new();
        for _ in 0..4 {
            let held = slots.working.clone().acquire_owned().await;
            let gate = Arc::new(JobGate::new(slots.clone(), held.unwrap(), 3));
            for _ in 0..3 {
                gate.wait_begins();
            }
            assert!(gate.is_parked());
            gates.push(gate);
        }
        // Interleaved (the first call of each job, then the second...): two
        // jobs' first calls take the two slots, the rest wait.
        let calls: Vec<_> = (0..3)
            .flat_map(|_| gates.iter().cloned())
            .map(|gate| {
                tokio::spawn(async move {
                    gate.wait_ends(Deadline::NONE).await.unwrap();
                    tokio::task::yield_now().await;
                    gate.calls_done(1);
                })
            })
            .collect();
        // A job whose calls are all done gives its slot back when dropped.
        let finished = async {
            for call in calls {
                call.await.unwrap();
            }
        };
        let drop_done = async {
            loop {
                gates.retain(|g| g.lock().unfinished > 0);
                if gates.is_empty() {
                    break;
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(finished, drop_done)
        })
        .await
        .expect("parked jobs waking together deadlocked");
    }

    #[tokio::test]
    async fn parked_jobs_are_bounded_and_a_wakeup_respects_the_deadline() {
        let slots = JobSlots {
            working: Arc::new(Semaphore::new(1)),
            parked: Arc::new(Semaphore::new(1)),
        };
        let a = JobGate::new(
            slots.clone(),
            slots.working.clone().acquire_owned().await.unwrap(),
            1,
        );
        a.wait_begins();
        assert!(a.is_parked());
        let b = JobGate::new(
            slots.clone(),
            slots.working.clone().acquire_owned().await.unwrap(),
            1,
        );
        b.wait_begins();
        assert!(
            !b.is_parked(),
            "no parked slot left: b keeps its working slot"
        );
        assert_eq!(slots.working.available_permits(), 0);
        // a wakes up with no working slot free and a deadline passed.
        let passed = a.wait_ends(Deadline::at_unix_ms(Some(1))).await;
        assert_eq!(
            passed,
            Err(DeadlinePassed {
                left: Duration::ZERO
            })
        );
    }

    #[tokio::test]
    async fn cancelled_acquire_loses_no_wakeup() {
        let limit = AdaptiveLimit::new(1);
        let first = limit.acquire().await;
        let cancelled = tokio::time::timeout(Duration::from_millis(20), limit.acquire()).await;
        assert!(cancelled.is_err());
        let waiter = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), waiter)
                .await
                .is_ok()
        );
    }
}
