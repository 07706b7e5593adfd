//! Streaming dataset readers (JSONL and CSV).
//!
//! A dataset is never loaded whole (DESIGN §4.6): [`open`] returns an iterator
//! of [`Record`]s that reads one line or CSV record at a time, and hashes the
//! file's bytes as they stream past, so the caller gets the dataset's SHA-256
//! without a second pass.
//!
//! ```
//! use vigil_coordinator::{dataset, suite::{DatasetFormat, DatasetSpec}};
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("d.jsonl");
//! std::fs::write(&path, "{\"q\": 1}\n\n{\"q\": 2}\n").unwrap();
//! let spec = DatasetSpec { path, format: DatasetFormat::Jsonl, id_field: None, tags: vec![], named: None };
//! let records: Vec<_> = dataset::open(&spec).unwrap().collect::<Result<_, _>>().unwrap();
//! assert_eq!((records[1].line, records[1].index), (3, 1));
//! ```

use crate::suite::{DatasetFormat, DatasetSpec};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// One dataset item before rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// 1-based line in the file where the item starts.
    pub line: u64,
    /// 0-based position among the file's items.
    pub index: u64,
    /// The item's fields (CSV values are strings).
    pub fields: Map<String, Value>,
}

/// Why a dataset could not be read. Messages start with `<path>` or `<path>:<line>`.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file could not be opened.
    #[error("{path}: cannot open dataset: {source}")]
    Open {
        /// The dataset file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// Reading failed part way.
    #[error("{path}:{line}: read error: {source}")]
    Read {
        /// The dataset file.
        path: PathBuf,
        /// The line being read.
        line: u64,
        /// The IO error.
        source: std::io::Error,
    },
    /// A named dataset was opened before its version was fetched from NATS.
    #[error(
        "dataset `{name}` is stored in NATS and was not fetched (a command that reads it needs --nats)"
    )]
    NotFetched {
        /// The dataset's name.
        name: String,
    },
    /// A line or record is not a valid item.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The dataset file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

impl DatasetError {
    /// The 1-based line the error is about, if any.
    pub fn line(&self) -> Option<u64> {
        match self {
            DatasetError::Open { .. } | DatasetError::NotFetched { .. } => None,
            DatasetError::Read { line, .. } | DatasetError::Invalid { line, .. } => Some(*line),
        }
    }
}

/// Opens the dataset a suite names, for streaming.
pub fn open(spec: &DatasetSpec) -> Result<Records, DatasetError> {
    if let Some(named) = &spec.named
        && spec.path.as_os_str().is_empty()
    {
        return Err(DatasetError::NotFetched {
            name: named.name.clone(),
        });
    }
    open_path(&spec.path, spec.format)
}

/// Opens a dataset file of the given format, for streaming.
pub fn open_path(path: &Path, format: DatasetFormat) -> Result<Records, DatasetError> {
    let file = File::open(path).map_err(|source| DatasetError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let hashing = HashingReader {
        inner: file,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let inner = match format {
        DatasetFormat::Jsonl => Inner::Jsonl(Box::new(JsonlReader {
            reader: BufReader::with_capacity(256 * 1024, hashing),
            buf: Vec::new(),
            line: 0,
        })),
        DatasetFormat::Csv => {
            let reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .buffer_capacity(256 * 1024)
                .from_reader(hashing);
            Inner::Csv(Box::new(CsvReader {
                reader,
                headers: None,
                record: csv::StringRecord::new(),
            }))
        }
    };
    Ok(Records {
        path: path.to_path_buf(),
        inner,
        index: 0,
        done: false,
    })
}

/// The records of a dataset, in file order. After the iterator has returned
/// `None`, [`Records::sha256`] is the hash of the whole file.
pub struct Records {
    path: PathBuf,
    inner: Inner,
    index: u64,
    done: bool,
}

enum Inner {
    Jsonl(Box<JsonlReader>),
    Csv(Box<CsvReader>),
}

impl Records {
    /// The dataset file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SHA-256 (hex) of the bytes read so far: the whole file once iteration has ended.
    pub fn sha256(&self) -> String {
        hex::encode(self.hashing().hasher.clone().finalize())
    }

    /// Bytes read from the file so far.
    pub fn bytes_read(&self) -> u64 {
        self.hashing().bytes
    }

    fn hashing(&self) -> &HashingReader<File> {
        match &self.inner {
            Inner::Jsonl(j) => j.reader.get_ref(),
            Inner::Csv(c) => c.reader.get_ref(),
        }
    }

    fn next_record(&mut self) -> Option<Result<Raw, DatasetError>> {
        match &mut self.inner {
            Inner::Jsonl(j) => j.next(&self.path),
            Inner::Csv(c) => c.next(&self.path),
        }
    }
}

impl Iterator for Records {
    type Item = Result<Record, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_record() {
            None => {
                self.done = true;
                None
            }
            Some(Err(e)) => {
                // Past a read error the position is unreliable: stop.
                self.done = true;
                Some(Err(e))
            }
            Some(Ok((line, fields))) => {
                let index = self.index;
                self.index += 1;
                Some(Ok(Record {
                    line,
                    index,
                    fields,
                }))
            }
        }
    }
}

/// A record's line and fields, before it gets its index.
type Raw = (u64, Map<String, Value>);

/// Hashes every byte read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

struct JsonlReader {
    reader: BufReader<HashingReader<File>>,
    buf: Vec<u8>,
    line: u64,
}

impl JsonlReader {
    fn next(&mut self, path: &Path) -> Option<Result<Raw, DatasetError>> {
        loop {
            self.buf.clear();
            let line = self.line + 1;
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => self.line = line,
                Err(source) => {
                    return Some(Err(DatasetError::Read {
                        path: path.to_path_buf(),
                        line,
                        source,
                    }));
                }
            }
            let mut bytes = self.buf.as_slice();
            if line == 1 {
                bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let invalid = |message: String| {
                Some(Err(DatasetError::Invalid {
                    path: path.to_path_buf(),
                    line,
                    message,
                }))
            };
            return match serde_json::from_slice::<Value>(bytes) {
                Ok(Value::Object(fields)) => Some(Ok((line, fields))),
                Ok(other) => invalid(format!(
                    "expected a JSON object, found {}",
                    json_type(&other)
                )),
                Err(e) => invalid(format!("invalid JSON: {}", json_message(&e))),
            };
        }
    }
}

/// serde_json's message with its "line 1" dropped: the line is ours.
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&suffix) {
        Some(msg) => format!("{msg} at column {}", e.column()),
        None => text,
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

struct CsvReader {
    reader: csv::Reader<HashingReader<File>>,
    /// Column names, read on first use (None until then).
    headers: Option<Vec<String>>,
    record: csv::StringRecord,
}

impl CsvReader {
    fn next(&mut self, path: &Path) -> Option<Result<Raw, DatasetError>> {
        if self.headers.is_none() {
            match self.read_headers(path) {
                Ok(h) => self.headers = Some(h),
                Err(e) => return Some(Err(e)),
            }
        }
        let headers = self.headers.as_ref()?;
        match self.reader.read_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                let line = self.record.position().map_or(0, |p| p.line());
                let fields = headers
                    .iter()
                    .zip(self.record.iter())
                    .map(|(k, v)| (k.clone(), Value::String(v.to_string())))
                    .collect();
                Some(Ok((line, fields)))
            }
            Err(e) => Some(Err(csv_error(path, e))),
        }
    }

    fn read_headers(&mut self, path: &Path) -> Result<Vec<String>, DatasetError> {
        let headers = self.reader.headers().map_err(|e| csv_error(path, e))?;
        let mut names: Vec<String> = Vec::with_capacity(headers.len());
        for (i, h) in headers.iter().enumerate() {
            // csv strips a BOM from the header row itself; trim it anyway in
            // case of a file written with one per export.
            let h = h.strip_prefix('\u{feff}').unwrap_or(h).trim().to_string();
            if h.is_empty() {
                return Err(DatasetError::Invalid {
                    path: path.to_path_buf(),
                    line: 1,
                    message: format!("column {} has an empty header", i + 1),
                });
            }
            if names.contains(&h) {
                return Err(DatasetError::Invalid {
                    path: path.to_path_buf(),
                    line: 1,
                    message: format!("duplicate column `{h}` in the header row"),
                });
            }
            names.push(h);
        }
        if names.is_empty() {
            return Err(DatasetError::Invalid {
                path: path.to_path_buf(),
                line: 1,
                message: "no header row".to_string(),
            });
        }
        Ok(names)
    }
}

fn csv_error(path: &Path, e: csv::Error) -> DatasetError {
    let line = e.position().map_or(1, |p| p.line());
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("record has {len} fields, but the header row has {expected_len}")
        }
        csv::ErrorKind::Utf8 { err, .. } => format!("invalid UTF-8 in field {}", err.field() + 1),
        csv::ErrorKind::Io(_) => {
            let csv::ErrorKind::Io(source) = e.into_kind() else {
                unreachable!()
            };
            return DatasetError::Read {
                path: path.to_path_buf(),
                line,
                source,
            };
        }
        _ => e.to_string(),
    };
    DatasetError::Invalid {
        path: path.to_path_buf(),
        line,
        message,
    }
}
