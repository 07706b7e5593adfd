//! The terminal table's blocks for run-level text metrics: corpus BLEU per
//! bleu scorer, and per classification scorer its averages, per-class
//! precision/recall/F1/support and (when small enough to read) the
//! confusion matrix. Larger matrices are only in the `--out` JSON.

use std::fmt::Write as _;
use vigil_protocol::RunSummary;

/// Most classes listed per scorer; the rest are summarised in one line.
pub const MAX_CLASS_ROWS: usize = 20;
/// Largest confusion matrix drawn (labels on a side, `(other)` included).
pub const MAX_MATRIX_LABELS: usize = 10;

/// The blocks for `summary`, empty when no scorer has run-level text metrics.
///
/// ```
/// use vigil_protocol::{RunSummary, ScoreSummary, CorpusBleu};
/// let mut s = RunSummary::default();
/// s.scores.insert("bleu".into(), ScoreSummary {
///     corpus_bleu: Some(CorpusBleu { score: 0.25, bp: 1.0, ratio: 1.1, ..Default::default() }),
///     ..Default::default()
/// });
/// let text = vigil_coordinator::report::table_text::render(&s);
/// assert!(text.contains("corpus bleu  bleu  0.2500"));
/// ```
pub fn render(summary: &RunSummary) -> String {
    let mut out = String::new();
    for (name, sc) in &summary.scores {
        if let Some(b) = &sc.corpus_bleu {
            let p: Vec<String> = b.precisions.iter().map(|p| format!("{p:.3}")).collect();
            let _ = writeln!(
                out,
                "corpus bleu  {name}  {:.4}  (p {}; bp {:.3}; ratio {:.3}; hyp {} ref {} tokens)",
                b.score,
                p.join("/"),
                b.bp,
                b.ratio,
                b.hyp_len,
                b.ref_len
            );
        }
    }
    for (name, sc) in &summary.scores {
        let Some(c) = &sc.classification else {
            continue;
        };
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "classification {name}  n {}  accuracy {:.4}  macro P/R/F1 {:.4}/{:.4}/{:.4}  micro P/R/F1 {:.4}/{:.4}/{:.4}",
            c.n,
            c.accuracy,
            c.macro_precision,
            c.macro_recall,
            c.macro_f1,
            c.micro_precision,
            c.micro_recall,
            c.micro_f1
        );
        let mut rows = vec![vec![
            "label".to_string(),
            "precision".into(),
            "recall".into(),
            "f1".into(),
            "support".into(),
            "predicted".into(),
        ]];
        for label in c.labels.iter().take(MAX_CLASS_ROWS) {
            let m = c.per_class.get(label).cloned().unwrap_or_default();
            rows.push(vec![
                label.clone(),
                format!("{:.4}", m.precision),
                format!("{:.4}", m.recall),
                format!("{:.4}", m.f1),
                m.support.to_string(),
                m.predicted.to_string(),
            ]);
        }
        out.push_str(&super::table::columns_pub(&rows));
        if c.labels.len() > MAX_CLASS_ROWS {
            let _ = writeln!(
                out,
                "  … {} more labels (see --out JSON)",
                c.labels.len() - MAX_CLASS_ROWS
            );
        }
        if c.labels.len() <= MAX_MATRIX_LABELS {
            out.push_str("  confusion (rows gold, columns predicted):\n");
            let mut rows = vec![
                std::iter::once(String::new())
                    .chain(c.labels.iter().cloned())
                    .collect::<Vec<_>>(),
            ];
            for (label, row) in c.labels.iter().zip(&c.confusion) {
                rows.push(
                    std::iter::once(label.clone())
                        .chain(row.iter().map(u64::to_string))
                        .collect(),
                );
            }
            for line in super::table::columns_pub(&rows).lines() {
                let _ = writeln!(out, "  {line}");
            }
        } else {
            out.push_str("  confusion matrix: in the --out JSON\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text_metrics::ConfusionAcc;
    use vigil_protocol::ScoreSummary;

    #[test]
    fn classification_block_with_matrix() {
        let mut c = ConfusionAcc::default();
        for (g, p) in [("a", "a"), ("a", "b"), ("b", "b")] {
            c.add(g, p);
        }
        let mut s = RunSummary::default();
        s.scores.insert(
            "intent".into(),
            ScoreSummary {
                classification: Some(c.summary()),
                ..Default::default()
            },
        );
        let text = render(&s);
        assert!(
            text.contains("classification intent  n 3  accuracy 0.6667"),
            "{text}"
        );
        assert!(
            text.contains("confusion (rows gold, columns predicted)"),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        let a_row = lines
            .iter()
            .rev()
            .find(|l| l.trim_start().starts_with("a "))
            .unwrap();
        assert_eq!(
            a_row.split_whitespace().collect::<Vec<_>>(),
            ["a", "1", "1"]
        );
    }

    #[test]
    fn big_matrices_are_left_to_json() {
        let mut c = ConfusionAcc::default();
        for i in 0..30 {
            let l = format!("l{i:02}");
            c.add(&l, &l);
        }
        let mut s = RunSummary::default();
        s.scores.insert(
            "topic".into(),
            ScoreSummary {
                classification: Some(c.summary()),
                ..Default::default()
            },
        );
        let text = render(&s);
        assert!(text.contains("… 10 more labels"), "{text}");
        assert!(text.contains("confusion matrix: in the --out JSON"));
        assert!(render(&RunSummary::default()).is_empty());
    }
}
