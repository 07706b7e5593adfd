//! Item ids by index, kept compactly (one string buffer and 8 bytes per
//! item), so a stored run can name the items that flipped in a comparison
//! without reading its dataset again.

use vigil_protocol::Comparison;

/// Most bytes of ids kept: past this (4 GiB) later ids stay unknown rather
/// than the offsets growing.
const MAX_TEXT: usize = u32::MAX as usize;

/// The id of each item of a run, by index; unknown ids are allowed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ItemIds {
    text: String,
    /// Per item: (start, length) in `text`; length 0 means unknown.
    spans: Vec<(u32, u32)>,
}

impl ItemIds {
    /// Records item `index`'s id in a run of `items_total` items. An empty
    /// id, an index not below `items_total` and a repeated index are ignored.
    ///
    /// ```
    /// use vigil_coordinator::item_ids::ItemIds;
    /// let mut ids = ItemIds::default();
    /// ids.set(2, "q-7", 3);
    /// assert_eq!((ids.get(2), ids.get(0), ids.get(9)), (Some("q-7"), None, None));
    /// ```
    pub fn set(&mut self, index: u64, id: &str, items_total: u64) {
        if id.is_empty() || index >= items_total || self.text.len() + id.len() > MAX_TEXT {
            return;
        }
        if self.spans.is_empty() {
            self.spans = vec![(0, 0); items_total as usize];
        }
        let Some(span) = self.spans.get_mut(index as usize) else {
            return;
        };
        if span.1 == 0 {
            *span = (self.text.len() as u32, id.len() as u32);
            self.text.push_str(id);
        }
    }

    /// Item `index`'s id, if known.
    pub fn get(&self, index: u64) -> Option<&str> {
        let &(start, len) = self.spans.get(usize::try_from(index).ok()?)?;
        (len > 0).then(|| &self.text[start as usize..(start + len) as usize])
    }

    /// Whether no id is known.
    pub fn is_empty(&self) -> bool {
        self.spans.iter().all(|s| s.1 == 0)
    }

    /// The number of item slots (0 when no id was ever recorded).
    pub fn slots(&self) -> usize {
        self.spans.len()
    }

    /// Replaces the `#index` placeholders of a comparison's flipped items
    /// with ids where known; unknown ones stay `#index`.
    ///
    /// ```
    /// use vigil_coordinator::item_ids::ItemIds;
    /// use vigil_protocol::{Comparison, MetricComparison};
    /// let mut ids = ItemIds::default();
    /// ids.set(1, "q-1", 3);
    /// let mut c = Comparison { tests: vec![MetricComparison {
    ///     flipped_to_fail: vec!["#1".into(), "#2".into()], ..Default::default() }], ..Default::default() };
    /// ids.name_flipped(&mut c);
    /// assert_eq!(c.tests[0].flipped_to_fail, ["q-1", "#2"]);
    /// ```
    pub fn name_flipped(&self, comparison: &mut Comparison) {
        for t in &mut comparison.tests {
            for name in t
                .flipped_to_fail
                .iter_mut()
                .chain(t.flipped_to_pass.iter_mut())
            {
                if let Some(id) = name
                    .strip_prefix('#')
                    .and_then(|i| i.parse().ok())
                    .and_then(|i| self.get(i))
                {
                    *name = id.to_string();
                }
            }
        }
    }
}

/// The indices of flipped items still shown as `#index`.
pub fn unnamed_flipped(comparison: &Comparison) -> Vec<u64> {
    comparison
        .tests
        .iter()
        .flat_map(|t| t.flipped_to_fail.iter().chain(&t.flipped_to_pass))
        .filter_map(|s| s.strip_prefix('#')?.parse().ok())
        .collect()
}
