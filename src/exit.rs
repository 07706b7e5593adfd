//! Exit codes, and errors that carry theirs.

use std::process::ExitCode;

/// How `vigil` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every gate held.
    Ok = 0,
    /// A gate failed (or no item could be scored).
    GateFailed = 1,
    /// The command line, the suite or the dataset is wrong.
    Input = 2,
    /// NATS, nats-server or the machine got in the way.
    Infrastructure = 3,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// An error with the exit code it ends the process with.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub exit: Exit,
    /// What went wrong.
    pub error: anyhow::Error,
}

/// `Result` of a command.
pub type CommandResult = Result<Exit, Failure>;

/// Attaches an exit code to any error.
pub trait ExitContext<T> {
    /// Marks the error as the user's input being wrong (exit 2).
    fn input_error(self) -> Result<T, Failure>;
    /// Marks the error as infrastructure (exit 3).
    fn infra_error(self) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> ExitContext<T> for Result<T, E> {
    fn input_error(self) -> Result<T, Failure> {
        self.map_err(|e| Failure {
            exit: Exit::Input,
            error: e.into(),
        })
    }
    fn infra_error(self) -> Result<T, Failure> {
        self.map_err(|e| Failure {
            exit: Exit::Infrastructure,
            error: e.into(),
        })
    }
}
