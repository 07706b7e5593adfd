//! CPU time and peak memory of processes, read from `/proc` (Linux only).
//!
//! A [`ProcWatch`] polls the processes it tracks (and, when asked, their
//! children, such as the nats-server an embedded `vigil run` starts) and keeps
//! each one's last CPU total and its high-water RSS (`VmHWM`). Polling rather
//! than `getrusage` keeps the crate free of `unsafe` and also covers
//! grandchildren that are never waited for by us; the price is that up to one
//! poll period of CPU at the very end of a process can be missed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// User + system CPU, clock ticks.
    pub cpu_ticks: u64,
    /// Peak resident set size so far, KiB.
    pub hwm_kb: u64,
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every common Linux).
pub fn clock_ticks() -> u64 {
    static TCK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// Ticks to seconds.
pub fn ticks_to_s(ticks: u64) -> f64 {
    ticks as f64 / clock_ticks() as f64
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `None` once it is gone.
pub fn sample(pid: u32) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Some(Sample {
        cpu_ticks: utime + stime,
        hwm_kb,
    })
}

/// The resident set size of a process now, KiB (`VmRSS`); `None` once it is gone.
pub fn rss_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The resident set size of this process now, KiB (`VmRSS`); 0 when unreadable.
pub fn self_rss_kb() -> u64 {
    rss_kb(std::process::id()).unwrap_or(0)
}

/// CPU seconds of this process so far (user + system).
pub fn self_cpu_s() -> f64 {
    ticks_to_s(sample(std::process::id()).map_or(0, |s| s.cpu_ticks))
}

/// The direct children of a process.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// A process's command name (`/proc/<pid>/comm`).
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| format!("pid {pid}"))
}

#[derive(Debug, Clone)]
struct Tracked {
    label: String,
    follow_children: bool,
    /// CPU ticks when tracking began (what it spent before is not counted).
    base_ticks: u64,
    last: Sample,
}

/// What a watch saw, per label: CPU seconds summed over the label's processes,
/// peak RSS the largest of them.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// Label → (CPU seconds, peak RSS in MiB).
    pub by_label: BTreeMap<String, (f64, f64)>,
}

impl Usage {
    /// CPU seconds of a label (0 if never seen).
    pub fn cpu_s(&self, label: &str) -> f64 {
        self.by_label.get(label).map_or(0.0, |v| v.0)
    }

    /// Peak RSS of a label, MiB (0 if never seen).
    pub fn peak_mb(&self, label: &str) -> f64 {
        self.by_label.get(label).map_or(0.0, |v| v.1)
    }
}

/// Polls tracked processes until dropped or [`finish`](Self::finish)ed.
pub struct ProcWatch {
    procs: Arc<Mutex<BTreeMap<u32, Tracked>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ProcWatch {
    /// Starts polling every `period`.
    pub fn start(period: Duration) -> Self {
        let procs: Arc<Mutex<BTreeMap<u32, Tracked>>> = Arc::default();
        let polled = procs.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                poll(&polled);
            }
        });
        ProcWatch { procs, task }
    }

    /// Tracks a process under `label` from now on (CPU it spent before is
    /// not counted; its peak RSS is its own high-water mark); with
    /// `follow_children`, its children too, each labelled by its command name.
    pub fn track(&self, pid: u32, label: &str, follow_children: bool) {
        let last = sample(pid).unwrap_or_default();
        self.procs.lock().expect("watch lock").insert(
            pid,
            Tracked {
                label: label.to_string(),
                follow_children,
                base_ticks: last.cpu_ticks,
                last,
            },
        );
    }

    /// Polls now (for example just before stopping a process).
    pub fn poll_now(&self) {
        poll(&self.procs);
    }

    /// The usage so far, without stopping.
    pub fn usage(&self) -> Usage {
        let procs = self.procs.lock().expect("watch lock");
        let mut usage = Usage::default();
        for t in procs.values() {
            let entry = usage.by_label.entry(t.label.clone()).or_default();
            entry.0 += ticks_to_s(t.last.cpu_ticks.saturating_sub(t.base_ticks));
            entry.1 = entry.1.max(t.last.hwm_kb as f64 / 1024.0);
        }
        usage
    }

    /// Polls once more, stops, and returns the usage.
    pub fn finish(self) -> Usage {
        self.poll_now();
        self.task.abort();
        self.usage()
    }
}

impl Drop for ProcWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn poll(procs: &Mutex<BTreeMap<u32, Tracked>>) {
    let mut procs = procs.lock().expect("watch lock");
    let mut found = Vec::new();
    for (&pid, t) in procs.iter_mut() {
        if let Some(s) = sample(pid) {
            // A dead pid keeps its last reading; counters only grow.
            t.last.cpu_ticks = t.last.cpu_ticks.max(s.cpu_ticks);
            t.last.hwm_kb = t.last.hwm_kb.max(s.hwm_kb);
            if t.follow_children {
                found.extend(children(pid));
            }
        }
    }
    for child in found {
        // A child found now started after tracking began: all its CPU counts.
        procs.entry(child).or_insert_with(|| Tracked {
            label: comm(child),
            follow_children: false,
            base_ticks: 0,
            last: sample(child).unwrap_or_default(),
        });
    }
}
