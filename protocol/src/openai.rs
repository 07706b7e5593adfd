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

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize};
use std::borrow::Cow;

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

/// A value, or anything else (read as `None`).
#[derive(Deserialize)]
#[serde(untagged)]
enum OrOther<T> {
    Value(T),
    Other(IgnoredAny),
}

impl<T> OrOther<T> {
    fn value(self) -> Option<T> {
        match self {
            OrOther::Value(v) => Some(v),
            OrOther::Other(_) => None,
        }
    }
}

/// `T`, or `None` for null or a value of another shape.
fn lenient<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Ok(OrOther::<T>::deserialize(d)?.value())
}

/// A string (borrowed from the body when it has no escapes), or `None` for
/// null or a value of another type.
fn lenient_str<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Str<'a> {
        Str(#[serde(borrow)] Cow<'a, str>),
        Other(IgnoredAny),
    }
    Ok(match Str::deserialize(d)? {
        Str::Str(s) => Some(s),
        Str::Other(_) => None,
    })
}

/// An unsigned integer, or 0 for anything else.
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(lenient(d)?.unwrap_or(0))
}

/// `choices`: `None` when null; an error when not an array; elements that are
/// not objects read as empty choices.
fn choices<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Choice<'a>>>, D::Error> {
    let elements: Option<Vec<OrOther<Choice<'a>>>> = Option::deserialize(d)?;
    Ok(elements.map(|v| {
        v.into_iter()
            .map(|c| c.value().unwrap_or_default())
            .collect()
    }))
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
