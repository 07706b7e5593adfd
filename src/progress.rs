//! The live progress bar: items done, rate, errors and ETA. Drawn only when
//! stderr is a terminal.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use tokio::sync::watch;
use vigil_protocol::ProgressEvent;

/// Progress bars, one per run.
pub struct Progress {
    multi: MultiProgress,
}

impl Progress {
    /// Bars on stderr, hidden when it is not a terminal or when `quiet`.
    pub fn new(quiet: bool) -> Self {
        let multi = MultiProgress::new();
        if quiet || !std::io::stderr().is_terminal() {
            multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        Progress { multi }
    }

    /// Follows one run's progress until its sender is dropped.
    pub fn follow(
        &self,
        label: String,
        mut events: watch::Receiver<ProgressEvent>,
    ) -> tokio::task::JoinHandle<()> {
        let bar = self.multi.add(ProgressBar::new(0));
        bar.set_style(
            ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {pos}/{len} items  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label);
        tokio::spawn(async move {
            while events.changed().await.is_ok() {
                let e = events.borrow_and_update().clone();
                bar.set_length(e.total);
                bar.set_position(e.done);
                let eta = e
                    .eta_s
                    .map(|s| format!("ETA {:.0}s", s))
                    .unwrap_or_default();
                bar.set_message(format!(
                    "{:.0} items/s  errors {}  {eta}",
                    e.items_per_s, e.failed
                ));
            }
            bar.finish_and_clear();
        })
    }
}
