//! Readying a session's drafters: the drafter each strategy needs, and `auto` as `edgespec tune`
//! left it for the model (its profile, corpus and heads beside the model file, or the profile
//! shipped for a catalog model), with a note for the user where one of those files is damaged.

use std::sync::Arc;

use crate::decode::corpus::Corpus;
use crate::decode::profile::{read_profile, shipped_profile};
use crate::decode::{
    AutoDrafter, DraftHeads, Drafter, EagleDrafter, EagleNet, HeadsDrafter, LookaheadDrafter, LookupDrafter,
    LookupParams, SelfSpecDrafter, SelfSpecParams, Strategy,
};
use crate::error::{ErrorKind, Result};

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
                Strategy::Eagle => {
                    let net = match &self.eagle {
                        Some(n) => n.clone(),
                        None => Arc::new(EagleNet::load_for(&self.model)?),
                    };
                    self.eagle = Some(net.clone());
                    Box::new(EagleDrafter::new(&self.model, net)?)
                }
                other => return other.check(),
            };
            self.drafter = Some((strategy, d));
        }
        Ok(())
    }

    /// `auto` as `edgespec tune` left it for this model: the files beside the model (its
    /// profile, else the one shipped for a catalog model; its corpus; its heads where the
    /// profile says they pay) loaded once and handed to [`AutoDrafter::from_profile`], which
    /// decides what drafts. A damaged file is said once in the session's notes and ignored.
    fn tuned_auto(&mut self) -> Result<AutoDrafter> {
        let path = self.model.file().path();
        let local = match path.map(read_profile).transpose() {
            Ok(p) => p.flatten(),
            Err(e) => {
                self.notes.push(format!("{e}; auto uses the shipped or default settings"));
                None
            }
        };
        let shipped = || shipped_profile(path?.file_name()?.to_str()?);
        let profile = local.or_else(shipped);
        if let Some(p) = &profile {
            if self.corpus.is_none() {
                // A corpus that does not load (missing, or another model's): without it, and
                // said once when the file is there.
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
            if p.heads_pay() && self.heads.is_none() {
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
        }
        let ctx = self.cache.capacity();
        AutoDrafter::from_profile(&self.model, ctx, profile.as_ref(), self.corpus.clone(), self.heads.clone())
    }
}
