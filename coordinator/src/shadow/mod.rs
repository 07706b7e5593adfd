//! Shadow evaluation: a candidate target replayed on captured production
//! prompts and compared item by item with production's recorded responses,
//! stopped early by an anytime-valid paired rule.
//!
//! - [`StoppingRule`] (pure): a betting confidence sequence ([`BettingCs`],
//!   Waudby-Smith & Ramdas 2023) on the win rate, the mean score
//!   difference or a pairwise judge's verdict ([`PairedMetric`]); it stops
//!   as soon as the sequence excludes "as good as production" or at the
//!   budget, and its chance of a wrong call between equal models is at most
//!   `α` however often it looks.
//! - [`shadow()`]: the driver. Captures of an app ([`CaptureSource`]) are
//!   replayed in waves; each wave is one run of production (a `recorded`
//!   target that answers with the captured responses) and one of the
//!   candidate through the worker pool, paired by item id (the capture id);
//!   no wave is dispatched after the rule stops.
//!
//! The rule, its guarantee and the measured items-to-decision are in
//! `docs/production.md`, "Shadow a candidate".

mod captures;
mod replay;
mod rule;

pub use captures::{CaptureSource, capture_record};
pub use replay::{
    DEFAULT_WAVE, PRODUCTION_TARGET, ShadowConfig, ShadowOutcome, check, load_suite, shadow,
};
pub use rule::{
    BettingCs, BettingCsConfig, Decision, PairedMetric, RuleError, RuleState, StoppingRule,
};

/// Why a shadow could not reach a verdict.
#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    /// The shadow's configuration is wrong (unknown candidate, no scorer
    /// to compare by, a bad budget).
    #[error("{0}")]
    Config(String),
    /// The stopping rule refused its configuration or an observation.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// A wave's run failed.
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    /// A NATS operation failed.
    #[error("NATS: {0}")]
    Nats(String),
    /// A wave's dataset file could not be written.
    #[error("{0}")]
    Io(String),
    /// No capture of the app could be replayed (none stored in the
    /// window, a misspelt app, or every one failed or was an embedding).
    #[error("no replayable captures of app `{app}` in the window{detail}: check --app and --since")]
    NoCaptures {
        /// The app.
        app: String,
        /// What was read and skipped, if anything.
        detail: String,
    },
    /// The shadow was cancelled.
    #[error("shadow cancelled")]
    Cancelled,
}
