//! Per-item scores of a run, stored compactly in the object store
//! `vigil-artifacts` under `scores/<run_id>`, so later runs can be compared
//! with it item by item.
//!
//! The format is a small little-endian binary file (documented in
//! `docs/continuous-qa.md`), about 4 bytes + 1 bit per item per scorer:
//!
//! ```text
//! "VGSC" u32:version(1)  str:run_id  u64:items_total
//! u32:scorers  { str:name  f32[items_total]:value (NaN = no score)  u64[ceil(n/64)]:passed bits }
//! u32:tags     { str:key  u32:values { str:value }  u32[items_total]:code (u32::MAX = untagged) }
//! [u32:ids { str:id (empty = unknown) }]   (optional: items_total ids, or 0)
//! str = u32 length + UTF-8 bytes
//! ```
//!
//! Comparisons pair items by the trailing ids section (and name flipped items
//! with it); only files without it pair by index. A model-side failure is
//! stored as value 0, not passed; no verdict (a scorer error) as NaN. The ids
//! section was added without a version bump: readers that predate it stop
//! after the tags and ignore it, and files without it decode with no ids.

use crate::item_ids::ItemIds;
use async_nats::jetstream;
use std::collections::BTreeMap;
use vigil_protocol::subjects;

const MAGIC: &[u8; 4] = b"VGSC";
const VERSION: u32 = 1;
/// The code of an item without a given tag.
pub const NO_TAG: u32 = u32::MAX;

/// One scorer's per-item values and pass bits.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScorerScores {
    /// The scorer's name.
    pub name: String,
    /// One value per item, NaN where the item has no score.
    pub values: Vec<f32>,
    /// Bit `i` set when item `i` passed.
    pub passed: Vec<u64>,
}

impl ScorerScores {
    /// Whether item `i` passed.
    pub fn passed(&self, i: usize) -> bool {
        self.passed
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// One tag's value per item.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TagColumn {
    /// The tag (for example `category`).
    pub key: String,
    /// The distinct values, indexed by code.
    pub values: Vec<String>,
    /// Per item: the code of its value, or [`NO_TAG`].
    pub codes: Vec<u32>,
}

/// Every per-item number of a run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunScores {
    /// The run.
    pub run_id: String,
    /// Items in the run.
    pub items_total: u64,
    /// Per scorer.
    pub scorers: Vec<ScorerScores>,
    /// Per tag.
    pub tags: Vec<TagColumn>,
    /// The items' ids, where known (none in files written before ids were
    /// stored).
    pub ids: ItemIds,
}

/// The stored scores could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ScoresError {
    /// The bytes are not a scores file of a known version.
    #[error("malformed scores file: {0}")]
    Malformed(String),
    /// The object store failed.
    #[error("object store: {0}")]
    Store(String),
    /// No scores were stored for the run.
    #[error("no stored scores for run {0}")]
    NotFound(String),
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ScoresError> {
        if self.0.len() < n {
            return Err(ScoresError::Malformed("truncated".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, ScoresError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, ScoresError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn str(&mut self) -> Result<String, ScoresError> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|e| ScoresError::Malformed(e.to_string()))
    }
}

impl RunScores {
    /// The scorer named `name`.
    pub fn scorer(&self, name: &str) -> Option<&ScorerScores> {
        self.scorers.iter().find(|s| s.name == name)
    }

    /// The binary encoding (see the module docs).
    ///
    /// ```
    /// use vigil_coordinator::scores_store::*;
    /// let s = RunScores { run_id: "r".into(), items_total: 2,
    ///     scorers: vec![ScorerScores { name: "exact".into(), values: vec![1.0, f32::NAN], passed: vec![1] }],
    ///     tags: vec![TagColumn { key: "lang".into(), values: vec!["en".into()], codes: vec![0, NO_TAG] }],
    ///     ..Default::default() };
    /// let back = RunScores::decode(&s.encode()).unwrap();
    /// assert_eq!(back.scorers[0].values[0], 1.0);
    /// assert!(back.scorers[0].values[1].is_nan());
    /// assert!(back.scorers[0].passed(0) && !back.scorers[0].passed(1));
    /// assert_eq!(back.tags, s.tags);
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let n = self.items_total as usize;
        let words = n.div_ceil(64);
        let mut out = Vec::with_capacity(32 + self.scorers.len() * (n * 4 + words * 8));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        put_str(&mut out, &self.run_id);
        out.extend_from_slice(&self.items_total.to_le_bytes());
        out.extend_from_slice(&(self.scorers.len() as u32).to_le_bytes());
        for s in &self.scorers {
            put_str(&mut out, &s.name);
            for i in 0..n {
                out.extend_from_slice(&s.values.get(i).copied().unwrap_or(f32::NAN).to_le_bytes());
            }
            for w in 0..words {
                out.extend_from_slice(&s.passed.get(w).copied().unwrap_or(0).to_le_bytes());
            }
        }
        out.extend_from_slice(&(self.tags.len() as u32).to_le_bytes());
        for t in &self.tags {
            put_str(&mut out, &t.key);
            out.extend_from_slice(&(t.values.len() as u32).to_le_bytes());
            for v in &t.values {
                put_str(&mut out, v);
            }
            for i in 0..n {
                out.extend_from_slice(&t.codes.get(i).copied().unwrap_or(NO_TAG).to_le_bytes());
            }
        }
        if self.ids.is_empty() {
            out.extend_from_slice(&0u32.to_le_bytes());
        } else {
            out.extend_from_slice(&(n as u32).to_le_bytes());
            for i in 0..n {
                put_str(&mut out, self.ids.get(i as u64).unwrap_or(""));
            }
        }
        out
    }

    /// Reads [`RunScores::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<RunScores, ScoresError> {
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC {
            return Err(ScoresError::Malformed("not a vigil scores file".into()));
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(ScoresError::Malformed(format!(
                "version {version}, this vigil reads {VERSION}"
            )));
        }
        let run_id = r.str()?;
        let items_total = r.u64()?;
        let n = usize::try_from(items_total)
            .map_err(|_| ScoresError::Malformed("too many items".into()))?;
        if n > bytes.len() {
            return Err(ScoresError::Malformed("item count exceeds the file".into()));
        }
        let words = n.div_ceil(64);
        let mut scorers = Vec::new();
        for _ in 0..r.u32()? {
            let name = r.str()?;
            let values = r
                .take(n * 4)?
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                .collect();
            let passed = r
                .take(words * 8)?
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
                .collect();
            scorers.push(ScorerScores {
                name,
                values,
                passed,
            });
        }
        let mut tags = Vec::new();
        for _ in 0..r.u32()? {
            let key = r.str()?;
            let count = r.u32()?;
            let values = (0..count).map(|_| r.str()).collect::<Result<Vec<_>, _>>()?;
            let codes = r
                .take(n * 4)?
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4")))
                .collect();
            tags.push(TagColumn { key, values, codes });
        }
        let mut ids = ItemIds::default();
        if !r.0.is_empty() {
            let count = u64::from(r.u32()?);
            if count != 0 && count != items_total {
                return Err(ScoresError::Malformed(format!(
                    "{count} ids for {items_total} items"
                )));
            }
            for i in 0..count {
                ids.set(i, &r.str()?, items_total);
            }
        }
        Ok(RunScores {
            run_id,
            items_total,
            scorers,
            tags,
            ids,
        })
    }

    /// Per tag: value → the indices of its items (for per-slice comparisons).
    pub fn slices(&self) -> BTreeMap<String, BTreeMap<String, Vec<usize>>> {
        let mut out: BTreeMap<String, BTreeMap<String, Vec<usize>>> = BTreeMap::new();
        for t in &self.tags {
            let by_value = out.entry(t.key.clone()).or_default();
            for (i, &code) in t.codes.iter().enumerate() {
                if let Some(v) = t.values.get(code as usize) {
                    by_value.entry(v.clone()).or_default().push(i);
                }
            }
        }
        out
    }
}

/// The object name of a run's scores: `scores/<run_id>`.
pub fn object_name(run_id: &str) -> String {
    format!("scores/{run_id}")
}

/// The artifacts object store, created when missing.
pub async fn artifacts(
    js: &jetstream::Context,
) -> Result<jetstream::object_store::ObjectStore, ScoresError> {
    if let Ok(store) = js.get_object_store(subjects::OBJECT_ARTIFACTS).await {
        return Ok(store);
    }
    // `ensure_topology` creates it with the deployment's replicas; this is
    // the fallback for a server set up without it.
    js.create_object_store(vigil_nats::topology::artifacts_store(&Default::default()))
        .await
        .map_err(|e| ScoresError::Store(e.to_string()))
}

/// Stores a run's scores under `scores/<run_id>`.
pub async fn store(js: &jetstream::Context, scores: &RunScores) -> Result<(), ScoresError> {
    let store = artifacts(js).await?;
    let bytes = scores.encode();
    store
        .put(object_name(&scores.run_id).as_str(), &mut bytes.as_slice())
        .await
        .map_err(|e| ScoresError::Store(e.to_string()))?;
    Ok(())
}

/// Loads a run's stored scores.
pub async fn load(js: &jetstream::Context, run_id: &str) -> Result<RunScores, ScoresError> {
    use tokio::io::AsyncReadExt;
    let store = artifacts(js).await?;
    let mut object = store
        .get(object_name(run_id).as_str())
        .await
        .map_err(|_| ScoresError::NotFound(run_id.to_string()))?;
    let mut bytes = Vec::new();
    object
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| ScoresError::Store(e.to_string()))?;
    RunScores::decode(&bytes)
}
