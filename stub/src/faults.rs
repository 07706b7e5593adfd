//! Which fault a request gets: drawn from the seeded RNG by the configured
//! rates, or scripted per prompt (`fail_first_attempts`).

use crate::StubConfig;
use rand::Rng;
use rand::rngs::SmallRng;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How long a "hang" fault sleeps: far past any client timeout.
pub const HANG_FOR: Duration = Duration::from_secs(3600);

/// Shards of the per-prompt attempt counter (only used with `fail_first_attempts`).
const ATTEMPT_SHARDS: usize = 64;

/// Attempts per prompt, for [`StubConfig::fail_first_attempts`].
#[derive(Debug)]
pub(crate) struct Attempts(Box<[Mutex<HashMap<u64, u32>>]>);

impl Attempts {
    pub(crate) fn new() -> Self {
        Attempts((0..ATTEMPT_SHARDS).map(|_| Mutex::default()).collect())
    }

    /// Counts an attempt at the prompt `key`; true while it is among the
    /// first `fail_first` (which must fail).
    pub(crate) fn must_fail(&self, key: u64, fail_first: u32) -> bool {
        if fail_first == 0 {
            return false;
        }
        let shard = &self.0[(key as usize) % ATTEMPT_SHARDS];
        let mut map = shard.lock().expect("attempt lock");
        let n = map.entry(key).or_insert(0);
        *n += 1;
        *n <= fail_first
    }
}

pub(crate) enum Fault {
    Fail,
    RateLimit,
    Reset,
    Hang,
    Garbage,
    Empty,
}

pub(crate) fn draw(cfg: &StubConfig, rng: &mut SmallRng) -> Option<Fault> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

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
