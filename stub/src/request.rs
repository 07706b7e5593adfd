//! What the stub reads from a request body, with the OpenAI types the
//! worker writes ([`vigil_protocol::openai`]).

use crate::answers::tokens;
use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use vigil_protocol::openai::{CompletionRequest, OneOrMany};

/// What a request asked, reduced to what the stub needs.
pub(crate) struct Asked {
    pub(crate) model: Option<String>,
    /// The text answered: the last user message, or the prompt.
    pub(crate) text: String,
    /// Identifies the prompt for `fail_first_attempts`.
    pub(crate) key: u64,
    pub(crate) prompt_tokens: u64,
    pub(crate) max_tokens: Option<u64>,
    pub(crate) stream: bool,
    /// Streamed: whether to send a usage chunk before `[DONE]`.
    pub(crate) include_usage: bool,
}

/// Reads a request body; `field` is the input the endpoint needs.
fn parse_request<'a>(body: &'a [u8], field: &str) -> Result<CompletionRequest<'a>, String> {
    let req: CompletionRequest = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let missing = match field {
        "messages" => req.messages.is_none(),
        _ => req.prompt.is_none(),
    };
    if missing {
        return Err(format!("missing field `{field}`"));
    }
    Ok(req)
}

pub(crate) fn parse_chat(body: &[u8]) -> Result<Asked, String> {
    let req = parse_request(body, "messages")?;
    let messages = req.messages.as_deref().unwrap_or_default();
    if messages.is_empty() {
        return Err("messages must not be empty".to_string());
    }
    let texts: Vec<(&str, Cow<'_, str>)> = messages
        .iter()
        .map(|m| {
            (
                m.role.as_ref(),
                m.content
                    .as_ref()
                    .and_then(|c| c.joined("\n"))
                    .unwrap_or_default(),
            )
        })
        .collect();
    let text = texts
        .iter()
        .rev()
        .find(|(r, _)| *r == "user")
        .or(texts.last())
        .map(|(_, t)| t.to_string())
        .unwrap_or_default();
    let mut h = std::hash::DefaultHasher::new();
    texts.hash(&mut h);
    Ok(Asked {
        model: req.model.as_deref().map(str::to_string),
        text,
        key: h.finish(),
        prompt_tokens: tokens(
            &texts
                .iter()
                .map(|(_, t)| t.as_ref())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        max_tokens: req.token_limit(),
        stream: req.stream,
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
    })
}

pub(crate) fn parse_completion(body: &[u8]) -> Result<Asked, String> {
    let req = parse_request(body, "prompt")?;
    let text = match &req.prompt {
        Some(OneOrMany::One(t)) => t.to_string(),
        Some(OneOrMany::Many(v)) => v.join("\n"),
        None => String::new(),
    };
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    Ok(Asked {
        model: req.model.as_deref().map(str::to_string),
        key: h.finish(),
        prompt_tokens: tokens(&text),
        text,
        max_tokens: req.max_tokens,
        stream: req.stream,
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
    })
}
