//! [`IndexSet`]: which item indices of a run have been seen, one bit per
//! item. The aggregator counts each item once with it, and
//! [`history::replay`](crate::history::replay) passes each index of a stored
//! run once with it.

/// A set of item indices, one bit per index up to the highest inserted
/// (or the capacity it was made with).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexSet {
    /// Bit `i % 64` of word `i / 64` is set once index `i` is inserted.
    words: Vec<u64>,
}

impl IndexSet {
    /// An empty set with room for the indices `0..items` (it grows past them
    /// on insert).
    ///
    /// # Panics
    ///
    /// If `items` bits do not fit in memory's address space.
    pub fn with_capacity(items: u64) -> Self {
        let words = usize::try_from(items.div_ceil(64)).expect("bitset fits in memory");
        IndexSet {
            words: vec![0; words],
        }
    }

    fn at(index: u64) -> (usize, u64) {
        let word = usize::try_from(index / 64).expect("bitset fits in memory");
        (word, 1u64 << (index % 64))
    }

    /// Inserts `index`; false if it was already in the set.
    pub fn insert(&mut self, index: u64) -> bool {
        let (word, mask) = Self::at(index);
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        if self.words[word] & mask != 0 {
            return false;
        }
        self.words[word] |= mask;
        true
    }

    /// Whether `index` is in the set.
    pub fn contains(&self, index: u64) -> bool {
        let (word, mask) = Self::at(index);
        self.words.get(word).is_some_and(|w| w & mask != 0)
    }

    /// The indices below `total` not in the set, ascending.
    pub fn missing(&self, total: u64) -> impl Iterator<Item = u64> + '_ {
        let stored = self.words.len() as u64 * 64;
        self.words
            .iter()
            .enumerate()
            // Skip full words whole: at the end of a run nearly all are.
            .filter(|(_, w)| **w != u64::MAX)
            .flat_map(|(i, &w)| {
                let base = i as u64 * 64;
                (0..64u64)
                    .filter(move |b| w & (1 << b) == 0)
                    .map(move |b| base + b)
            })
            .chain(stored..total.max(stored))
            .take_while(move |&index| index < total)
    }
}

#[cfg(test)]
mod tests {
    use super::IndexSet;

    #[test]
    fn an_index_is_inserted_once() {
        let mut set = IndexSet::with_capacity(10);
        assert!(set.insert(3));
        assert!(!set.insert(3));
        assert!(set.contains(3));
        assert!(!set.contains(4));
        assert!(!set.contains(1_000), "beyond the capacity: not in the set");
    }

    #[test]
    fn the_set_grows_past_its_capacity() {
        let mut set = IndexSet::default();
        assert!(set.insert(200));
        assert!(!set.insert(200));
        assert!(set.contains(200));
        assert!(!set.contains(199));
    }

    #[test]
    fn missing_lists_the_absent_indices_below_total() {
        let mut set = IndexSet::with_capacity(130);
        for i in (0..130).filter(|i| *i != 5 && *i != 128) {
            set.insert(i);
        }
        assert_eq!(set.missing(130).collect::<Vec<_>>(), [5, 128]);
        assert_eq!(set.missing(6).collect::<Vec<_>>(), [5]);
        let small = IndexSet::with_capacity(1);
        assert_eq!(
            small.missing(70).count(),
            70,
            "indices past the stored words are missing too"
        );
    }
}
