//! Per-item statistics some scorers attach to a [`crate::Score`], and the
//! run-level metrics the coordinator computes from them: corpus BLEU from
//! summed n-gram counts, and per-class precision, recall, F1 and the
//! confusion matrix from predicted and gold labels.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// BLEU's sufficient statistics of one item (sacrebleu's segment statistics).
/// Summed over a run they give corpus BLEU.
///
/// ```
/// use vigil_protocol::BleuStats;
/// let mut a = BleuStats { hyp_len: 3, ref_len: 4, correct: vec![2, 1, 0, 0], total: vec![3, 2, 1, 0] };
/// a.add(&a.clone());
/// assert_eq!(a.correct, vec![4, 2, 0, 0]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct BleuStats {
    /// Tokens in the output.
    pub hyp_len: u64,
    /// Tokens in the reference.
    pub ref_len: u64,
    /// Clipped n-gram matches for n = 1..=4.
    pub correct: Vec<u64>,
    /// N-grams of the output for n = 1..=4.
    pub total: Vec<u64>,
}

impl BleuStats {
    /// Adds `other` element-wise (vectors grow to the longer length).
    pub fn add(&mut self, other: &BleuStats) {
        self.hyp_len += other.hyp_len;
        self.ref_len += other.ref_len;
        for (mine, theirs) in [
            (&mut self.correct, &other.correct),
            (&mut self.total, &other.total),
        ] {
            if mine.len() < theirs.len() {
                mine.resize(theirs.len(), 0);
            }
            for (m, t) in mine.iter_mut().zip(theirs) {
                *m += t;
            }
        }
    }

    /// BLEU from these statistics, as sacrebleu 2.6's `BLEU.compute_bleu`
    /// computes it (max order 4), on a 0..1 scale (precisions too). Sentence
    /// BLEU is `bleu(Exp, None, true)`; `sacrebleu.corpus_bleu`'s defaults
    /// are `bleu(Exp, None, false)` ([`BleuStats::corpus`]).
    ///
    /// ```
    /// use vigil_protocol::{BleuSmoothing, BleuStats};
    /// let s = BleuStats { hyp_len: 4, ref_len: 4, correct: vec![4, 3, 2, 1], total: vec![4, 3, 2, 1] };
    /// assert!((s.bleu(BleuSmoothing::None, None, false).score - 1.0).abs() < 1e-12);
    /// ```
    pub fn bleu(
        &self,
        smooth: crate::BleuSmoothing,
        smooth_value: Option<f64>,
        effective_order: bool,
    ) -> CorpusBleu {
        use crate::BleuSmoothing;
        const ORDER: usize = 4;
        let smooth_value = smooth_value.unwrap_or(match smooth {
            BleuSmoothing::Floor => 0.1,
            BleuSmoothing::AddK => 1.0,
            BleuSmoothing::None | BleuSmoothing::Exp => 0.0,
        });
        let (sys_len, ref_len) = (self.hyp_len as f64, self.ref_len as f64);
        let bp = if sys_len < ref_len {
            if sys_len > 0.0 {
                (1.0 - ref_len / sys_len).exp()
            } else {
                0.0
            }
        } else {
            1.0
        };
        let ratio = if ref_len > 0.0 {
            sys_len / ref_len
        } else {
            0.0
        };
        let get = |v: &Vec<u64>, i: usize| v.get(i).copied().unwrap_or(0) as f64;
        let mut precisions = [0.0f64; ORDER];
        let mut score = 0.0;
        // sacrebleu stops early when nothing matches at all (its #141).
        if (0..ORDER).any(|i| get(&self.correct, i) > 0.0) {
            let mut smooth_mteval = 1.0;
            let mut eff_order = ORDER;
            for n in 1..=ORDER {
                let (mut correct, mut total) = (get(&self.correct, n - 1), get(&self.total, n - 1));
                if smooth == BleuSmoothing::AddK && n > 1 {
                    correct += smooth_value;
                    total += smooth_value;
                }
                if total == 0.0 {
                    break;
                }
                if effective_order {
                    eff_order = n;
                }
                if correct == 0.0 {
                    match smooth {
                        BleuSmoothing::Exp => {
                            smooth_mteval *= 2.0;
                            precisions[n - 1] = 100.0 / (smooth_mteval * total);
                        }
                        BleuSmoothing::Floor => {
                            precisions[n - 1] = 100.0 * smooth_value / total;
                        }
                        BleuSmoothing::None | BleuSmoothing::AddK => {}
                    }
                } else {
                    precisions[n - 1] = 100.0 * correct / total;
                }
            }
            // sacrebleu's `my_log`: log(0) is floored to -9999999999.
            let log = |p: f64| if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
            let mean =
                precisions[..eff_order].iter().map(|&p| log(p)).sum::<f64>() / eff_order as f64;
            score = bp * mean.exp() / 100.0;
        }
        CorpusBleu {
            score,
            precisions: precisions.iter().map(|p| p / 100.0).collect(),
            bp,
            ratio,
            hyp_len: self.hyp_len,
            ref_len: self.ref_len,
        }
    }

    /// Corpus BLEU as `sacrebleu.corpus_bleu` computes it with its defaults
    /// (13a, exp smoothing, no effective order) from summed statistics.
    pub fn corpus(&self) -> CorpusBleu {
        self.bleu(crate::BleuSmoothing::Exp, None, false)
    }
}

/// Corpus BLEU of a run: sacrebleu's `corpus_bleu` (exp smoothing, no
/// effective order) over the summed [`BleuStats`], on a 0..1 scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CorpusBleu {
    /// The score in [0, 1] (sacrebleu's number divided by 100).
    pub score: f64,
    /// The n-gram precisions for n = 1..=4, in [0, 1].
    pub precisions: Vec<f64>,
    /// The brevity penalty.
    pub bp: f64,
    /// Output tokens over reference tokens.
    pub ratio: f64,
    /// Output tokens.
    pub hyp_len: u64,
    /// Reference tokens.
    pub ref_len: u64,
}

/// The label bucket for predictions that map to no label, and for labels
/// past the cap on distinct labels.
pub const OTHER_LABEL: &str = "(other)";

/// Per-class and averaged metrics of a classification scorer over a run.
///
/// Averages cover every label seen as gold or predicted except
/// [`OTHER_LABEL`] (scikit-learn's `precision_recall_fscore_support` with
/// `labels` = those, `zero_division = 0`): a prediction in `(other)` lowers
/// the recall of the item's gold class but is not a class of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ClassificationSummary {
    /// Items counted.
    pub n: u64,
    /// Fraction of items whose prediction equals the gold label.
    pub accuracy: f64,
    /// Unweighted mean of the per-class precisions.
    pub macro_precision: f64,
    /// Unweighted mean of the per-class recalls.
    pub macro_recall: f64,
    /// Unweighted mean of the per-class F1s.
    pub macro_f1: f64,
    /// Correct predictions over predictions of a class.
    pub micro_precision: f64,
    /// Correct predictions over items whose gold label is a class.
    pub micro_recall: f64,
    /// Harmonic mean of the micro precision and recall.
    pub micro_f1: f64,
    /// Per label (including `(other)` when it occurs).
    pub per_class: BTreeMap<String, ClassMetrics>,
    /// The matrix's row and column order: labels sorted, `(other)` last.
    pub labels: Vec<String>,
    /// `confusion[gold][predicted]` counts in `labels` order.
    pub confusion: Vec<Vec<u64>>,
}

/// One class's precision, recall and F1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ClassMetrics {
    /// Correct predictions of this class over all its predictions (0 when none).
    pub precision: f64,
    /// Correct predictions of this class over its gold items (0 when none).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Items whose gold label is this class.
    pub support: u64,
    /// Items predicted as this class.
    pub predicted: u64,
}
