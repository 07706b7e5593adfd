//! MessagePack codec: structs are written as maps with named fields.
//!
//! The two messages sent once per job, [`crate::Job`] and
//! [`crate::JobResult`], also have a fast encoder and decoder each
//! (`Job::encode`/`Job::decode`, `JobResult::encode`/`JobResult::decode`),
//! because `rmp_serde` writes and reads every value through its generic
//! serde plumbing (`deserialize_any` for every map, key and value), which
//! was most of what they cost per item. They speak serde's wire shape, not
//! a second one:
//!
//! - an encoder writes the bytes [`encode`] writes (the same markers, fields
//!   and order; the fields it does not write itself, such as a job's target
//!   and scorers, go through serde), tested byte for byte;
//! - a decoder reads only what [`encode`] writes (its field names are the
//!   serde ones, `FIELDS` next to each type, checked against the derived
//!   `Deserialize`) and hands anything else to serde whole (a key that is not
//!   a string or comes twice, a value of another marker type, trailing
//!   bytes), so both read every input alike: tested by decoding every
//!   one-change variant of full messages both ways.
//!
//! A field added to one of these types must be added to its fast encoder and
//! decoder too; the tests fail until it is (their values list every field).

use serde::{Serialize, de::DeserializeOwned};
use std::collections::BTreeMap;

/// A message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Serialising a value failed (a map key that is not a string, for example).
    #[error("cannot encode message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// The bytes are not a MessagePack encoding of the expected type.
    #[error("cannot decode message: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
}

/// Encodes a value as MessagePack with named fields (`rmp_serde::to_vec_named`).
///
/// ```
/// let bytes = vigil_protocol::encode(&vigil_protocol::TokenUsage { input: 3, output: 4 }).unwrap();
/// assert_eq!(bytes[0] & 0xf0, 0x80, "a fixmap, not an array");
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(rmp_serde::to_vec_named(value)?)
}

/// Encodes a value as MessagePack without field names (a struct is an
/// array of its fields in order): for stored values whose layout a name or
/// version fixes elsewhere, where the names would be most of the bytes.
/// [`decode`] reads it.
///
/// ```
/// let usage = vigil_protocol::TokenUsage { input: 3, output: 4 };
/// let bytes = vigil_protocol::encode_compact(&usage).unwrap();
/// assert_eq!(bytes, [0x92, 3, 4], "an array of two");
/// let read: vigil_protocol::TokenUsage = vigil_protocol::decode(&bytes).unwrap();
/// assert_eq!(read, usage);
/// ```
pub fn encode_compact<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(rmp_serde::to_vec(value)?)
}

/// Decodes a MessagePack value; unknown fields are ignored.
///
/// ```
/// let bytes = vigil_protocol::encode(&vigil_protocol::TokenUsage { input: 3, output: 4 }).unwrap();
/// let usage: vigil_protocol::TokenUsage = vigil_protocol::decode(&bytes).unwrap();
/// assert_eq!(usage.output, 4);
/// ```
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    Ok(rmp_serde::from_slice(bytes)?)
}

/// Decodes `bytes` with `fast` when it reads them, else with serde
/// ([`decode`]): `fast` reads only the MessagePack [`encode`] writes (maps
/// with string keys, each value of the marker type serde writes for it) and
/// gives `None` for anything else (a duplicate or non-string key, a value of
/// another type, trailing bytes), which serde then reads, accepts or rejects
/// exactly as before. So the fast path decides nothing: where it gives a
/// value, that value is the one serde gives (tested field by field).
pub(crate) fn decode_fast<T: DeserializeOwned>(
    bytes: &[u8],
    fast: impl FnOnce(&mut Reader<'_>) -> Option<T>,
) -> Result<T, CodecError> {
    let mut reader = Reader {
        rest: bytes,
        depth: 0,
    };
    match fast(&mut reader) {
        Some(value) if reader.rest.is_empty() => Ok(value),
        _ => decode(bytes),
    }
}

/// A cursor over MessagePack bytes for the fast decoders of the hot
/// messages ([`crate::Job`], [`crate::JobResult`]): each read gives `None`
/// when the next value is not of the expected marker type.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
    depth: u32,
}

/// Nesting beyond which a value is left to serde (its own limit is 1024).
const FAST_DEPTH: u32 = 64;

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(b)
    }

    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(head)
    }

    fn be<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// The length of a map.
    pub(crate) fn map_len(&mut self) -> Option<usize> {
        match self.byte()? {
            b @ 0x80..=0x8f => Some(usize::from(b & 0x0f)),
            0xde => Some(usize::from(u16::from_be_bytes(self.be()?))),
            0xdf => usize::try_from(u32::from_be_bytes(self.be()?)).ok(),
            _ => None,
        }
    }

    /// The length of an array.
    pub(crate) fn array_len(&mut self) -> Option<usize> {
        match self.byte()? {
            b @ 0x90..=0x9f => Some(usize::from(b & 0x0f)),
            0xdc => Some(usize::from(u16::from_be_bytes(self.be()?))),
            0xdd => usize::try_from(u32::from_be_bytes(self.be()?)).ok(),
            _ => None,
        }
    }

    /// The bytes of a string, not checked to be UTF-8.
    fn str_bytes(&mut self) -> Option<&'a [u8]> {
        let len = match self.byte()? {
            b @ 0xa0..=0xbf => usize::from(b & 0x1f),
            0xd9 => usize::from(self.byte()?),
            0xda => usize::from(u16::from_be_bytes(self.be()?)),
            0xdb => usize::try_from(u32::from_be_bytes(self.be()?)).ok()?,
            _ => return None,
        };
        self.take(len)
    }

    /// A string (valid UTF-8).
    pub(crate) fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.str_bytes()?).ok()
    }

    /// An owned string.
    pub(crate) fn string(&mut self) -> Option<String> {
        self.str().map(str::to_owned)
    }

    /// Whether the next value is nil (consumed if so).
    pub(crate) fn nil(&mut self) -> bool {
        let nil = self.peek() == Some(0xc0);
        if nil {
            self.rest = &self.rest[1..];
        }
        nil
    }

    /// `None` for nil, else a string.
    pub(crate) fn opt_string(&mut self) -> Option<Option<String>> {
        if self.nil() {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// An unsigned integer (as serde writes a `u64`: a positive fixint or
    /// `uint 8/16/32/64`).
    pub(crate) fn u64(&mut self) -> Option<u64> {
        match self.byte()? {
            b @ 0x00..=0x7f => Some(u64::from(b)),
            0xcc => self.byte().map(u64::from),
            0xcd => Some(u64::from(u16::from_be_bytes(self.be()?))),
            0xce => Some(u64::from(u32::from_be_bytes(self.be()?))),
            0xcf => Some(u64::from_be_bytes(self.be()?)),
            _ => None,
        }
    }

    /// A `u32` (as [`Self::u64`], in range).
    pub(crate) fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.u64()?).ok()
    }

    /// `None` for nil, else an unsigned integer.
    pub(crate) fn opt_u64(&mut self) -> Option<Option<u64>> {
        if self.nil() {
            return Some(None);
        }
        self.u64().map(Some)
    }

    /// A float (`float 64`, or `float 32` widened).
    pub(crate) fn f64(&mut self) -> Option<f64> {
        match self.byte()? {
            0xcb => Some(f64::from_be_bytes(self.be()?)),
            0xca => Some(f64::from(f32::from_be_bytes(self.be()?))),
            _ => None,
        }
    }

    /// A boolean.
    pub(crate) fn bool(&mut self) -> Option<bool> {
        match self.byte()? {
            0xc2 => Some(false),
            0xc3 => Some(true),
            _ => None,
        }
    }

    /// A map of strings to strings (a later duplicate key wins, as serde's
    /// `BTreeMap` reading has it).
    pub(crate) fn string_map(&mut self) -> Option<BTreeMap<String, String>> {
        let mut map = BTreeMap::new();
        for _ in 0..self.map_len()? {
            let key = self.string()?;
            map.insert(key, self.string()?);
        }
        Some(map)
    }

    /// Skips one value of any type.
    pub(crate) fn skip(&mut self) -> Option<()> {
        self.depth += 1;
        if self.depth > FAST_DEPTH {
            return None;
        }
        let b = self.byte()?;
        let skip = match b {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 0,
            0x80..=0x8f => return self.skip_values(2 * usize::from(b & 0x0f)),
            0x90..=0x9f => return self.skip_values(usize::from(b & 0x0f)),
            0xa0..=0xbf => usize::from(b & 0x1f),
            0xcc | 0xd0 => 1,
            0xcd | 0xd1 | 0xd4 => 2,
            0xd5 => 3,
            0xca | 0xce | 0xd2 => 4,
            0xd6 => 5,
            0xcb | 0xcf | 0xd3 => 8,
            0xd7 => 9,
            0xd8 => 17,
            0xc4 | 0xd9 => usize::from(self.byte()?),
            0xc5 | 0xda => usize::from(u16::from_be_bytes(self.be()?)),
            0xc6 | 0xdb => usize::try_from(u32::from_be_bytes(self.be()?)).ok()?,
            0xc7 => usize::from(self.byte()?) + 1,
            0xc8 => usize::from(u16::from_be_bytes(self.be()?)) + 1,
            0xc9 => usize::try_from(u32::from_be_bytes(self.be()?)).ok()? + 1,
            0xdc => {
                let n = usize::from(u16::from_be_bytes(self.be()?));
                return self.skip_values(n);
            }
            0xdd => {
                let n = usize::try_from(u32::from_be_bytes(self.be()?)).ok()?;
                return self.skip_values(n);
            }
            0xde => {
                let n = usize::from(u16::from_be_bytes(self.be()?));
                return self.skip_values(n.checked_mul(2)?);
            }
            0xdf => {
                let n = usize::try_from(u32::from_be_bytes(self.be()?)).ok()?;
                return self.skip_values(n.checked_mul(2)?);
            }
            0xc1 => return None,
        };
        self.take(skip)?;
        self.depth -= 1;
        Some(())
    }

    fn skip_values(&mut self, n: usize) -> Option<()> {
        for _ in 0..n {
            self.skip()?;
        }
        self.depth -= 1;
        Some(())
    }

    /// One value read with serde (for a field the fast path leaves to it).
    pub(crate) fn serde<T: DeserializeOwned>(&mut self) -> Option<T> {
        let start = self.rest;
        self.skip()?;
        let len = start.len() - self.rest.len();
        rmp_serde::from_slice(&start[..len]).ok()
    }

    /// An array of values read by `read`.
    pub(crate) fn array<T>(&mut self, read: impl Fn(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        let n = self.array_len()?;
        // Each element takes at least one byte.
        let mut out = Vec::with_capacity(n.min(self.rest.len()));
        for _ in 0..n {
            out.push(read(self)?);
        }
        Some(out)
    }

    /// Reads a map with string keys, calling `field` with each key's
    /// position in `names` (a key not there has its value skipped); `None`
    /// for a duplicate key, a key that is not a string, or `field` giving
    /// `None`. `names` has at most 64 entries. Keys are matched as bytes, as
    /// serde matches a key that is not UTF-8 (no name matches it, so it is
    /// skipped as unknown); the next name in order is tried first, since
    /// [`encode`] writes them in order.
    pub(crate) fn fields(
        &mut self,
        names: &[&str],
        mut field: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<()> {
        let mut seen = 0u64;
        let mut next = 0;
        for _ in 0..self.map_len()? {
            let key = self.str_bytes()?;
            let position = if names.get(next).is_some_and(|name| name.as_bytes() == key) {
                Some(next)
            } else {
                names.iter().position(|name| name.as_bytes() == key)
            };
            if let Some(i) = position {
                next = i + 1;
            }
            match position {
                Some(i) => {
                    if seen & (1 << i) != 0 {
                        return None;
                    }
                    seen |= 1 << i;
                    field(self, i)?;
                }
                None => self.skip()?,
            }
        }
        Some(())
    }
}

/// A MessagePack writer for the fast encoders of the hot messages
/// ([`crate::Job`], [`crate::JobResult`]): each method writes exactly what
/// `rmp_serde` writes for the value (the shortest marker of each family, as
/// `rmp::encode` chooses it), so the bytes are serde's (tested).
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(capacity),
        }
    }

    /// The bytes written.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn len_marker(&mut self, len: usize, fix: u8, fix_max: usize, m16: u8, m32: u8) {
        if len <= fix_max {
            self.buf.push(fix | len as u8);
        } else if let Ok(len) = u16::try_from(len) {
            self.buf.push(m16);
            self.buf.extend_from_slice(&len.to_be_bytes());
        } else {
            self.buf.push(m32);
            self.buf.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }

    /// A map's length (a struct's: the fields it writes).
    pub(crate) fn map_len(&mut self, len: usize) {
        self.len_marker(len, 0x80, 15, 0xde, 0xdf);
    }

    /// An array's length.
    pub(crate) fn array_len(&mut self, len: usize) {
        self.len_marker(len, 0x90, 15, 0xdc, 0xdd);
    }

    /// A string (a field name too).
    pub(crate) fn str(&mut self, s: &str) {
        let len = s.len();
        if len < 32 {
            self.buf.push(0xa0 | len as u8);
        } else if let Ok(len) = u8::try_from(len) {
            self.buf.extend_from_slice(&[0xd9, len]);
        } else if let Ok(len) = u16::try_from(len) {
            self.buf.push(0xda);
            self.buf.extend_from_slice(&len.to_be_bytes());
        } else {
            self.buf.push(0xdb);
            self.buf.extend_from_slice(&(len as u32).to_be_bytes());
        }
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// Nil (`None`).
    pub(crate) fn nil(&mut self) {
        self.buf.push(0xc0);
    }

    /// `None` as nil, else the string.
    pub(crate) fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.nil(),
        }
    }

    /// An unsigned integer, in the fewest bytes.
    pub(crate) fn u64(&mut self, n: u64) {
        if n < 128 {
            self.buf.push(n as u8);
        } else if let Ok(n) = u8::try_from(n) {
            self.buf.extend_from_slice(&[0xcc, n]);
        } else if let Ok(n) = u16::try_from(n) {
            self.buf.push(0xcd);
            self.buf.extend_from_slice(&n.to_be_bytes());
        } else if let Ok(n) = u32::try_from(n) {
            self.buf.push(0xce);
            self.buf.extend_from_slice(&n.to_be_bytes());
        } else {
            self.buf.push(0xcf);
            self.buf.extend_from_slice(&n.to_be_bytes());
        }
    }

    /// `None` as nil, else the integer.
    pub(crate) fn opt_u64(&mut self, n: Option<u64>) {
        match n {
            Some(n) => self.u64(n),
            None => self.nil(),
        }
    }

    /// A float (always `float 64`).
    pub(crate) fn f64(&mut self, v: f64) {
        self.buf.push(0xcb);
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// A boolean.
    pub(crate) fn bool(&mut self, v: bool) {
        self.buf.push(if v { 0xc3 } else { 0xc2 });
    }

    /// A map of strings to strings, in key order.
    pub(crate) fn string_map(&mut self, map: &BTreeMap<String, String>) {
        self.map_len(map.len());
        for (k, v) in map {
            self.str(k);
            self.str(v);
        }
    }

    /// An array of values written by `write`.
    pub(crate) fn array<T>(
        &mut self,
        values: &[T],
        mut write: impl FnMut(&mut Self, &T) -> Result<(), CodecError>,
    ) -> Result<(), CodecError> {
        self.array_len(values.len());
        values.iter().try_for_each(|v| write(self, v))
    }

    /// One value written by serde (for a field the fast path leaves to it).
    pub(crate) fn serde<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CodecError> {
        Ok(rmp_serde::encode::write_named(&mut self.buf, value)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;
    use rmpv::Value;
    use std::fmt::Debug;

    /// Every field listed and set at least once (struct literals without
    /// `..Default::default()`: a field added to a type must be added here).
    fn job_result() -> JobResult {
        let item = |index: u64| ItemResult {
            index,
            id: format!("q{index}"),
            error: (index == 1).then(|| ItemError {
                kind: ErrorKind::from("a_later_kind".to_string()),
                message: "m".into(),
            }),
            output: Some("out é".into()),
            scores: vec![
                Score {
                    scorer: "exact".into(),
                    value: 0.5,
                    passed: true,
                    detail: "d".into(),
                    label: Some("l".into()),
                    gold_label: Some("g".into()),
                    bleu: Some(BleuStats {
                        hyp_len: 3,
                        ref_len: 4,
                        correct: vec![1, 2],
                        total: vec![3, 300],
                    }),
                },
                Score::default(),
            ],
            latency_ms: 12.25,
            usage: TokenUsage {
                input: 70_000,
                output: u64::MAX,
            },
            attempts: 2,
            finish_reason: Some("stop".into()),
            response_model: Some("m".repeat(40)),
            cached: true,
            tags: [
                ("lang".to_string(), "en".to_string()),
                ("k".into(), "".into()),
            ]
            .into(),
            trace_id: Some("t".repeat(32)),
            span_id: (index == 1).then(|| "s".repeat(16)),
        };
        JobResult {
            run_id: "r".repeat(300),
            job_index: 1 << 40,
            worker_id: "w".into(),
            delivery: 3,
            items: vec![item(0), item(1)],
            error: Some(ItemError {
                kind: ErrorKind::Malformed,
                message: "x".into(),
            }),
        }
    }

    /// Every field set, as [`job_result`].
    fn job() -> Job {
        let item = |index: u64, prompt: Prompt| Item {
            index,
            id: format!("q{index}"),
            prompt,
            references: [("exact".to_string(), "4".to_string())].into(),
            tags: [("lang".to_string(), "en".to_string())].into(),
            scorer_prompts: [("judge".to_string(), "rubric".to_string())].into(),
            recorded: (index == 1).then(|| Recorded {
                text: Some("t".into()),
                status: 429,
                latency_ms: 1.5,
                usage: Some(TokenUsage {
                    input: 1,
                    output: 2,
                }),
                model: None,
            }),
        };
        Job {
            run_id: "r".into(),
            job_index: 7,
            suite: "s".into(),
            target: TargetSpec {
                name: "t".into(),
                kind: EndpointKind::Completions,
                base_url: "http://h/v1".into(),
                model: "m".into(),
                params: SamplingParams {
                    temperature: Some(0.0),
                    max_tokens: Some(16),
                    stop: vec!["\n".into()],
                    ..Default::default()
                },
                timeout_ms: 30_000,
                max_concurrency: 64,
                max_retries: 1,
                model_path: Some("/m.gguf".into()),
            },
            scorers: vec![ScorerSpec {
                name: "exact".into(),
                threshold: Some(0.5),
                ..Default::default()
            }],
            items: vec![
                item(
                    0,
                    Prompt::Chat(vec![
                        ChatMessage {
                            role: "system".into(),
                            content: "s".into(),
                        },
                        ChatMessage {
                            role: "user".into(),
                            content: "What is 1 + 2?".into(),
                        },
                    ]),
                ),
                item(1, Prompt::Completion("2+2=".into())),
            ],
            deadline_unix_ms: Some(1_700_000_000_000),
            keep_output_chars: 100,
            cache: Some(CachePolicy {
                enabled: true,
                ttl_s: None,
            }),
            samples: 3,
        }
    }

    /// Values of every MessagePack type, put in place of a value.
    fn replacements() -> Vec<Value> {
        vec![
            Value::Nil,
            Value::from(true),
            Value::from(7),
            Value::from(-1),
            Value::from(300),
            Value::from(u64::MAX),
            Value::from(1.5),
            Value::F32(2.5),
            Value::from("s"),
            Value::Binary(b"chat".to_vec()),
            Value::Array(vec![]),
            Value::Map(vec![]),
            Value::Ext(1, vec![0]),
        ]
    }

    /// Every value obtained by one change somewhere in `v`: a value
    /// replaced by one of every type; a map entry removed, repeated, given
    /// an integer key, or an entry added; a map written as an array; an
    /// element added to an array.
    fn mutations(v: &Value) -> Vec<Value> {
        let mut out = replacements();
        match v {
            Value::Map(entries) => {
                for i in 0..entries.len() {
                    let mut e = entries.clone();
                    e.remove(i);
                    out.push(Value::Map(e));
                    let mut e = entries.clone();
                    e.push(entries[i].clone());
                    out.push(Value::Map(e));
                    let mut e = entries.clone();
                    e[i].0 = Value::from(i);
                    out.push(Value::Map(e));
                    for m in mutations(&entries[i].1) {
                        let mut e = entries.clone();
                        e[i].1 = m;
                        out.push(Value::Map(e));
                    }
                }
                let mut e = entries.clone();
                e.push((
                    "added_later".into(),
                    Value::Array(vec![Value::Nil, Value::Map(vec![])]),
                ));
                out.push(Value::Map(e));
                out.push(Value::Array(
                    entries.iter().map(|(_, v)| v.clone()).collect(),
                ));
            }
            Value::Array(items) => {
                for i in 0..items.len() {
                    for m in mutations(&items[i]) {
                        let mut e = items.clone();
                        e[i] = m;
                        out.push(Value::Array(e));
                    }
                }
                let mut e = items.clone();
                e.push(Value::Nil);
                out.push(Value::Array(e));
            }
            _ => {}
        }
        out
    }

    /// The fast decoder reads `value` itself, and whatever it gives for
    /// every mutation of it is what serde gives (both errors, or equal).
    fn check<T: DeserializeOwned + Serialize + PartialEq + Debug>(
        value: &T,
        read: fn(&mut Reader<'_>) -> Option<T>,
        decode_new: fn(&[u8]) -> Result<T, CodecError>,
    ) -> usize {
        let bytes = encode(value).unwrap();
        let mut reader = Reader {
            rest: &bytes,
            depth: 0,
        };
        assert_eq!(
            read(&mut reader).as_ref(),
            Some(value),
            "the fast path reads what encode wrote"
        );
        assert!(reader.rest.is_empty());
        let mut trailing = bytes.clone();
        trailing.push(0xc0);
        let tree: Value = rmpv::decode::read_value(&mut bytes.as_slice()).unwrap();
        let mut inputs = vec![
            trailing,
            bytes[..bytes.len() - 1].to_vec(),
            vec![],
            vec![0xc1],
        ];
        // Each byte in turn made one that is never UTF-8 (in a key: a key
        // serde matches as bytes, so skips as unknown; in a value: an error).
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] = 0xff;
            inputs.push(b);
        }
        for m in mutations(&tree) {
            let mut b = Vec::new();
            rmpv::encode::write_value(&mut b, &m).unwrap();
            inputs.push(b);
        }
        let (mut fast, mut equal) = (0, 0);
        for b in &inputs {
            let mut reader = Reader { rest: b, depth: 0 };
            fast += usize::from(read(&mut reader).is_some() && reader.rest.is_empty());
            match (decode_new(b), decode::<T>(b)) {
                (Ok(new), Ok(old)) => {
                    // Through `Debug`, where a NaN equals a NaN.
                    assert_eq!(
                        format!("{new:?}"),
                        format!("{old:?}"),
                        "{:x?}",
                        &b[..b.len().min(64)]
                    );
                    equal += 1;
                }
                (Err(_), Err(_)) => {}
                (new, old) => panic!("{:x?}: now {new:?}, serde {old:?}", &b[..b.len().min(64)]),
            }
        }
        // Many changes keep a value both read (most replacements are of a
        // type the field does not take); the test would prove little otherwise.
        assert!(
            fast * 8 > inputs.len() && equal * 5 > inputs.len(),
            "{fast} {equal} {}",
            inputs.len()
        );
        inputs.len()
    }

    /// Values of every shape the fast encoders write: each optional field
    /// set and not, lengths across every marker size.
    fn encoder_cases() -> (Vec<JobResult>, Vec<Job>) {
        let mut results = vec![job_result(), JobResult::default()];
        let mut r = job_result();
        r.error = None;
        r.items[0].scores[0].label = None;
        r.items[0].scores[0].bleu = None;
        r.items[1].scores[0].gold_label = None;
        r.items[0].error = None;
        r.items[1].output = None;
        r.items[1].usage.input = 255;
        r.items[1].attempts = u32::MAX;
        r.items[1].latency_ms = -0.0;
        r.run_id = "x".repeat(31);
        r.worker_id = "x".repeat(32);
        results.push(r.clone());
        for (len, n) in [
            (255, 128),
            (256, 65_535),
            (65_536, 65_536),
            (70_000, u64::from(u32::MAX) + 1),
        ] {
            r.run_id = "x".repeat(len);
            r.job_index = n;
            r.delivery = n - 1;
            r.items = (0..len % 20)
                .map(|i| ItemResult {
                    index: i as u64,
                    ..Default::default()
                })
                .collect();
            if let Some(item) = r.items.first_mut() {
                item.tags = (0..len % 17 + 14)
                    .map(|i| (format!("k{i}"), "v".into()))
                    .collect();
            }
            results.push(r.clone());
        }
        let mut jobs = vec![job(), Job::default()];
        let mut j = job();
        j.items[0].scorer_prompts.clear();
        j.items[1].recorded = None;
        j.deadline_unix_ms = None;
        j.cache = None;
        j.keep_output_chars = u32::MAX;
        j.items[0].prompt = Prompt::Chat(
            (0..17)
                .map(|i| ChatMessage {
                    role: "user".into(),
                    content: "c".repeat(i * 20),
                })
                .collect(),
        );
        jobs.push(j.clone());
        j.items = (0..16)
            .map(|i| Item {
                index: i,
                ..Default::default()
            })
            .collect();
        jobs.push(j);
        (results, jobs)
    }

    #[test]
    fn the_fast_encoders_write_serde_bytes() {
        let (results, jobs) = encoder_cases();
        for r in &results {
            let bytes = r.encode().unwrap();
            assert_eq!(bytes, encode(r).unwrap(), "{:?}", r.run_id.len());
            let mut reader = Reader {
                rest: &bytes,
                depth: 0,
            };
            assert_eq!(JobResult::read(&mut reader).as_ref(), Some(r));
        }
        for j in &jobs {
            let bytes = j.encode().unwrap();
            assert_eq!(bytes, encode(j).unwrap());
            let mut reader = Reader {
                rest: &bytes,
                depth: 0,
            };
            assert_eq!(Job::read(&mut reader).as_ref(), Some(j));
        }
    }

    #[test]
    fn job_results_decode_as_serde_decodes_them_whatever_the_change() {
        let n = check(&job_result(), JobResult::read, JobResult::decode);
        assert!(n > 1000, "{n}");
        check(&JobResult::default(), JobResult::read, JobResult::decode);
    }

    #[test]
    fn jobs_decode_as_serde_decodes_them_whatever_the_change() {
        let n = check(&job(), Job::read, Job::decode);
        assert!(n > 1000, "{n}");
        check(&Job::default(), Job::read, Job::decode);
    }

    /// The field names serde's derived `Deserialize` of `T` reads (what it
    /// passes to `deserialize_struct`).
    fn serde_fields<T: DeserializeOwned>() -> &'static [&'static str] {
        use serde::de::{Error, Visitor, value};
        struct Fields;
        impl<'de> serde::Deserializer<'de> for Fields {
            type Error = value::Error;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, value::Error> {
                Err(value::Error::custom("not a struct"))
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, value::Error> {
                Err(value::Error::custom(fields.join(",")))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
                bytes byte_buf option unit unit_struct newtype_struct seq tuple
                tuple_struct map enum identifier ignored_any
            }
        }
        let names = T::deserialize(Fields).err().unwrap().to_string();
        Box::leak(
            names
                .split(',')
                .map(|n| &*Box::leak(n.into()))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        )
    }

    /// A field added to one of these types and not to its fast decoder
    /// would be skipped by it as unknown: the lists must be serde's.
    #[test]
    fn the_fast_decoders_read_every_field_serde_reads() {
        assert_eq!(serde_fields::<Job>(), Job::FIELDS);
        assert_eq!(serde_fields::<Item>(), Item::FIELDS);
        assert_eq!(serde_fields::<ChatMessage>(), ChatMessage::FIELDS);
        assert_eq!(serde_fields::<JobResult>(), JobResult::FIELDS);
        assert_eq!(serde_fields::<ItemResult>(), ItemResult::FIELDS);
        assert_eq!(serde_fields::<ItemError>(), ItemError::FIELDS);
        assert_eq!(serde_fields::<Score>(), Score::FIELDS);
        assert_eq!(serde_fields::<TokenUsage>(), TokenUsage::FIELDS);
    }

    #[test]
    fn the_fast_path_reads_every_length_encoding() {
        // str 8/16/32, array 16, map 16 (more than 15 entries).
        let mut r = job_result();
        r.run_id = "x".repeat(70_000);
        r.items = (0..20)
            .map(|i| ItemResult {
                index: i,
                ..Default::default()
            })
            .collect();
        r.items[0].tags = (0..20).map(|i| (format!("k{i}"), "v".repeat(40))).collect();
        let bytes = encode(&r).unwrap();
        let mut reader = Reader {
            rest: &bytes,
            depth: 0,
        };
        assert_eq!(JobResult::read(&mut reader), Some(r));
    }
}
