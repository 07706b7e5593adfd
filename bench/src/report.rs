//! The results table, the budgets, and the markdown written into
//! `docs/performance.md` between its bench markers.

use crate::BenchConfig;
use crate::scenario::{Ceiling, RunMeasure};
use std::fmt::Write;
use std::path::Path;

/// Where the generated part of `docs/performance.md` begins.
pub const BEGIN: &str = "<!-- bench:begin (written by vigil-bench; edits here are overwritten) -->";
/// Where it ends.
pub const END: &str = "<!-- bench:end -->";

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Which measurement (its kind is the text before the first comma).
    pub scenario: String,
    /// Items (or requests) measured.
    pub items: u64,
    /// Items per second.
    pub items_per_s: f64,
    /// What the rate is compared with.
    pub reference: String,
    /// Rate / reference.
    pub ratio: Option<f64>,
    /// CPU per item, by process.
    pub cpu: String,
    /// Peak RSS, by process.
    pub rss: String,
    /// Wall-clock seconds of the whole measurement.
    pub wall_s: f64,
}

/// One budget of the issue and where this run landed.
#[derive(Debug, Clone)]
pub struct Budget {
    /// What is budgeted.
    pub name: String,
    /// The target, as text.
    pub target: String,
    /// What was measured, as text.
    pub measured: String,
    /// Whether the target is met.
    pub met: bool,
}

/// Everything a benchmark run found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The machine.
    pub machine: Vec<(String, String)>,
    /// The sizes used.
    pub settings: String,
    /// The table.
    pub rows: Vec<Row>,
    /// The budgets.
    pub budgets: Vec<Budget>,
    /// Single measurements behind "best of" rows, and other remarks.
    pub notes: Vec<String>,
    zero: Option<(f64, f64)>,
    first_result_s: Option<f64>,
    latency: Vec<(usize, f64, f64)>,
    memory: Vec<(u64, f64, f64)>,
}

fn rate(v: f64) -> String {
    if v >= 100.0 {
        let n = v.round() as u64;
        let s = n.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else {
        format!("{v:.1}")
    }
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn us(v: f64) -> String {
    format!("{v:.0} µs")
}

impl Report {
    /// An empty report for a machine and settings.
    pub fn new(machine: Vec<(String, String)>, cfg: &BenchConfig) -> Self {
        let settings = format!(
            "zero latency: {} items at C={} (best of {}), shard {}; latency-bound: {} ms × C in {:?}, {} rounds; \
             memory: {:?} items, worker concurrency {}; scale-out: {:?} workers × {} calls, {} ms, {} rounds",
            cfg.zero_latency_items,
            cfg.zero_latency_concurrency,
            cfg.repeats.max(1),
            cfg.shard_size,
            cfg.latency_ms,
            cfg.latency_concurrency,
            cfg.latency_rounds,
            cfg.memory_items,
            cfg.memory_concurrency,
            cfg.scale_workers,
            cfg.scale_concurrency,
            cfg.scale_latency_ms,
            cfg.scale_rounds,
        );
        Report {
            machine,
            settings,
            rows: Vec::new(),
            budgets: Vec::new(),
            notes: Vec::new(),
            zero: None,
            first_result_s: None,
            latency: Vec::new(),
            memory: Vec::new(),
        }
    }

    /// Rows (a) and (b): the best ceiling and the best embedded run.
    pub fn zero_latency(&mut self, c: usize, ceilings: &[Ceiling], runs: &[RunMeasure]) {
        let best_c = ceilings
            .iter()
            .max_by(|a, b| a.drive.per_s().total_cmp(&b.drive.per_s()))
            .expect("at least one ceiling");
        let best_r = runs
            .iter()
            .max_by(|a, b| a.per_s().total_cmp(&b.per_s()))
            .expect("at least one run");
        let n = best_c.drive.ok.max(1) as f64;
        self.rows.push(Row {
            scenario: format!("stub ceiling, direct load generator, 0 ms, C={c}"),
            items: best_c.drive.ok,
            items_per_s: best_c.drive.per_s(),
            reference: "—".into(),
            ratio: None,
            cpu: format!(
                "stub {} + client {}",
                us(best_c.stub_cpu_s * 1e6 / n),
                us(best_c.client_cpu_s * 1e6 / n)
            ),
            rss: "—".into(),
            wall_s: best_c.drive.elapsed.as_secs_f64(),
        });
        let ratio = best_r.per_s() / best_c.drive.per_s();
        self.rows.push(Row {
            scenario: format!("vigil run, embedded, 1 worker, 0 ms, C={c}"),
            items: best_r.items,
            items_per_s: best_r.per_s(),
            reference: format!("stub ceiling {}/s", rate(best_c.drive.per_s())),
            ratio: Some(ratio),
            cpu: format!(
                "vigil {} + nats {} + stub {}",
                us(best_r.cpu_us("vigil")),
                us(best_r.cpu_us("nats-server")),
                us(best_r.cpu_us("stub"))
            ),
            rss: format!("vigil {:.0} MB", best_r.usage.peak_mb("vigil")),
            wall_s: best_r.wall_s,
        });
        let each = |v: Vec<f64>| v.iter().map(|x| rate(*x)).collect::<Vec<_>>().join(", ");
        self.notes.push(format!(
            "zero-latency rounds: stub ceiling {} items/s; vigil run {} items/s (failed items: {})",
            each(ceilings.iter().map(|c| c.drive.per_s()).collect()),
            each(runs.iter().map(RunMeasure::per_s).collect()),
            runs.iter().map(|r| r.failed).sum::<u64>(),
        ));
        self.zero = Some((best_r.per_s(), ratio));
        self.first_result_s = runs
            .iter()
            .filter_map(|r| r.first_result_s)
            .min_by(f64::total_cmp);
        let firsts: Vec<String> = runs
            .iter()
            .filter_map(|r| r.first_result_s)
            .map(|s| format!("{s:.3} s"))
            .collect();
        self.notes.push(format!(
            "time from spawning `vigil run` (embedded, fresh store) to the first result stored in VIGIL_RESULTS: {}",
            firsts.join(", ")
        ));
    }

    fn separate_cpu(m: &RunMeasure) -> String {
        format!(
            "coord {} + worker {} + nats {} + stub {}",
            us(m.cpu_us("coordinator")),
            us(m.cpu_us("worker")),
            us(m.cpu_us("nats-server")),
            us(m.cpu_us("stub"))
        )
    }

    fn separate_rss(m: &RunMeasure) -> String {
        format!(
            "coord {:.0} MB, worker {:.0} MB",
            m.usage.peak_mb("coordinator"),
            m.usage.peak_mb("worker")
        )
    }

    /// Row (c) for one concurrency.
    pub fn latency_bound(&mut self, c: usize, latency_ms: u64, m: &RunMeasure) {
        let ideal = c as f64 / (latency_ms as f64 / 1000.0);
        let eff = m.per_s() / ideal;
        self.rows.push(Row {
            scenario: format!("latency-bound, {latency_ms} ms, C={c}, 1 worker process"),
            items: m.items,
            items_per_s: m.per_s(),
            reference: format!("C/latency {}/s", rate(ideal)),
            ratio: Some(eff),
            cpu: Self::separate_cpu(m),
            rss: Self::separate_rss(m),
            wall_s: m.wall_s,
        });
        if m.failed > 0 {
            self.notes
                .push(format!("latency-bound C={c}: {} items failed", m.failed));
        }
        self.latency.push((c, eff, m.usage.peak_mb("worker")));
    }

    /// Row (d) for one size.
    pub fn memory(&mut self, n: u64, c: usize, m: &RunMeasure) {
        self.rows.push(Row {
            scenario: format!("memory, 0 ms, {} items, 1 worker C={c}", rate(n as f64)),
            items: m.items,
            items_per_s: m.per_s(),
            reference: "—".into(),
            ratio: None,
            cpu: Self::separate_cpu(m),
            rss: Self::separate_rss(m),
            wall_s: m.wall_s,
        });
        if m.failed > 0 {
            self.notes
                .push(format!("memory {n} items: {} items failed", m.failed));
        }
        self.memory
            .push((n, m.usage.peak_mb("coordinator"), m.usage.peak_mb("worker")));
    }

    /// Row (e) for one worker count.
    pub fn scale_out(&mut self, workers: usize, k: usize, latency_ms: u64, m: &RunMeasure) {
        let ideal = (workers * k) as f64 / (latency_ms as f64 / 1000.0);
        self.rows.push(Row {
            scenario: format!(
                "scale-out, {workers} worker process(es) × {k} calls, {latency_ms} ms"
            ),
            items: m.items,
            items_per_s: m.per_s(),
            reference: format!("workers×cap/latency {}/s", rate(ideal)),
            ratio: Some(m.per_s() / ideal),
            cpu: Self::separate_cpu(m),
            rss: Self::separate_rss(m),
            wall_s: m.wall_s,
        });
        if m.failed > 0 {
            self.notes.push(format!(
                "scale-out {workers} workers: {} items failed",
                m.failed
            ));
        }
    }

    /// Evaluates the budgets from what was measured.
    pub fn finish_budgets(&mut self) {
        if let Some((per_s, ratio)) = self.zero {
            self.budgets.push(Budget {
                name: "zero-latency throughput vs the stub's direct ceiling".into(),
                target: "≥ 50%".into(),
                measured: pct(ratio),
                met: ratio >= 0.5,
            });
            self.budgets.push(Budget {
                name: "zero-latency throughput".into(),
                target: "≥ 10,000 items/s".into(),
                measured: format!("{} items/s", rate(per_s)),
                met: per_s >= 10_000.0,
            });
        }
        for &(c, eff, _) in &self.latency {
            self.budgets.push(Budget {
                name: format!("latency-bound efficiency, C={c}"),
                target: "≥ 95%".into(),
                measured: pct(eff),
                met: eff >= 0.95,
            });
        }
        if let Some(&(n, coord, _)) = self.memory.iter().max_by_key(|m| m.0) {
            self.budgets.push(Budget {
                name: format!("coordinator peak RSS at {} items", rate(n as f64)),
                target: "≤ 150 MB".into(),
                measured: format!("{coord:.1} MB"),
                met: coord <= 150.0,
            });
        }
        if let Some(&(c, _, worker)) = self.latency.iter().max_by_key(|l| l.0) {
            self.budgets.push(Budget {
                name: format!("worker peak RSS with {c} requests in flight"),
                target: "≤ 100 MB".into(),
                measured: format!("{worker:.1} MB"),
                met: worker <= 100.0,
            });
        }
        if let Some(s) = self.first_result_s {
            self.budgets.push(Budget {
                name: "`vigil run` (embedded) to the first result".into(),
                target: "< 1 s".into(),
                measured: format!("{s:.3} s"),
                met: s < 1.0,
            });
        }
    }

    /// The results table (markdown, readable as plain text too).
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str("| scenario | items | items/s | compared with | ratio | CPU per item | peak RSS | wall s |\n");
        out.push_str("|---|---:|---:|---|---:|---|---|---:|\n");
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {:.1} |",
                r.scenario,
                r.items,
                rate(r.items_per_s),
                r.reference,
                r.ratio.map(pct).unwrap_or_else(|| "—".into()),
                r.cpu,
                r.rss,
                r.wall_s
            );
        }
        out
    }

    /// The budgets table.
    pub fn budget_table(&self) -> String {
        let mut out = String::from("| budget | target | measured | met |\n|---|---|---|---|\n");
        for b in &self.budgets {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                b.name,
                b.target,
                b.measured,
                if b.met { "yes" } else { "**no**" }
            );
        }
        out
    }

    /// The generated section of `docs/performance.md`.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str("### Machine\n\n| | |\n|---|---|\n");
        for (k, v) in &self.machine {
            let _ = writeln!(out, "| {k} | {v} |");
        }
        let _ = writeln!(out, "\nSettings: {}.\n", self.settings);
        out.push_str("### Results\n\n");
        out.push_str(&self.table());
        out.push_str("\n### Budgets\n\n");
        out.push_str(&self.budget_table());
        if !self.notes.is_empty() {
            out.push_str("\nNotes:\n\n");
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        out
    }

    /// Replaces the part of `path` between the bench markers with
    /// [`markdown`](Self::markdown) (appends the markers if missing).
    pub fn write_into(&self, path: &Path) -> std::io::Result<()> {
        let old = std::fs::read_to_string(path).unwrap_or_default();
        let section = format!("{BEGIN}\n\n{}\n{END}", self.markdown());
        let new = match (old.find(BEGIN), old.find(END)) {
            (Some(b), Some(e)) if e > b => {
                format!("{}{section}{}", &old[..b], &old[e + END.len()..])
            }
            _ if old.is_empty() => format!("# Performance\n\n{section}\n"),
            _ => format!("{}\n{section}\n", old.trim_end()),
        };
        std::fs::write(path, new)
    }
}
