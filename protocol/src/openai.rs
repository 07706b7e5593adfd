//! The OpenAI-compatible HTTP API as vigil speaks it: one set of request and
//! response bodies for the worker's HTTP backend (which writes requests and
//! reads responses), `vigil serve-model` and the stub (which read requests and
//! write responses).
//!
//! Pure serde types. Text fields are `Cow<str>`: a request built from a job
//! borrows the job's prompt, and a response read with `serde_json::from_slice`
//! borrows its text from the body (an escaped string is the one copy).
//!
//! Readers are lenient as every vigil wire reader is: unknown fields are
//! ignored, and a field of the wrong type reads as absent (a `"usage"` of
//! `"n/a"` is no usage, a choice that is not an object is an empty choice)
//! rather than failing the whole body; only what is not JSON at all, or a
//! `choices` that is not an array, fails. (Like every serde struct they also
//! read a JSON array positionally: a reader that wants an object checks the
//! body's first byte.)
//!
//! The lenient fields are read by visitors that never buffer a value: a
//! string is taken as it comes, a number checked in place, anything else
//! skipped (`IgnoredAny`), and a struct-valued field (`message`, `usage`, a
//! content part, a choice) read field by field from its object, remembering
//! what would have failed it (a duplicate field, a `role` that is not a
//! string, an array with more elements than the struct has fields) to read
//! it as absent once its end is reached. They read exactly what serde's
//! `#[serde(untagged)]` "the type, else anything" read, every corner
//! included (tested against that reader), at a fraction of the cost: that
//! reader copied each value into serde's private `Content` before trying it.
//!
//! ```
//! use vigil_protocol::openai::{CompletionRequest, Message, CompletionResponse};
//! let request = CompletionRequest {
//!     model: Some("m".into()),
//!     messages: Some(vec![Message::text("user", "2+2=")]),
//!     max_tokens: Some(5),
//!     ..Default::default()
//! };
//! assert_eq!(
//!     serde_json::to_string(&request).unwrap(),
//!     r#"{"model":"m","messages":[{"role":"user","content":"2+2="}],"max_tokens":5}"#
//! );
//! let body = br#"{"model":"m","choices":[{"message":{"content":"4"},"finish_reason":"stop"}],"usage":{"prompt_tokens":"n/a","completion_tokens":1}}"#;
//! let response: CompletionResponse = serde_json::from_slice(body).unwrap();
//! let first = &response.choices.as_ref().unwrap()[0];
//! assert_eq!(first.message.as_ref().unwrap().content_text().as_deref(), Some("4"));
//! let usage = response.usage.unwrap();
//! assert_eq!((usage.prompt_tokens, usage.completion_tokens), (0, 1));
//! ```

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// `"x"` or `["x", "y"]`, as the API accepts for `prompt` and `stop`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<'a> {
    /// One string.
    One(#[serde(borrow)] Cow<'a, str>),
    /// An array of strings.
    Many(#[serde(borrow)] Vec<Cow<'a, str>>),
}

impl<'a> OneOrMany<'a> {
    /// The strings, in order.
    pub fn into_vec(self) -> Vec<Cow<'a, str>> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A message's `content`: a string, or an array of parts (of which only the
/// text parts are read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content<'a> {
    /// Plain text.
    Text(#[serde(borrow)] Cow<'a, str>),
    /// Typed parts (`{"type": "text", "text": "..."}`, images, ...).
    Parts(#[serde(borrow)] Vec<ContentPart<'a>>),
}

impl Content<'_> {
    /// The text: the string, or the text parts joined with `sep`; `None` for
    /// an array without a text part.
    pub fn joined(&self, sep: &str) -> Option<Cow<'_, str>> {
        match self {
            Content::Text(t) => Some(Cow::Borrowed(t)),
            Content::Parts(parts) => {
                let texts: Vec<&str> = parts.iter().filter_map(|p| p.text.as_deref()).collect();
                (!texts.is_empty()).then(|| Cow::Owned(texts.join(sep)))
            }
        }
    }
}

/// One part of an array `content`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContentPart<'a> {
    /// The part's text (`None` for a part that is not text).
    #[serde(
        default,
        borrow,
        deserialize_with = "lenient_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub text: Option<Cow<'a, str>>,
}

/// A chat message, in a request's `messages` or a response's `choices`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Message<'a> {
    /// `system`, `user`, `assistant`, ... (empty when absent).
    #[serde(default, borrow)]
    pub role: Cow<'a, str>,
    /// The content; `None` when absent, null or of another shape.
    #[serde(
        default,
        borrow,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub content: Option<Content<'a>>,
}

impl<'a> Message<'a> {
    /// A message with plain-text content.
    pub fn text(role: impl Into<Cow<'a, str>>, content: impl Into<Cow<'a, str>>) -> Self {
        Message {
            role: role.into(),
            content: Some(Content::Text(content.into())),
        }
    }

    /// The text of the content: the string, or its text parts concatenated
    /// (as a response's content is read).
    pub fn content_text(&self) -> Option<Cow<'_, str>> {
        self.content.as_ref()?.joined("")
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send a usage chunk before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// The body of `POST /v1/chat/completions` (with `messages`) and of `POST
/// /v1/completions` (with `prompt`): the two share every sampling field, so
/// one type serves both; a server checks that its endpoint's input is there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest<'a> {
    /// The model name.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub model: Option<Cow<'a, str>>,
    /// The conversation (chat endpoint).
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message<'a>>>,
    /// The prompt (completions endpoint).
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<OneOrMany<'a>>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Most tokens generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Most tokens generated (the newer name; wins over `max_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Stop sequences.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub stop: Option<OneOrMany<'a>>,
    /// Answer with server-sent events.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// Streaming options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
}

impl CompletionRequest<'_> {
    /// The token limit asked: `max_completion_tokens`, else `max_tokens`.
    pub fn token_limit(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }
}

/// Token counts of a response (a count of another type reads as 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub prompt_tokens: u64,
    /// Tokens generated.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub completion_tokens: u64,
    /// Their sum.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub total_tokens: u64,
}

impl Usage {
    /// The usage of `prompt_tokens` in and `completion_tokens` out.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// One choice of a response: `message` on the chat endpoint, `text` on the
/// completions endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Choice<'a> {
    /// The choice's position.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub index: u64,
    /// The answer (chat).
    #[serde(
        default,
        borrow,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub message: Option<Message<'a>>,
    /// The answer (completions).
    #[serde(
        default,
        borrow,
        deserialize_with = "lenient_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub text: Option<Cow<'a, str>>,
    /// Why generation stopped (`stop`, `length`, ...).
    #[serde(default, borrow, deserialize_with = "lenient_str")]
    pub finish_reason: Option<Cow<'a, str>>,
}

/// A `chat.completion` or `text_completion` response body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionResponse<'a> {
    /// The response id.
    #[serde(default, borrow, deserialize_with = "lenient_str")]
    pub id: Option<Cow<'a, str>>,
    /// `chat.completion` or `text_completion`.
    #[serde(default, borrow, deserialize_with = "lenient_str")]
    pub object: Option<Cow<'a, str>>,
    /// Unix seconds.
    #[serde(default, deserialize_with = "lenient")]
    pub created: Option<u64>,
    /// The model that answered.
    #[serde(default, borrow, deserialize_with = "lenient_str")]
    pub model: Option<Cow<'a, str>>,
    /// The choices; `None` when absent or null. A choice that is not an
    /// object reads as an empty one.
    #[serde(default, borrow, deserialize_with = "choices")]
    pub choices: Option<Vec<Choice<'a>>>,
    /// Token counts; `None` when absent or not an object.
    #[serde(default, deserialize_with = "lenient")]
    pub usage: Option<Usage>,
}

/// The body of an error answer: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse<'a> {
    /// What went wrong.
    #[serde(borrow)]
    pub error: ErrorDetail<'a>,
}

/// The `error` object of an [`ErrorResponse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail<'a> {
    /// A human-readable message.
    #[serde(borrow)]
    pub message: Cow<'a, str>,
    /// `invalid_request_error`, `server_error`, `rate_limit_error`, ...
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// The parameter at fault (always null here).
    #[serde(default)]
    pub param: Option<String>,
    /// A machine-readable code (always null here).
    #[serde(default)]
    pub code: Option<String>,
}

impl<'a> ErrorResponse<'a> {
    /// An error of type `kind` saying `message`.
    pub fn new(kind: impl Into<Cow<'a, str>>, message: impl Into<Cow<'a, str>>) -> Self {
        ErrorResponse {
            error: ErrorDetail {
                message: message.into(),
                kind: kind.into(),
                param: None,
                code: None,
            },
        }
    }
}

// The lenient readers: visitors over `deserialize_any` that never buffer a
// value (see the module documentation). Each gives what `T`, else
// `IgnoredAny`, read through `#[serde(untagged)]` gave, without serde's
// private `Content` copy of the value that untagged reading makes first.

/// What a lenient reader takes of each type of value; every other type is
/// skipped (a string taken as it comes is the only copy: none when the body
/// has no escapes).
trait Shape<'de>: Sized {
    /// From a string.
    fn from_str(_: Cow<'de, str>) -> Option<Self> {
        None
    }
    /// From a non-negative integer.
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    /// From an object.
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
        IgnoredAny.visit_map(map).map(|_| None)
    }
    /// From an array.
    fn from_seq<A: SeqAccess<'de>>(seq: A) -> Result<Option<Self>, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| None)
    }
}

/// `T`, or `None` for null or a value of another shape.
fn lenient<'de, D: Deserializer<'de>, T: Shape<'de>>(d: D) -> Result<Option<T>, D::Error> {
    d.deserialize_any(OrNone(PhantomData))
}

/// A string (borrowed from the body when it has no escapes), or `None` for
/// null or a value of another type.
fn lenient_str<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    lenient::<D, Cow<'a, str>>(d)
}

/// An unsigned integer, or 0 for anything else.
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(lenient(d)?.unwrap_or(0))
}

/// `choices`: `None` when null; an error when not an array; elements that are
/// not objects read as empty choices.
fn choices<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Choice<'a>>>, D::Error> {
    /// A choice, or an empty one for anything else.
    struct Element<'a>(Choice<'a>);
    impl<'de: 'a, 'a> Deserialize<'de> for Element<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            Ok(Element(lenient(d)?.unwrap_or_default()))
        }
    }
    let elements: Option<Vec<Element<'a>>> = Option::deserialize(d)?;
    Ok(elements.map(|v| v.into_iter().map(|Element(c)| c).collect()))
}

/// The visitor of [`lenient`].
struct OrNone<T>(PhantomData<T>);

impl<'de, T: Shape<'de>> Visitor<'de> for OrNone<T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Option<T>, E> {
        Ok(T::from_str(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Option<T>, E> {
        Ok(T::from_str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Option<T>, E> {
        Ok(T::from_str(Cow::Owned(s)))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Option<T>, E> {
        Ok(T::from_u64(n))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Option<T>, E> {
        Ok(u64::try_from(n).ok().and_then(T::from_u64))
    }
    fn visit_u128<E: de::Error>(self, n: u128) -> Result<Option<T>, E> {
        Ok(u64::try_from(n).ok().and_then(T::from_u64))
    }
    fn visit_i128<E: de::Error>(self, n: i128) -> Result<Option<T>, E> {
        Ok(u64::try_from(n).ok().and_then(T::from_u64))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<T>, A::Error> {
        T::from_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<T>, A::Error> {
        T::from_seq(seq)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Option<T>, A::Error> {
        IgnoredAny.visit_enum(data).map(|_| None)
    }
}

impl<'de> Shape<'de> for u64 {
    fn from_u64(n: u64) -> Option<Self> {
        Some(n)
    }
}

impl<'de: 'a, 'a> Shape<'de> for Cow<'a, str> {
    fn from_str(s: Cow<'de, str>) -> Option<Self> {
        Some(s)
    }
}

impl<'de: 'a, 'a> Shape<'de> for Content<'a> {
    fn from_str(s: Cow<'de, str>) -> Option<Self> {
        Some(Content::Text(s))
    }
    /// Parts; `None` if any element is not a part (as the untagged enum
    /// read it: the whole array failed).
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
        let mut valid = true;
        while let Some(part) = seq.next_element_seed(LenientSeed::<ContentPart<'a>>(PhantomData))? {
            match part {
                Some(part) if valid => parts.push(part),
                _ => valid = false,
            }
        }
        Ok(valid.then_some(Content::Parts(parts)))
    }
}

/// [`lenient`] as a seed, for an element of an array.
struct LenientSeed<T>(PhantomData<T>);

impl<'de, T: Shape<'de>> DeserializeSeed<'de> for LenientSeed<T> {
    type Value = Option<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        lenient(d)
    }
}

/// A struct read leniently, as its derived `Deserialize` reads it (fields by
/// name from an object, or by position from an array) but without failing
/// halfway: each field is read by a reader that cannot fail, and what would
/// have failed the derived reader (a duplicate field, a field of a type it
/// does not take, more array elements than fields) makes the whole struct
/// `None` once the value has been read to its end.
trait Lenient<'de>: Default {
    /// The field names, in declaration order (at most 64).
    const FIELDS: &'static [&'static str];
    /// Reads field `i` from `d`; `Ok(false)` when the value would have failed
    /// the derived reader.
    fn field<D: Deserializer<'de>>(&mut self, i: usize, d: D) -> Result<bool, D::Error>;
}

impl<'de, T: Lenient<'de>> Shape<'de> for T {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let mut value = T::default();
        let mut seen = 0u64;
        let mut valid = true;
        while let Some(key) = map.next_key_seed(KeySeed(T::FIELDS))? {
            match key {
                Some(i) if seen & (1 << i) == 0 => {
                    seen |= 1 << i;
                    valid &= map.next_value_seed(FieldSeed(&mut value, i))?;
                }
                Some(_) => {
                    // A duplicate field.
                    valid = false;
                    map.next_value::<IgnoredAny>()?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(valid.then_some(value))
    }

    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        let mut value = T::default();
        let mut valid = true;
        for i in 0..T::FIELDS.len() {
            match seq.next_element_seed(FieldSeed(&mut value, i))? {
                Some(ok) => valid &= ok,
                // The fields not given keep their defaults.
                None => return Ok(valid.then_some(value)),
            }
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {
            // More elements than fields.
            valid = false;
        }
        Ok(valid.then_some(value))
    }
}

/// Field `.1` of the struct `.0`, as a seed.
struct FieldSeed<'s, T>(&'s mut T, usize);

impl<'de, T: Lenient<'de>> DeserializeSeed<'de> for FieldSeed<'_, T> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        self.0.field(self.1, d)
    }
}

/// A key: the position of the field of `.0` it names, `None` for another.
struct KeySeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|name| *name == key))
    }
    fn visit_bytes<E: de::Error>(self, key: &[u8]) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|name| name.as_bytes() == key))
    }
    fn visit_u64<E: de::Error>(self, index: u64) -> Result<Option<usize>, E> {
        Ok(usize::try_from(index).ok().filter(|i| *i < self.0.len()))
    }
}

impl<'de> Lenient<'de> for Usage {
    const FIELDS: &'static [&'static str] = &["prompt_tokens", "completion_tokens", "total_tokens"];
    fn field<D: Deserializer<'de>>(&mut self, i: usize, d: D) -> Result<bool, D::Error> {
        let n = lenient_u64(d)?;
        match i {
            0 => self.prompt_tokens = n,
            1 => self.completion_tokens = n,
            _ => self.total_tokens = n,
        }
        Ok(true)
    }
}

impl<'de: 'a, 'a> Lenient<'de> for ContentPart<'a> {
    const FIELDS: &'static [&'static str] = &["text"];
    fn field<D: Deserializer<'de>>(&mut self, _: usize, d: D) -> Result<bool, D::Error> {
        self.text = lenient_str(d)?;
        Ok(true)
    }
}

impl<'de: 'a, 'a> Lenient<'de> for Message<'a> {
    const FIELDS: &'static [&'static str] = &["role", "content"];
    fn field<D: Deserializer<'de>>(&mut self, i: usize, d: D) -> Result<bool, D::Error> {
        if i == 0 {
            // `role` is not lenient: anything but a string fails the message.
            let Some(role) = lenient_str(d)? else {
                return Ok(false);
            };
            self.role = role;
        } else {
            self.content = lenient(d)?;
        }
        Ok(true)
    }
}

impl<'de: 'a, 'a> Lenient<'de> for Choice<'a> {
    const FIELDS: &'static [&'static str] = &["index", "message", "text", "finish_reason"];
    fn field<D: Deserializer<'de>>(&mut self, i: usize, d: D) -> Result<bool, D::Error> {
        match i {
            0 => self.index = lenient_u64(d)?,
            1 => self.message = lenient(d)?,
            2 => self.text = lenient_str(d)?,
            _ => self.finish_reason = lenient_str(d)?,
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_borrows_from_the_body() {
        let body = br#"{"choices":[{"message":{"content":"four"}}],"model":"m"}"#;
        let r: CompletionResponse = serde_json::from_slice(body).unwrap();
        let content = r.choices.unwrap()[0].message.clone().unwrap().content;
        assert!(matches!(
            content,
            Some(Content::Text(Cow::Borrowed("four")))
        ));
        assert!(matches!(r.model, Some(Cow::Borrowed("m"))));
    }

    #[test]
    fn wrong_types_read_as_absent() {
        let body = br#"{"model":3,"choices":[1,{"message":{"content":5},"finish_reason":[]}],"usage":"x"}"#;
        let r: CompletionResponse = serde_json::from_slice(body).unwrap();
        assert_eq!(r.model, None);
        assert_eq!(r.usage, None);
        let choices = r.choices.unwrap();
        assert_eq!(choices[0], Choice::default());
        assert_eq!(choices[1].message.as_ref().unwrap().content, None);
        assert_eq!(choices[1].finish_reason, None);
        let null: CompletionResponse = serde_json::from_slice(br#"{"choices":null}"#).unwrap();
        assert_eq!(null.choices, None);
        assert!(serde_json::from_slice::<CompletionResponse>(br#"{"choices":3}"#).is_err());
        assert!(serde_json::from_slice::<CompletionResponse>(b"\"x\"").is_err());
    }

    /// The readers as they were before they stopped buffering
    /// (`#[serde(untagged)]` over serde's `Content`): the reference the new
    /// ones are compared against, value for value.
    #[allow(dead_code)] // The fields are compared through `Debug`.
    mod untagged {
        use serde::Deserialize;
        use serde::de::{Deserializer, IgnoredAny};
        use std::borrow::Cow;

        #[derive(Debug, Deserialize)]
        #[serde(untagged)]
        pub enum Content<'a> {
            Text(#[serde(borrow)] Cow<'a, str>),
            Parts(#[serde(borrow)] Vec<ContentPart<'a>>),
        }
        #[derive(Debug, Default, Deserialize)]
        pub struct ContentPart<'a> {
            #[serde(default, borrow, deserialize_with = "lenient_str")]
            pub text: Option<Cow<'a, str>>,
        }
        #[derive(Debug, Default, Deserialize)]
        pub struct Message<'a> {
            #[serde(default, borrow)]
            pub role: Cow<'a, str>,
            #[serde(default, borrow, deserialize_with = "lenient")]
            pub content: Option<Content<'a>>,
        }
        #[derive(Debug, Default, Deserialize)]
        pub struct Usage {
            #[serde(default, deserialize_with = "lenient_u64")]
            pub prompt_tokens: u64,
            #[serde(default, deserialize_with = "lenient_u64")]
            pub completion_tokens: u64,
            #[serde(default, deserialize_with = "lenient_u64")]
            pub total_tokens: u64,
        }
        #[derive(Debug, Default, Deserialize)]
        pub struct Choice<'a> {
            #[serde(default, deserialize_with = "lenient_u64")]
            pub index: u64,
            #[serde(default, borrow, deserialize_with = "lenient")]
            pub message: Option<Message<'a>>,
            #[serde(default, borrow, deserialize_with = "lenient_str")]
            pub text: Option<Cow<'a, str>>,
            #[serde(default, borrow, deserialize_with = "lenient_str")]
            pub finish_reason: Option<Cow<'a, str>>,
        }
        #[derive(Debug, Default, Deserialize)]
        pub struct CompletionResponse<'a> {
            #[serde(default, borrow, deserialize_with = "lenient_str")]
            pub id: Option<Cow<'a, str>>,
            #[serde(default, borrow, deserialize_with = "lenient_str")]
            pub object: Option<Cow<'a, str>>,
            #[serde(default, deserialize_with = "lenient")]
            pub created: Option<u64>,
            #[serde(default, borrow, deserialize_with = "lenient_str")]
            pub model: Option<Cow<'a, str>>,
            #[serde(default, borrow, deserialize_with = "choices")]
            pub choices: Option<Vec<Choice<'a>>>,
            #[serde(default, deserialize_with = "lenient")]
            pub usage: Option<Usage>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OrOther<T> {
            Value(T),
            Other(IgnoredAny),
        }
        fn lenient<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
            d: D,
        ) -> Result<Option<T>, D::Error> {
            Ok(match OrOther::<T>::deserialize(d)? {
                OrOther::Value(v) => Some(v),
                OrOther::Other(_) => None,
            })
        }
        fn lenient_str<'de: 'a, 'a, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Cow<'a, str>>, D::Error> {
            lenient::<D, Cow<'a, str>>(d)
        }
        fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
            Ok(lenient(d)?.unwrap_or(0))
        }
        fn choices<'de: 'a, 'a, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Vec<Choice<'a>>>, D::Error> {
            let elements: Option<Vec<OrOther<Choice<'a>>>> = Option::deserialize(d)?;
            Ok(elements.map(|v| {
                v.into_iter()
                    .map(|c| match c {
                        OrOther::Value(c) => c,
                        OrOther::Other(_) => Choice::default(),
                    })
                    .collect()
            }))
        }
    }

    /// Wrong-type, duplicate, positional and escaped values in every lenient
    /// position (top-level strings and counts, `created`, `usage` and its
    /// counts, `choices` and each choice, `message`, `role`, `content` and
    /// its parts).
    const CORNERS: &[&str] = &[
        r#"{"id":"a\"b","object":"o","created":7,"model":"m\u00e9","choices":[{"index":1,"message":{"role":"assistant","content":"x\ny"},"text":"t","finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
        r#"{"id":5,"object":[1,{"a":[]}],"created":"7","model":{"x":"y"},"choices":[],"usage":null}"#,
        r#"{"id":null,"object":true,"created":-1,"model":1.5,"usage":"n/a"}"#,
        r#"{"created":1.0,"usage":5}"#,
        r#"{"created":18446744073709551615,"usage":true}"#,
        r#"{"created":18446744073709551616,"usage":[]}"#,
        r#"{"created":null,"usage":[1,"x",3]}"#,
        r#"{"created":[7],"usage":[1,2,3,4]}"#,
        r#"{"created":{"n":7},"usage":[1]}"#,
        r#"{"usage":{"prompt_tokens":-3,"completion_tokens":2.5,"total_tokens":"9","extra":{"a":1}}}"#,
        r#"{"usage":{"prompt_tokens":1,"prompt_tokens":2}}"#,
        r#"{"usage":{"completion_tokens":1,"other":1,"other":2}}"#,
        r#"{"usage":{"prompt_tokens":{"a":[1,2]},"completion_tokens":[null],"total_tokens":null}}"#,
        r#"{"choices":null}"#,
        r#"{"choices":3}"#,
        r#"{"choices":"x"}"#,
        r#"{"choices":{"message":{"content":"x"}}}"#,
        r#"{"choices":true}"#,
        r#"{"choices":[1,null,"x",true,2.5,[],{}]}"#,
        r#"{"choices":[[0,{"content":"a"},"t","stop"]]}"#,
        r#"{"choices":[[0,null,null,null,5]]}"#,
        r#"{"choices":[[-1,["user","c"]]]}"#,
        r#"{"choices":[{"index":0,"index":1,"message":{"content":"a"}}]}"#,
        r#"{"choices":[{"index":"0","message":"hi","text":5,"finish_reason":{"a":1}}]}"#,
        r#"{"choices":[{"message":null,"text":null,"finish_reason":null}]}"#,
        r#"{"choices":[{"message":5}, {"message":true}, {"message":[]}, {"message":2.5}]}"#,
        r#"{"choices":[{"message":{"role":5,"content":"a"}}]}"#,
        r#"{"choices":[{"message":{"role":null,"content":"a"}}]}"#,
        r#"{"choices":[{"message":{"role":["x"],"content":"a"}}]}"#,
        r#"{"choices":[{"message":{"role":"a\tb","content":"a"}}]}"#,
        r#"{"choices":[{"message":{"role":"a","role":"b","content":"a"}}]}"#,
        r#"{"choices":[{"message":{"content":"a","content":"b"}}]}"#,
        r#"{"choices":[{"message":{"content":"a","extra":1,"extra":2}}]}"#,
        r#"{"choices":[{"message":["assistant","hi"]}]}"#,
        r#"{"choices":[{"message":["assistant","hi",1]}]}"#,
        r#"{"choices":[{"message":[5,"hi"]}]}"#,
        r#"{"choices":[{"message":[]}]}"#,
        r#"{"choices":[{"message":{"content":null}},{"message":{"content":5}},{"message":{"content":true}},{"message":{"content":{"text":"x"}}}]}"#,
        r#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"image"},{"text":"b\"c"}]}}]}"#,
        r#"{"choices":[{"message":{"content":[{"text":"a"},"b"]}}]}"#,
        r#"{"choices":[{"message":{"content":[{"text":"a"},null]}}]}"#,
        r#"{"choices":[{"message":{"content":[{"text":"a"},5]}}]}"#,
        r#"{"choices":[{"message":{"content":[{"text":"a","text":"b"}]}}]}"#,
        r#"{"choices":[{"message":{"content":[["x"],[],[5]]}}]}"#,
        r#"{"choices":[{"message":{"content":[["x","y"]]}}]}"#,
        r#"{"choices":[{"message":{"content":[{"text":5},{"text":null},{"text":["a"]},{"text":{"a":"b"}}]}}]}"#,
        r#"{"choices":[{"message":{"content":[]}}]}"#,
        r#"{"choices":[{"message":{"content":"\ud83d\ude00 \u0041"}}]}"#,
        r#"{"\u0063hoices":[{"m\u0065ssage":{"\u0072ole":5}}]}"#,
        r#"{"model":"a","model":"b"}"#,
        r#"{"choices":[],"choices":[]}"#,
        r#"[null,null,null,"m",[{"message":{"content":"x"}}],[1,2,3]]"#,
        r#"{"choices":[{"message":{"content":"x"}}]} trailing"#,
        r#"{"choices":[{"message":{"content":"x"}}]"#,
        r#"{"choices":[{"message":{"content":[1,}]}]}"#,
        r#""x""#,
        "not json",
        "",
    ];

    #[test]
    fn lenient_readers_read_what_the_untagged_readers_read() {
        for body in CORNERS {
            let new = serde_json::from_str::<CompletionResponse>(body);
            let old = serde_json::from_str::<untagged::CompletionResponse>(body);
            match (new, old) {
                (Ok(new), Ok(old)) => {
                    assert_eq!(format!("{new:?}"), format!("{old:?}"), "body {body}")
                }
                (Err(_), Err(_)) => {}
                (new, old) => panic!("body {body}: now {new:?}, before {old:?}"),
            }
        }
    }

    #[test]
    fn wrong_types_of_every_lenient_field_read_as_absent() {
        for wrong in [
            "5",
            "-1",
            "2.5",
            "true",
            "null",
            "[]",
            r#"["x"]"#,
            "{}",
            r#"{"a":"b"}"#,
        ] {
            let body = format!(
                r#"{{"id":{wrong},"model":{wrong},"created":{wrong},"usage":{{"prompt_tokens":{wrong},"completion_tokens":2}},"choices":[{{"index":{wrong},"text":{wrong},"finish_reason":{wrong},"message":{{"role":"r","content":{wrong}}}}}]}}"#
            );
            let r: CompletionResponse = serde_json::from_str(&body).unwrap();
            assert_eq!((r.id, r.model), (None, None), "{wrong}");
            let created = (wrong == "5").then_some(5);
            assert_eq!(r.created, created, "{wrong}");
            let usage = r.usage.unwrap();
            assert_eq!(usage.prompt_tokens, if wrong == "5" { 5 } else { 0 });
            assert_eq!(usage.completion_tokens, 2);
            let choice = &r.choices.unwrap()[0];
            assert_eq!(choice.index, if wrong == "5" { 5 } else { 0 });
            assert_eq!((&choice.text, &choice.finish_reason), (&None, &None));
            let message = choice.message.as_ref().unwrap();
            assert_eq!(message.role, "r");
            // An array of parts is content; anything else of another type is not.
            match wrong {
                "[]" => assert_eq!(message.content, Some(Content::Parts(vec![]))),
                _ => assert_eq!(message.content, None, "{wrong}"),
            }
        }
        for wrong in [
            "5",
            "\"x\"",
            "true",
            "null",
            "[1,2,3,4]",
            r#"{"prompt_tokens":1,"prompt_tokens":2}"#,
        ] {
            let body = format!(r#"{{"usage":{wrong}}}"#);
            let r: CompletionResponse = serde_json::from_str(&body).unwrap();
            assert_eq!(r.usage, None, "{wrong}");
        }
        for wrong in [
            "5",
            "\"x\"",
            "[5]",
            r#"{"role":5}"#,
            r#"{"role":null}"#,
            r#"{"content":"a","content":"b"}"#,
        ] {
            let body = format!(r#"{{"choices":[{{"message":{wrong},"text":"t"}}]}}"#);
            let r: CompletionResponse = serde_json::from_str(&body).unwrap();
            let choice = &r.choices.unwrap()[0];
            assert_eq!(
                (choice.message.as_ref(), choice.text.as_deref()),
                (None, Some("t")),
                "{wrong}"
            );
        }
        for wrong in ["3", "\"x\"", "true", "{}", "2.5"] {
            let body = format!(r#"{{"choices":{wrong}}}"#);
            assert!(
                serde_json::from_str::<CompletionResponse>(&body).is_err(),
                "{wrong}"
            );
        }
    }

    #[test]
    fn escaped_strings_are_read_unescaped_and_the_rest_borrowed() {
        let body = br#"{"model":"a\"b","choices":[{"message":{"role":"assist\u0061nt","content":"x\ny"},"finish_reason":"stop"}]}"#;
        let r: CompletionResponse = serde_json::from_slice(body).unwrap();
        assert!(matches!(&r.model, Some(Cow::Owned(m)) if m == "a\"b"));
        let choice = &r.choices.as_ref().unwrap()[0];
        assert!(matches!(choice.finish_reason, Some(Cow::Borrowed("stop"))));
        let message = choice.message.as_ref().unwrap();
        assert_eq!(message.role, "assistant");
        assert_eq!(message.content_text().as_deref(), Some("x\ny"));
    }

    #[test]
    fn requests_read_both_endpoints() {
        let chat: CompletionRequest = serde_json::from_slice(
            br#"{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image"},{"type":"text","text":"b"}]}],"max_tokens":3,"max_completion_tokens":2,"stop":"x"}"#,
        )
        .unwrap();
        let m = &chat.messages.as_ref().unwrap()[0];
        assert_eq!(m.content.as_ref().unwrap().joined("\n").unwrap(), "a\nb");
        assert_eq!(chat.token_limit(), Some(2));
        assert_eq!(chat.stop.unwrap().into_vec(), vec!["x"]);
        let completion: CompletionRequest =
            serde_json::from_slice(br#"{"prompt":["p","q"],"stream":true}"#).unwrap();
        assert!(completion.stream && completion.messages.is_none());
        assert_eq!(completion.prompt.unwrap().into_vec(), vec!["p", "q"]);
    }

    #[test]
    fn error_body_has_the_openai_shape() {
        assert_eq!(
            serde_json::to_value(ErrorResponse::new("server_error", "boom")).unwrap(),
            serde_json::json!({"error": {"message": "boom", "type": "server_error", "param": null, "code": null}})
        );
    }
}
