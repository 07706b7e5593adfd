//! Run-level metrics that per-item means cannot give: corpus BLEU from the
//! items' summed n-gram statistics, and per-class precision, recall, F1 and
//! the confusion matrix from the items' predicted and gold labels.
//!
//! Memory stays bounded whatever the run's size: BLEU keeps ten counters
//! per scorer; a confusion matrix has at most [`MAX_LABELS`] distinct labels
//! plus the `(other)` bucket (labels past the cap are counted there).

use std::collections::{BTreeMap, HashMap};
use vigil_protocol::{BleuStats, ClassMetrics, ClassificationSummary, CorpusBleu, OTHER_LABEL};

/// Most distinct labels a classification scorer tracks; later ones go to
/// `(other)`.
pub const MAX_LABELS: usize = 50;

/// The fields a gate may name for a classification scorer, besides the
/// common ones (`intent.macro_f1`). Per-class values are `f1.<label>`,
/// `precision.<label>`, `recall.<label>` and `support.<label>`.
pub const CLASSIFICATION_FIELDS: &[&str] = &[
    "accuracy",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "micro_precision",
    "micro_recall",
    "micro_f1",
];

/// The per-class field prefixes a gate may name (`intent.f1.billing`).
pub const CLASS_FIELD_PREFIXES: &[&str] = &["f1", "precision", "recall", "support"];

/// The fields a gate may name for a bleu scorer, besides the common ones.
pub const BLEU_FIELDS: &[&str] = &["corpus_bleu"];

/// Sums BLEU statistics over a run.
#[derive(Debug, Clone, Default)]
pub struct BleuAcc {
    sum: BleuStats,
    items: u64,
}

impl BleuAcc {
    /// Adds one item's statistics.
    pub fn add(&mut self, s: &BleuStats) {
        self.sum.add(s);
        self.items += 1;
    }

    /// Corpus BLEU as `sacrebleu.corpus_bleu` computes it with its defaults.
    pub fn corpus(&self) -> CorpusBleu {
        corpus_bleu(&self.sum)
    }
}

/// sacrebleu's `corpus_bleu` (exp smoothing, no effective order, max order
/// 4) from summed statistics, on a 0..1 scale.
///
/// ```
/// use vigil_protocol::BleuStats;
/// let s = BleuStats { hyp_len: 10, ref_len: 10, correct: vec![10, 9, 8, 7], total: vec![10, 9, 8, 7] };
/// assert!((vigil_coordinator::text_metrics::corpus_bleu(&s).score - 1.0).abs() < 1e-12);
/// ```
pub fn corpus_bleu(s: &BleuStats) -> CorpusBleu {
    s.corpus()
}

/// A confusion matrix over a capped label set, growing as labels appear.
#[derive(Debug, Clone, Default)]
pub struct ConfusionAcc {
    labels: Vec<String>,
    index: HashMap<String, usize>,
    /// `counts[gold][predicted]`, square, `labels.len()` on each side.
    counts: Vec<Vec<u64>>,
    n: u64,
}

impl ConfusionAcc {
    fn slot(&mut self, label: &str) -> usize {
        if let Some(&i) = self.index.get(label) {
            return i;
        }
        let is_other = label == OTHER_LABEL;
        let real = self.labels.iter().filter(|l| *l != OTHER_LABEL).count();
        if !is_other && real >= MAX_LABELS {
            return self.slot(OTHER_LABEL);
        }
        let i = self.labels.len();
        self.labels.push(label.to_string());
        self.index.insert(label.to_string(), i);
        for row in &mut self.counts {
            row.push(0);
        }
        self.counts.push(vec![0; i + 1]);
        i
    }

    /// Counts one item.
    pub fn add(&mut self, gold: &str, predicted: &str) {
        let g = self.slot(gold);
        let p = self.slot(predicted);
        self.counts[g][p] += 1;
        self.n += 1;
    }

    /// Per-class metrics, averages and the matrix (labels sorted, `(other)` last).
    ///
    /// ```
    /// use vigil_coordinator::text_metrics::ConfusionAcc;
    /// let mut c = ConfusionAcc::default();
    /// for (g, p) in [("a", "a"), ("a", "b"), ("b", "b"), ("b", "(other)")] {
    ///     c.add(g, p);
    /// }
    /// let s = c.summary();
    /// assert_eq!(s.labels, ["a", "b", "(other)"]);
    /// assert_eq!(s.confusion, vec![vec![1, 1, 0], vec![0, 1, 1], vec![0, 0, 0]]);
    /// assert_eq!(s.accuracy, 0.5);
    /// assert_eq!(s.per_class["b"].precision, 0.5);
    /// assert_eq!(s.micro_precision, 2.0 / 3.0); // (other) is no prediction of a class
    /// assert_eq!(s.micro_recall, 0.5);
    /// ```
    pub fn summary(&self) -> ClassificationSummary {
        let mut order: Vec<usize> = (0..self.labels.len()).collect();
        order.sort_by(|&a, &b| {
            let (la, lb) = (&self.labels[a], &self.labels[b]);
            (la == OTHER_LABEL, la).cmp(&(lb == OTHER_LABEL, lb))
        });
        let labels: Vec<String> = order.iter().map(|&i| self.labels[i].clone()).collect();
        let confusion: Vec<Vec<u64>> = order
            .iter()
            .map(|&g| order.iter().map(|&p| self.counts[g][p]).collect())
            .collect();
        let k = labels.len();
        let mut per_class = BTreeMap::new();
        let (mut sum_p, mut sum_r, mut sum_f, mut classes) = (0.0, 0.0, 0.0, 0u64);
        let (mut tp_all, mut pred_all, mut gold_all, mut correct) = (0u64, 0u64, 0u64, 0u64);
        for i in 0..k {
            let tp = confusion[i][i];
            let support: u64 = confusion[i].iter().sum();
            let predicted: u64 = (0..k).map(|g| confusion[g][i]).sum();
            let precision = ratio(tp, predicted);
            let recall = ratio(tp, support);
            let f1 = harmonic(precision, recall);
            per_class.insert(
                labels[i].clone(),
                ClassMetrics {
                    precision,
                    recall,
                    f1,
                    support,
                    predicted,
                },
            );
            if labels[i] != OTHER_LABEL {
                correct += tp;
                tp_all += tp;
                pred_all += predicted;
                gold_all += support;
                sum_p += precision;
                sum_r += recall;
                sum_f += f1;
                classes += 1;
            }
        }
        let macro_avg = |s: f64| {
            if classes == 0 {
                0.0
            } else {
                s / classes as f64
            }
        };
        let micro_precision = ratio(tp_all, pred_all);
        let micro_recall = ratio(tp_all, gold_all);
        ClassificationSummary {
            n: self.n,
            accuracy: ratio(correct, self.n),
            macro_precision: macro_avg(sum_p),
            macro_recall: macro_avg(sum_r),
            macro_f1: macro_avg(sum_f),
            micro_precision,
            micro_recall,
            micro_f1: harmonic(micro_precision, micro_recall),
            per_class,
            labels,
            confusion,
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn harmonic(p: f64, r: f64) -> f64 {
    if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    }
}

/// The value of a kind-specific field of a score summary: classification
/// averages and per-class values (`f1.billing`), and `corpus_bleu`. `None`
/// when the summary has no such field.
pub fn extra_field(s: &vigil_protocol::ScoreSummary, field: &str) -> Option<f64> {
    if field == "corpus_bleu" {
        return s.corpus_bleu.as_ref().map(|b| b.score);
    }
    let c = s.classification.as_ref()?;
    match field {
        "accuracy" => Some(c.accuracy),
        "macro_precision" => Some(c.macro_precision),
        "macro_recall" => Some(c.macro_recall),
        "macro_f1" => Some(c.macro_f1),
        "micro_precision" => Some(c.micro_precision),
        "micro_recall" => Some(c.micro_recall),
        "micro_f1" => Some(c.micro_f1),
        _ => {
            let (what, label) = field.split_once('.')?;
            // A label that never occurred has no item: recall and F1 are
            // then 0 and so is its support, which is what a gate should see.
            let m = c.per_class.get(label).cloned().unwrap_or_default();
            match what {
                "f1" => Some(m.f1),
                "precision" => Some(m.precision),
                "recall" => Some(m.recall),
                "support" => Some(m.support as f64),
                _ => None,
            }
        }
    }
}

/// Whether `field` is a kind-specific field of a scorer of kind `kind`
/// (for suite checks); per-class fields must name one of `labels` when the
/// scorer lists its labels.
pub fn is_extra_field(kind: &vigil_protocol::ScorerKind, field: &str) -> bool {
    use vigil_protocol::ScorerKind;
    match kind {
        ScorerKind::Bleu { .. } => BLEU_FIELDS.contains(&field),
        ScorerKind::Classification { labels, .. } => {
            CLASSIFICATION_FIELDS.contains(&field)
                || field.split_once('.').is_some_and(|(what, label)| {
                    CLASS_FIELD_PREFIXES.contains(&what)
                        && !label.is_empty()
                        && (labels.is_empty()
                            || label == OTHER_LABEL
                            || labels.iter().any(|l| l.name == label))
                })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_past_the_cap_go_to_other() {
        let mut c = ConfusionAcc::default();
        for i in 0..MAX_LABELS + 10 {
            let l = format!("l{i:03}");
            c.add(&l, &l);
        }
        let s = c.summary();
        assert_eq!(s.labels.len(), MAX_LABELS + 1);
        assert_eq!(s.labels.last().unwrap(), OTHER_LABEL);
        assert_eq!(s.per_class[OTHER_LABEL].support, 10);
        assert_eq!(s.n, (MAX_LABELS + 10) as u64);
        // Items in (other) on both sides are not counted as correct.
        assert_eq!(s.accuracy, MAX_LABELS as f64 / (MAX_LABELS + 10) as f64);
    }

    #[test]
    fn hand_computed_three_classes() {
        // gold/pred pairs: a:a a:a a:b b:b b:c c:c c:(other) c:a
        let mut c = ConfusionAcc::default();
        for (g, p) in [
            ("a", "a"),
            ("a", "a"),
            ("a", "b"),
            ("b", "b"),
            ("b", "c"),
            ("c", "c"),
            ("c", OTHER_LABEL),
            ("c", "a"),
        ] {
            c.add(g, p);
        }
        let s = c.summary();
        let close = |x: f64, y: f64| (x - y).abs() < 1e-12;
        // a: tp 2, predicted 3, support 3 -> p 2/3 r 2/3
        // b: tp 1, predicted 2, support 2 -> p 1/2 r 1/2
        // c: tp 1, predicted 2, support 3 -> p 1/2 r 1/3 f1 0.4
        assert!(close(s.per_class["c"].f1, 0.4));
        assert!(close(s.macro_precision, (2.0 / 3.0 + 0.5 + 0.5) / 3.0));
        assert!(close(s.macro_recall, (2.0 / 3.0 + 0.5 + 1.0 / 3.0) / 3.0));
        assert!(close(s.macro_f1, (2.0 / 3.0 + 0.5 + 0.4) / 3.0));
        assert!(close(s.micro_precision, 4.0 / 7.0));
        assert!(close(s.micro_recall, 4.0 / 8.0));
        assert!(close(s.accuracy, 0.5));
        assert_eq!(s.per_class[OTHER_LABEL].predicted, 1);
    }

    #[test]
    fn extra_fields() {
        let mut c = ConfusionAcc::default();
        c.add("x", "x");
        c.add("y", "x");
        let summary = vigil_protocol::ScoreSummary {
            classification: Some(c.summary()),
            ..Default::default()
        };
        assert_eq!(extra_field(&summary, "accuracy"), Some(0.5));
        assert_eq!(extra_field(&summary, "recall.y"), Some(0.0));
        assert_eq!(extra_field(&summary, "precision.x"), Some(0.5));
        assert_eq!(extra_field(&summary, "support.nope"), Some(0.0));
        assert_eq!(extra_field(&summary, "corpus_bleu"), None);
        assert_eq!(extra_field(&summary, "median"), None);
    }
}
