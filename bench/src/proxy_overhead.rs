//! The capture proxy's added latency: one open-loop load at a fixed rate,
//! alternating request by request between the stub directly and the stub
//! through `vigil_proxy` (capture on, every request sampled, published to a
//! real nats-server), so both paths see the same machine at the same moment.
//!
//! Stub, proxy and load generator each run on their own tokio runtime
//! (threads), standing in for three processes; the proxy is the library the
//! `vigil proxy` command calls.

use crate::loadgen;
use hdrhistogram::Histogram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, bind, serve};

/// Settings of one overhead run.
#[derive(Debug, Clone)]
pub struct OverheadConfig {
    /// Requests per second, both paths together.
    pub rate: u64,
    /// Measured seconds (after the warm-up).
    pub seconds: u64,
    /// Unmeasured seconds first.
    pub warmup_seconds: u64,
    /// Fraction of proxied requests captured.
    pub sample: f64,
}

impl Default for OverheadConfig {
    fn default() -> Self {
        OverheadConfig {
            rate: 1000,
            seconds: 30,
            warmup_seconds: 3,
            sample: 1.0,
        }
    }
}

/// Latency quantiles of one path, microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Quantiles {
    /// Requests measured.
    pub n: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
}

impl Quantiles {
    pub(crate) fn of(h: &Histogram<u64>) -> Quantiles {
        Quantiles {
            n: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
        }
    }
}

/// What an overhead run measured.
#[derive(Debug, Clone)]
pub struct Overhead {
    /// The settings.
    pub config: OverheadConfig,
    /// The stub directly.
    pub direct: Quantiles,
    /// The stub through the proxy.
    pub proxied: Quantiles,
    /// Requests that failed or were not answered 200.
    pub errors: u64,
    /// Captures published (acked) by the end.
    pub captured: u64,
    /// Captures dropped by the end.
    pub dropped: u64,
    /// The drops, by reason (those that happened).
    pub dropped_by: Vec<(&'static str, u64)>,
    /// Resident memory of the whole bench process (stub, proxy and load
    /// generator), MiB, once a second of the measured part.
    pub rss_mib: Vec<f64>,
}

impl Overhead {
    /// The result as a markdown table.
    pub fn markdown(&self) -> String {
        let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
        let diff = |a: u64, b: u64| format!("{:+.3}", (b as f64 - a as f64) / 1000.0);
        let (d, p) = (self.direct, self.proxied);
        format!(
            "| path | requests | p50 ms | p99 ms | p99.9 ms |\n|---|---:|---:|---:|---:|\n\
             | stub directly | {} | {} | {} | {} |\n\
             | through `vigil proxy` (capture {:.0}%) | {} | {} | {} | {} |\n\
             | **added by the proxy** | | **{}** | **{}** | {} |\n\n\
             {} requests/s in total (alternating), {} s measured after {} s warm-up; \
             {} errors; {} captures published, {} dropped {:?}.\n\n\
             Resident memory of the bench process (stub + proxy + load generator): \
             {:.1} MiB when measuring began, {:.1} MiB at the end, {:.1} MiB at most; \
             over time (ten points, MiB): {}.\n",
            d.n,
            ms(d.p50),
            ms(d.p99),
            ms(d.p999),
            self.config.sample * 100.0,
            p.n,
            ms(p.p50),
            ms(p.p99),
            ms(p.p999),
            diff(d.p50, p.p50),
            diff(d.p99, p.p99),
            diff(d.p999, p.p999),
            self.config.rate,
            self.config.seconds,
            self.config.warmup_seconds,
            self.errors,
            self.captured,
            self.dropped,
            self.dropped_by,
            self.rss_mib.first().copied().unwrap_or(0.0),
            self.rss_mib.last().copied().unwrap_or(0.0),
            self.rss_mib.iter().copied().fold(0.0, f64::max),
            self.rss_mib
                .iter()
                .step_by((self.rss_mib.len() / 10).max(1))
                .map(|m| format!("{m:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }
}

fn runtime(name: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()?)
}

/// Runs one overhead measurement (blocking: it owns its runtimes).
pub fn run(cfg: OverheadConfig) -> anyhow::Result<Overhead> {
    let stop = CancellationToken::new();
    let infra = runtime("bench-infra")?;
    let nats = infra.block_on(NatsServer::start(NatsServerConfig::default()))?;

    let stub_rt = runtime("bench-stub")?;
    let stub_listener = stub_rt.block_on(async { bind(([127, 0, 0, 1], 0).into()) })?;
    let stub_url = format!("http://{}/v1", stub_listener.local_addr()?);
    let s = stop.clone();
    stub_rt.spawn(async move {
        let _ = serve(stub_listener, StubConfig::default(), async move {
            s.cancelled().await
        })
        .await;
    });

    let proxy_rt = runtime("bench-proxy")?;
    let metrics = vigil_proxy::Metrics::default();
    let proxy_cfg = vigil_proxy::ProxyConfig {
        upstream: stub_url.parse()?,
        app: "bench".into(),
        sample_rate: cfg.sample,
        metrics: metrics.clone(),
        ..Default::default()
    };
    let nats_url = nats.url();
    let client = proxy_rt.block_on(async_nats::connect(nats_url.as_str()))?;
    let proxy_listener = proxy_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let proxy_url = format!("http://{}/v1", proxy_listener.local_addr()?);
    let s = stop.clone();
    let proxy = proxy_rt.spawn(vigil_proxy::run(proxy_cfg, proxy_listener, client, s));

    let load = runtime("bench-load")?;
    let self_rss = || Some(crate::procfs::self_rss_kb() as f64 / 1024.0);
    let (direct, proxied, errors, rss_mib) =
        load.block_on(drive(&cfg, &stub_url, &proxy_url, &self_rss, 1));
    let rss_mib = rss_mib.into_iter().map(|(_, m)| m).collect();
    // Let the publisher finish what is queued before reading its counters.
    let until = Instant::now() + Duration::from_secs(10);
    while metrics.queue_depth.get() > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.cancel();
    let _ = proxy_rt.block_on(proxy);
    let dropped_by: Vec<(&'static str, u64)> = [
        vigil_proxy::DropReason::QueueFull,
        vigil_proxy::DropReason::Nats,
        vigil_proxy::DropReason::Timeout,
        vigil_proxy::DropReason::Encode,
        vigil_proxy::DropReason::TooLarge,
    ]
    .iter()
    .map(|r| {
        let n = metrics
            .dropped_by
            .get_or_create(&vec![("reason", r.label())])
            .get();
        (r.label(), n)
    })
    .filter(|(_, n)| *n > 0)
    .collect();
    let dropped = dropped_by.iter().map(|(_, n)| n).sum();
    Ok(Overhead {
        direct: Quantiles::of(&direct),
        proxied: Quantiles::of(&proxied),
        errors,
        captured: metrics.captured.get(),
        dropped,
        dropped_by,
        rss_mib,
        config: cfg,
    })
}

/// What a drive measured: latency of the direct and the proxied requests
/// (after the warm-up), failed requests, and the memory samples
/// (seconds since measuring began, MiB).
pub(crate) type Drive = (Histogram<u64>, Histogram<u64>, u64, Vec<(f64, f64)>);

/// The open-loop drive: request `i` is sent at `i / rate` seconds, to the stub
/// when `i` is even, through the proxy when odd; latency is from send to the
/// last byte read. `rss_mib` is sampled every `every_s` measured seconds and
/// once at the end.
pub(crate) async fn drive(
    cfg: &OverheadConfig,
    stub_url: &str,
    proxy_url: &str,
    rss_mib: &dyn Fn() -> Option<f64>,
    every_s: u64,
) -> Drive {
    let hist = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let direct = Arc::new(Mutex::new(hist()));
    let proxied = Arc::new(Mutex::new(hist()));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let http = loadgen::client();
    let urls = [
        format!("{stub_url}/chat/completions"),
        format!("{proxy_url}/chat/completions"),
    ];
    let warm = cfg.rate * cfg.warmup_seconds;
    let total = warm + cfg.rate * cfg.seconds;
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut samples = Vec::new();
    let mut sample = |at: f64| {
        if let Some(m) = rss_mib() {
            samples.push((at, m));
        }
    };
    for i in 0..total {
        if i >= warm && (i - warm).is_multiple_of(cfg.rate * every_s.max(1)) {
            sample((i - warm) as f64 / cfg.rate as f64);
        }
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / cfg.rate as f64)).await;
        let http = http.clone();
        let url = urls[(i % 2) as usize].clone();
        let into = if i % 2 == 0 {
            direct.clone()
        } else {
            proxied.clone()
        };
        let errors = errors.clone();
        tasks.spawn(async move {
            let sent = Instant::now();
            let ok = match http
                .post(&url)
                .header("content-type", "application/json")
                .header("x-request-id", format!("bench-{i}"))
                .body(loadgen::body(i))
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                _ => false,
            };
            let us = sent.elapsed().as_micros() as u64;
            if !ok {
                errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            } else if i >= warm {
                let _ = into.lock().expect("histogram lock").record(us.max(1));
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let take = |h: Arc<Mutex<Histogram<u64>>>| h.lock().expect("histogram lock").clone();
    sample((start.elapsed().as_secs_f64() - cfg.warmup_seconds as f64).max(0.0));
    (
        take(direct),
        take(proxied),
        errors.load(std::sync::atomic::Ordering::Relaxed),
        samples,
    )
}
