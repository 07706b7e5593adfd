//! Writing to stdout and stderr, which a user may pipe into `head`, `less` or
//! a script that stops reading early.
//!
//! A closed stdout is a normal end, as for `ls | head`: the command exits 0
//! quietly instead of panicking (`println!` panics on a broken pipe). A
//! closed stderr is ignored: there is no one left to tell. SIGPIPE stays
//! ignored process-wide (Rust's default), so a long-running service (proxy,
//! worker, monitor, run) sees a closed *socket* as an error it handles, never
//! as a signal that kills it. Every print of the binary goes through this
//! module: [`outln!`], [`out!`], [`errln!`], and [`PipeSafe`] for writers.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Ends the process if `e` means stdout was closed by its reader: exit 0,
/// quietly. Any other error is returned.
fn exit_if_closed(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(crate::exit::Exit::Ok as i32);
    }
    e
}

/// Writes to stdout (what [`out!`] and [`outln!`] expand to). A closed pipe
/// ends the process with exit 0; any other write error (a full disk) with
/// an error on stderr and exit 3.
pub fn stdout(args: std::fmt::Arguments) {
    if let Err(e) = io::stdout().lock().write_fmt(args).map_err(exit_if_closed) {
        stderr(format_args!("error: cannot write to stdout: {e}\n"));
        std::process::exit(crate::exit::Exit::Infrastructure as i32);
    }
}

/// Writes to stderr (what [`errln!`] expands to), ignoring errors: a closed
/// stderr has no reader to report to.
pub fn stderr(args: std::fmt::Arguments) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// `print!` that ends the process quietly (exit 0) when stdout is closed.
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::stdout(format_args!($($arg)*)) };
}

/// `println!` that ends the process quietly (exit 0) when stdout is closed.
macro_rules! outln {
    () => { $crate::output::stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprintln!` that ignores a closed stderr instead of panicking.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::output::stderr(format_args!("{}\n", format_args!($($arg)*))) };
}

/// A writer to stdout (sync or tokio) whose closed pipe ends the process
/// quietly with exit 0, as [`outln!`] does, for output streamed by a command
/// (`vigil export`, `vigil dataset pull` without `--out`).
pub struct PipeSafe<W>(pub W);

impl<W: Write> Write for PipeSafe<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(exit_if_closed)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(exit_if_closed)
    }
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for PipeSafe<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0)
            .poll_write(cx, buf)
            .map_err(exit_if_closed)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx).map_err(exit_if_closed)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0)
            .poll_shutdown(cx)
            .map_err(exit_if_closed)
    }
}
