//! Stored per-item scores carry the items' ids, so a comparison of two
//! stored runs names flipped items by id; files written before the ids
//! section still decode (with no ids) and name items `#index`.

use vigil_coordinator::aggregate::Aggregator;
use vigil_coordinator::compare::{CompareOptions, compare};
use vigil_coordinator::scores_store::RunScores;
use vigil_protocol::{ItemResult, JobResult, Score};

const N: u64 = 50;

/// A run where item `i` passes unless `fails(i)`.
fn run(fails: impl Fn(u64) -> bool) -> RunScores {
    let mut agg = Aggregator::new(N, vec!["exact".into()]);
    // Out of order and with a redelivery, as results arrive.
    let items: Vec<ItemResult> = (0..N)
        .rev()
        .map(|i| {
            let passed = !fails(i);
            ItemResult {
                index: i,
                id: format!("q-{i}"),
                scores: vec![Score {
                    scorer: "exact".into(),
                    value: passed as u8 as f64,
                    passed,
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    let job = JobResult {
        items,
        ..Default::default()
    };
    agg.add_job_result(&job);
    agg.add_job_result(&job);
    agg.run_scores("r")
}

#[test]
fn stored_scores_name_flipped_items_by_id() {
    let base = run(|_| false);
    let cand = run(|i| i % 5 == 0);
    let (base, cand) = (
        RunScores::decode(&base.encode()).unwrap(),
        RunScores::decode(&cand.encode()).unwrap(),
    );
    assert_eq!(cand.ids.get(7), Some("q-7"));
    let mut c = compare(&base, &cand, &CompareOptions::default());
    cand.ids.name_flipped(&mut c);
    let t = &c.tests[0];
    let want: Vec<String> = (0..N)
        .filter(|i| i % 5 == 0)
        .map(|i| format!("q-{i}"))
        .collect();
    assert_eq!(t.flipped_to_fail, want);
}

#[test]
fn scores_without_ids_still_decode_and_keep_indices() {
    let cand = run(|i| i % 5 == 0);
    let mut without = cand.clone();
    without.ids = Default::default();
    let bytes = without.encode();
    // A file written before ids were stored ends after the tags: the same
    // bytes less the (empty) ids section's count.
    let old = &bytes[..bytes.len() - 4];
    let decoded = RunScores::decode(old).unwrap();
    assert!(decoded.ids.is_empty());
    assert_eq!(decoded.scorers, cand.scorers);
    assert_eq!(RunScores::decode(&bytes).unwrap(), decoded);
    // A reader that predates ids stops after the tags: what it reads of a
    // new file is exactly the old encoding.
    let new = cand.encode();
    assert!(new.starts_with(old) && new.len() > bytes.len());

    let base = run(|_| false);
    let mut c = compare(&base, &decoded, &CompareOptions::default());
    decoded.ids.name_flipped(&mut c);
    assert_eq!(c.tests[0].flipped_to_fail[0], "#0");
}

#[test]
fn a_wrong_id_count_is_malformed() {
    let cand = run(|_| false);
    let mut bytes = cand.encode();
    let mut without = cand.clone();
    without.ids = Default::default();
    let at = without.encode().len() - 4;
    bytes[at..at + 4].copy_from_slice(&3u32.to_le_bytes());
    assert!(RunScores::decode(&bytes).is_err());
}
