//! Per-slice accumulators: item tags (language, category, customer tier...)
//! split every scorer's statistics by tag value, which is how bias checks are
//! written (a gate on the gap between slices).
//!
//! Memory and the summary's size stay bounded (a summary must fit NATS's
//! max_payload): at most [`MAX_TAGS`] tag keys and
//! [`MAX_VALUES_PER_TAG`] distinct values per key (further values are pooled
//! as [`OTHER`]); per item one `u32` code per tag key.

use crate::scores_store::{NO_TAG, TagColumn};
use crate::stats::Welford;
use std::collections::{BTreeMap, HashMap};

/// Most tag keys tracked per run.
pub const MAX_TAGS: usize = 8;
/// Most distinct values tracked per tag key.
pub const MAX_VALUES_PER_TAG: usize = 64;
/// The slice that pools values past [`MAX_VALUES_PER_TAG`].
pub const OTHER: &str = "(other)";

#[derive(Debug, Clone)]
struct Column {
    key: String,
    values: Vec<String>,
    index: HashMap<String, u32>,
    codes: Vec<u32>,
    /// Per value code: per scorer (Welford of values, passed count).
    stats: Vec<Vec<(Welford, u64)>>,
}

/// One tag's slices: value → per scorer (values, passed count).
pub type SliceStats<'a> = BTreeMap<&'a str, &'a [(Welford, u64)]>;

/// Per-slice statistics of one run.
#[derive(Debug, Clone, Default)]
pub struct SliceAccumulator {
    items_total: usize,
    scorers: usize,
    columns: Vec<Column>,
    /// Scratch: the (column, code) slots of the item being added.
    current: Vec<(usize, u32)>,
}

impl SliceAccumulator {
    /// An accumulator for `items_total` items and `scorers` scorers.
    pub fn new(items_total: u64, scorers: usize) -> Self {
        SliceAccumulator {
            items_total: items_total as usize,
            scorers,
            ..Default::default()
        }
    }

    /// Starts an item: records its tags; the following [`Self::add_score`]
    /// calls go to its slices.
    pub fn begin_item(&mut self, index: u64, tags: &BTreeMap<String, String>) {
        self.current.clear();
        for (key, value) in tags {
            let col = match self.columns.iter().position(|c| &c.key == key) {
                Some(c) => c,
                None if self.columns.len() < MAX_TAGS => {
                    self.columns.push(Column {
                        key: key.clone(),
                        values: Vec::new(),
                        index: HashMap::new(),
                        codes: vec![NO_TAG; self.items_total],
                        stats: Vec::new(),
                    });
                    self.columns.len() - 1
                }
                None => continue,
            };
            let column = &mut self.columns[col];
            let code = match column.index.get(value) {
                Some(&code) => code,
                None => {
                    let name = if column.values.len() < MAX_VALUES_PER_TAG {
                        value.clone()
                    } else {
                        OTHER.to_string()
                    };
                    let code = match column.index.get(&name) {
                        Some(&code) => code,
                        None => {
                            column.values.push(name.clone());
                            column.stats.push(vec![(Welford::new(), 0); self.scorers]);
                            let code = (column.values.len() - 1) as u32;
                            column.index.insert(name, code);
                            code
                        }
                    };
                    if value != OTHER {
                        column.index.insert(value.clone(), code);
                    }
                    code
                }
            };
            if let Some(slot) = column.codes.get_mut(index as usize) {
                *slot = code;
            }
            self.current.push((col, code));
        }
    }

    /// Adds one score of the current item.
    pub fn add_score(&mut self, scorer: usize, value: f64, passed: bool) {
        for &(col, code) in &self.current {
            let (w, p) = &mut self.columns[col].stats[code as usize][scorer];
            w.push(value);
            *p += passed as u64;
        }
    }

    /// Per tag → value → scorer index: (values, passed).
    pub fn stats(&self) -> BTreeMap<&str, SliceStats<'_>> {
        self.columns
            .iter()
            .map(|c| {
                let by_value = c
                    .values
                    .iter()
                    .zip(&c.stats)
                    .map(|(v, s)| (v.as_str(), s.as_slice()))
                    .collect();
                (c.key.as_str(), by_value)
            })
            .collect()
    }

    /// The per-item tag columns, for the stored scores.
    pub fn columns(&self) -> Vec<TagColumn> {
        self.columns
            .iter()
            .map(|c| TagColumn {
                key: c.key.clone(),
                values: c.values.clone(),
                codes: c.codes.clone(),
            })
            .collect()
    }
}

/// The largest gap between two slices of `tag` on `metric` (`<scorer>.<field>`),
/// over slices with at least one scored item; `None` when the tag has fewer
/// than two such slices or the metric is unknown.
///
/// ```
/// use vigil_protocol::{RunSummary, ScoreSummary};
/// let mut s = RunSummary::default();
/// let slice = |r| [("exact".to_string(), ScoreSummary { pass_rate: r, n: 10, ..Default::default() })].into();
/// s.slices.insert("lang".into(), [("en".to_string(), slice(0.9)), ("fr".to_string(), slice(0.7))].into());
/// let gap = vigil_coordinator::slices::slice_gap(&s, "exact.pass_rate", "lang").unwrap();
/// assert!((gap - 0.2).abs() < 1e-12);
/// ```
pub fn slice_gap(summary: &vigil_protocol::RunSummary, metric: &str, tag: &str) -> Option<f64> {
    let (scorer, field) = metric.rsplit_once('.')?;
    let values: Vec<f64> = summary
        .slices
        .get(tag)?
        .values()
        .filter_map(|by_scorer| by_scorer.get(scorer))
        .filter(|s| s.n > 0)
        .map(|s| crate::gates::score_field(s, field))
        .collect::<Option<Vec<f64>>>()?;
    if values.len() < 2 {
        return None;
    }
    let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
    Some(max - min)
}
