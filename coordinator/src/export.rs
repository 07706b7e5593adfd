//! The column schema of `vigil export` (CSV and Parquet): one list of
//! columns and one way of turning an item result into a row of cells. The
//! binary only formats the cells (text for CSV, typed column writers for
//! Parquet).
//!
//! The columns are the fixed ones ([`FIXED`]), then `tag.<key>` per tag key
//! (sorted), then `<scorer>.value` and `<scorer>.passed` per scorer (in the
//! order the scorers were first seen).

use std::collections::BTreeSet;
use vigil_protocol::ItemResult;

/// The type of a column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// UTF-8 text.
    Str,
    /// A double.
    F64,
    /// A 64-bit integer.
    I64,
    /// A 32-bit integer.
    I32,
    /// A boolean.
    Bool,
}

/// One column: its name, its type and whether a row may leave it empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The header (CSV) or field name (Parquet).
    pub name: String,
    /// The type of its values.
    pub ty: ColumnType,
    /// Whether a cell may be null (empty in CSV).
    pub optional: bool,
}

/// The fixed columns every export starts with, in order.
pub const FIXED: [(&str, ColumnType, bool); 13] = [
    ("run_id", ColumnType::Str, false),
    ("index", ColumnType::I64, false),
    ("id", ColumnType::Str, false),
    ("error_kind", ColumnType::Str, true),
    ("error_message", ColumnType::Str, true),
    ("latency_ms", ColumnType::F64, false),
    ("cached", ColumnType::Bool, false),
    ("attempts", ColumnType::I32, false),
    ("response_model", ColumnType::Str, true),
    ("finish_reason", ColumnType::Str, true),
    ("input_tokens", ColumnType::I64, false),
    ("output_tokens", ColumnType::I64, false),
    ("output", ColumnType::Str, true),
];

/// One cell of a row, typed as its column (`None` is null / empty).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// A [`ColumnType::Str`] cell.
    Str(Option<&'a str>),
    /// A [`ColumnType::F64`] cell.
    F64(Option<f64>),
    /// A [`ColumnType::I64`] or [`ColumnType::I32`] cell (the writer
    /// narrows it, saturating).
    Int(u64),
    /// A [`ColumnType::Bool`] cell.
    Bool(Option<bool>),
}

/// The tag keys and scorers of a run's items: the variable columns.
#[derive(Debug, Clone, Default)]
pub struct ExportColumns {
    tags: BTreeSet<String>,
    scorers: Vec<String>,
}

impl ExportColumns {
    /// Adds the tag keys and scorers of one item (a first pass over a run).
    pub fn observe(&mut self, item: &ItemResult) {
        for key in item.tags.keys() {
            if !self.tags.contains(key) {
                self.tags.insert(key.clone());
            }
        }
        for s in &item.scores {
            if !self.scorers.contains(&s.scorer) {
                self.scorers.push(s.scorer.clone());
            }
        }
    }

    /// The columns of items with these tag keys and scorers.
    pub fn of<'a>(items: impl IntoIterator<Item = &'a ItemResult>) -> Self {
        let mut columns = ExportColumns::default();
        for item in items {
            columns.observe(item);
        }
        columns
    }

    /// Every column, in order.
    pub fn columns(&self) -> Vec<Column> {
        let column = |name: String, ty, optional| Column { name, ty, optional };
        let mut out: Vec<Column> = FIXED
            .iter()
            .map(|&(name, ty, optional)| column(name.to_string(), ty, optional))
            .collect();
        out.extend(
            self.tags
                .iter()
                .map(|t| column(format!("tag.{t}"), ColumnType::Str, true)),
        );
        for s in &self.scorers {
            out.push(column(format!("{s}.value"), ColumnType::F64, true));
            out.push(column(format!("{s}.passed"), ColumnType::Bool, true));
        }
        out
    }

    /// One item's row, a cell per column of [`columns`](Self::columns).
    pub fn row<'a>(&'a self, run_id: &'a str, item: &'a ItemResult) -> Vec<Cell<'a>> {
        let mut row = vec![
            Cell::Str(Some(run_id)),
            Cell::Int(item.index),
            Cell::Str(Some(&item.id)),
            Cell::Str(item.error.as_ref().map(|e| e.kind.as_str())),
            Cell::Str(item.error.as_ref().map(|e| e.message.as_str())),
            Cell::F64(Some(item.latency_ms)),
            Cell::Bool(Some(item.cached)),
            Cell::Int(u64::from(item.attempts)),
            Cell::Str(item.response_model.as_deref()),
            Cell::Str(item.finish_reason.as_deref()),
            Cell::Int(item.usage.input),
            Cell::Int(item.usage.output),
            Cell::Str(item.output.as_deref()),
        ];
        row.extend(
            self.tags
                .iter()
                .map(|t| Cell::Str(item.tags.get(t).map(String::as_str))),
        );
        for name in &self.scorers {
            let score = item.scores.iter().find(|s| &s.scorer == name);
            row.push(Cell::F64(score.map(|s| s.value)));
            row.push(Cell::Bool(score.map(|s| s.passed)));
        }
        row
    }
}

impl Cell<'_> {
    /// The cell as CSV text: empty for null.
    pub fn to_text(&self) -> String {
        match self {
            Cell::Str(v) => v.unwrap_or_default().to_string(),
            Cell::F64(v) => v.map(|x| x.to_string()).unwrap_or_default(),
            Cell::Int(v) => v.to_string(),
            Cell::Bool(v) => v.map(|b| b.to_string()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::{ErrorKind, ItemError, Score};

    fn item(index: u64, tags: &[(&str, &str)], scores: &[(&str, f64, bool)]) -> ItemResult {
        ItemResult {
            index,
            id: format!("item-{index}"),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            scores: scores
                .iter()
                .map(|(name, value, passed)| Score {
                    scorer: name.to_string(),
                    value: *value,
                    passed: *passed,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn columns_are_fixed_then_sorted_tags_then_scorers_in_first_seen_order() {
        let items = [
            item(0, &[("zeta", "1")], &[("exact", 1.0, true)]),
            item(
                1,
                &[("alpha", "2")],
                &[("bleu", 0.5, false), ("exact", 0.0, false)],
            ),
        ];
        let names: Vec<String> = ExportColumns::of(&items)
            .columns()
            .into_iter()
            .map(|c| c.name)
            .collect();
        let fixed: Vec<&str> = FIXED.iter().map(|c| c.0).collect();
        assert_eq!(&names[..FIXED.len()], fixed.as_slice());
        assert_eq!(
            &names[FIXED.len()..],
            [
                "tag.alpha",
                "tag.zeta",
                "exact.value",
                "exact.passed",
                "bleu.value",
                "bleu.passed"
            ]
        );
    }

    #[test]
    fn a_row_has_a_cell_of_its_column_type_per_column() {
        let mut failed = item(1, &[("alpha", "a")], &[("exact", 0.0, false)]);
        failed.error = Some(ItemError {
            kind: ErrorKind::Timeout,
            message: "slow".into(),
        });
        let items = [item(0, &[], &[("exact", 1.0, true)]), failed];
        let columns = ExportColumns::of(&items);
        let schema = columns.columns();
        for item in &items {
            let row = columns.row("r", item);
            assert_eq!(row.len(), schema.len());
            for (cell, column) in row.iter().zip(&schema) {
                let matches = matches!(
                    (cell, column.ty),
                    (Cell::Str(_), ColumnType::Str)
                        | (Cell::F64(_), ColumnType::F64)
                        | (Cell::Int(_), ColumnType::I64 | ColumnType::I32)
                        | (Cell::Bool(_), ColumnType::Bool)
                );
                assert!(matches, "{} holds {cell:?}", column.name);
                let null = matches!(cell, Cell::Str(None) | Cell::F64(None) | Cell::Bool(None));
                assert!(!null || column.optional, "{} is required", column.name);
            }
        }
        let text: Vec<String> = columns
            .row("r", &items[0])
            .iter()
            .map(Cell::to_text)
            .collect();
        assert_eq!(text[0], "r");
        assert_eq!(text[3], "", "no error: empty error_kind");
        assert_eq!(text[FIXED.len()], "", "no alpha tag: empty");
        assert_eq!(&text[FIXED.len() + 1..], ["1", "true"]);
        let text: Vec<String> = columns
            .row("r", &items[1])
            .iter()
            .map(Cell::to_text)
            .collect();
        assert_eq!((text[3].as_str(), text[4].as_str()), ("timeout", "slow"));
        assert_eq!(&text[FIXED.len()..], ["a", "0", "false"]);
    }
}
