//! A model ready to talk: weights, tokenizer, chat template, KV cache and buffers, loaded once;
//! [`Session::generate`] and [`Session::chat`] are what the CLI (and later the C ABI) call.
//!
//! The session keeps the tokens its cache holds, so text fed later continues the same context:
//! a chat's earlier turns are never prefilled again. A sampled token is emitted at once but
//! enters the cache only when something follows it (the next token's pass, or the next turn),
//! so a generation that stops never pays for a pass whose logits nobody reads.
//!
//! Everything per token — activations, logits, the sampler's candidates, the token history — is
//! allocated when the session (or a generation) starts.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::chat::{ChatTemplate, Conversation};
use crate::decode::engine::{Emitted, LoopEnd, Target};
use crate::decode::{CostModel, Decoder, DraftHeads, Drafter, Drafting, Strategy};
use crate::error::{Error, ErrorKind, Result};
use crate::kernels::KernelPool;
use crate::model::{Device, KvCache, KvType, Model, Workspace, MAX_BATCH};
use crate::sampling::{Sampler, SamplingParams};
use crate::tokenizer::{TokenId, Tokenizer};

mod stats;

use stats::per_s;
pub use stats::{peak_rss_bytes, DecodeTotals, GenerationStats, StopReason};

pub use crate::memory::DEFAULT_CTX;

/// How to set a session up.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Kernel threads (default: physical cores).
    pub threads: Option<usize>,
    /// Context length in tokens (default: the model's, capped at [`DEFAULT_CTX`]).
    pub ctx: Option<usize>,
    /// KV cache element type.
    pub kv_type: KvType,
    /// Tokens per prefill pass (1 ..= [`MAX_BATCH`]).
    pub prefill_chunk: usize,
    /// Where the forward pass runs (see [`Model::set_device`]).
    pub device: Device,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            threads: None,
            ctx: None,
            kv_type: KvType::F16,
            prefill_chunk: MAX_BATCH,
            device: Device::Cpu,
        }
    }
}

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GenerateParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// How to pick them.
    pub sampling: SamplingParams,
    /// How to find them (every strategy gives plain decoding's output).
    pub strategy: Strategy,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams { max_tokens: 256, sampling: SamplingParams::default(), strategy: Strategy::Auto }
    }
}

/// What the token callback wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep generating.
    Continue,
    /// Stop now (e.g. the user pressed Ctrl-C).
    Stop,
}

/// A loaded model with its tokenizer, cache and buffers.
pub struct Session {
    model: Model,
    tokenizer: Tokenizer,
    template: Option<Arc<ChatTemplate>>,
    ws: Workspace,
    cache: KvCache,
    prefill_chunk: usize,
    /// Tokens in the cache, `(ctx)` capacity.
    history: Vec<TokenId>,
    /// A token emitted but not yet in the cache.
    pending: Option<TokenId>,
    /// Logits after the last cached token, `(vocab)`, valid when `have_logits`.
    logits: Vec<f32>,
    have_logits: bool,
    /// Scratch for the tokens of a new piece of text.
    feed_buf: Vec<TokenId>,
    /// The system message chats start with.
    system: Option<String>,
    conversation: Conversation,
    /// The decode state: the drafter, draft-length bound, cost model, buffers, drafter files.
    decoder: Decoder,
    /// Messages the last chat turn dropped from the front of the conversation to make room.
    dropped: usize,
    /// Raised by the caller (Ctrl-C, `edgespec_cancel`) to stop prefill between chunks and
    /// decoding between passes.
    cancel: Option<Arc<AtomicBool>>,
    /// Why `--device auto` stayed on the CPU, if it did.
    device_note: Option<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("model", &self.model)
            .field("ctx", &self.cache.capacity())
            .field("used", &self.history.len())
            .finish()
    }
}

impl Session {
    /// Load the model at `path` and set up a session for it.
    pub fn load(path: impl AsRef<Path>, opts: &SessionOptions) -> Result<Session> {
        Session::new(Model::load(path)?, opts)
    }

    /// A session over an already loaded model.
    pub fn new(mut model: Model, opts: &SessionOptions) -> Result<Session> {
        let device_note = match opts.device {
            Device::Cpu if !model.on_gpu() => None,
            // Already there (sharing another model's upload, see `Model::share_device`).
            Device::Gpu | Device::Auto if model.on_gpu() => None,
            d => model.set_device(d)?,
        };
        let tokenizer = Tokenizer::from_gguf(model.file())?;
        let template = ChatTemplate::from_gguf(model.file())?.map(Arc::new);
        let trained = model.config().context_length.max(1);
        let ctx = opts.ctx.unwrap_or(trained.min(DEFAULT_CTX));
        if ctx == 0 {
            return Err(Error::invalid("the context length must be at least 1"));
        }
        if opts.prefill_chunk == 0 || opts.prefill_chunk > MAX_BATCH {
            return Err(Error::invalid(format!("prefill chunks hold 1..={MAX_BATCH} tokens")));
        }
        // Count before allocating: a context length is user input, and one the machine cannot hold
        // must be an error, not an allocation that aborts the process.
        let need = crate::memory::session_need(
            model.config(),
            Some(model.arch()),
            model.file().len(),
            ctx,
            opts.kv_type,
        )?;
        crate::memory::check_machine(ctx, opts.kv_type, &need)?;
        let pool = KernelPool::new(opts.threads)?;
        let ws = Workspace::new(&model, pool, ctx)?;
        let cache = model.new_cache(ctx, opts.kv_type)?;
        let vocab = model.config().vocab_size;
        Ok(Session {
            tokenizer,
            template,
            ws,
            cache,
            prefill_chunk: opts.prefill_chunk,
            history: Vec::with_capacity(ctx),
            pending: None,
            logits: vec![0.0; vocab],
            have_logits: false,
            feed_buf: Vec::with_capacity(ctx),
            system: None,
            conversation: Conversation::new(None),
            decoder: Decoder::new(),
            dropped: 0,
            cancel: None,
            device_note,
            model,
        })
    }

    /// Where the forward pass runs: `cpu`, or `gpu (ADAPTER, BACKEND)`.
    pub fn device(&self) -> String {
        self.model.device_name()
    }

    /// Why a session asked for [`Device::Auto`] runs on the CPU (no hardware adapter, a weight
    /// type without a GPU kernel, …); `None` otherwise.
    pub fn device_note(&self) -> Option<&str> {
        self.device_note.as_deref()
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat template, if the model has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.template.as_deref()
    }

    /// Context length in tokens.
    pub fn context_size(&self) -> usize {
        self.cache.capacity()
    }

    /// Tokens in the context (fed or emitted).
    pub fn context_used(&self) -> usize {
        self.history.len() + usize::from(self.pending.is_some())
    }

    /// The tokens in the context, the emitted-but-not-fed one included.
    pub fn tokens(&self) -> impl Iterator<Item = TokenId> + '_ {
        self.history.iter().copied().chain(self.pending)
    }

    /// The KV cache (for its size).
    pub fn cache(&self) -> &KvCache {
        &self.cache
    }

    /// The worker threads the kernels use.
    pub fn threads(&self) -> usize {
        self.ws.pool().threads()
    }

    /// Forget the context and the conversation (a chat starts again from its system message).
    pub fn reset(&mut self) {
        self.clear_context();
        self.conversation = Conversation::new(self.system.as_deref());
    }

    /// Empty the context (cache, tokens, the drafter's view of them); the conversation's
    /// messages are the caller's business.
    fn clear_context(&mut self) {
        self.cache.clear();
        self.history.clear();
        self.pending = None;
        self.have_logits = false;
        self.decoder.reset();
    }

    /// Messages the last [`chat`](Self::chat) turn dropped from the front of the conversation
    /// (oldest exchanges first, the system message kept) because the turn and room for its reply
    /// no longer fitted the context; 0 when it fitted.
    pub fn dropped_messages(&self) -> usize {
        self.dropped
    }

    /// The cost curve of verify passes as learnt so far (`None` until a pass of more than one
    /// token was timed).
    pub fn cost_model(&self) -> Option<&CostModel> {
        self.decoder.cost_model()
    }

    /// Replace the pass cost curve (e.g. with [`CostModel::frozen`] for measurements whose draft
    /// choices must not depend on timings).
    pub fn set_cost_model(&mut self, cost: CostModel) {
        self.decoder.set_cost_model(cost);
    }

    /// What the drafter of the last speculative strategy chose (see [`Drafter::describe`]).
    pub fn drafter_summary(&self) -> Option<String> {
        self.decoder.drafter_summary()
    }

    /// Use `heads` for strategy `heads` (instead of the file beside the model); checked against
    /// the model.
    pub fn set_heads(&mut self, heads: DraftHeads) -> Result<()> {
        self.decoder.set_heads(heads, &self.model)
    }

    /// Stop prefill (between chunks) and decoding (between passes) when `flag` is raised; the
    /// generation then ends with [`StopReason::Cancelled`], or, when the prompt was still being
    /// processed, with a `Cancelled` error and the context as it was before the call. The caller
    /// lowers the flag before the next generation. `None` removes it.
    pub fn set_cancel_flag(&mut self, flag: Option<Arc<AtomicBool>>) {
        self.cancel = flag;
    }

    /// Use `net` for strategy `eagle` (instead of the file beside the model); checked against
    /// the model.
    pub fn set_eagle(&mut self, net: crate::decode::EagleNet) -> Result<()> {
        self.decoder.set_eagle(net, &self.model)
    }

    /// Messages for the user gathered since the last call (each said once): e.g. a damaged
    /// tuning profile, corpus or heads file beside the model that `auto` ignored.
    pub fn take_notes(&mut self) -> Vec<String> {
        self.decoder.take_notes()
    }

    /// Check `strategy`'s prerequisites now (e.g. trained heads for `heads`) and ready its
    /// drafter, so that a session that cannot use it fails at the start, not at the first
    /// message. Generation does this by itself.
    pub fn prepare_strategy(&mut self, strategy: Strategy) -> Result<()> {
        self.decoder.prepare(strategy, &self.model, self.cache.capacity())
    }

    /// The logits after the last token in the cache (the distribution the next token is drawn
    /// from when nothing is pending), if a pass has produced them.
    pub fn last_logits(&self) -> Option<&[f32]> {
        self.have_logits.then_some(&self.logits[..])
    }

    /// Start chats with `system` as the system message (or the template's default with `None`);
    /// resets the session.
    pub fn set_system(&mut self, system: Option<&str>) {
        self.system = system.map(str::to_string);
        self.reset();
    }

    /// Tokenize `text` as a continuation: BOS (if the model wants one) only at the start of an
    /// empty context; control tokens written in the text are parsed.
    fn tokenize_into_buf(&mut self, text: &str) {
        self.feed_buf.clear();
        self.feed_buf.extend(self.pending);
        let at_start = self.history.is_empty() && self.pending.is_none();
        self.tokenizer.encode_into(text, at_start, true, &mut self.feed_buf);
    }

    /// Feed `feed_buf` into the cache. Returns the number of passes run.
    fn feed_buf_tokens(&mut self) -> Result<usize> {
        let n = self.feed_buf.len();
        if n == 0 {
            return Ok(0);
        }
        let used = self.history.len();
        if used + n > self.cache.capacity() {
            return Err(Error::new(
                ErrorKind::ContextOverflow,
                format!(
                    "context full: {n} new tokens do not fit ({used} of {} positions used); start over \
                     (/reset in chat) or raise --ctx",
                    self.cache.capacity()
                ),
            ));
        }
        let cancel = self.cancel.clone();
        let stop = move || cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst));
        let fed = self.model.prefill_until(
            &mut self.ws,
            &mut self.cache,
            &self.feed_buf,
            used,
            self.prefill_chunk,
            &stop,
        );
        let logits = match fed {
            Ok(l) => l,
            Err(e) => {
                // Back to the context before the call (the chunks run are dropped); where rings
                // of sliding-window layers no longer reach that far back, start over.
                if self.cache.truncate(used).is_err() {
                    self.clear_context();
                }
                return Err(e);
            }
        };
        self.logits.copy_from_slice(logits);
        self.have_logits = true;
        self.history.extend_from_slice(&self.feed_buf);
        self.pending = None;
        Ok(n.div_ceil(self.prefill_chunk))
    }

    /// Feed `text` into the context without generating (e.g. a system prompt). Returns the
    /// number of tokens fed.
    pub fn feed(&mut self, text: &str) -> Result<usize> {
        self.tokenize_into_buf(text);
        let n = self.feed_buf.len();
        self.feed_buf_tokens()?;
        Ok(n)
    }

    /// Feed `tokens` into the context as they are (no BOS added, nothing parsed).
    pub fn feed_tokens(&mut self, tokens: &[TokenId]) -> Result<()> {
        self.feed_buf.clear();
        self.feed_buf.extend(self.pending);
        self.feed_buf.extend_from_slice(tokens);
        self.feed_buf_tokens().map(|_| ())
    }

    /// Append `prompt` to the context and generate up to `params.max_tokens` tokens with
    /// `params.strategy`, passing each piece of text to `on_token` as soon as it is complete
    /// UTF-8. Every strategy emits what plain decoding would (the same tokens with greedy
    /// settings, the same distribution when sampling).
    pub fn generate(
        &mut self,
        prompt: &str,
        params: &GenerateParams,
        on_token: &mut dyn FnMut(&str) -> Flow,
    ) -> Result<GenerationStats> {
        self.prepare_strategy(params.strategy)?;
        self.run_generation(prompt, params, Drafting::Strategy(params.strategy), on_token)
    }

    /// [`Session::generate`] with a drafter of the caller's (any [`Drafter`]); `params.strategy`
    /// is ignored and the statistics carry the drafter's name. The output is still exactly
    /// what plain decoding gives: the model verifies every drafted token.
    pub fn generate_with(
        &mut self,
        prompt: &str,
        params: &GenerateParams,
        drafter: &mut dyn Drafter,
        on_token: &mut dyn FnMut(&str) -> Flow,
    ) -> Result<GenerationStats> {
        self.run_generation(prompt, params, Drafting::With(drafter), on_token)
    }

    fn run_generation(
        &mut self,
        prompt: &str,
        params: &GenerateParams,
        drafting: Drafting<'_>,
        on_token: &mut dyn FnMut(&str) -> Flow,
    ) -> Result<GenerationStats> {
        let name = drafting.name();
        let mut sampler = Sampler::new(params.sampling, self.model.config().vocab_size)?;
        let t0 = Instant::now();
        self.tokenize_into_buf(prompt);
        let prompt_tokens = self.feed_buf.len() - usize::from(self.pending.is_some());
        let feed_passes = self.feed_buf_tokens()?;
        if !self.have_logits {
            return Err(Error::invalid("nothing to continue from: the prompt is empty"));
        }
        let prefill_s = t0.elapsed().as_secs_f64();

        let t1 = Instant::now();
        let tokenizer = &self.tokenizer;
        let mut decoder = tokenizer.stream_decoder(false);
        // Room for the longest piece a token (plus bytes held back from the previous one) can
        // produce, so the loop never grows it.
        let mut text = String::with_capacity(4 * tokenizer.max_token_len() + 16);
        let cancel = self.cancel.clone();
        let mut emit = |tok: TokenId| -> Result<Emitted> {
            if tokenizer.is_eog(tok) {
                return Ok(Emitted::End);
            }
            text.clear();
            decoder.push(tokenizer, tok, &mut text)?;
            if !text.is_empty() && on_token(&text) == Flow::Stop {
                return Ok(Emitted::Stop);
            }
            // After the token is out, so what the context holds is what the caller has seen.
            if cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst)) {
                return Ok(Emitted::Stop);
            }
            Ok(Emitted::Continue)
        };
        let mut target = Target {
            model: &self.model,
            ws: &mut self.ws,
            cache: &mut self.cache,
            history: &mut self.history,
            pending: &mut self.pending,
            logits: &mut self.logits,
        };
        let (end, ds) =
            self.decoder.generate(&mut target, drafting, &mut sampler, params.max_tokens, &mut emit)?;
        text.clear();
        decoder.finish(&mut text);
        if !text.is_empty() {
            on_token(&text);
        }
        let stop = match end {
            LoopEnd::MaxTokens => StopReason::MaxTokens,
            LoopEnd::ContextFull => StopReason::ContextFull,
            LoopEnd::End => StopReason::EndOfGeneration,
            LoopEnd::Stop => StopReason::Cancelled,
        };
        let decode_s = t1.elapsed().as_secs_f64();
        let generated = ds.generated;
        // Passes that produced tokens: each decode pass, plus the prefill's last one, which
        // yielded the first token.
        let producing = ds.passes + 1;
        Ok(GenerationStats {
            strategy: name,
            prompt_tokens,
            generated_tokens: generated,
            prefill_s,
            decode_s,
            prefill_tokens_per_s: per_s(prompt_tokens, prefill_s),
            decode_tokens_per_s: per_s(generated.saturating_sub(1), decode_s),
            forward_passes: feed_passes + ds.passes,
            decode_passes: ds.passes,
            drafted_tokens: ds.drafted,
            accepted_tokens: ds.accepted,
            acceptance_rate: if ds.drafted > 0 { ds.accepted as f64 / ds.drafted as f64 } else { 0.0 },
            draft_s: ds.draft_s,
            verify_s: ds.verify_s,
            mean_accepted_per_pass: generated as f64 / producing as f64,
            passes_by_batch: ds.passes_by_batch,
            peak_rss_bytes: peak_rss_bytes(),
            stop,
            context_used: self.context_used(),
            context_size: self.cache.capacity(),
        })
    }

    /// One chat turn: add the user's message through the model's chat template, generate the
    /// reply (streamed to `on_token`), and keep both in the context for the next turn. Only the
    /// new turn is fed; if the template rewrites earlier turns (so the text already fed is no
    /// longer a prefix), the conversation is fed again from the start. When the turn and room for
    /// its reply (`max_tokens`, at most a quarter of the context) would overflow the context, the
    /// oldest exchanges are dropped until the rest takes at most half of it, and that is fed
    /// again from the start ([`dropped_messages`](Self::dropped_messages) says how many).
    pub fn chat(
        &mut self,
        user: &str,
        params: &GenerateParams,
        on_token: &mut dyn FnMut(&str) -> Flow,
    ) -> Result<(String, GenerationStats)> {
        self.chat_turn(user, params, None, on_token)
    }

    /// [`Session::chat`] with a drafter of the caller's, as [`Session::generate_with`].
    pub fn chat_with(
        &mut self,
        user: &str,
        params: &GenerateParams,
        drafter: &mut dyn Drafter,
        on_token: &mut dyn FnMut(&str) -> Flow,
    ) -> Result<(String, GenerationStats)> {
        self.chat_turn(user, params, Some(drafter), on_token)
    }

    fn chat_turn(
        &mut self,
        user: &str,
        params: &GenerateParams,
        drafter: Option<&mut dyn Drafter>,
        on_token: &mut dyn FnMut(&str) -> Flow,
    ) -> Result<(String, GenerationStats)> {
        let template = self.template.clone().ok_or_else(|| {
            Error::unsupported("the model has no chat template (tokenizer.chat_template); use `run` instead")
        })?;
        let saved = self.conversation.clone();
        let mut turn = match self.conversation.user_turn(&template, user) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::InvalidArgument && !self.conversation.fed_text().is_empty() => {
                self.clear_context();
                self.conversation.reset_fed();
                self.conversation.user_turn(&template, user)?
            }
            Err(e) => return Err(e),
        };
        self.dropped = 0;
        if self.needs_room(&turn, params) {
            if let Some(trimmed) = self.trimmed(&template, &saved, user)? {
                self.dropped = saved.messages().len() - trimmed.messages().len();
                self.clear_context();
                self.conversation = trimmed;
                turn = self.conversation.user_turn(&template, user)?;
            }
        }
        let mut reply = String::new();
        let mut on_piece = |piece: &str| {
            reply.push_str(piece);
            on_token(piece)
        };
        let result = match drafter {
            Some(d) => self.generate_with(&turn, params, d, &mut on_piece),
            None => self.generate(&turn, params, &mut on_piece),
        };
        let stats = match result {
            Ok(s) => s,
            Err(e) => {
                // The turn did not enter the context: forget it, so the next one is rendered
                // against what the model has actually seen.
                self.conversation = saved;
                if self.dropped > 0 {
                    // The cache no longer holds the conversation's beginning.
                    self.clear_context();
                    self.dropped = 0;
                }
                if self.history.is_empty() && self.pending.is_none() {
                    self.conversation.reset_fed();
                }
                return Err(e);
            }
        };
        let mut fed = reply.clone();
        if let Some(tok) = self.pending.filter(|&t| self.tokenizer.is_eog(t)) {
            fed.push_str(self.tokenizer.token_text(tok).unwrap_or_default());
        }
        self.conversation.assistant_turn(&reply, &fed);
        Ok((reply, stats))
    }

    /// The conversation so far.
    pub fn conversation(&self) -> &Conversation {
        &self.conversation
    }

    /// Whether feeding `turn` and generating its reply (`max_tokens`, at most a quarter of the
    /// context) would overflow the context.
    fn needs_room(&self, turn: &str, params: &GenerateParams) -> bool {
        let ctx = self.cache.capacity();
        let reply = params.max_tokens.clamp(1, (ctx / 4).max(1));
        let at_start = self.history.is_empty() && self.pending.is_none();
        self.context_used() + self.tokenizer.encode(turn, at_start, true).len() + reply > ctx
    }

    /// `conversation` (as it was before this turn) without its oldest exchanges, as few dropped
    /// as leave it and the new user message within half the context; `None` when nothing can be
    /// dropped.
    fn trimmed(
        &self,
        template: &ChatTemplate,
        conversation: &Conversation,
        user: &str,
    ) -> Result<Option<Conversation>> {
        let half = self.cache.capacity() / 2;
        let mut trimmed = conversation.clone();
        trimmed.reset_fed();
        if !trimmed.drop_oldest_exchange() {
            return Ok(None);
        }
        loop {
            let mut probe = trimmed.clone();
            let text = probe.user_turn(template, user)?;
            if self.tokenizer.encode(&text, true, true).len() <= half || !trimmed.drop_oldest_exchange() {
                return Ok(Some(trimmed));
            }
        }
    }
}
