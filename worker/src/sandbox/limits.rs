//! The resource limits of one sandbox run, their defaults and the worker's
//! caps, and how they become `prlimit` arguments.

use std::time::Duration;
use vigil_protocol::SandboxLimits;

/// Limits applied to one program run.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Wall-clock time before the whole sandbox is killed.
    pub wall: Duration,
    /// CPU seconds (RLIMIT_CPU soft; the hard limit is one second more, so
    /// the program gets SIGXCPU, then SIGKILL).
    pub cpu_s: u64,
    /// Address space, bytes (RLIMIT_AS).
    pub memory_bytes: u64,
    /// Processes and threads at once (RLIMIT_NPROC, per sandbox uid).
    pub processes: u32,
    /// Largest file written, bytes (RLIMIT_FSIZE; also the size of each
    /// private tmpfs).
    pub file_bytes: u64,
    /// Open file descriptors (RLIMIT_NOFILE).
    pub open_files: u32,
}

const MIB: u64 = 1024 * 1024;

impl Default for Limits {
    /// 10 s wall, 10 s CPU, 1 GiB address space, 32 processes, 16 MiB files,
    /// 256 open files.
    fn default() -> Self {
        Limits {
            wall: Duration::from_secs(10),
            cpu_s: 10,
            memory_bytes: 1024 * MIB,
            processes: 32,
            file_bytes: 16 * MIB,
            open_files: 256,
        }
    }
}

impl Limits {
    /// The largest limits a job may ask for: 120 s wall and CPU, 8 GiB,
    /// 512 processes, 1 GiB files.
    pub fn caps() -> Limits {
        Limits {
            wall: Duration::from_secs(120),
            cpu_s: 120,
            memory_bytes: 8192 * MIB,
            processes: 512,
            file_bytes: 1024 * MIB,
            open_files: 256,
        }
    }

    /// The limits a job's spec asks for: unset ones from `defaults`, each
    /// capped at `caps`. The CPU limit defaults to the wall-clock limit.
    ///
    /// ```
    /// use vigil_worker::sandbox::limits::Limits;
    /// let spec = vigil_protocol::SandboxLimits { timeout_s: Some(3.0), memory_mb: Some(1 << 20), ..Default::default() };
    /// let l = Limits::from_spec(&spec, &Limits::default(), &Limits::caps());
    /// assert_eq!((l.wall.as_secs(), l.cpu_s), (3, 3));
    /// assert_eq!(l.memory_bytes, Limits::caps().memory_bytes, "capped");
    /// ```
    pub fn from_spec(spec: &SandboxLimits, defaults: &Limits, caps: &Limits) -> Limits {
        let secs = |v: f64| Duration::from_secs_f64(v.clamp(0.1, 86_400.0));
        let wall = spec
            .timeout_s
            .map(secs)
            .unwrap_or(defaults.wall)
            .min(caps.wall);
        let cpu_s = match (spec.cpu_s, spec.timeout_s) {
            (Some(c), _) => c.ceil().max(1.0) as u64,
            (None, Some(t)) => t.ceil().max(1.0) as u64,
            (None, None) => defaults.cpu_s,
        }
        .min(caps.cpu_s);
        Limits {
            wall,
            cpu_s,
            memory_bytes: spec
                .memory_mb
                .map(|m| m.saturating_mul(MIB))
                .unwrap_or(defaults.memory_bytes)
                .min(caps.memory_bytes),
            processes: spec
                .processes
                .unwrap_or(defaults.processes)
                .clamp(1, caps.processes),
            file_bytes: spec
                .file_mb
                .map(|m| m.saturating_mul(MIB))
                .unwrap_or(defaults.file_bytes)
                .min(caps.file_bytes),
            open_files: defaults.open_files.min(caps.open_files),
        }
    }

    /// `prlimit` options (util-linux) for these limits; `nproc` is the
    /// RLIMIT_NPROC value to set (the process limit, or more when the
    /// sandbox shares its uid with the worker).
    pub fn prlimit_args(&self, nproc: u64) -> Vec<String> {
        vec![
            format!("--cpu={}:{}", self.cpu_s, self.cpu_s + 1),
            format!("--as={}", self.memory_bytes),
            format!("--nproc={nproc}"),
            format!("--fsize={}", self.file_bytes),
            format!("--nofile={}", self.open_files),
            "--core=0".to_string(),
        ]
    }

    /// One line naming the limits, for details and logs.
    pub fn describe(&self) -> String {
        format!(
            "wall {:.1}s, cpu {}s, memory {} MiB, {} processes, files {} MiB",
            self.wall.as_secs_f64(),
            self.cpu_s,
            self.memory_bytes / MIB,
            self.processes,
            self.file_bytes / MIB
        )
    }
}
