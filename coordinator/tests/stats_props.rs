//! Statistics: reference values (computed independently with mpmath, see
//! each test), interval properties, and coverage by simulation.

use vigil_coordinator::stats::{
    LatencyRecorder, Welford, mean_interval, normal_quantile, student_t_quantile, wilson_interval,
};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// A small deterministic generator (SplitMix64) so the simulations are
/// reproducible without a dependency.
struct SplitMix(u64);
impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

// Reference values: python3 + mpmath 1.3 (dps 30), Wilson by its formula with
// z = sqrt(2)·erfinv(conf); they agree with the usual tables (81/100 at 95%:
// 0.7222–0.8749).
#[test]
fn wilson_matches_reference_values() {
    let cases: &[(u64, u64, f64, f64, f64)] = &[
        (81, 100, 0.95, 0.722211546209, 0.874852484902),
        (0, 10, 0.95, 0.0, 0.277532799863),
        (10, 10, 0.95, 0.722467200137, 1.0),
        (1, 1, 0.95, 0.206549314377, 1.0),
        (5, 20, 0.95, 0.111861701408, 0.468700877619),
        (500, 1000, 0.95, 0.469069600368, 0.530930399632),
        (81, 100, 0.90, 0.737640047672, 0.866027465443),
        (81, 100, 0.99, 0.690972894602, 0.890450279014),
    ];
    for &(k, n, conf, lo, hi) in cases {
        let (l, h) = wilson_interval(k, n, conf);
        assert!(close(l, lo, 1e-9), "{k}/{n}@{conf}: low {l} != {lo}");
        assert!(close(h, hi, 1e-9), "{k}/{n}@{conf}: high {h} != {hi}");
    }
}

#[test]
fn wilson_edge_cases() {
    assert_eq!(wilson_interval(0, 0, 0.95), (0.0, 1.0));
    assert_eq!(wilson_interval(3, 0, 0.95), (0.0, 1.0));
    // More successes than trials are capped at n.
    assert_eq!(wilson_interval(12, 10, 0.95), wilson_interval(10, 10, 0.95));
    // A higher confidence gives a wider interval.
    let (l90, h90) = wilson_interval(30, 60, 0.90);
    let (l99, h99) = wilson_interval(30, 60, 0.99);
    assert!(l99 < l90 && h99 > h90);
}

#[test]
fn quantiles_match_tables() {
    assert!(close(normal_quantile(0.95), 1.959963984540, 1e-9));
    // t quantiles at 0.975 (mpmath, inverse of the regularised beta).
    for (df, t) in [
        (1, 12.7062047362),
        (2, 4.30265272975),
        (9, 2.2621571628),
        (29, 2.04522964213),
        (99, 1.98421695159),
        (1000, 1.96233908083),
        // Either side of the switch to the asymptotic expansion, and far out.
        (10_000, 1.9602012398906),
        (10_001, 1.9602012161646),
        (1_000_000, 1.9599663568141),
        (10_000_000, 1.9599642217672),
    ] {
        let got = student_t_quantile(0.95, df);
        assert!(close(got, t, 1e-7), "df {df}: {got} != {t}");
    }
    // Huge df tends to the normal quantile and stays finite.
    let big = student_t_quantile(0.95, u64::MAX);
    assert!(close(big, normal_quantile(0.95), 1e-12), "{big}");
}

#[test]
fn mean_interval_matches_reference() {
    // mpmath: mean 0.515, sample variance 0.06725, 95% t CI 0.329489319522..0.700510680478.
    let xs = [0.1, 0.4, 0.35, 0.8, 0.9, 0.55, 0.6, 0.2, 0.75, 0.5];
    let mut w = Welford::new();
    xs.iter().for_each(|&x| w.push(x));
    assert!(close(w.mean(), 0.515, 1e-12));
    assert!(close(w.variance(), 0.06725, 1e-12));
    let (lo, hi) = mean_interval(&w, 0.95);
    assert!(close(lo, 0.329489319522, 1e-9), "{lo}");
    assert!(close(hi, 0.700510680478, 1e-9), "{hi}");
}

#[test]
fn mean_interval_small_n_and_degenerate() {
    assert_eq!(mean_interval(&Welford::new(), 0.95), (0.0, 1.0));
    let mut one = Welford::new();
    one.push(0.7);
    assert_eq!(mean_interval(&one, 0.95), (0.0, 1.0));
    let mut same = Welford::new();
    for _ in 0..5 {
        same.push(0.25);
    }
    let (lo, hi) = mean_interval(&same, 0.95);
    assert!(close(lo, 0.25, 1e-12) && close(hi, 0.25, 1e-12));
    // Clamped to [0, 1] even when the t interval would leave it.
    let mut wide = Welford::new();
    for x in [0.0, 1.0, 0.0] {
        wide.push(x);
    }
    let (lo, hi) = mean_interval(&wide, 0.95);
    assert_eq!((lo, hi), (0.0, 1.0));
}

#[test]
fn welford_merge_equals_sequential() {
    let mut rng = SplitMix(7);
    let xs: Vec<f64> = (0..1000).map(|_| rng.unit()).collect();
    let mut all = Welford::new();
    xs.iter().for_each(|&x| all.push(x));
    let mut parts: Vec<Welford> = xs
        .chunks(137)
        .map(|c| {
            let mut w = Welford::new();
            c.iter().for_each(|&x| w.push(x));
            w
        })
        .collect();
    let mut merged = Welford::new();
    merged.merge(&Welford::new());
    for p in parts.iter_mut() {
        merged.merge(p);
    }
    merged.merge(&Welford::new());
    assert_eq!(merged.count(), all.count());
    assert!(close(merged.mean(), all.mean(), 1e-12));
    assert!(close(merged.variance(), all.variance(), 1e-12));
    // And against the two-pass formula.
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
    assert!(close(all.mean(), mean, 1e-12) && close(all.variance(), var, 1e-12));
}

#[test]
fn welford_is_stable_with_a_large_offset() {
    // The naive sum of squares loses everything here; Welford does not.
    let mut w = Welford::new();
    for x in [1e9 + 4.0, 1e9 + 7.0, 1e9 + 13.0, 1e9 + 16.0] {
        w.push(x);
    }
    assert!(close(w.variance(), 30.0, 1e-6), "{}", w.variance());
}

#[test]
fn intervals_contain_estimate_shrink_and_stay_in_unit_range() {
    for p in [0.0, 0.05, 0.3, 0.5, 0.9, 1.0] {
        let mut prev_width = f64::INFINITY;
        for n in [1u64, 5, 20, 100, 1000, 100_000] {
            let k = (p * n as f64).round() as u64;
            let (lo, hi) = wilson_interval(k, n, 0.95);
            let est = k as f64 / n as f64;
            assert!((0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi));
            assert!(lo <= est && est <= hi, "p {p} n {n}: {lo} {est} {hi}");
            let width = hi - lo;
            assert!(
                width < prev_width,
                "p {p} n {n}: width {width} >= {prev_width}"
            );
            prev_width = width;
        }
    }
    // Mean intervals: same sample pattern repeated, so only n changes.
    let pattern = [0.2, 0.9, 0.5, 0.4, 0.7];
    let mut prev_width = f64::INFINITY;
    for reps in [1, 4, 20, 200] {
        let mut w = Welford::new();
        for _ in 0..reps {
            pattern.iter().for_each(|&x| w.push(x));
        }
        let (lo, hi) = mean_interval(&w, 0.95);
        assert!(0.0 <= lo && lo <= w.mean() && w.mean() <= hi && hi <= 1.0);
        assert!(hi - lo < prev_width);
        prev_width = hi - lo;
    }
}

#[test]
fn wilson_coverage_is_near_nominal() {
    let mut rng = SplitMix(2024);
    let (p, n, reps) = (0.3, 50u64, 4000);
    let covered = (0..reps)
        .filter(|_| {
            let k = (0..n).filter(|_| rng.unit() < p).count() as u64;
            let (lo, hi) = wilson_interval(k, n, 0.95);
            lo <= p && p <= hi
        })
        .count();
    let coverage = covered as f64 / reps as f64;
    assert!((0.93..=0.97).contains(&coverage), "coverage {coverage}");
}

#[test]
fn mean_interval_coverage_is_near_nominal() {
    // Scores uniform on [0, 1], true mean 0.5; n = 30.
    let mut rng = SplitMix(99);
    let (n, reps) = (30, 4000);
    let covered = (0..reps)
        .filter(|_| {
            let mut w = Welford::new();
            (0..n).for_each(|_| w.push(rng.unit()));
            let (lo, hi) = mean_interval(&w, 0.95);
            lo <= 0.5 && 0.5 <= hi
        })
        .count();
    let coverage = covered as f64 / reps as f64;
    assert!((0.93..=0.97).contains(&coverage), "coverage {coverage}");
}

#[test]
fn latency_percentiles_and_exact_mean_max() {
    let mut r = LatencyRecorder::new();
    assert_eq!(r.summary(), Default::default());
    for ms in 1..=1000 {
        r.record_ms(ms as f64);
    }
    let s = r.summary();
    // 3 significant digits: within 0.1% of the true order statistic.
    assert!(close(s.p50, 500.0, 0.5), "{}", s.p50);
    assert!(close(s.p95, 950.0, 0.95), "{}", s.p95);
    assert!(close(s.p99, 990.0, 0.99), "{}", s.p99);
    assert!(close(s.mean, 500.5, 1e-9), "{}", s.mean);
    assert!(close(s.max, 1000.0, 1e-9), "{}", s.max);
    assert_eq!(r.count(), 1000);
}

#[test]
fn latency_auto_resizes_keeps_microseconds_and_merges() {
    let mut a = LatencyRecorder::new();
    a.record_ms(0.25); // 250 µs
    a.record_ms(-3.0); // bogus: counts as 0
    a.record_ms(f64::NAN); // bogus: counts as 0
    let mut b = LatencyRecorder::new();
    b.record_ms(3_600_000.0); // one hour: the histogram must grow
    a.merge(&b);
    let s = a.summary();
    assert_eq!(a.count(), 4);
    assert!(close(s.max, 3_600_000.0, 1e-6));
    assert!(close(s.mean, (0.25 + 3_600_000.0) / 4.0, 1e-6));
    assert!(
        close(a.quantile_ms(0.75), 0.25, 0.001),
        "{}",
        a.quantile_ms(0.75)
    );
    assert!(close(s.p99, 3_600_000.0, 3_600.0), "{}", s.p99);
}
