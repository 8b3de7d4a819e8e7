//! Readying a session's drafters: the drafter each strategy needs, and `auto` as `edgespec tune`
//! left it for the model (its profile, corpus and heads beside the model file, or the profile
//! shipped for a catalog model), with a note for the user where one of those files is damaged.

use std::sync::Arc;

use crate::decode::corpus::Corpus;
use crate::decode::{
    AutoDrafter, DraftHeads, Drafter, HeadsDrafter, LookaheadDrafter, LookupDrafter, LookupParams,
    SelfSpecDrafter, SelfSpecParams, Strategy,
};
use crate::error::{ErrorKind, Result};
use crate::tune::PAYS_MARGIN;

use super::Session;

impl Session {
    /// Ready the drafter of `strategy`.
    pub(super) fn prepare(&mut self, strategy: Strategy) -> Result<()> {
        strategy.check()?;
        if strategy == Strategy::Plain {
            return Ok(());
        }
        if self.drafter.as_ref().map(|(s, _)| *s) != Some(strategy) {
            let d: Box<dyn Drafter> = match strategy {
                Strategy::Lookup => {
                    Box::new(LookupDrafter::new(LookupParams::default(), self.cache.capacity())?)
                }
                Strategy::SelfSpec => {
                    let p = SelfSpecParams::layer_skip(self.model.config().n_layers)?;
                    Box::new(SelfSpecDrafter::new(strategy.name(), p))
                }
                Strategy::EarlyExit => {
                    let p = SelfSpecParams::early_exit(self.model.config().n_layers.div_ceil(2))?;
                    Box::new(SelfSpecDrafter::new(strategy.name(), p))
                }
                Strategy::Lookahead => Box::new(LookaheadDrafter::new(self.cache.capacity())?),
                Strategy::Auto => Box::new(self.tuned_auto()?),
                Strategy::Heads => {
                    let heads = match &self.heads {
                        Some(h) => h.clone(),
                        None => Arc::new(DraftHeads::load_for(&self.model)?),
                    };
                    self.heads = Some(heads.clone());
                    Box::new(HeadsDrafter::new(&self.model, heads)?)
                }
                other => return other.check(),
            };
            self.drafter = Some((strategy, d));
        }
        Ok(())
    }

    /// `auto` as `edgespec tune` left it for this model (its profile beside the model file, else
    /// the one shipped for a catalog model): the draft heads where they measured faster than
    /// plain decoding (and their file is there), the self-derived drafter's best configuration
    /// where the search found one that pays and none where it found none; the untuned defaults
    /// without a profile.
    fn tuned_auto(&mut self) -> Result<AutoDrafter> {
        let ctx = self.cache.capacity();
        let n_layers = self.model.config().n_layers;
        let path = self.model.file().path();
        let shipped = || {
            let name = path?.file_name()?.to_str()?;
            crate::tune::shipped_profile(name)
        };
        let local = match path.map(crate::tune::read_profile).transpose() {
            Ok(p) => p.flatten(),
            Err(e) => {
                self.notes.push(format!("{e}; auto uses the shipped or default settings"));
                None
            }
        };
        let Some(profile) = local.or_else(shipped) else {
            return AutoDrafter::new(n_layers, ctx);
        };
        if self.corpus.is_none() {
            // A corpus that does not load (missing, or another model's): without it, and said
            // once when the file is there.
            self.corpus = match Corpus::load_for(&self.model) {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    if e.kind() != ErrorKind::NotFound {
                        self.notes.push(format!("ignoring the corpus beside the model: {e}"));
                    }
                    None
                }
            };
        }
        // The same margin as the self-spec search's: tune measures on a few prompts, and a
        // shared machine's speed drifts by several percent.
        let heads = if profile.speedup > 1.0 + PAYS_MARGIN {
            if self.heads.is_none() {
                // Heads that no longer load (another model now at that path): without them.
                self.heads = match DraftHeads::load_for(&self.model) {
                    Ok(h) => Some(Arc::new(h)),
                    Err(e) => {
                        if e.kind() != ErrorKind::NotFound {
                            self.notes.push(format!("auto drafts without heads: {e}"));
                        }
                        None
                    }
                };
            }
            self.heads.clone().map(|h| HeadsDrafter::new(&self.model, h)).transpose()?
        } else {
            None
        };
        let self_spec = if profile.self_spec_pays {
            let llc = crate::decode::self_spec_search::last_level_cache_bytes();
            crate::decode::self_spec_search::candidates(&self.model, llc)?
                .into_iter()
                .find(|c| c.name == profile.self_spec_best)
                .map(|c| c.params)
        } else if profile.self_spec_variants > 0 {
            None
        } else {
            Some(SelfSpecParams::layer_skip(n_layers)?)
        };
        AutoDrafter::tuned(ctx, self.corpus.clone(), heads, self_spec)
    }
}
