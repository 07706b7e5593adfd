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
    /// Memory of the whole sandbox, bytes: its cgroup's limit where it has
    /// one, else split into the address space (RLIMIT_AS) of each of its
    /// processes, see [`Limits::per_process`].
    pub memory_bytes: u64,
    /// Processes and threads at once in the whole sandbox (RLIMIT_NPROC in
    /// the sandbox's own user namespace, and its cgroup's `pids.max`), see
    /// [`Limits::per_process`].
    pub processes: u32,
    /// Largest file written, bytes (RLIMIT_FSIZE; also the size of each
    /// private tmpfs).
    pub file_bytes: u64,
    /// Open file descriptors (RLIMIT_NOFILE).
    pub open_files: u32,
}

const MIB: u64 = 1024 * 1024;

/// The least address space one process of a sandbox gets when the memory
/// total is split (CPython starts in about 20 MiB).
pub const MIN_PROCESS_MEMORY: u64 = 64 * MIB;

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

    /// How the memory total is kept without a cgroup: at most this many
    /// processes, each with this much address space, so that together they
    /// never exceed `memory_bytes`. Each process gets at least
    /// [`MIN_PROCESS_MEMORY`]; a small total allows fewer processes.
    ///
    /// ```
    /// use vigil_worker::sandbox::limits::Limits;
    /// let l = Limits { memory_bytes: 256 << 20, processes: 32, ..Default::default() };
    /// assert_eq!(l.split(), (4, 64 << 20));
    /// let l = Limits { memory_bytes: 1 << 30, processes: 2, ..Default::default() };
    /// assert_eq!(l.split(), (2, 512 << 20));
    /// ```
    pub fn split(&self) -> (u32, u64) {
        let most = (self.memory_bytes / MIN_PROCESS_MEMORY).max(1);
        let processes = u64::from(self.processes).clamp(1, most);
        (processes as u32, self.memory_bytes / processes)
    }

    /// The processes a sandbox may have and the address space of each:
    /// with a cgroup holding the totals, all `processes`, each up to the
    /// whole `memory_bytes`; without one, [`Limits::split`].
    ///
    /// ```
    /// use vigil_worker::sandbox::limits::Limits;
    /// let l = Limits { memory_bytes: 256 << 20, processes: 32, ..Default::default() };
    /// assert_eq!(l.per_process(true), (32, 256 << 20));
    /// assert_eq!(l.per_process(false), l.split());
    /// ```
    pub fn per_process(&self, cgroup: bool) -> (u32, u64) {
        if cgroup {
            (self.processes.max(1), self.memory_bytes)
        } else {
            self.split()
        }
    }

    /// `prlimit` options (util-linux) for these limits: `nproc` is the
    /// RLIMIT_NPROC value to set (the process count, plus what else shares
    /// the count), `address_space` the RLIMIT_AS of each process (from
    /// [`Limits::per_process`]).
    pub fn prlimit_args(&self, nproc: u64, address_space: u64) -> Vec<String> {
        vec![
            format!("--cpu={}:{}", self.cpu_s, self.cpu_s + 1),
            format!("--as={address_space}"),
            format!("--nproc={nproc}"),
            format!("--fsize={}", self.file_bytes),
            format!("--nofile={}", self.open_files),
            "--core=0".to_string(),
        ]
    }

    /// How the memory is bounded, for details: `cgroup` names the cgroup
    /// holding the total (`cgroup v1`), `None` when the split holds it.
    ///
    /// ```
    /// use vigil_worker::sandbox::limits::Limits;
    /// let l = Limits { memory_bytes: 256 << 20, processes: 32, ..Default::default() };
    /// assert_eq!(l.memory_bound(Some("cgroup v1")), "256 MiB for the whole sandbox, cgroup v1");
    /// assert_eq!(l.memory_bound(None), "64 MiB per process, at most 4 processes; no cgroup: per-process split");
    /// ```
    pub fn memory_bound(&self, cgroup: Option<&str>) -> String {
        match cgroup {
            Some(c) => format!("{} MiB for the whole sandbox, {c}", self.memory_bytes / MIB),
            None => {
                let (processes, each) = self.split();
                format!(
                    "{} MiB per process, at most {processes} processes; no cgroup: per-process split",
                    each / MIB
                )
            }
        }
    }

    /// One line naming the limits, for details and logs (`cgroup` as in
    /// [`Limits::memory_bound`]).
    pub fn describe(&self, cgroup: Option<&str>) -> String {
        format!(
            "wall {:.1}s, cpu {}s per process, memory {}, files {} MiB",
            self.wall.as_secs_f64(),
            self.cpu_s,
            self.memory_bound(cgroup),
            self.file_bytes / MIB
        )
    }
}
