//! Versioned datasets in the `vigil-artifacts` object store (`vigil dataset
//! push|list|show|pull`, suites with `dataset: { name, version }`).
//!
//! Layout (documented in docs/protocol.md, "Datasets"):
//!
//! - `datasets/<name>/<version>`: the dataset's bytes as pushed (JSONL or
//!   CSV). The version is the SHA-256 (hex) of those bytes, so pushing the
//!   same content twice stores one version. The object's metadata map holds
//!   the version's [`VersionInfo`] (`vigil.items`, `vigil.format`, ...).
//! - `datasets/<name>/latest`: an object-store link to the version pushed
//!   last (pushing an older content again makes it the latest again).
//!
//! Nothing is held whole in memory: a push validates and hashes the file in
//! one streaming pass, then the object store reads it again in chunks; a pull
//! streams the chunks to a file.
//!
//! ```
//! use vigil_coordinator::dataset_store::DatasetRef;
//! let r: DatasetRef = "support@latest".parse().unwrap();
//! assert_eq!((r.name.as_str(), r.version.as_str()), ("support", "latest"));
//! assert_eq!("support".parse::<DatasetRef>().unwrap().version, "latest");
//! assert!("bad name".parse::<DatasetRef>().is_err());
//! assert!("support@v1".parse::<DatasetRef>().is_err());
//! assert!("support@9521688d".parse::<DatasetRef>().is_ok(), "a prefix of 8 or more");
//! assert!("support@9521688".parse::<DatasetRef>().is_err());
//! ```

use crate::dataset::{self, DatasetError};
use crate::suite::{DatasetFormat, DatasetSpec};
use async_nats::jetstream::{self, object_store};
use base64::Engine;
use futures::StreamExt;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The version word that means "the version pushed last".
pub const LATEST: &str = "latest";
/// Every dataset object's name starts with this.
pub const PREFIX: &str = "datasets/";

/// Why a dataset name is not allowed, if it is not: ASCII letters, digits,
/// `-` and `_`, 1 to 128 of them.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!(
            "dataset name `{name}` must have 1 to 128 characters"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "dataset name `{name}` may only contain ASCII letters, digits, `-` and `_`"
        ));
    }
    Ok(())
}

/// The fewest hex digits of a version prefix (`vigil dataset list` prints 12).
pub const MIN_PREFIX: usize = 8;

/// Why a version is not `latest`, a SHA-256 (64 lowercase hex digits) or a
/// prefix of one of at least [`MIN_PREFIX`] digits, if it is not.
pub fn check_version(version: &str) -> Result<(), String> {
    if version == LATEST
        || ((MIN_PREFIX..=64).contains(&version.len())
            && version
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    {
        Ok(())
    } else {
        Err(format!(
            "version `{version}` is neither `latest` nor a SHA-256 (64 lowercase hex digits as `vigil dataset show` prints them, or the first {MIN_PREFIX} or more)"
        ))
    }
}

/// `NAME[@VERSION]` as the commands take it (`VERSION` defaults to `latest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetRef {
    /// The dataset.
    pub name: String,
    /// A version or `latest`.
    pub version: String,
}

impl std::str::FromStr for DatasetRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, version) = s.split_once('@').unwrap_or((s, LATEST));
        check_name(name)?;
        check_version(version)?;
        Ok(DatasetRef {
            name: name.to_string(),
            version: version.to_string(),
        })
    }
}

impl std::fmt::Display for DatasetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// The object of one version: `datasets/<name>/<version>`.
pub fn object_name(name: &str, version: &str) -> String {
    format!("{PREFIX}{name}/{version}")
}

/// One stored version: what the object's metadata map holds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VersionInfo {
    /// The dataset.
    pub name: String,
    /// SHA-256 (hex) of the content.
    pub version: String,
    /// JSONL or CSV.
    #[serde(serialize_with = "format_str")]
    pub format: DatasetFormat,
    /// Items in the version.
    pub items: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// Where the content came from (the pushed file's name, `promote`).
    pub source: String,
    /// When the version was first stored, RFC 3339 UTC.
    pub created: String,
    /// How it was made (pushed from a file, appended to a version, promoted
    /// from captures with a filter and the monitor runs it read).
    pub provenance: String,
    /// The version it extends (`--append`, promotion), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Whether this is the dataset's latest version.
    pub latest: bool,
}

fn format_str<S: serde::Serializer>(f: &DatasetFormat, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(format_name(*f))
}

/// `jsonl` or `csv`.
pub fn format_name(format: DatasetFormat) -> &'static str {
    match format {
        DatasetFormat::Jsonl => "jsonl",
        DatasetFormat::Csv => "csv",
    }
}

const META_ITEMS: &str = "vigil.items";
const META_FORMAT: &str = "vigil.format";
const META_SOURCE: &str = "vigil.source";
const META_CREATED: &str = "vigil.created";
const META_PROVENANCE: &str = "vigil.provenance";
const META_PARENT: &str = "vigil.parent";

impl VersionInfo {
    fn metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::from([
            (META_ITEMS.to_string(), self.items.to_string()),
            (
                META_FORMAT.to_string(),
                format_name(self.format).to_string(),
            ),
            (META_SOURCE.to_string(), self.source.clone()),
            (META_CREATED.to_string(), self.created.clone()),
            (META_PROVENANCE.to_string(), self.provenance.clone()),
        ]);
        if let Some(parent) = &self.parent {
            m.insert(META_PARENT.to_string(), parent.clone());
        }
        m
    }

    /// Reads a version object's info; `None` for objects that are not one.
    fn from_object(info: &object_store::ObjectInfo) -> Option<VersionInfo> {
        let rest = info.name.strip_prefix(PREFIX)?;
        let (name, version) = rest.split_once('/')?;
        if info.deleted
            || version == LATEST
            || info.options.as_ref().is_some_and(|o| o.link.is_some())
        {
            return None;
        }
        let m = &info.metadata;
        let get = |k: &str| m.get(k).cloned().unwrap_or_default();
        Some(VersionInfo {
            name: name.to_string(),
            version: version.to_string(),
            format: match m.get(META_FORMAT).map(String::as_str) {
                Some("csv") => DatasetFormat::Csv,
                _ => DatasetFormat::Jsonl,
            },
            items: get(META_ITEMS).parse().unwrap_or(0),
            bytes: info.size as u64,
            source: get(META_SOURCE),
            created: get(META_CREATED),
            provenance: get(META_PROVENANCE),
            parent: m.get(META_PARENT).cloned(),
            latest: false,
        })
    }
}

/// A dataset could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum DatasetStoreError {
    /// No dataset has this name.
    #[error(
        "no dataset `{name}` in NATS (see `vigil dataset list`; store one with `vigil dataset push FILE --name {name}`)"
    )]
    UnknownName {
        /// The name asked for.
        name: String,
    },
    /// The dataset has no such version.
    #[error("dataset `{name}` has no version `{version}` (see `vigil dataset show {name}`)")]
    UnknownVersion {
        /// The dataset.
        name: String,
        /// The version asked for.
        version: String,
    },
    /// A version prefix matches more than one version.
    #[error(
        "`{prefix}` is the start of {count} versions of dataset `{name}`; give more of it (see `vigil dataset show {name}`)"
    )]
    Ambiguous {
        /// The dataset.
        name: String,
        /// The prefix given.
        prefix: String,
        /// How many versions it matches.
        count: usize,
    },
    /// The file is not a valid dataset (names the file and line).
    #[error(transparent)]
    Invalid(#[from] DatasetError),
    /// Appending needs JSONL.
    #[error("{0}")]
    Unsupported(String),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The object store failed.
    #[error("object store: {0}")]
    Store(String),
}

impl DatasetStoreError {
    /// Whether the user's input is wrong (exit 2) rather than NATS (exit 3).
    pub fn is_input(&self) -> bool {
        !matches!(self, DatasetStoreError::Store(_))
    }
}

fn store_err(e: impl std::fmt::Display) -> DatasetStoreError {
    DatasetStoreError::Store(e.to_string())
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> DatasetStoreError + '_ {
    move |source| DatasetStoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

async fn artifacts(
    js: &jetstream::Context,
) -> Result<object_store::ObjectStore, DatasetStoreError> {
    crate::scores_store::artifacts(js).await.map_err(store_err)
}

/// What a push records besides the content.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Where the content came from.
    pub source: String,
    /// How it was made.
    pub provenance: String,
    /// The version it extends.
    pub parent: Option<String>,
}

/// The outcome of a push.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The version (now the latest).
    pub info: VersionInfo,
    /// False when the same content was already stored (one version).
    pub stored: bool,
}

/// Validates `path` with the dataset reader (an error names the file and
/// line) and stores it as a version of `name`, which becomes the latest.
pub async fn push_file(
    js: &jetstream::Context,
    name: &str,
    path: &Path,
    format: DatasetFormat,
    options: PushOptions,
) -> Result<Pushed, DatasetStoreError> {
    check_name(name).map_err(DatasetStoreError::Unsupported)?;
    let owned = path.to_path_buf();
    let (items, sha, bytes) = tokio::task::spawn_blocking(move || {
        let mut records = dataset::open_path(&owned, format)?;
        let mut items = 0u64;
        for record in records.by_ref() {
            record?;
            items += 1;
        }
        Ok::<_, DatasetError>((items, records.sha256(), records.bytes_read()))
    })
    .await
    .map_err(store_err)??;
    let store = artifacts(js).await?;
    let object = object_name(name, &sha);
    let (info, stored) = match store.info(&object).await {
        Ok(existing) if !existing.deleted => (existing, false),
        _ => {
            let info = VersionInfo {
                name: name.to_string(),
                version: sha.clone(),
                format,
                items,
                bytes,
                source: options.source,
                created: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                    .to_string(),
                provenance: options.provenance,
                parent: options.parent,
                latest: true,
            };
            let meta = object_store::ObjectMetadata {
                name: object.clone(),
                description: Some(format!("vigil dataset {name}: {items} items")),
                metadata: info.metadata(),
                ..Default::default()
            };
            let mut file = tokio::fs::File::open(path).await.map_err(io_err(path))?;
            let put = store.put(meta, &mut file).await.map_err(store_err)?;
            // The file changed between the check and the upload: what is stored
            // is not what was checked.
            let expected = format!(
                "SHA-256={}",
                base64::engine::general_purpose::URL_SAFE
                    .encode(hex::decode(&sha).unwrap_or_default())
            );
            if put.digest.as_deref() != Some(expected.as_str()) {
                let _ = store.delete(&object).await;
                return Err(DatasetStoreError::Unsupported(format!(
                    "{}: the file changed while it was being pushed; push it again",
                    path.display()
                )));
            }
            (put, true)
        }
    };
    store
        .add_link(object_name(name, LATEST), &info)
        .await
        .map_err(store_err)?;
    let mut info = VersionInfo::from_object(&info)
        .ok_or_else(|| store_err(format!("{object} is not a dataset version")))?;
    info.latest = true;
    Ok(Pushed { info, stored })
}

/// The version `version` (or `latest`) of dataset `name`.
pub async fn resolve(
    js: &jetstream::Context,
    name: &str,
    version: &str,
) -> Result<VersionInfo, DatasetStoreError> {
    let store = artifacts(js).await?;
    let latest = latest_version(&store, name).await?;
    let Some(latest) = latest else {
        return Err(DatasetStoreError::UnknownName {
            name: name.to_string(),
        });
    };
    let unknown = || DatasetStoreError::UnknownVersion {
        name: name.to_string(),
        version: version.to_string(),
    };
    let full;
    let version = if version == LATEST {
        latest.as_str()
    } else if version.len() < 64 {
        // A prefix: it must name one version.
        let matching: Vec<String> = list(js, Some(name))
            .await?
            .into_iter()
            .map(|v| v.version)
            .filter(|v| v.starts_with(version))
            .collect();
        match matching.as_slice() {
            [one] => {
                full = one.clone();
                full.as_str()
            }
            [] => return Err(unknown()),
            many => {
                return Err(DatasetStoreError::Ambiguous {
                    name: name.to_string(),
                    prefix: version.to_string(),
                    count: many.len(),
                });
            }
        }
    } else {
        version
    };
    let info = match store.info(object_name(name, version)).await {
        Ok(info) => info,
        Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => return Err(unknown()),
        Err(e) => return Err(store_err(e)),
    };
    let mut info = VersionInfo::from_object(&info).ok_or_else(unknown)?;
    info.latest = info.version == latest;
    Ok(info)
}

/// The version `datasets/<name>/latest` links to; `None` when the dataset does not exist.
async fn latest_version(
    store: &object_store::ObjectStore,
    name: &str,
) -> Result<Option<String>, DatasetStoreError> {
    match store.info(object_name(name, LATEST)).await {
        Ok(info) if !info.deleted => Ok(info
            .options
            .and_then(|o| o.link)
            .and_then(|l| l.name)
            .and_then(|n| n.rsplit('/').next().map(str::to_string))),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(None),
        Err(e) => Err(store_err(e)),
    }
}

/// Streams a version's bytes into `out`; returns the byte count.
pub async fn pull(
    js: &jetstream::Context,
    info: &VersionInfo,
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<u64, DatasetStoreError> {
    let store = artifacts(js).await?;
    let mut object = store
        .get(object_name(&info.name, &info.version))
        .await
        .map_err(store_err)?;
    let n = tokio::io::copy(&mut object, out).await.map_err(store_err)?;
    tokio::io::AsyncWriteExt::flush(out)
        .await
        .map_err(store_err)?;
    Ok(n)
}

/// Writes a version into `dir` (`<name>-<version>.<format>`) and returns the file.
pub async fn pull_to_dir(
    js: &jetstream::Context,
    info: &VersionInfo,
    dir: &Path,
) -> Result<PathBuf, DatasetStoreError> {
    let path = dir.join(format!(
        "{}-{}.{}",
        info.name,
        info.version,
        format_name(info.format)
    ));
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(io_err(&path))?;
    pull(js, info, &mut file).await?;
    Ok(path)
}

/// Every stored version of every dataset (or of `name` only), by name, then
/// oldest first.
pub async fn list(
    js: &jetstream::Context,
    name: Option<&str>,
) -> Result<Vec<VersionInfo>, DatasetStoreError> {
    let store = artifacts(js).await?;
    let mut objects = store.list().await.map_err(store_err)?;
    let mut versions = Vec::new();
    let mut latest: HashMap<String, String> = HashMap::new();
    while let Some(object) = objects.next().await {
        let object = object.map_err(store_err)?;
        let Some(rest) = object.name.strip_prefix(PREFIX) else {
            continue;
        };
        if let Some(n) = name
            && rest.split('/').next() != Some(n)
        {
            continue;
        }
        if let Some(dataset) = rest.strip_suffix("/latest") {
            if let Some(target) = object
                .options
                .as_ref()
                .and_then(|o| o.link.as_ref())
                .and_then(|l| l.name.as_ref())
                && !object.deleted
            {
                let version = target.rsplit('/').next().unwrap_or_default();
                latest.insert(dataset.to_string(), version.to_string());
            }
            continue;
        }
        if let Some(info) = VersionInfo::from_object(&object) {
            versions.push(info);
        }
    }
    for v in &mut versions {
        v.latest = latest.get(&v.name) == Some(&v.version);
    }
    versions.sort_by(|a, b| (&a.name, &a.created).cmp(&(&b.name, &b.created)));
    Ok(versions)
}

/// A suite's named dataset fetched: the local copy the run reads.
#[derive(Debug)]
pub struct Fetched {
    /// The version read.
    pub info: VersionInfo,
    /// The directory holding the copy (removed when dropped).
    pub dir: tempfile::TempDir,
}

/// Fetches the suite's named dataset (at `version_override` when given: a
/// resumed run reads the version it started with) into a temporary
/// directory and points `spec` at the copy, with the stored format and the
/// resolved version. A spec without a name is left alone (`Ok(None)`).
pub async fn fetch(
    js: &jetstream::Context,
    spec: &mut DatasetSpec,
    version_override: Option<&str>,
) -> Result<Option<Fetched>, DatasetStoreError> {
    let Some(named) = spec.named.as_mut() else {
        return Ok(None);
    };
    let version = version_override.unwrap_or(&named.version).to_string();
    let info = resolve(js, &named.name, &version).await?;
    let dir = tempfile::Builder::new()
        .prefix("vigil-dataset-")
        .tempdir()
        .map_err(io_err(&std::env::temp_dir()))?;
    spec.path = pull_to_dir(js, &info, dir.path()).await?;
    spec.format = info.format;
    named.version = info.version.clone();
    Ok(Some(Fetched { info, dir }))
}

/// The content hash that decides whether two items are duplicates: the
/// SHA-256 of the item's input (its `messages` when it has them, else its
/// `prompt`), or of the whole item when it has neither. Provenance, scores
/// and the recorded response do not count: the same prompt captured twice is
/// one test.
pub fn content_hash(fields: &Map<String, Value>) -> [u8; 32] {
    let key = match (fields.get("messages"), fields.get("prompt")) {
        (Some(m @ Value::Array(a)), _) if !a.is_empty() => serde_json::json!({ "messages": m }),
        (_, Some(p)) => serde_json::json!({ "prompt": p }),
        _ => Value::Object(fields.clone()),
    };
    // serde_json's maps are sorted by key: the text is canonical.
    Sha256::digest(key.to_string().as_bytes()).into()
}

/// The outcome of [`extend`].
#[derive(Debug, Clone)]
pub struct Extended {
    /// The new version, or `None` when no item was new (nothing pushed).
    pub pushed: Option<Pushed>,
    /// The version extended (`None`: the dataset was new).
    pub parent: Option<VersionInfo>,
    /// Items added.
    pub added: u64,
    /// Items left out as duplicates (of the latest version or of each other).
    pub duplicates: u64,
}

/// The latest version of `name` copied into `dir` and the content hashes of
/// its items; `None` when the dataset does not exist yet.
async fn latest_with_hashes(
    js: &jetstream::Context,
    name: &str,
    dir: &Path,
) -> Result<Option<(VersionInfo, PathBuf, HashSet<[u8; 32]>)>, DatasetStoreError> {
    let latest = match resolve(js, name, LATEST).await {
        Ok(info) => info,
        Err(DatasetStoreError::UnknownName { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    if latest.format != DatasetFormat::Jsonl {
        return Err(DatasetStoreError::Unsupported(format!(
            "dataset `{name}`'s latest version {} is CSV; only JSONL datasets are extended (push a JSONL file to replace it)",
            latest.version
        )));
    }
    let path = pull_to_dir(js, &latest, dir).await?;
    let read = path.clone();
    let hashes = tokio::task::spawn_blocking(move || {
        let mut hashes = HashSet::new();
        for record in dataset::open_path(&read, DatasetFormat::Jsonl)? {
            hashes.insert(content_hash(&record?.fields));
        }
        Ok::<_, DatasetError>(hashes)
    })
    .await
    .map_err(store_err)??;
    Ok(Some((latest, path, hashes)))
}

/// The items of `new` that are not duplicates (of `name`'s latest version or
/// of each other), written as JSONL to `out`; returns (written, duplicates).
/// A failed item (a file's bad line) stops the write with its error.
/// Memory: 32 bytes per distinct item.
pub async fn write_new_items(
    js: &jetstream::Context,
    name: &str,
    new: impl IntoIterator<Item = Result<Map<String, Value>, DatasetError>>,
    out: &Path,
) -> Result<(u64, u64), DatasetStoreError> {
    let dir = tempfile::tempdir().map_err(io_err(&std::env::temp_dir()))?;
    let mut seen = latest_with_hashes(js, name, dir.path())
        .await?
        .map(|(_, _, h)| h)
        .unwrap_or_default();
    let file = std::fs::File::create(out).map_err(io_err(out))?;
    let mut w = std::io::BufWriter::new(file);
    write_items(&mut w, out, new, &mut seen)
}

fn write_items(
    w: &mut impl Write,
    out: &Path,
    new: impl IntoIterator<Item = Result<Map<String, Value>, DatasetError>>,
    seen: &mut HashSet<[u8; 32]>,
) -> Result<(u64, u64), DatasetStoreError> {
    let (mut added, mut duplicates) = (0, 0);
    for item in new {
        let item = item?;
        if !seen.insert(content_hash(&item)) {
            duplicates += 1;
            continue;
        }
        serde_json::to_writer(&mut *w, &item).map_err(|e| io_err(out)(e.into()))?;
        w.write_all(b"\n").map_err(io_err(out))?;
        added += 1;
    }
    w.flush().map_err(io_err(out))?;
    Ok((added, duplicates))
}

/// Pushes a new version of `name`: its latest version (JSONL) followed by
/// the items of `new` that are not duplicates of it or of each other. No
/// item new: nothing is pushed. The dataset need not exist yet. A failed
/// item (a file's bad line) stops it with its error, nothing pushed.
pub async fn extend(
    js: &jetstream::Context,
    name: &str,
    new: impl IntoIterator<Item = Result<Map<String, Value>, DatasetError>>,
    source: &str,
    provenance: &str,
) -> Result<Extended, DatasetStoreError> {
    check_name(name).map_err(DatasetStoreError::Unsupported)?;
    let dir = tempfile::tempdir().map_err(io_err(&std::env::temp_dir()))?;
    let latest = latest_with_hashes(js, name, dir.path()).await?;
    let out = dir.path().join("next.jsonl");
    let (parent, mut seen) = match latest {
        Some((info, path, hashes)) => {
            std::fs::copy(&path, &out).map_err(io_err(&out))?;
            (Some(info), hashes)
        }
        None => (None, HashSet::new()),
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out)
        .map_err(io_err(&out))?;
    // A version whose last line has no newline still gets its own line.
    if parent.as_ref().is_some_and(|p| p.bytes > 0) && !ends_with_newline(&out)? {
        file.write_all(b"\n").map_err(io_err(&out))?;
    }
    let mut w = std::io::BufWriter::new(file);
    let (added, duplicates) = write_items(&mut w, &out, new, &mut seen)?;
    drop(w);
    if added == 0 {
        return Ok(Extended {
            pushed: None,
            parent,
            added,
            duplicates,
        });
    }
    let pushed = push_file(
        js,
        name,
        &out,
        DatasetFormat::Jsonl,
        PushOptions {
            source: source.to_string(),
            provenance: provenance.to_string(),
            parent: parent.as_ref().map(|p| p.version.clone()),
        },
    )
    .await?;
    Ok(Extended {
        pushed: Some(pushed),
        parent,
        added,
        duplicates,
    })
}

fn ends_with_newline(path: &Path) -> Result<bool, DatasetStoreError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    if f.metadata().map_err(io_err(path))?.len() == 0 {
        return Ok(true);
    }
    f.seek(SeekFrom::End(-1)).map_err(io_err(path))?;
    let mut last = [0u8];
    f.read_exact(&mut last).map_err(io_err(path))?;
    Ok(last[0] == b'\n')
}

/// The items of a JSONL or CSV file (validated as it streams), for `extend`.
pub fn read_items(
    path: &Path,
    format: DatasetFormat,
) -> Result<impl Iterator<Item = Result<Map<String, Value>, DatasetError>>, DatasetError> {
    Ok(dataset::open_path(path, format)?.map(|r| r.map(|r| r.fields)))
}

/// Versions per dataset name: what `vigil dataset list` prints.
pub fn by_name(versions: &[VersionInfo]) -> BTreeMap<&str, Vec<&VersionInfo>> {
    let mut out: BTreeMap<&str, Vec<&VersionInfo>> = BTreeMap::new();
    for v in versions {
        out.entry(v.name.as_str()).or_default().push(v);
    }
    out
}
