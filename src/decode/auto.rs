//! `auto`: per step, the drafter most likely to pay. Prompt lookup first — when the context has
//! a match whose length has been reliable, its draft is nearly free; otherwise the self-derived
//! drafter, which itself drafts only while its measured acceptance and its measured cost per
//! draft step say a draft pays; otherwise a plain pass.
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
}

impl AutoDrafter {
    /// For a model of `n_layers` layers and a context of `ctx` tokens.
    pub fn new(n_layers: usize, ctx: usize) -> Result<AutoDrafter> {
        Ok(AutoDrafter {
            lookup: LookupDrafter::new(LookupParams::default(), ctx)?,
            self_spec: SelfSpecDrafter::new("self-spec", SelfSpecParams::layer_skip(n_layers)?),
            last: Source::None,
        })
    }
}

impl Drafter for AutoDrafter {
    fn name(&self) -> &'static str {
        "auto"
    }

    fn draft(&mut self, input: &mut DraftInput<'_>, out: &mut Draft) -> Result<()> {
        self.last = Source::None;
        self.lookup.propose(input.context, input.max, input.cost, out);
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
