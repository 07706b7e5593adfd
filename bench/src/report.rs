//! The results table, the budgets, and the markdown written into
//! `docs/performance.md` between its bench markers.

use crate::BenchConfig;
use crate::scenario::{Ceiling, RunMeasure, WrkCeiling};
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
    /// The commit it ran on ([`crate::machine::commit`]).
    pub commit: String,
    /// Items (or requests) measured.
    pub items: u64,
    /// Items per second by wall clock: from spawning the measured process to
    /// its exit (for a load generator, its first request to its last answer;
    /// for wrk, its spawn to its exit). `None`: not measured (see `reference`).
    pub wall_per_s: Option<f64>,
    /// Items per second over the run's own reported duration (a `vigil run`'s
    /// `duration_s`, wrk's own duration).
    pub run_per_s: Option<f64>,
    /// What the rate is compared with.
    pub reference: String,
    /// Wall-clock rate / reference.
    pub ratio: Option<f64>,
    /// Run-duration rate / reference.
    pub ratio_run: Option<f64>,
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
    /// The commit measured ([`crate::machine::commit`]), on every row.
    pub commit: String,
    /// When the run began (UTC).
    pub date: String,
    /// Load average at the start and at the end of the run.
    pub load: (String, String),
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
    headline: Option<f64>,
    cache_ratio: Option<f64>,
    first_result_s: Option<f64>,
    latency: Vec<(usize, f64, f64, f64)>,
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

/// A label and its CPU per item, joined: `vigil 80 µs + nats 17 µs`.
/// The CPU column of an embedded `vigil run` (its nats-server a child) against the stub.
fn embedded_cpu(m: &RunMeasure) -> String {
    cpu_of(
        m,
        &[
            ("vigil", "vigil"),
            ("nats", "nats-server"),
            ("stub", "stub"),
        ],
    )
}

/// The memory column of an embedded `vigil run`.
fn vigil_mb(m: &RunMeasure) -> String {
    format!("vigil {:.0} MB", m.usage.peak_mb("vigil"))
}

fn cpu_of(m: &RunMeasure, labels: &[(&str, &str)]) -> String {
    labels
        .iter()
        .map(|(short, label)| format!("{short} {}", us(m.cpu_us(label))))
        .collect::<Vec<_>>()
        .join(" + ")
}

fn best<T>(xs: &[T], key: impl Fn(&T) -> f64) -> Option<&T> {
    xs.iter().max_by(|a, b| key(a).total_cmp(&key(b)))
}

fn each<T>(xs: &[T], key: impl Fn(&T) -> f64) -> String {
    xs.iter()
        .map(|x| rate(key(x)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Report {
    /// An empty report for a commit, machine and settings.
    pub fn new(commit: String, machine: Vec<(String, String)>, cfg: &BenchConfig) -> Self {
        let settings = format!(
            "zero latency: {} distinct items at C={} (best of {} alternating rounds), shard {}, wrk {} s; \
             latency-bound: {} ms × C in {:?}, {} rounds; memory: {:?} items, worker concurrency {}; \
             scale-out: {:?} workers × {} calls, backend {} slots × {} ms, {} s at the bound",
            cfg.zero_latency_items,
            cfg.zero_latency_concurrency,
            cfg.repeats.max(1),
            cfg.shard_size
                .map_or_else(|| "chosen per run".to_string(), |n| n.to_string()),
            cfg.wrk_seconds,
            cfg.latency_ms,
            cfg.latency_concurrency,
            cfg.latency_rounds,
            cfg.memory_items,
            cfg.memory_concurrency,
            cfg.scale_workers,
            cfg.scale_concurrency,
            cfg.scale_slots,
            cfg.scale_latency_ms,
            cfg.scale_seconds,
        );
        Report {
            commit,
            date: crate::machine::now_utc(),
            load: (crate::machine::loadavg(), String::new()),
            machine,
            settings,
            rows: Vec::new(),
            budgets: Vec::new(),
            notes: Vec::new(),
            headline: None,
            cache_ratio: None,
            first_result_s: None,
            latency: Vec::new(),
            memory: Vec::new(),
        }
    }

    fn row(
        &mut self,
        scenario: String,
        items: u64,
        wall: Option<f64>,
        run: Option<f64>,
    ) -> &mut Row {
        self.rows.push(Row {
            scenario,
            commit: self.commit.clone(),
            items,
            wall_per_s: wall,
            run_per_s: run,
            reference: "—".into(),
            ratio: None,
            ratio_run: None,
            cpu: "—".into(),
            rss: "—".into(),
            wall_s: 0.0,
        });
        self.rows.last_mut().expect("just pushed")
    }

    fn vigil_row(
        &mut self,
        scenario: String,
        m: &RunMeasure,
        reference: String,
        per_s: Option<f64>,
        cpu: String,
        rss: String,
    ) {
        let row = self.row(scenario, m.items, Some(m.wall_per_s()), Some(m.per_s()));
        row.reference = reference;
        row.ratio = per_s.map(|r| m.wall_per_s() / r);
        row.ratio_run = per_s.map(|r| m.per_s() / r);
        row.cpu = cpu;
        row.rss = rss;
        row.wall_s = m.wall_s;
    }

    fn ceiling_row(&mut self, scenario: String, c: &Ceiling, reference: Option<(String, f64)>) {
        let n = c.drive.ok.max(1) as f64;
        let per_s = c.drive.per_s();
        let row = self.row(scenario, c.drive.ok, Some(per_s), None);
        if let Some((text, r)) = reference {
            row.reference = text;
            row.ratio = Some(per_s / r);
        }
        row.cpu = format!(
            "stub {} + client {}",
            us(c.stub_cpu_s * 1e6 / n),
            us(c.client_cpu_s * 1e6 / n)
        );
        row.wall_s = c.drive.elapsed.as_secs_f64();
    }

    /// The zero-latency rows: the headline (`vigil run --workers 1
    /// --no-cache` against the best direct ceiling), the ceilings (tokio
    /// client, wrk), and the cache rows (a cold run with the cache on against
    /// the same run with it off, a fully cached re-run, and a cold run of
    /// other prompts on the store the first filled). Best of the alternating
    /// rounds on each side.
    pub fn zero_latency(
        &mut self,
        c: usize,
        ceilings: &[Ceiling],
        wrks: &[Option<WrkCeiling>],
        runs: &[RunMeasure],
        cached: &[crate::scenario::CacheRuns],
    ) {
        let best_c = best(ceilings, |c| c.drive.per_s()).expect("at least one ceiling");
        let wrks: Vec<&WrkCeiling> = wrks.iter().flatten().collect();
        let best_w = wrks
            .iter()
            .copied()
            .max_by(|a, b| a.drive.per_s().total_cmp(&b.drive.per_s()));
        let best_r = best(runs, RunMeasure::wall_per_s).expect("at least one run");
        let (ceiling, by) = match best_w {
            Some(w) if w.drive.per_s() > best_c.drive.per_s() => (w.drive.per_s(), "wrk"),
            _ => (best_c.drive.per_s(), "tokio client"),
        };
        let n = best_r.items;
        self.vigil_row(
            format!(
                "**headline**: `vigil run --workers 1 --no-cache`, {} distinct items, 0 ms, C={c}",
                rate(n as f64)
            ),
            best_r,
            format!("direct ceiling {}/s ({by})", rate(ceiling)),
            Some(ceiling),
            embedded_cpu(best_r),
            vigil_mb(best_r),
        );
        self.headline = Some(best_r.wall_per_s() / ceiling);
        self.ceiling_row(
            format!("ceiling, tokio client (the bench's own), 0 ms, C={c}"),
            best_c,
            None,
        );
        match best_w {
            Some(w) => {
                let row = self.row(
                    format!("ceiling, wrk -t2 -c{c}, 0 ms"),
                    w.drive.requests,
                    Some(w.drive.requests as f64 / w.drive.wall_s.max(1e-9)),
                    Some(w.drive.per_s()),
                );
                row.cpu = format!(
                    "stub {}",
                    us(w.stub_cpu_s * 1e6 / w.drive.requests.max(1) as f64)
                );
                row.wall_s = w.drive.wall_s;
            }
            None => {
                let row = self.row(format!("ceiling, wrk -t2 -c{c}, 0 ms"), 0, None, None);
                row.reference = "wrk not installed".into();
            }
        }
        self.notes.push(format!(
            "zero-latency rounds (wall clock): tokio client {} req/s; wrk {}; vigil run --no-cache {} items/s (run's own duration: {}; failed items: {})",
            each(ceilings, |c| c.drive.per_s()),
            if wrks.is_empty() { "not installed".to_string() } else { format!("{} req/s", each(&wrks, |w| w.drive.per_s())) },
            each(runs, RunMeasure::wall_per_s),
            each(runs, RunMeasure::per_s),
            runs.iter().map(|r| r.failed).sum::<u64>(),
        ));
        if let Some(crate::scenario::CacheRuns { cold, .. }) = best(cached, |p| p.cold.wall_per_s())
        {
            let ratio = cold.wall_per_s() / best_r.wall_per_s();
            self.vigil_row(
                format!(
                    "cache on, cold run (every lookup a miss), {} distinct items, 0 ms, C={c}",
                    rate(cold.items as f64)
                ),
                cold,
                format!("cache off (headline) {}/s", rate(best_r.wall_per_s())),
                Some(best_r.wall_per_s()),
                embedded_cpu(cold),
                vigil_mb(cold),
            );
            // The run-duration ratio compares like with like.
            if let Some(row) = self.rows.last_mut() {
                row.ratio_run = Some(cold.per_s() / best_r.per_s());
            }
            self.cache_ratio = Some(ratio);
        }
        if let Some(crate::scenario::CacheRuns { other, cold, .. }) =
            best(cached, |p| p.other.wall_per_s())
        {
            self.vigil_row(
                format!(
                    "cache on, other prompts (cold) on the store holding the first run's {} answers, {} items, C={c}",
                    rate(cold.items as f64),
                    rate(other.items as f64)
                ),
                other,
                format!("cache off (headline) {}/s", rate(best_r.wall_per_s())),
                Some(best_r.wall_per_s()),
                embedded_cpu(other),
                vigil_mb(other),
            );
            if let Some(row) = self.rows.last_mut() {
                row.ratio_run = Some(other.per_s() / best_r.per_s());
            }
        }
        if let Some(crate::scenario::CacheRuns { warm, .. }) = best(cached, |p| p.warm.wall_per_s())
        {
            self.vigil_row(
                format!(
                    "cache on, fully cached re-run (no backend call), {} items, C={c}",
                    rate(warm.items as f64)
                ),
                warm,
                format!("direct ceiling {}/s ({by})", rate(ceiling)),
                Some(ceiling),
                embedded_cpu(warm),
                vigil_mb(warm),
            );
        }
        if !cached.is_empty() {
            self.notes.push(format!(
                "cache rounds (wall clock): cold with the cache on {} items/s, fully cached re-run {} items/s, \
                 other prompts on the filled store {} items/s; the stub was called once per item by the cold runs \
                 and never by the re-runs (checked from its own count)",
                each(cached, |p| p.cold.wall_per_s()),
                each(cached, |p| p.warm.wall_per_s()),
                each(cached, |p| p.other.wall_per_s()),
            ));
            // Best against best can pair a fast moment of one side with a
            // slow one of the other; each round's pair ran minutes apart at most.
            let paired: Vec<String> = cached
                .iter()
                .zip(runs)
                .map(|(p, r)| pct(p.cold.wall_per_s() / r.wall_per_s()))
                .collect();
            self.notes.push(format!(
                "cold run with the cache on against the same round's cache-off run (wall clock): {}",
                paired.join(", ")
            ));
        }
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
        cpu_of(
            m,
            &[
                ("coord", "coordinator"),
                ("worker", "worker"),
                ("nats", "nats-server"),
                ("stub", "stub"),
            ],
        )
    }

    fn separate_rss(m: &RunMeasure) -> String {
        format!(
            "coord {:.0} MB, worker {:.0} MB",
            m.usage.peak_mb("coordinator"),
            m.usage.peak_mb("worker")
        )
    }

    /// The latency-bound rows for one concurrency: the tokio client against
    /// the same stub, then one worker process; both against C / latency.
    pub fn latency_bound(&mut self, c: usize, latency_ms: u64, ceiling: &Ceiling, m: &RunMeasure) {
        let ideal = c as f64 / (latency_ms as f64 / 1000.0);
        let reference = format!("C/latency {}/s", rate(ideal));
        self.ceiling_row(
            format!("latency-bound ceiling, tokio client, {latency_ms} ms, C={c}"),
            ceiling,
            Some((reference.clone(), ideal)),
        );
        self.vigil_row(
            format!("latency-bound, {latency_ms} ms, C={c}, 1 worker process"),
            m,
            reference,
            Some(ideal),
            Self::separate_cpu(m),
            Self::separate_rss(m),
        );
        if m.failed > 0 {
            self.notes
                .push(format!("latency-bound C={c}: {} items failed", m.failed));
        }
        self.latency.push((
            c,
            m.per_s() / ideal,
            m.wall_per_s() / ideal,
            m.usage.peak_mb("worker"),
        ));
    }

    /// Row (d) for one size.
    pub fn memory(&mut self, n: u64, c: usize, m: &RunMeasure) {
        self.vigil_row(
            format!("memory, 0 ms, {} items, 1 worker C={c}", rate(n as f64)),
            m,
            "—".into(),
            None,
            Self::separate_cpu(m),
            Self::separate_rss(m),
        );
        if m.failed > 0 {
            self.notes
                .push(format!("memory {n} items: {} items failed", m.failed));
        }
        self.memory
            .push((n, m.usage.peak_mb("coordinator"), m.usage.peak_mb("worker")));
    }

    /// The scale-out rows for one worker count: the tokio client at
    /// `workers × k` in flight against the same capped backend (`slots`
    /// served at once, `latency_ms` each), then `workers` worker processes of
    /// `--concurrency k`. The bound is min(workers × k, slots) / latency; it
    /// says which setting binds, and the ratio to the direct client says
    /// whether vigil's pipeline limits before it.
    pub fn scale_out(
        &mut self,
        workers: usize,
        k: usize,
        slots: usize,
        latency_ms: u64,
        ceiling: &Ceiling,
        m: &RunMeasure,
    ) {
        let l = latency_ms as f64 / 1000.0;
        let (bound, by) = if workers * k >= slots {
            (slots as f64 / l, format!("backend: {slots} slots"))
        } else {
            (
                (workers * k) as f64 / l,
                format!("workers: {workers} × {k} calls"),
            )
        };
        let bound_text = format!("bound {}/s ({by})", rate(bound));
        self.ceiling_row(
            format!(
                "scale-out ceiling, tokio client, C={}, backend {slots} slots × {latency_ms} ms",
                workers * k
            ),
            ceiling,
            Some((bound_text.clone(), bound)),
        );
        let direct = ceiling.drive.per_s();
        self.vigil_row(
            format!("scale-out, {workers} worker process(es) × {k} calls, backend {slots} slots × {latency_ms} ms"),
            m,
            format!("direct client {}/s; {bound_text}", rate(direct)),
            Some(direct),
            Self::separate_cpu(m),
            Self::separate_rss(m),
        );
        let ratio = m.per_s() / direct;
        self.notes.push(format!(
            "scale-out, {workers} worker(s): {} items/s (run duration) = {} of the direct client at the same \
             concurrency and {} of the {bound_text}; limited by {}",
            rate(m.per_s()),
            pct(ratio),
            pct(m.per_s() / bound),
            if ratio < 0.9 { "vigil's pipeline (below 90% of the direct client)".to_string() } else { by },
        ));
        if m.failed > 0 {
            self.notes.push(format!(
                "scale-out {workers} workers: {} items failed",
                m.failed
            ));
        }
    }

    /// Evaluates the budgets from what was measured.
    pub fn finish_budgets(&mut self) {
        self.load.1 = crate::machine::loadavg();
        if let Some(ratio) = self.headline {
            self.budgets.push(Budget {
                name: "headline: `vigil run --workers 1 --no-cache` vs the direct ceiling, by wall clock".into(),
                target: "≥ 50%".into(),
                measured: pct(ratio),
                met: ratio >= 0.5,
            });
        }
        if let Some(ratio) = self.cache_ratio {
            self.budgets.push(Budget {
                name: "cold run with the cache on vs off, by wall clock".into(),
                target: "≥ 90%".into(),
                measured: pct(ratio),
                met: ratio >= 0.9,
            });
        }
        for &(c, eff, eff_wall, _) in &self.latency {
            self.budgets.push(Budget {
                name: format!("latency-bound efficiency, C={c} (run duration; wall clock beside)"),
                target: "≥ 95%".into(),
                measured: format!("{} (wall {})", pct(eff), pct(eff_wall)),
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
        if let Some(&(c, _, _, worker)) = self.latency.iter().max_by_key(|l| l.0) {
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
        out.push_str("| scenario | commit | items | items/s (wall clock) | items/s (run's own duration) | compared with | ratio (wall; run) | CPU per item | peak RSS | wall s |\n");
        out.push_str("|---|---|---:|---:|---:|---|---:|---|---|---:|\n");
        let opt = |v: Option<f64>| v.map(rate).unwrap_or_else(|| "—".into());
        for r in &self.rows {
            let ratio = match (r.ratio, r.ratio_run) {
                (Some(a), Some(b)) => format!("{}; {}", pct(a), pct(b)),
                (Some(a), None) => pct(a),
                (None, Some(b)) => format!("—; {}", pct(b)),
                (None, None) => "—".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
                r.scenario,
                r.commit,
                r.items,
                opt(r.wall_per_s),
                opt(r.run_per_s),
                r.reference,
                ratio,
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
        let _ = writeln!(
            out,
            "Generated by `scripts/bench.sh` (vigil-bench) on {}, commit **{}**, load average (1/5/15 min) \
             {} at the start and {} at the end.\n",
            self.date, self.commit, self.load.0, self.load.1
        );
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
        write_section(path, BEGIN, END, &self.markdown())
    }
}

/// Replaces the part of `path` between `begin` and `end` with `section`
/// (the markers kept); appends both when missing. What lies outside the
/// markers is left as it was.
pub fn write_section(path: &Path, begin: &str, end: &str, section: &str) -> std::io::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let section = format!("{begin}\n\n{}\n{end}", section.trim_end());
    // The end marker after the begin marker: the page's prose may name both.
    let found = old
        .find(begin)
        .and_then(|b| old[b..].find(end).map(|e| (b, b + e)));
    let new = match found {
        Some((b, e)) => format!("{}{section}{}", &old[..b], &old[e + end.len()..]),
        _ if old.is_empty() => format!("# Performance\n\n{section}\n"),
        _ => format!("{}\n\n{section}\n", old.trim_end()),
    };
    std::fs::write(path, new)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page whose prose names the markers before its block: the block is
    /// replaced in place, not a second one appended.
    #[test]
    fn the_block_is_replaced_even_when_the_prose_names_its_markers() {
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("p.md");
        // As docs/performance.md names them: the begin marker shortened.
        let prose =
            format!("Written between `<!-- bench:begin ... -->` and `{END}`.\n\n## Results\n\n");
        std::fs::write(&page, format!("{prose}{BEGIN}\n\nold\n{END}\n\n## After\n")).unwrap();
        write_section(&page, BEGIN, END, "new").unwrap();
        let text = std::fs::read_to_string(&page).unwrap();
        assert_eq!(text, format!("{prose}{BEGIN}\n\nnew\n{END}\n\n## After\n"));
        write_section(&page, BEGIN, END, "newer").unwrap();
        let text = std::fs::read_to_string(&page).unwrap();
        assert_eq!(text.matches(BEGIN).count(), 1, "one block: {text}");
        assert!(text.contains("\nnewer\n"));
    }
}
