//! The capture proxy's memory over a long steady load: `vigil proxy` as its
//! own process (capture on, every request sampled, publishing to a real
//! nats-server) in front of a `vigil stub` process, driven open-loop at a
//! fixed rate for a long time, its resident memory (`VmRSS`) read every few
//! seconds. Requests alternate between the stub directly and the proxy, as
//! in [`crate::proxy_overhead`], so the added latency is measured too.
//!
//! The verdict is [`flatness`]: memory is flat when the least-squares line
//! through the samples after the first fifth of the soak rises by at most
//! [`FLAT_MIB`] MiB or [`FLAT_SHARE`] of its level, whichever is larger,
//! over the rest.

use crate::proxy_overhead::{OverheadConfig, Quantiles, drive};
use crate::{machine, procfs, spawn};
use anyhow::{Context, bail};
use std::fmt::Write;
use std::path::Path;
use std::time::Duration;
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};

/// The smallest rise that fails the verdict, MiB.
pub const FLAT_MIB: f64 = 2.0;
/// The rise, as a share of the level after the warm-up, that fails the verdict.
pub const FLAT_SHARE: f64 = 0.05;
/// Where the soak's part of `docs/performance.md` begins.
pub const BEGIN: &str =
    "<!-- bench:soak:begin (written by vigil-bench soak; edits here are overwritten) -->";
/// Where it ends.
pub const END: &str = "<!-- bench:soak:end -->";

/// Settings of a soak.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Requests per second through the proxy (as many again go to the stub directly).
    pub rate: u64,
    /// Measured seconds.
    pub seconds: u64,
    /// Unmeasured seconds first.
    pub warmup_seconds: u64,
    /// Seconds between two memory samples.
    pub sample_every_s: u64,
}

impl Default for SoakConfig {
    /// Ten minutes at 1,000 requests/s through the proxy, memory every 5 s.
    fn default() -> Self {
        SoakConfig {
            rate: 1000,
            seconds: 600,
            warmup_seconds: 10,
            sample_every_s: 5,
        }
    }
}

/// How flat a memory trajectory is (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flatness {
    /// The first sample, MiB.
    pub start_mib: f64,
    /// The largest sample, MiB.
    pub peak_mib: f64,
    /// The last sample, MiB.
    pub end_mib: f64,
    /// Slope of the least-squares line after the first fifth, MiB per minute.
    pub slope_mib_per_min: f64,
    /// That line's rise over the samples it fits, MiB.
    pub rise_mib: f64,
    /// The most it may rise and still be flat, MiB.
    pub allowed_mib: f64,
    /// `rise_mib <= allowed_mib`.
    pub flat: bool,
}

/// Judges `(seconds, MiB)` samples (at least three, in time order).
pub fn flatness(samples: &[(f64, f64)]) -> Option<Flatness> {
    if samples.len() < 3 {
        return None;
    }
    let skip = (samples.len() / 5).min(samples.len() - 2);
    let rest = &samples[skip..];
    let n = rest.len() as f64;
    let mean_t = rest.iter().map(|s| s.0).sum::<f64>() / n;
    let mean_m = rest.iter().map(|s| s.1).sum::<f64>() / n;
    let var_t: f64 = rest.iter().map(|s| (s.0 - mean_t).powi(2)).sum();
    let cov: f64 = rest.iter().map(|s| (s.0 - mean_t) * (s.1 - mean_m)).sum();
    let slope = if var_t > 0.0 { cov / var_t } else { 0.0 };
    let (t0, t1) = (rest[0].0, rest[rest.len() - 1].0);
    let level = mean_m + slope * (t0 - mean_t);
    let rise = slope * (t1 - t0);
    let allowed = FLAT_MIB.max(FLAT_SHARE * level);
    Some(Flatness {
        start_mib: samples[0].1,
        peak_mib: samples.iter().map(|s| s.1).fold(f64::MIN, f64::max),
        end_mib: samples[samples.len() - 1].1,
        slope_mib_per_min: slope * 60.0,
        rise_mib: rise,
        allowed_mib: allowed,
        flat: rise <= allowed,
    })
}

/// What a soak measured.
#[derive(Debug, Clone)]
pub struct Soak {
    /// The settings.
    pub config: SoakConfig,
    /// The commit measured ([`machine::commit`]).
    pub commit: String,
    /// When it began (UTC).
    pub date: String,
    /// Load average when it began and when it ended.
    pub load: (String, String),
    /// The stub directly.
    pub direct: Quantiles,
    /// Through the proxy.
    pub proxied: Quantiles,
    /// Requests that failed or were not answered 200.
    pub errors: u64,
    /// Captures the proxy published (its `vigil_proxy_captured_total`).
    pub captured: u64,
    /// Captures it dropped (`vigil_proxy_dropped_total`, every reason).
    pub dropped: u64,
    /// The proxy's resident memory: (seconds since measuring began, MiB).
    pub rss: Vec<(f64, f64)>,
    /// The verdict on `rss`.
    pub flatness: Option<Flatness>,
}

impl Soak {
    /// Requests sent through the proxy, warm-up included.
    pub fn proxied_requests(&self) -> u64 {
        self.config.rate * (self.config.seconds + self.config.warmup_seconds)
    }

    /// The soak as markdown (for `docs/performance.md`).
    pub fn markdown(&self) -> String {
        let c = &self.config;
        let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
        let diff = |a: u64, b: u64| format!("{:+.3}", (b as f64 - a as f64) / 1000.0);
        let (d, p) = (self.direct, self.proxied);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Commit {}, {}, load average {} at the start and {} at the end. `vigil proxy` \
             (its own process, capture on, 100% sampled, publishing to a nats-server) in front of \
             `vigil stub`, {} requests/s through the proxy and as many to the stub directly \
             (alternating, open loop) for {} s after {} s of warm-up; the proxy's RSS every {} s.\n",
            self.commit,
            self.date,
            self.load.0,
            self.load.1,
            c.rate,
            c.seconds,
            c.warmup_seconds,
            c.sample_every_s
        );
        out.push_str("| proxy RSS start | peak | end | slope after the first fifth | rise of that line | allowed | flat |\n");
        out.push_str("|---:|---:|---:|---:|---:|---:|---|\n");
        match self.flatness {
            Some(f) => {
                let _ = writeln!(
                    out,
                    "| {:.1} MiB | {:.1} MiB | {:.1} MiB | {:+.3} MiB/min | {:+.2} MiB | {:.2} MiB | {} |",
                    f.start_mib,
                    f.peak_mib,
                    f.end_mib,
                    f.slope_mib_per_min,
                    f.rise_mib,
                    f.allowed_mib,
                    if f.flat { "yes" } else { "**no**" }
                );
            }
            None => out.push_str("| — | — | — | — | — | — | too few samples |\n"),
        }
        let _ = writeln!(
            out,
            "\nFlat means: the least-squares line through the proxy's RSS samples after the first \
             fifth of the soak rises by at most {FLAT_MIB} MiB or {:.0}% of its level, whichever is \
             larger, over the rest (a leak of 10 bytes per request at 1,000 requests/s, 4.6 MiB \
             over 8 minutes, fails it).\n",
            FLAT_SHARE * 100.0
        );
        out.push_str(
            "| path | requests | p50 ms | p99 ms | p99.9 ms |\n|---|---:|---:|---:|---:|\n",
        );
        let _ = writeln!(
            out,
            "| stub directly | {} | {} | {} | {} |",
            d.n,
            ms(d.p50),
            ms(d.p99),
            ms(d.p999)
        );
        let _ = writeln!(
            out,
            "| through `vigil proxy` | {} | {} | {} | {} |",
            p.n,
            ms(p.p50),
            ms(p.p99),
            ms(p.p999)
        );
        let _ = writeln!(
            out,
            "| **added by the proxy** | | **{}** | **{}** | {} |",
            diff(d.p50, p.p50),
            diff(d.p99, p.p99),
            diff(d.p999, p.p999)
        );
        let _ = writeln!(
            out,
            "\n{} requests failed; {} captures published, {} dropped (of {} proxied requests, \
             warm-up included).\n",
            self.errors,
            self.captured,
            self.dropped,
            self.proxied_requests()
        );
        let step = (self.rss.len() / 12).max(1);
        let points: Vec<String> = self
            .rss
            .iter()
            .step_by(step)
            .map(|(t, m)| format!("{t:.0} s {m:.1}"))
            .collect();
        let _ = writeln!(out, "Proxy RSS over time (MiB): {}.", points.join(", "));
        out
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released for the proxy to take).
fn free_addr() -> anyhow::Result<std::net::SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Sums the samples of a Prometheus metric family in `text`.
fn metric_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Runs a soak with the `vigil` binary.
pub async fn run(vigil: &Path, cfg: SoakConfig) -> anyhow::Result<Soak> {
    if !vigil.is_file() {
        bail!("no vigil binary at {}", vigil.display());
    }
    let commit = machine::commit(&machine::workspace(), vigil);
    let date = machine::now_utc();
    let load_start = machine::loadavg();
    let nats = NatsServer::start(NatsServerConfig::default()).await?;
    let stub = spawn::stub(vigil, spawn::StubSpec::default()).await?;
    let metrics = free_addr()?;
    let (proxy, proxy_url) = spawn::proxy(vigil, &stub.url, "bench", &nats.url(), metrics).await?;
    let pid = proxy.pid;
    let rss = move || procfs::rss_kb(pid).map(|kb| kb as f64 / 1024.0);
    let overhead = OverheadConfig {
        rate: cfg.rate * 2,
        seconds: cfg.seconds,
        warmup_seconds: cfg.warmup_seconds,
        sample: 1.0,
    };
    let (direct, proxied, errors, samples) =
        drive(&overhead, &stub.url, &proxy_url, &rss, cfg.sample_every_s).await;
    // Let the publisher empty its queue before reading the counters.
    let http = crate::loadgen::client();
    let scrape = || async {
        http.get(format!("http://{metrics}/metrics"))
            .send()
            .await?
            .text()
            .await
    };
    // Every proxied request that was answered should end up published or
    // dropped; wait for that (10 s at most) before reading the counters.
    let expected = (cfg.rate * (cfg.seconds + cfg.warmup_seconds)).saturating_sub(errors);
    let mut text = scrape().await.context("reading the proxy's /metrics")?;
    for _ in 0..100 {
        let done = metric_sum(&text, "vigil_proxy_captured_total")
            + metric_sum(&text, "vigil_proxy_dropped_total");
        if done >= expected && metric_sum(&text, "vigil_proxy_queue_depth") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = scrape().await?;
    }
    proxy.terminate(Duration::from_secs(10)).await?;
    stub.terminate().await?;
    Ok(Soak {
        commit,
        date,
        load: (load_start, machine::loadavg()),
        direct: Quantiles::of(&direct),
        proxied: Quantiles::of(&proxied),
        errors,
        captured: metric_sum(&text, "vigil_proxy_captured_total"),
        dropped: metric_sum(&text, "vigil_proxy_dropped_total"),
        flatness: flatness(&samples),
        rss: samples,
        config: cfg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        (0..=120)
            .map(|i| (i as f64 * 5.0, f(i as f64 * 5.0)))
            .collect()
    }

    #[test]
    fn flat_memory_passes_with_noise_and_an_early_step() {
        // 20 MiB, a 6 MiB step in the first minute (pools filling), ±0.5 MiB wobble.
        let f = flatness(&series(|t| {
            20.0 + if t > 40.0 { 6.0 } else { 0.0 } + 0.5 * (t / 7.0).sin()
        }))
        .unwrap();
        assert!(f.flat, "{f:?}");
        assert_eq!((f.start_mib, f.peak_mib > 26.0), (20.0, true));
    }

    #[test]
    fn a_small_leak_fails() {
        // 10 bytes per request at 1,000 requests/s: 0.57 MiB a minute.
        let per_s = 10.0 * 1000.0 / (1024.0 * 1024.0);
        let f = flatness(&series(|t| 20.0 + per_s * t)).unwrap();
        assert!(!f.flat, "{f:?}");
        assert!((f.slope_mib_per_min - per_s * 60.0).abs() < 1e-9, "{f:?}");
    }

    #[test]
    fn a_late_step_fails() {
        // Level for eight minutes, then 8 MiB more: not flat.
        let f = flatness(&series(|t| 20.0 + if t > 480.0 { 8.0 } else { 0.0 })).unwrap();
        assert!(!f.flat, "{f:?}");
        assert!(flatness(&[(0.0, 1.0), (1.0, 2.0)]).is_none());
    }

    #[test]
    fn sums_a_metric_family() {
        let text = "# HELP vigil_proxy_dropped Captures dropped\nvigil_proxy_dropped_total{reason=\"nats\"} 3\n\
                    vigil_proxy_dropped_total{reason=\"queue_full\"} 4\nvigil_proxy_captured_total 70\n\
                    vigil_proxy_captured_total_other 9\n";
        assert_eq!(metric_sum(text, "vigil_proxy_dropped_total"), 7);
        assert_eq!(metric_sum(text, "vigil_proxy_captured_total"), 70);
        assert_eq!(metric_sum(text, "vigil_proxy_queue_depth"), 0);
    }
}
