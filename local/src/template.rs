//! The chat template from the GGUF metadata (`tokenizer.chat_template`),
//! rendered with minijinja. SmolLM2's renders byte-identical to llama.cpp's.

use crate::LocalError;
use minijinja::{Environment, Error, ErrorKind, context};
use vigil_protocol::ChatMessage;

/// The template name inside the environment.
const NAME: &str = "chat";

/// ChatML, for models whose GGUF carries no template.
const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A compiled chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

impl ChatTemplate {
    /// Compiles `source` (ChatML when `None`). `bos` and `eos` are the
    /// special tokens' texts, which some templates print.
    ///
    /// ```
    /// let t = vigil_local::ChatTemplate::new(None, "", "<|im_end|>").unwrap();
    /// let m = vec![vigil_protocol::ChatMessage { role: "user".into(), content: "Hi".into() }];
    /// assert_eq!(t.render(&m).unwrap(), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    /// ```
    pub fn new(source: Option<&str>, bos: &str, eos: &str) -> Result<ChatTemplate, LocalError> {
        let mut env = Environment::new();
        // Hugging Face templates call these; minijinja lacks them.
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_function("strftime_now", |_format: String| -> String {
            // Dates in a prompt would make runs irreproducible; a fixed one
            // keeps templates that print "today" rendering.
            "01 Jan 2025".to_string()
        });
        env.add_template_owned(NAME, source.unwrap_or(CHATML).to_string())
            .map_err(|e| LocalError::Template(e.to_string()))?;
        Ok(ChatTemplate {
            env,
            bos: bos.to_string(),
            eos: eos.to_string(),
        })
    }

    /// The prompt text for `messages`, ending with the assistant's turn opened.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, LocalError> {
        let messages: Vec<_> = messages
            .iter()
            .map(|m| context! { role => m.role, content => m.content })
            .collect();
        self.env
            .get_template(NAME)
            .and_then(|t| {
                t.render(context! {
                    messages => messages,
                    add_generation_prompt => true,
                    bos_token => self.bos,
                    eos_token => self.eos,
                })
            })
            .map_err(|e| LocalError::Template(e.to_string()))
    }
}
