//! `auto`: per step, the drafter most likely to pay. Prompt lookup first — when the context has
//! a match whose length has been reliable, its draft is nearly free; otherwise the model's own
//! draft heads, where `edgespec tune` trained them and measured that they pay on this machine;
//! otherwise the self-derived drafter (its tuned configuration where `tune`'s search found one
//! that pays, none where it found that none does, the cost-gated default before any tuning),
//! which itself drafts only while its measured acceptance and cost per draft step say a draft
//! pays; otherwise a plain pass.
//!
//! Lookup proposes a token tree: besides the longest match's continuation, those of shorter
//! matches elsewhere in the context where the measured pass cost says the extra rows pay
//! ([`LookupDrafter::propose_tree`]).

use std::sync::Arc;

use crate::error::{ErrorKind, Result};
use crate::model::Model;

use super::corpus::Corpus;
use super::heads::{DraftHeads, HeadsDrafter};
use super::lookup::{LookupDrafter, LookupParams};
use super::profile::{read_profile, shipped_profile, TuneReport};
use super::self_spec::{SelfSpecDrafter, SelfSpecParams};
use super::{Built, Draft, DraftInput, Drafter, Setup};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    None,
    Lookup,
    Heads,
    SelfSpec,
}

/// Prompt lookup, else the draft heads, else the self-derived drafter.
#[derive(Debug)]
pub struct AutoDrafter {
    lookup: LookupDrafter,
    heads: Option<HeadsDrafter>,
    self_spec: Option<SelfSpecDrafter>,
    last: Source,
    /// Whether lookup proposes token trees (several matches) rather than one chain.
    tree: bool,
    /// Per source (context, corpus, heads, self-spec): drafts, drafted tokens, accepted tokens.
    tally: [[u32; 3]; 4],
}

/// Names of the tallied sources, in [`AutoDrafter::tally`]'s order.
const TALLY: [&str; 4] = ["context", "corpus", "heads", "self-spec"];

impl AutoDrafter {
    /// For a model of `n_layers` layers and a context of `ctx` tokens; lookup candidates are
    /// verified as a token tree.
    pub fn new(n_layers: usize, ctx: usize) -> Result<AutoDrafter> {
        Ok(AutoDrafter {
            lookup: LookupDrafter::new(LookupParams::default(), ctx)?,
            heads: None,
            self_spec: Some(SelfSpecDrafter::new("self-spec", SelfSpecParams::layer_skip(n_layers)?)),
            last: Source::None,
            tree: true,
            tally: [[0; 3]; 4],
        })
    }

    /// [`AutoDrafter::new`] with what tuning chose: the model's own generations for lookup to
    /// draft from where the context has no match, `heads` to try after lookup, and the
    /// self-derived drafter's configuration (`None`: do not draft from the model itself).
    pub fn tuned(
        ctx: usize,
        corpus: Option<Arc<Corpus>>,
        heads: Option<HeadsDrafter>,
        self_spec: Option<SelfSpecParams>,
    ) -> Result<AutoDrafter> {
        Ok(AutoDrafter {
            lookup: LookupDrafter::new(LookupParams::default(), ctx)?.with_corpus(corpus),
            heads,
            self_spec: self_spec.map(|p| SelfSpecDrafter::new("self-spec", p)),
            last: Source::None,
            tree: true,
            tally: [[0; 3]; 4],
        })
    }

    /// `auto` as `edgespec tune` left it for `model` (see [`super::profile`]): lookup over the
    /// context and `corpus` (the model's own replies); the draft `heads` only where the profile
    /// measured them faster than plain decoding by the margin; the self-derived drafter the
    /// profile's search found paying, none where it found none pays (or recorded no parameters),
    /// and the cost-gated default where no search ran. Without a profile: [`AutoDrafter::new`].
    pub fn from_profile(
        model: &Model,
        ctx: usize,
        profile: Option<&TuneReport>,
        corpus: Option<Arc<Corpus>>,
        heads: Option<Arc<DraftHeads>>,
    ) -> Result<AutoDrafter> {
        let n_layers = model.config().n_layers;
        let Some(profile) = profile else {
            return AutoDrafter::new(n_layers, ctx);
        };
        let heads = match heads {
            Some(h) if profile.heads_pay() => Some(HeadsDrafter::new(model, h)?),
            _ => None,
        };
        let self_spec = if profile.self_spec_pays {
            // Parameters for another model's layer count (a profile copied by hand): none.
            profile.self_spec_params.as_ref().and_then(|c| c.params(n_layers).ok())
        } else if profile.self_spec_variants > 0 {
            None
        } else {
            Some(SelfSpecParams::layer_skip(n_layers)?)
        };
        AutoDrafter::tuned(ctx, corpus, heads, self_spec)
    }

    /// [`AutoDrafter::new`] with lookup drafting one chain (the longest match only): to measure
    /// what tree verification adds.
    pub fn chain_only(n_layers: usize, ctx: usize) -> Result<AutoDrafter> {
        Ok(AutoDrafter { tree: false, ..AutoDrafter::new(n_layers, ctx)? })
    }
}

/// The drafter of strategy `auto` as `edgespec tune` left it for the model: the files beside
/// the model (its profile, else the one shipped for a catalog model; its corpus; its heads where
/// the profile says they pay) loaded once and handed to [`AutoDrafter::from_profile`], which
/// decides what drafts. A damaged file is said once in the notes and ignored.
pub(crate) fn build(s: &mut Setup<'_>) -> Built {
    let path = s.model.file().path();
    let local = match path.map(read_profile).transpose() {
        Ok(p) => p.flatten(),
        Err(e) => {
            s.notes.push(format!("{e}; auto uses the shipped or default settings"));
            None
        }
    };
    let shipped = || shipped_profile(path?.file_name()?.to_str()?);
    let profile = local.or_else(shipped);
    if let Some(p) = &profile {
        if s.files.corpus.is_none() {
            // A corpus that does not load (missing, or another model's): without it, and said
            // once when the file is there.
            s.files.corpus = match Corpus::load_for(s.model) {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    if e.kind() != ErrorKind::NotFound {
                        s.notes.push(format!("ignoring the corpus beside the model: {e}"));
                    }
                    None
                }
            };
        }
        if p.heads_pay() && s.files.heads.is_none() {
            // Heads that no longer load (another model now at that path): without them.
            s.files.heads = match DraftHeads::load_for(s.model) {
                Ok(h) => Some(Arc::new(h)),
                Err(e) => {
                    if e.kind() != ErrorKind::NotFound {
                        s.notes.push(format!("auto drafts without heads: {e}"));
                    }
                    None
                }
            };
        }
    }
    let (corpus, heads) = (s.files.corpus.clone(), s.files.heads.clone());
    Ok(Some(Box::new(AutoDrafter::from_profile(s.model, s.ctx, profile.as_ref(), corpus, heads)?)))
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
        if let Some(h) = &mut self.heads {
            h.draft(input, out)?;
            if !out.tokens.is_empty() {
                self.last = Source::Heads;
                return Ok(());
            }
        }
        if let Some(d) = &mut self.self_spec {
            d.draft(input, out)?;
            if !out.tokens.is_empty() {
                self.last = Source::SelfSpec;
            }
        }
        Ok(())
    }

    fn feedback(&mut self, drafted: usize, accepted: usize) {
        let i = match self.last {
            Source::Lookup if self.lookup.last_from_corpus() => Some(1),
            Source::Lookup => Some(0),
            Source::Heads => Some(2),
            Source::SelfSpec => Some(3),
            Source::None => None,
        };
        if let Some(t) = i.map(|i| &mut self.tally[i]) {
            t[0] += 1;
            t[1] += drafted as u32;
            t[2] += accepted as u32;
        }
        match self.last {
            Source::Lookup => self.lookup.learn(drafted, accepted),
            Source::Heads => {
                if let Some(h) = &mut self.heads {
                    h.feedback(drafted, accepted);
                }
            }
            Source::SelfSpec => {
                if let Some(d) = &mut self.self_spec {
                    d.feedback(drafted, accepted);
                }
            }
            Source::None => {}
        }
        self.last = Source::None;
    }

    fn describe(&self) -> Option<String> {
        let parts: Vec<String> = TALLY
            .iter()
            .zip(&self.tally)
            .filter(|(_, t)| t[0] > 0)
            .map(|(name, t)| format!("{name} {} drafts, {} of {} tokens accepted", t[0], t[2], t[1]))
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    fn steers_length(&self) -> bool {
        // Only context matches: the corpus, the heads and the self-derived drafter size their
        // drafts from their own acceptance, and their misses must not cut the long copies that
        // lookup's bound grows for.
        self.last == Source::Lookup && !self.lookup.last_from_corpus()
    }

    fn reset(&mut self) {
        self.lookup.reset();
        if let Some(h) = &mut self.heads {
            h.reset();
        }
        if let Some(d) = &mut self.self_spec {
            d.reset();
        }
        self.last = Source::None;
    }
}
