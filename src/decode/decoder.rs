//! The decode state a session keeps from one generation to the next, in one place: the drafter
//! of the strategy in use (it learns as it goes), the draft-length bound, the pass cost model
//! and the loop's buffers ([`LoopState`]), and the drafter files loaded from beside the model
//! (draft heads, the eagle network, the corpus). [`Decoder::prepare`] readies a strategy's
//! drafter (each strategy builds its own, from the strategy list in [`super`]);
//! [`Decoder::generate`] runs the loop of [`super::engine`] with it.
//!
//! The session owns the model side (model, workspace, cache, tokens) and lends it as a
//! [`Target`] for each generation.

use std::sync::Arc;

use crate::error::Result;
use crate::model::Model;
use crate::sampling::Sampler;
use crate::tokenizer::TokenId;

use super::corpus::Corpus;
use super::engine::{self, DecodeStats, Emitted, LoopEnd, LoopState, Target};
use super::{CostModel, DraftHeads, Drafter, EagleNet, Strategy};

/// Drafter files loaded from beside the model (or set by the caller), kept across drafters and
/// generations so that each is read once.
#[derive(Default)]
pub struct DrafterFiles {
    /// The draft heads of strategy `heads` (and of `auto` where they pay).
    pub heads: Option<Arc<DraftHeads>>,
    /// The drafter network of strategy `eagle`.
    pub eagle: Option<Arc<EagleNet>>,
    /// The model's own generations for `auto`'s lookup (saved by `edgespec tune`).
    pub corpus: Option<Arc<Corpus>>,
}

/// What a strategy's drafter is built from (the argument of the builders named in the strategy
/// list).
pub struct Setup<'a> {
    /// The target model.
    pub model: &'a Model,
    /// The context length in tokens.
    pub ctx: usize,
    /// Files beside the model, loaded on first use.
    pub files: &'a mut DrafterFiles,
    /// Where to tell the user once about a damaged file that was ignored.
    pub notes: &'a mut Vec<String>,
}

/// A strategy's drafter, or `None` for plain decoding.
pub type Built = Result<Option<Box<dyn Drafter>>>;

/// The builder of strategy `plain`: no drafter.
pub(crate) fn plain(_: &mut Setup<'_>) -> Built {
    Ok(None)
}

/// Who drafts in a generation.
pub enum Drafting<'d> {
    /// The drafter of a strategy, readied by [`Decoder::prepare`].
    Strategy(Strategy),
    /// A drafter of the caller's (any [`Drafter`]); the output is still plain decoding's.
    With(&'d mut dyn Drafter),
}

impl Drafting<'_> {
    /// The name the statistics carry: the strategy's, or the caller's drafter's.
    pub fn name(&self) -> &'static str {
        match self {
            Drafting::Strategy(s) => s.name(),
            Drafting::With(d) => d.name(),
        }
    }
}

/// The decode state of a session (see the module documentation).
#[derive(Default)]
pub struct Decoder {
    /// The drafter of the last speculative strategy prepared (kept: it learns as it goes).
    drafter: Option<(Strategy, Box<dyn Drafter>)>,
    /// Draft-length bound, pass cost model and buffers of the loop.
    state: LoopState,
    files: DrafterFiles,
    /// Things the user should hear about once (e.g. a damaged tuning file ignored).
    notes: Vec<String>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").field("drafter", &self.drafter.as_ref().map(|(s, _)| *s)).finish()
    }
}

impl Decoder {
    /// A decoder with no drafter yet and an unlearnt cost model.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Ready the drafter of `strategy` for `model` with a context of `ctx` tokens: check its
    /// prerequisites (e.g. trained heads for `heads`) and build it, unless it is the one held.
    /// Plain decoding keeps the drafter held for later.
    pub fn prepare(&mut self, strategy: Strategy, model: &Model, ctx: usize) -> Result<()> {
        strategy.check()?;
        if self.drafter.as_ref().is_some_and(|(s, _)| *s == strategy) {
            return Ok(());
        }
        let mut setup = Setup { model, ctx, files: &mut self.files, notes: &mut self.notes };
        if let Some(d) = strategy.drafter(&mut setup)? {
            self.drafter = Some((strategy, d));
        }
        Ok(())
    }

    /// Run the decode loop ([`engine::run`]) on `t` until `max_tokens` tokens are emitted, the
    /// context is full, or `emit` ends it, with the drafter of `drafting` (a strategy's is
    /// readied first).
    pub fn generate(
        &mut self,
        t: &mut Target<'_>,
        drafting: Drafting<'_>,
        sampler: &mut Sampler,
        max_tokens: usize,
        emit: &mut dyn FnMut(TokenId) -> Result<Emitted>,
    ) -> Result<(LoopEnd, DecodeStats)> {
        let drafter: Option<&mut dyn Drafter> = match drafting {
            Drafting::Strategy(Strategy::Plain) => None,
            Drafting::Strategy(s) => {
                self.prepare(s, t.model, t.cache.capacity())?;
                self.drafter.as_mut().map(|(_, d)| d.as_mut() as &mut dyn Drafter)
            }
            Drafting::With(d) => Some(d),
        };
        engine::run(t, drafter, &mut self.state, sampler, max_tokens, emit)
    }

    /// Forget the context (the drafter's view of it); what was learnt about costs stays.
    pub fn reset(&mut self) {
        if let Some((_, d)) = &mut self.drafter {
            d.reset();
        }
    }

    /// The cost curve of verify passes as learnt so far (`None` until a pass of more than one
    /// token was timed).
    pub fn cost_model(&self) -> Option<&CostModel> {
        (self.state.cost.observed() > 0).then_some(&self.state.cost)
    }

    /// Replace the pass cost curve.
    pub fn set_cost_model(&mut self, cost: CostModel) {
        self.state.cost = cost;
    }

    /// What the drafter of the last speculative strategy chose (see [`Drafter::describe`]).
    pub fn drafter_summary(&self) -> Option<String> {
        self.drafter.as_ref().and_then(|(_, d)| d.describe())
    }

    /// Use `heads` for strategy `heads` (instead of the file beside the model); checked against
    /// `model`.
    pub fn set_heads(&mut self, heads: DraftHeads, model: &Model) -> Result<()> {
        heads.check_for(model)?;
        self.files.heads = Some(Arc::new(heads));
        self.forget(Strategy::Heads);
        Ok(())
    }

    /// Use `net` for strategy `eagle` (instead of the file beside the model); checked against
    /// `model`.
    pub fn set_eagle(&mut self, net: EagleNet, model: &Model) -> Result<()> {
        net.check_for(model)?;
        self.files.eagle = Some(Arc::new(net));
        self.forget(Strategy::Eagle);
        Ok(())
    }

    /// Drop the held drafter when it is `strategy`'s (its files changed).
    fn forget(&mut self, strategy: Strategy) {
        if self.drafter.as_ref().is_some_and(|(s, _)| *s == strategy) {
            self.drafter = None;
        }
    }

    /// Messages for the user gathered since the last call (each said once).
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }
}
