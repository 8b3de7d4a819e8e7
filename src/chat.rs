//! Chat templates: turning a conversation into the prompt text a chat model was trained on.
//!
//! Models ship their format as a Jinja template in `tokenizer.chat_template` (Hugging Face's
//! convention). We render it with minijinja configured as Hugging Face's `apply_chat_template`
//! configures Jinja (`trim_blocks`, `lstrip_blocks`, loop controls, Python string methods such
//! as `.strip()`, and a `raise_exception` function), with the variables templates expect:
//! `messages`, `add_generation_prompt`, `bos_token`, `eos_token`.
//!
//! A chat REPL keeps earlier turns in the KV cache, so for each new turn it needs only the text
//! that follows what the model has already seen. [`ChatTemplate::render_after`] renders the
//! whole conversation and returns the part after that prefix, refusing if the template renders
//! the earlier turns differently once the new message is added (then the caller must re-feed
//! the conversation, or keep the longest common token prefix of its cache).

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, Value};

use crate::error::{Error, ErrorKind, Result};
use crate::gguf::GgufFile;

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user` or `assistant` (templates may accept others, e.g. `tool`).
    pub role: String,
    /// The message text.
    pub content: String,
}

impl Message {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message { role: role.into(), content: content.into() }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Message {
        Message::new("system", content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Message {
        Message::new("user", content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Message {
        Message::new("assistant", content)
    }
}

const TEMPLATE_NAME: &str = "chat_template";

/// A compiled chat template with the special-token texts it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

fn template_error(e: minijinja::Error) -> Error {
    let kind = match e.kind() {
        minijinja::ErrorKind::SyntaxError | minijinja::ErrorKind::BadEscape => ErrorKind::Format,
        _ => ErrorKind::InvalidArgument,
    };
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    Error::new(kind, format!("chat template: {msg}"))
}

impl ChatTemplate {
    /// Compile `source`; `bos_token`/`eos_token` are the texts of the model's BOS and EOS tokens.
    pub fn new(
        source: impl Into<String>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Result<ChatTemplate> {
        let source = source.into();
        let mut env = Environment::new();
        let syntax =
            SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build().map_err(template_error)?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned(TEMPLATE_NAME, source.clone()).map_err(template_error)?;
        Ok(ChatTemplate { env, source, bos_token: bos_token.into(), eos_token: eos_token.into() })
    }

    /// The model's template (`tokenizer.chat_template`), or `None` if it has none (base models
    /// such as Gemma 3 270M ship without one).
    pub fn from_gguf(file: &GgufFile) -> Result<Option<ChatTemplate>> {
        let Some(source) = file.get_str("tokenizer.chat_template")? else { return Ok(None) };
        let token_text = |key: &str| -> Result<String> {
            let Some(id) = file.get_u64(key)? else { return Ok(String::new()) };
            let Some(tokens) = file.get_array("tokenizer.ggml.tokens")? else { return Ok(String::new()) };
            Ok(match tokens.iter().nth(id as usize) {
                Some(v) => v?.as_str().unwrap_or_default().to_string(),
                None => String::new(),
            })
        };
        let bos = token_text("tokenizer.ggml.bos_token_id")?;
        let eos = token_text("tokenizer.ggml.eos_token_id")?;
        ChatTemplate::new(source, bos, eos).map(Some)
    }

    /// The template source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The BOS token text passed to the template as `bos_token`.
    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    /// The EOS token text passed to the template as `eos_token`.
    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    /// Render `messages`; with `add_generation_prompt`, end with the header of an assistant
    /// turn so the model answers next. Errors raised by the template (`raise_exception`, e.g.
    /// "roles must alternate") are `InvalidArgument` errors with the template's message.
    ///
    /// The output may begin with the BOS text (Gemma's template writes it): tokenize it with
    /// special tokens parsed, and without adding a second BOS.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| Value::from_pairs([("role", m.role.as_str()), ("content", m.content.as_str())]))
            .collect();
        let ctx = Value::from_pairs([
            ("messages", Value::from(msgs)),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("bos_token", Value::from(self.bos_token.as_str())),
            ("eos_token", Value::from(self.eos_token.as_str())),
        ]);
        let tmpl = self.env.get_template(TEMPLATE_NAME).map_err(template_error)?;
        tmpl.render(ctx).map_err(template_error)
    }

    /// The text to feed after `prefix` so that the model has seen `render(messages,
    /// add_generation_prompt)`. `prefix` is exactly the text the model has already consumed:
    /// earlier renders plus the assistant's replies as generated (with the end-of-turn token's
    /// text, if it was fed). An `InvalidArgument` error if the render does not start with
    /// `prefix`.
    pub fn render_after(
        &self,
        prefix: &str,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let full = self.render(messages, add_generation_prompt)?;
        match full.strip_prefix(prefix) {
            Some(rest) => Ok(rest.to_string()),
            None => {
                let common = full.bytes().zip(prefix.bytes()).take_while(|(a, b)| a == b).count();
                Err(Error::invalid(format!(
                    "the conversation no longer starts with the text already fed to the model (they differ \
                     from byte {common}); re-feed the whole conversation"
                )))
            }
        }
    }
}

/// A conversation in progress: its messages and the exact text fed to the model so far, so that
/// each new turn feeds only what is new.
#[derive(Clone, Debug, Default)]
pub struct Conversation {
    messages: Vec<Message>,
    fed: String,
}

impl Conversation {
    /// An empty conversation; `system` (if any) becomes its first message.
    pub fn new(system: Option<&str>) -> Conversation {
        Conversation { messages: system.map(Message::system).into_iter().collect(), fed: String::new() }
    }

    /// Add a user message; returns the text to feed the model (the new turn and the assistant
    /// header), which is also recorded as fed.
    pub fn user_turn(&mut self, template: &ChatTemplate, content: &str) -> Result<String> {
        self.messages.push(Message::user(content));
        match template.render_after(&self.fed, &self.messages, true) {
            Ok(text) => {
                self.fed.push_str(&text);
                Ok(text)
            }
            Err(e) => {
                self.messages.pop();
                Err(e)
            }
        }
    }

    /// Record the assistant's reply: `reply` is its text for the transcript, `fed` exactly the
    /// text the model consumed while producing it (usually `reply`, plus the end-of-turn token's
    /// text when that token was fed back).
    pub fn assistant_turn(&mut self, reply: &str, fed: &str) {
        self.messages.push(Message::assistant(reply));
        self.fed.push_str(fed);
    }

    /// The messages so far.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The text fed to the model so far.
    pub fn fed_text(&self) -> &str {
        &self.fed
    }

    /// Forget what was fed (after the caller cleared its KV cache); keeps the messages, so the
    /// next turn re-feeds the whole conversation.
    pub fn reset_fed(&mut self) {
        self.fed.clear();
    }

    /// Drop the oldest user message and the messages after it up to the next user message (its
    /// replies); a system message stays. False when there is no user message to drop. What was
    /// fed no longer matches the messages: the caller clears its cache and calls
    /// [`reset_fed`](Self::reset_fed).
    pub fn drop_oldest_exchange(&mut self) -> bool {
        let Some(first) = self.messages.iter().position(|m| m.role == "user") else {
            return false;
        };
        let next = self.messages[first + 1..]
            .iter()
            .position(|m| m.role == "user")
            .map_or(self.messages.len(), |i| first + 1 + i);
        self.messages.drain(first..next);
        true
    }
}

#[cfg(test)]
mod tests;
