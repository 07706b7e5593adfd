//! Shadow evaluation: a candidate target replayed on captured production
//! prompts and compared item by item with production's recorded responses,
//! stopped early by an anytime-valid paired rule.
//!
//! - [`StoppingRule`] (pure): a betting confidence sequence ([`BettingCs`],
//!   Waudby-Smith & Ramdas 2023) on the win rate or the mean score
//!   difference ([`PairedMetric`]); it stops as soon as the sequence
//!   excludes "as good as production" or at the budget, and its chance of a
//!   wrong call between equal models is at most `α` however often it looks.
//!
//! The rule, its guarantee and the measured items-to-decision are in
//! `docs/production.md`, "Shadow a candidate".

mod rule;

pub use rule::{
    BettingCs, BettingCsConfig, Decision, PairedMetric, RuleError, RuleState, StoppingRule,
};
