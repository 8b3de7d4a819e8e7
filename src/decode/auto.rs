//! `auto`: per step, the drafter most likely to pay. Prompt lookup first — when the context has
//! a match whose length has been reliable, its draft is nearly free; otherwise the self-derived
//! drafter, which itself drafts only while its measured acceptance and its measured cost per
//! draft step say a draft pays; otherwise a plain pass.
//!
//! Lookup proposes a token tree: besides the longest match's continuation, those of shorter
//! matches elsewhere in the context where the measured pass cost says the extra rows pay
//! ([`LookupDrafter::propose_tree`]).
//!
//! Status: the self-derived part is the fixed default layer-skip configuration (no tuned
//! profile or draft heads yet), so on SmolLM2 `auto` behaves like `lookup` for now.

use crate::error::Result;

use super::lookup::{LookupDrafter, LookupParams};
use super::self_spec::{SelfSpecDrafter, SelfSpecParams};
use super::{Draft, DraftInput, Drafter};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    None,
    Lookup,
    SelfSpec,
}

/// Prompt lookup, else the self-derived drafter.
#[derive(Debug)]
pub struct AutoDrafter {
    lookup: LookupDrafter,
    self_spec: SelfSpecDrafter,
    last: Source,
    /// Whether lookup proposes token trees (several matches) rather than one chain.
    tree: bool,
}

impl AutoDrafter {
    /// For a model of `n_layers` layers and a context of `ctx` tokens; lookup candidates are
    /// verified as a token tree.
    pub fn new(n_layers: usize, ctx: usize) -> Result<AutoDrafter> {
        Ok(AutoDrafter {
            lookup: LookupDrafter::new(LookupParams::default(), ctx)?,
            self_spec: SelfSpecDrafter::new("self-spec", SelfSpecParams::layer_skip(n_layers)?),
            last: Source::None,
            tree: true,
        })
    }

    /// [`AutoDrafter::new`] with lookup drafting one chain (the longest match only): to measure
    /// what tree verification adds.
    pub fn chain_only(n_layers: usize, ctx: usize) -> Result<AutoDrafter> {
        Ok(AutoDrafter { tree: false, ..AutoDrafter::new(n_layers, ctx)? })
    }
}

impl Drafter for AutoDrafter {
    fn name(&self) -> &'static str {
        "auto"
    }

    fn draft(&mut self, input: &mut DraftInput<'_>, out: &mut Draft) -> Result<()> {
        self.last = Source::None;
        if self.tree {
            self.lookup.propose_tree(input.context, input.max, input.room, input.cost, out);
        } else {
            self.lookup.propose(input.context, input.max, input.cost, out);
        }
        if !out.tokens.is_empty() {
            self.last = Source::Lookup;
            return Ok(());
        }
        self.self_spec.draft(input, out)?;
        if !out.tokens.is_empty() {
            self.last = Source::SelfSpec;
        }
        Ok(())
    }

    fn feedback(&mut self, drafted: usize, accepted: usize) {
        match self.last {
            Source::Lookup => self.lookup.learn(drafted, accepted),
            Source::SelfSpec => self.self_spec.feedback(drafted, accepted),
            Source::None => {}
        }
        self.last = Source::None;
    }

    fn reset(&mut self) {
        self.lookup.reset();
        self.self_spec.reset();
        self.last = Source::None;
    }
}
