//! Renders dataset records into wire [`Item`]s: prompt, references, id, tags.
//!
//! Every template of a suite is compiled once, in [`Renderer::new`]; rendering
//! an item only evaluates them (it runs once per item, at up to millions of
//! items). Undefined variables are errors (strict mode), so a typo in a
//! template fails `vigil validate` instead of sending empty prompts.
//!
//! ```
//! use std::path::Path;
//! use vigil_coordinator::{dataset::Record, render::Renderer, suite::{Suite, SuiteFormat}};
//! let suite = Suite::from_str(r#"
//! name: demo
//! dataset: { path: d.jsonl }
//! prompt: { system: "Be brief.", user: "{{ question }}" }
//! targets: [{ name: t, base_url: "http://127.0.0.1:1/v1", model: m }]
//! scorers: [{ name: exact, kind: exact_match, reference: "{{ answer }}" }]
//! "#, SuiteFormat::Yaml, Path::new("demo.yaml")).unwrap();
//! let renderer = Renderer::new(&suite).unwrap();
//! let fields = serde_json::json!({"question": "2+2?", "answer": 4});
//! let record = Record { line: 1, index: 0, fields: fields.as_object().unwrap().clone() };
//! let item = renderer.render(&record, vigil_protocol::EndpointKind::Chat).unwrap();
//! assert_eq!(item.references["exact"], "4");
//! assert_eq!(item.id, "1");
//! ```

use crate::dataset::Record;
use crate::suite::{Suite, SuiteError, TargetConfig};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::Value;
use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use vigil_protocol::scorers::io::placeholders;
use vigil_protocol::{ChatMessage, EndpointKind, Item, Prompt, Recorded};

/// Why one record could not be rendered: `<dataset>:<line>: <field>: <problem>`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}:{line}: {field}: {message}")]
pub struct RenderError {
    /// The dataset file.
    pub path: PathBuf,
    /// The record's 1-based line.
    pub line: u64,
    /// The suite field involved, for example `prompt.user` or `dataset.id_field`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// A compiled template and what it needs.
struct Compiled {
    /// The template's name in the environment: its place in the suite.
    field: String,
    /// Top-level variables it reads, to name the missing one in errors.
    variables: BTreeSet<String>,
    /// The template as text and `{{ name }}` substitutions, when it is no
    /// more than that (see [`Piece`]).
    simple: Option<Vec<Piece>>,
}

/// A part of a template made only of text and `{{ name }}` placeholders,
/// the common case (`"{{ question }}"`). Such a template is filled in
/// directly when every name it reads is a string field of the record, which
/// renders exactly as minijinja would (the string itself: no escaping);
/// anything else goes through minijinja. Evaluating a template through
/// minijinja cost about ten times as much, twice per item (validation and
/// dispatch).
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Var(String),
}

/// `source` as [`Piece`]s, or `None` when it is more than text and plain
/// `{{ name }}` placeholders: blocks, comments, filters, expressions,
/// whitespace control, a trailing newline (minijinja drops one), or a name
/// that is a literal (`true`, `none`, ...).
fn simple_pieces(source: &str) -> Option<Vec<Piece>> {
    if source.ends_with('\n') || source.ends_with('\r') {
        return None;
    }
    let literal_ok = |text: &str| !text.contains("{%") && !text.contains("{#");
    let mut pieces = Vec::new();
    let mut rest = source;
    while let Some(open) = rest.find("{{") {
        let (text, after) = rest.split_at(open);
        if !literal_ok(text) {
            return None;
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text.to_string()));
        }
        let after = &after[2..];
        let close = after.find("}}")?;
        let name = after[..close].trim_matches(' ');
        let ident = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let literal = matches!(name, "true" | "false" | "none" | "True" | "False" | "None");
        if !ident || literal {
            return None;
        }
        pieces.push(Piece::Var(name.to_string()));
        rest = &after[close + 2..];
    }
    if !literal_ok(rest) {
        return None;
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Some(pieces)
}

/// `pieces` filled in from `record`'s string fields; `None` when a name is
/// not a string field there (minijinja then decides what it renders to).
fn fill(pieces: &[Piece], record: &Record) -> Option<String> {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Var(name) => match record.fields.get(name) {
                Some(Value::String(value)) => out.push_str(value),
                _ => return None,
            },
        }
    }
    Some(out)
}

/// The suite's templates, compiled once.
pub struct Renderer {
    env: Environment<'static>,
    dataset: PathBuf,
    id_field: Option<String>,
    tags: Vec<String>,
    system: Option<Compiled>,
    user: Option<Compiled>,
    /// Role and compiled content of each explicit chat message.
    messages: Option<Vec<(String, Compiled)>>,
    completion: Option<Compiled>,
    /// Scorer name and its compiled reference.
    references: Vec<(String, Compiled)>,
    /// Scorer name and its compiled per-item prompt (a judge's rubric).
    scorer_prompts: Vec<(String, Compiled)>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("dataset", &self.dataset)
            .finish_non_exhaustive()
    }
}

impl Renderer {
    /// Compiles every template of `suite`. A syntax error names the field and
    /// the line within the template.
    pub fn new(suite: &Suite) -> Result<Renderer, SuiteError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Prompts are plain text, never HTML.
        env.set_auto_escape_callback(|_| AutoEscape::None);
        let mut compile = |field: String, source: &str| -> Result<Compiled, SuiteError> {
            let syntax = |e: minijinja::Error| SuiteError::Template {
                path: suite.path.clone(),
                field: field.clone(),
                line: e.line(),
                message: describe_without_line(&e),
            };
            env.add_template_owned(field.clone(), source.to_string())
                .map_err(syntax)?;
            let variables = env
                .get_template(&field)
                .map_err(syntax)?
                .undeclared_variables(false)
                .into_iter()
                .collect();
            // A rubric also reads names the worker fills in: always minijinja.
            let simple = (!field.ends_with(".rubric"))
                .then(|| simple_pieces(source))
                .flatten();
            Ok(Compiled {
                field,
                variables,
                simple,
            })
        };
        let p = &suite.prompt;
        let system = p
            .system
            .as_deref()
            .map(|s| compile("prompt.system".into(), s))
            .transpose()?;
        let user = p
            .user
            .as_deref()
            .map(|s| compile("prompt.user".into(), s))
            .transpose()?;
        let messages = match &p.messages {
            None => None,
            Some(list) => Some(
                list.iter()
                    .enumerate()
                    .map(|(i, m)| {
                        Ok((
                            m.role.clone(),
                            compile(format!("prompt.messages[{i}].content"), &m.content)?,
                        ))
                    })
                    .collect::<Result<Vec<_>, SuiteError>>()?,
            ),
        };
        let completion = p
            .completion
            .as_deref()
            .map(|s| compile("prompt.completion".into(), s))
            .transpose()?;
        let mut references = Vec::new();
        for (i, s) in suite.scorers.iter().enumerate() {
            if let Some(r) = &s.reference {
                references.push((
                    s.name.clone(),
                    compile(format!("scorers[{i}].reference"), r)?,
                ));
            }
        }
        let mut scorer_prompts = Vec::new();
        for (i, s) in suite.scorers.iter().enumerate() {
            if let Some(p) = &s.prompt {
                scorer_prompts.push((s.name.clone(), compile(format!("scorers[{i}].rubric"), p)?));
            }
        }
        Ok(Renderer {
            env,
            dataset: suite.dataset.path.clone(),
            id_field: suite.dataset.id_field.clone(),
            tags: suite.dataset.tags.clone(),
            system,
            user,
            messages,
            completion,
            references,
            scorer_prompts,
        })
    }

    /// Renders one record into an item for `target`: [`Renderer::render`]
    /// by its kind, plus the recorded output of a `recorded` target.
    pub fn render_for(&self, record: &Record, target: &TargetConfig) -> Result<Item, RenderError> {
        let mut item = self.render(record, target.kind)?;
        if let Some(field) = &target.output_field {
            item.recorded = Some(self.recorded(record, field)?);
        }
        Ok(item)
    }

    /// The output a `recorded` target "answers" for `record`: the value of
    /// its `field` (a string; a number or boolean as its text; `null` as no
    /// text, which fails the item as `empty_response`). A record without the
    /// field is an error naming it.
    pub fn recorded(&self, record: &Record, field: &str) -> Result<Recorded, RenderError> {
        match record.fields.get(field) {
            Some(Value::Null) => Ok(Recorded::default()),
            Some(value) => match stringify(value) {
                Some(text) => Ok(Recorded {
                    text: Some(text),
                    ..Default::default()
                }),
                None => Err(self.error(
                    record,
                    "targets.output_field",
                    format!("field `{field}` holds a list or a map, not the output text"),
                )),
            },
            None => Err(self.error(
                record,
                "targets.output_field",
                format!("no field `{field}` (the recorded target's output)"),
            )),
        }
    }

    /// Renders one record into an item for a target of `kind`.
    pub fn render(&self, record: &Record, kind: EndpointKind) -> Result<Item, RenderError> {
        // Built only when a template needs minijinja.
        let ctx = OnceCell::new();
        let has_chat = self.messages.is_some() || self.system.is_some() || self.user.is_some();
        // A local model takes either form: chat when the suite has a chat
        // prompt. A recorded target calls nothing: its prompt (for the
        // record, and for judges that show it) is whichever the suite has.
        let kind = match kind {
            EndpointKind::Recorded if !has_chat && self.completion.is_none() => {
                return self.finish(record, &ctx, Prompt::default());
            }
            EndpointKind::Recorded if has_chat => EndpointKind::Chat,
            EndpointKind::Recorded => EndpointKind::Completions,
            EndpointKind::Local
                if self.messages.is_none() && self.system.is_none() && self.user.is_none() =>
            {
                EndpointKind::Completions
            }
            EndpointKind::Local => EndpointKind::Chat,
            other => other,
        };
        let prompt = match kind {
            EndpointKind::Chat => {
                let mut out = Vec::with_capacity(2);
                if let Some(list) = &self.messages {
                    for (role, t) in list {
                        push(&mut out, role, self.eval(t, &ctx, record)?);
                    }
                } else {
                    if let Some(t) = &self.system {
                        push(&mut out, "system", self.eval(t, &ctx, record)?);
                    }
                    if let Some(t) = &self.user {
                        push(&mut out, "user", self.eval(t, &ctx, record)?);
                    }
                }
                if out.is_empty() {
                    let field = if self.messages.is_some() {
                        "prompt.messages"
                    } else {
                        "prompt.user"
                    };
                    return Err(self.error(
                        record,
                        field,
                        "the chat prompt rendered to no messages (every message was empty)",
                    ));
                }
                Prompt::Chat(out)
            }
            EndpointKind::Completions | EndpointKind::Local | EndpointKind::Recorded => {
                match &self.completion {
                    Some(t) => Prompt::Completion(self.eval(t, &ctx, record)?),
                    None => {
                        return Err(self.error(
                            record,
                            "prompt.completion",
                            "completion targets need `prompt.completion`",
                        ));
                    }
                }
            }
        };
        self.finish(record, &ctx, prompt)
    }

    /// The item of `record` with its `prompt`: references, scorer prompts, tags, id.
    fn finish(
        &self,
        record: &Record,
        ctx: &OnceCell<minijinja::Value>,
        prompt: Prompt,
    ) -> Result<Item, RenderError> {
        let mut references = BTreeMap::new();
        for (name, t) in &self.references {
            references.insert(name.clone(), self.eval(t, ctx, record)?);
        }
        let mut scorer_prompts = BTreeMap::new();
        if !self.scorer_prompts.is_empty() {
            // What only the worker knows stays a placeholder it fills in.
            let known: BTreeMap<&str, &str> = placeholders::ALL.into_iter().collect();
            let record_ctx = ctx
                .get_or_init(|| minijinja::Value::from_serialize(&record.fields))
                .clone();
            let ctx = OnceCell::from(minijinja::value::merge_maps([
                minijinja::Value::from_serialize(&known),
                record_ctx,
            ]));
            for (name, t) in &self.scorer_prompts {
                scorer_prompts.insert(name.clone(), self.eval(t, &ctx, record)?);
            }
        }
        let mut tags = BTreeMap::new();
        for tag in &self.tags {
            if let Some(v) = record.fields.get(tag).and_then(stringify) {
                tags.insert(tag.clone(), v);
            }
        }
        Ok(Item {
            index: record.index,
            id: self.item_id(record)?,
            prompt,
            references,
            tags,
            scorer_prompts,
            recorded: None,
        })
    }

    /// The record's item id: the `id_field` value (a string or number), or
    /// the line number when the suite names no id field.
    pub fn item_id(&self, record: &Record) -> Result<String, RenderError> {
        let Some(field) = &self.id_field else {
            return Ok(record.line.to_string());
        };
        match record.fields.get(field) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::String(_)) => Err(self.error(
                record,
                "dataset.id_field",
                format!("item id `{field}` is empty"),
            )),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(other) => Err(self.error(
                record,
                "dataset.id_field",
                format!("item id `{field}` must be a string or a number, found {other}"),
            )),
            None => Err(self.error(
                record,
                "dataset.id_field",
                format!("item has no id field `{field}`"),
            )),
        }
    }

    /// `t` rendered for `record`; `ctx` is the minijinja context of the
    /// record, made on first use.
    fn eval(
        &self,
        t: &Compiled,
        ctx: &OnceCell<minijinja::Value>,
        record: &Record,
    ) -> Result<String, RenderError> {
        if let Some(text) = t.simple.as_deref().and_then(|pieces| fill(pieces, record)) {
            return Ok(text);
        }
        let ctx = ctx.get_or_init(|| minijinja::Value::from_serialize(&record.fields));
        let template = self
            .env
            .get_template(&t.field)
            .map_err(|e| self.error(record, &t.field, describe(&e)))?;
        template.render(ctx).map_err(|e| {
            let mut message = describe(&e);
            if e.kind() == minijinja::ErrorKind::UndefinedError {
                let missing: Vec<&str> = t
                    .variables
                    .iter()
                    .filter(|v| {
                        // A rubric's worker-filled names are never missing.
                        let filled = t.field.ends_with(".rubric")
                            && placeholders::ALL.iter().any(|(name, _)| name == v);
                        !record.fields.contains_key(*v) && !filled
                    })
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() {
                    let have: Vec<&str> = record.fields.keys().map(String::as_str).collect();
                    message = format!(
                        "{message}: the item has no field {} (it has: {})",
                        quoted(&missing),
                        have.join(", ")
                    );
                }
            }
            self.error(record, &t.field, message)
        })
    }

    fn error(&self, record: &Record, field: &str, message: impl Into<String>) -> RenderError {
        RenderError {
            path: self.dataset.clone(),
            line: record.line,
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Adds a message unless its content is empty (an optional system prompt
/// that rendered to nothing, say).
fn push(out: &mut Vec<ChatMessage>, role: &str, content: String) {
    if !content.is_empty() {
        out.push(ChatMessage {
            role: role.to_string(),
            content,
        });
    }
}

/// A tag's text: strings as they are, other scalars and structures as JSON; null is no tag.
fn stringify(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A minijinja error's kind and detail.
fn describe_without_line(e: &minijinja::Error) -> String {
    let mut s = e.kind().to_string();
    if let Some(d) = e.detail() {
        s.push_str(": ");
        s.push_str(d);
    }
    s
}

/// A minijinja error as one line: kind, detail and template line.
fn describe(e: &minijinja::Error) -> String {
    let mut s = describe_without_line(e);
    if let Some(line) = e.line() {
        s.push_str(&format!(" (template line {line})"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::SuiteFormat;
    use std::path::Path;

    /// What minijinja alone makes of `source` for `fields`, with the
    /// renderer's settings.
    fn minijinja_only(source: &str, fields: &serde_json::Value) -> Result<String, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.render_str(source, minijinja::Value::from_serialize(fields))
            .map_err(|e| e.to_string())
    }

    fn renderer(user: &str) -> Renderer {
        let yaml = format!(
            "name: t\ndataset: {{ path: d.jsonl }}\nprompt: {{ user: {} }}\ntargets: [{{ name: t, base_url: \"http://127.0.0.1:1/v1\", model: m }}]\nscorers: [{{ name: exact, kind: exact_match, reference: \"{{{{ answer }}}}\" }}]\n",
            serde_json::to_string(user).unwrap()
        );
        Renderer::new(&Suite::from_str(&yaml, SuiteFormat::Yaml, Path::new("t.yaml")).unwrap())
            .unwrap()
    }

    #[test]
    fn plain_placeholders_take_the_direct_path() {
        assert_eq!(
            simple_pieces("Q: {{ question }}!"),
            Some(vec![
                Piece::Text("Q: ".into()),
                Piece::Var("question".into()),
                Piece::Text("!".into())
            ])
        );
        assert_eq!(
            simple_pieces("Be brief."),
            Some(vec![Piece::Text("Be brief.".into())])
        );
        for not_simple in [
            "{{ q | upper }}",
            "{{- q }}",
            "{% if q %}x{% endif %}",
            "{# c #}{{ q }}",
            "{{ q }}\n",
            "{{ true }}",
            "{{ a.b }}",
            "{{ q ",
        ] {
            assert_eq!(simple_pieces(not_simple), None, "{not_simple:?}");
        }
    }

    /// The direct path renders exactly what minijinja renders, and falls
    /// back to it for whatever it does not handle.
    #[test]
    fn the_direct_path_renders_as_minijinja_does() {
        let templates = [
            "{{ question }}",
            "Q: {{question}} and {{  other }} }} { {x}",
            "no placeholders at all",
            "{{ question }}{{ question }}",
            "{{ n }} items",
            "{{ missing }}",
            "{{ question | upper }}",
            "line\n{{ question }}\n",
            "{{ range }}",
            "<b>{{ question }}</b> & \"{{ other }}\"",
        ];
        let records = [
            serde_json::json!({"question": "What is 2 + 2?", "other": "<i>x</i>", "n": 3, "answer": "4"}),
            serde_json::json!({"question": "", "other": "{{ question }}", "n": 1.5, "answer": "4", "range": "r"}),
            serde_json::json!({"question": "ünï\ncode", "other": null, "n": true, "answer": "4"}),
        ];
        for source in templates {
            let r = renderer(source);
            for fields in &records {
                let record = Record {
                    line: 1,
                    index: 0,
                    fields: fields.as_object().unwrap().clone(),
                };
                let ours = r
                    .render(&record, EndpointKind::Chat)
                    .map(|item| match item.prompt {
                        Prompt::Chat(m) => m.into_iter().map(|m| m.content).collect::<Vec<_>>(),
                        Prompt::Completion(_) => unreachable!(),
                    });
                match minijinja_only(source, fields) {
                    Ok(text) if text.is_empty() => assert!(ours.is_err(), "{source:?}"),
                    Ok(text) => assert_eq!(ours.unwrap(), vec![text], "{source:?} {fields}"),
                    Err(_) => assert!(ours.is_err(), "{source:?} {fields}"),
                }
            }
        }
    }
}
