//! `vigil validate`: a full pass over a suite's dataset without NATS or models.
//!
//! Every item is read and rendered for every target kind, and item ids are
//! checked for duplicates, so that a run never starts on input that would
//! fail part way. Ids are remembered as 64-bit hashes with the line they were
//! first seen on (16 bytes each, a few tens of MB at a million items), never
//! as strings.
//!
//! ```
//! use vigil_coordinator::{render::Renderer, suite::{Suite, SuiteFormat}, validate};
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("d.jsonl"), "{\"q\": \"a\"}\n{\"q\": \"b\"}\n").unwrap();
//! let suite = Suite::from_str(r#"
//! name: demo
//! dataset: { path: d.jsonl }
//! prompt: { user: "{{ q }}" }
//! targets: [{ name: t, base_url: "http://127.0.0.1:1/v1", model: m }]
//! scorers: [{ name: json, kind: json_schema }]
//! "#, SuiteFormat::Yaml, &dir.path().join("s.yaml")).unwrap();
//! let renderer = Renderer::new(&suite).unwrap();
//! let check = validate::check_dataset(&suite, &renderer, &[vigil_protocol::EndpointKind::Chat]).unwrap();
//! assert_eq!(check.items, 2);
//! ```

use crate::dataset::{self, DatasetError, Record};
use crate::render::{RenderError, Renderer};
use crate::suite::TargetConfig;
use crate::suite::{Suite, SuiteError};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vigil_protocol::{EndpointKind, Item, Prompt, Recorded, ScorerSpec};

/// What a full pass over a dataset found.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetCheck {
    /// Items in the dataset.
    pub items: u64,
    /// SHA-256 (hex) of the dataset file's bytes, computed while streaming.
    pub sha256: String,
    /// The items the pass rendered, kept when the dataset and they are small
    /// ([`KEEP_DATASET_BYTES`], [`KEEP_RENDERED_BYTES`]): a run dispatches
    /// these instead of reading and rendering the dataset a second time.
    pub rendered: Option<Arc<Rendered>>,
    /// The bytes of text of the largest item rendered (what a run sizes its
    /// jobs by: [`crate::suite::Suite::shard_size_for`]).
    pub item_bytes: usize,
}

/// The largest dataset file whose rendered items a check keeps. A larger one
/// (or one that is not a regular file) is read again by the run, so a run's
/// memory stays flat in the dataset's size.
pub const KEEP_DATASET_BYTES: u64 = 8 << 20;
/// The most rendered bytes a check keeps (templates can make items much
/// larger than their lines); past it the run reads the dataset again.
pub const KEEP_RENDERED_BYTES: usize = 32 << 20;

/// Every item of a dataset as a check rendered it, in the dataset's order.
#[derive(Debug, Default, PartialEq)]
pub struct Rendered {
    /// Per endpoint kind checked: the items rendered for it.
    by_kind: Vec<(EndpointKind, Vec<Item>)>,
    /// Per `output_field` of a `recorded` target: each item's output.
    by_field: Vec<(String, Vec<Recorded>)>,
}

impl Rendered {
    /// The items of `target` (what [`Renderer::render_for`] gives for each
    /// record), or `None` when the check did not render for its kind or
    /// field. Moved out for whoever holds the last reference (a run that
    /// dispatches them then frees each one as it is sent, not all of them at
    /// its end); cloned while other references remain.
    pub fn into_items_for(
        this: Arc<Self>,
        target: &TargetConfig,
    ) -> Option<Box<dyn Iterator<Item = Item> + Send>> {
        let (kind, field) = this.positions(target)?;
        match Arc::try_unwrap(this) {
            Ok(mut owned) => {
                let items = std::mem::take(&mut owned.by_kind[kind].1);
                let mut outputs =
                    field.map(|f| std::mem::take(&mut owned.by_field[f].1).into_iter());
                Some(Box::new(items.into_iter().map(move |mut item| {
                    if let Some(outputs) = &mut outputs {
                        item.recorded = outputs.next();
                    }
                    item
                })))
            }
            Err(shared) => {
                let n = shared.by_kind[kind].1.len();
                Some(Box::new((0..n).map(move |i| shared.item(kind, field, i))))
            }
        }
    }

    /// Where `target`'s items (by kind) and recorded outputs (by field) are.
    fn positions(&self, target: &TargetConfig) -> Option<(usize, Option<usize>)> {
        let kind = self.by_kind.iter().position(|(k, _)| *k == target.kind)?;
        let field = match &target.output_field {
            Some(field) => Some(self.by_field.iter().position(|(f, _)| f == field)?),
            None => None,
        };
        Some((kind, field))
    }

    /// A copy of item `i` of kind position `kind`, with its recorded output.
    fn item(&self, kind: usize, field: Option<usize>, i: usize) -> Item {
        let mut item = self.by_kind[kind].1[i].clone();
        if let Some(f) = field {
            item.recorded = self.by_field[f].1.get(i).cloned();
        }
        item
    }
}

/// The bytes of text an item holds (what keeping it costs, roughly).
fn text_bytes(item: &Item) -> usize {
    let prompt = match &item.prompt {
        Prompt::Chat(messages) => messages
            .iter()
            .map(|m| m.role.len() + m.content.len() + 32)
            .sum(),
        Prompt::Completion(text) => text.len(),
    };
    let maps = [&item.references, &item.tags, &item.scorer_prompts]
        .iter()
        .flat_map(|m| m.iter())
        .map(|(k, v)| k.len() + v.len() + 64)
        .sum::<usize>();
    item.id.len() + prompt + maps + std::mem::size_of::<Item>()
}

/// The first problem found in a suite or its dataset.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// The suite file itself (or a template in it) is wrong.
    #[error(transparent)]
    Suite(#[from] SuiteError),
    /// The dataset could not be read or a line is malformed.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// An item could not be rendered.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// Two items share an id.
    #[error("{path}:{line}: duplicate item id `{id}` (first seen on line {first_line})")]
    DuplicateId {
        /// The dataset file.
        path: PathBuf,
        /// The id.
        id: String,
        /// The line of the earlier item.
        first_line: u64,
        /// The line of the later item.
        line: u64,
    },
    /// A scorer's configuration fails the check a worker runs when it
    /// builds it (a regex or JSON Schema that does not compile).
    #[error(transparent)]
    Scorer(Box<dyn std::error::Error + Send + Sync>),
    /// The dataset has no items.
    #[error("{path}: the dataset has no items")]
    Empty {
        /// The dataset file.
        path: PathBuf,
    },
}

/// Streams the whole dataset, renders every item for each of `kinds` and
/// rejects duplicate ids. Returns the first error, which names file and line.
pub fn check_dataset(
    suite: &Suite,
    renderer: &Renderer,
    kinds: &[EndpointKind],
) -> Result<DatasetCheck, ValidationError> {
    let mut distinct: Vec<EndpointKind> = Vec::with_capacity(2);
    for k in kinds {
        if !distinct.contains(k) {
            distinct.push(*k);
        }
    }
    // The dataset fields that hold the outputs of `recorded` targets.
    let recorded_fields: Vec<&str> = if distinct.contains(&EndpointKind::Recorded) {
        let fields = suite
            .targets
            .iter()
            .filter_map(|t| t.output_field.as_deref());
        fields.collect()
    } else {
        Vec::new()
    };
    let records = dataset::open(&suite.dataset)?;
    // Id hash -> line first seen. The key is already a hash: no rehashing.
    let mut seen: HashMap<u64, u64, BuildHasherDefault<IdentityHasher>> = HashMap::default();
    let mut items = 0u64;
    // A regular file only: anything else (a pipe) is read again as before.
    let small = std::fs::metadata(&suite.dataset.path)
        .is_ok_and(|m| m.is_file() && m.len() <= KEEP_DATASET_BYTES);
    let mut kept = small.then(|| Rendered {
        by_kind: distinct.iter().map(|&k| (k, Vec::new())).collect(),
        by_field: recorded_fields
            .iter()
            .map(|f| (f.to_string(), Vec::new()))
            .collect(),
    });
    let mut kept_bytes = 0usize;
    let mut item_bytes = 0usize;
    let check = |record: &Record| -> Result<(), ValidationError> {
        for (position, &kind) in distinct.iter().enumerate() {
            let item = renderer.render(record, kind)?;
            let bytes = text_bytes(&item);
            item_bytes = item_bytes.max(bytes);
            if let Some(rendered) = &mut kept {
                kept_bytes += bytes;
                rendered.by_kind[position].1.push(item);
            }
        }
        for (position, field) in recorded_fields.iter().enumerate() {
            let output = renderer.recorded(record, field)?;
            if let Some(rendered) = &mut kept {
                kept_bytes += output.text.as_ref().map_or(0, String::len) + 64;
                rendered.by_field[position].1.push(output);
            }
        }
        if kept_bytes > KEEP_RENDERED_BYTES {
            kept = None;
        }
        let id = renderer.item_id(record)?;
        let h = id_hash(&id);
        if let Some(&first_line) = seen.get(&h) {
            return Err(ValidationError::DuplicateId {
                path: suite.dataset.path.clone(),
                id,
                first_line,
                line: record.line,
            });
        }
        seen.insert(h, record.line);
        items += 1;
        Ok(())
    };
    let records = read_beside(records, check)?;
    if items == 0 {
        return Err(ValidationError::Empty {
            path: suite.dataset.path.clone(),
        });
    }
    Ok(DatasetCheck {
        items,
        sha256: records.sha256(),
        rendered: kept.map(Arc::new),
        item_bytes,
    })
}

/// Records a reading thread hands over at once.
const READ_BATCH: usize = 256;

/// Feeds every record of `records` to `each`, in file order, until `each`
/// fails; returns `records`, read to its end (so its SHA-256 is the whole
/// file's) unless `each` failed. The file is read and parsed on a thread of
/// its own while `each` runs on this one (two cores nearly halve a big
/// dataset's check). A read error is handed over after the records before
/// it, so the first error in file order is the one returned. Records go
/// back to the reading thread to be freed where they were allocated (a
/// free from another thread costs mimalloc more, and the reading side has
/// less to do).
fn read_beside(
    records: dataset::Records,
    mut each: impl FnMut(&Record) -> Result<(), ValidationError>,
) -> Result<dataset::Records, ValidationError> {
    type Batch = (Vec<Record>, Option<DatasetError>);
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(8);
        let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<Record>>();
        let reading = scope.spawn(move || {
            let mut records = records;
            let mut batch = Vec::with_capacity(READ_BATCH);
            loop {
                let next = records.next();
                let (end, error) = match next {
                    Some(Ok(record)) => {
                        batch.push(record);
                        (false, None)
                    }
                    Some(Err(e)) => (true, Some(e)),
                    None => (true, None),
                };
                if end || batch.len() == READ_BATCH {
                    // Empty (and reused) once `each` is done with it.
                    let spare = back_rx.try_recv().map_or_else(
                        |_| Vec::with_capacity(READ_BATCH),
                        |mut done| {
                            done.clear();
                            done
                        },
                    );
                    let full = std::mem::replace(&mut batch, spare);
                    // A send fails when `each` has failed: nothing more is read.
                    if tx.send((full, error)).is_err() || end {
                        return records;
                    }
                }
            }
        });
        let mut fed = Ok(());
        'batches: for (batch, error) in rx.iter() {
            for record in &batch {
                fed = each(record);
                if fed.is_err() {
                    break 'batches;
                }
            }
            if let Some(e) = error {
                fed = Err(e.into());
                break;
            }
            let _ = back_tx.send(batch);
        }
        // Unblocks a reader waiting to hand over more.
        drop(rx);
        let records = reading
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        fed.map(|()| records)
    })
}

/// Everything a run checks before it publishes: the suite's templates
/// compile, every scorer passes `check_scorer` (the worker's own build check,
/// `vigil_worker::scorers::check`, which compiles regexes and JSON Schemas),
/// and every dataset line renders for each of the targets' endpoint kinds
/// with no duplicate id. Returns the renderer and what the dataset pass found.
pub fn check_suite<E>(
    suite: &Suite,
    check_scorer: impl Fn(&ScorerSpec) -> Result<(), E>,
) -> Result<(Renderer, DatasetCheck), ValidationError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let renderer = Renderer::new(suite)?;
    for spec in suite.scorer_specs() {
        check_scorer(&spec).map_err(|e| ValidationError::Scorer(Box::new(e)))?;
    }
    let kinds: Vec<EndpointKind> = suite.targets.iter().map(|t| t.kind).collect();
    let check = check_dataset(suite, &renderer, &kinds)?;
    Ok((renderer, check))
}

/// Loads a suite and runs [`check_suite`] on it without a worker's scorer
/// check (what the suite parser checks of scorers still applies).
pub fn validate_file(path: &Path) -> Result<(Suite, DatasetCheck), ValidationError> {
    let suite = Suite::load(path)?;
    let (_, check) = check_suite(&suite, |_| Ok::<(), std::convert::Infallible>(()))?;
    Ok((suite, check))
}

/// A 64-bit hash of an id; SipHash with fixed keys, so stable within a process.
/// Two different ids colliding (about 1 in 10^7 at a million items) would be
/// reported as a duplicate; the message names both lines, so it is checkable.
fn id_hash(id: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// Passes a u64 key through unchanged.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; fold anything else for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
