//! What one forward pass is asked to do: where its tokens go, which rows need logits, and which
//! sub-layers run.
//!
//! Plain decoding asks for the last row's logits of one token; verification of `k` drafted
//! tokens asks for all `k` rows; prefill asks for none until its last chunk. A self-speculative
//! drafter runs the same weights with some attention or MLP sub-layers skipped, or stops after
//! an early layer and applies the head there. A plan is plain `Copy` data, built per call
//! without allocating.

use crate::error::{Error, Result};
use crate::kernels::MAX_COLUMNS;

use super::tree::TokenTree;

/// Most tokens one forward pass takes (the mat-vec's column limit). Longer prompts are fed in
/// chunks of this size.
pub const MAX_BATCH: usize = MAX_COLUMNS;

/// Most layers a [`SkipSet`] can name.
pub const MAX_LAYERS: usize = 256;

/// The two sub-layers of a transformer block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubLayer {
    /// Self-attention (with its norm and residual add).
    Attention,
    /// The gated MLP (with its norm and residual add).
    Mlp,
}

/// A set of (layer, sub-layer) pairs to skip: a skipped sub-layer leaves the residual stream
/// unchanged and, for attention, writes nothing to the KV cache at the pass's positions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SkipSet {
    attn: [u64; MAX_LAYERS / 64],
    mlp: [u64; MAX_LAYERS / 64],
}

impl SkipSet {
    /// Skip nothing.
    pub const fn none() -> SkipSet {
        SkipSet { attn: [0; MAX_LAYERS / 64], mlp: [0; MAX_LAYERS / 64] }
    }

    fn bits(&self, which: SubLayer) -> &[u64; MAX_LAYERS / 64] {
        match which {
            SubLayer::Attention => &self.attn,
            SubLayer::Mlp => &self.mlp,
        }
    }

    /// Add `(layer, which)` to the set.
    pub fn insert(&mut self, layer: usize, which: SubLayer) -> Result<()> {
        if layer >= MAX_LAYERS {
            return Err(Error::invalid(format!(
                "layer {layer} is beyond the {MAX_LAYERS} a skip set can name"
            )));
        }
        let bits = match which {
            SubLayer::Attention => &mut self.attn,
            SubLayer::Mlp => &mut self.mlp,
        };
        bits[layer / 64] |= 1 << (layer % 64);
        Ok(())
    }

    /// Whether `(layer, which)` is skipped.
    pub fn contains(&self, layer: usize, which: SubLayer) -> bool {
        layer < MAX_LAYERS && self.bits(which)[layer / 64] & (1 << (layer % 64)) != 0
    }

    /// Number of skipped sub-layers.
    pub fn len(&self) -> usize {
        self.attn.iter().chain(&self.mlp).map(|w| w.count_ones() as usize).sum()
    }

    /// Whether nothing is skipped.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which rows of a batch the head is applied to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitRows {
    /// None (prefill chunks before the last).
    None,
    /// The last row only (plain decoding, the last prefill chunk).
    Last,
    /// Every row (verification of drafted tokens).
    All,
    /// The rows whose bits are set (bit `i` = row `i`).
    Mask(u16),
}

impl LogitRows {
    /// Whether row `i` of a batch of `n` gets logits.
    pub fn wants(self, i: usize, n: usize) -> bool {
        match self {
            LogitRows::None => false,
            LogitRows::Last => i + 1 == n,
            LogitRows::All => i < n,
            LogitRows::Mask(m) => i < n && i < 16 && m & (1 << i) != 0,
        }
    }

    /// Number of rows of a batch of `n` that get logits.
    pub fn count(self, n: usize) -> usize {
        (0..n).filter(|&i| self.wants(i, n)).count()
    }
}

/// Which vocabulary rows the output head computes.
///
/// A drafter does not need the whole vocabulary: the frequent low ids (BPE vocabularies number
/// tokens roughly by merge order, so low ids are the common ones) plus the tokens of the context
/// carry nearly all of its top-1 choices. Skipping the other rows of the head saves most of its
/// bytes (the head is about a third of what SmolLM2-135M reads per token).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HeadVocab {
    /// Every row (what verification and plain decoding use).
    #[default]
    Full,
    /// Rows `[0, prefix)` (one mat-vec over the first `prefix` rows of the mapped head, no copy)
    /// and the extra ids last given to [`Workspace::set_head_extra`](super::Workspace::set_head_extra)
    /// (one row dot each). The logits keep the full `(rows, vocab)` shape: every other entry is
    /// `-inf`, and the computed ones are bitwise what the full head gives.
    Reduced {
        /// Rows `[0, prefix)` are computed (clamped to `1 ..= vocab`).
        prefix: u32,
    },
}

/// One forward pass's instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwardPlan {
    /// Position of the first token; token `i` goes to position `start + i`. The KV cache is
    /// truncated to `start` first, so a pass at a position before the cache's end overwrites
    /// (rolls back) what was there.
    pub start: usize,
    /// Rows that need logits.
    pub logits: LogitRows,
    /// Sub-layers to skip.
    pub skip: SkipSet,
    /// Stop after this layer (0-based) and apply the final norm and head there.
    pub exit_after: Option<usize>,
    /// A token tree: row `i` is still stored at `start + i`, but sits at position `start +
    /// depth(i)` and attends to the prefix and its ancestors only. `None`: a chain.
    pub tree: Option<TokenTree>,
    /// The head's vocabulary rows (full unless a drafter asks for fewer).
    pub vocab: HeadVocab,
}

impl ForwardPlan {
    /// A full pass at `start` with logits for the last row.
    pub const fn at(start: usize) -> ForwardPlan {
        ForwardPlan {
            start,
            logits: LogitRows::Last,
            skip: SkipSet::none(),
            exit_after: None,
            tree: None,
            vocab: HeadVocab::Full,
        }
    }

    /// The same plan asking for `rows`.
    pub const fn logits(mut self, rows: LogitRows) -> ForwardPlan {
        self.logits = rows;
        self
    }

    /// The same plan skipping `skip`.
    pub const fn skip(mut self, skip: SkipSet) -> ForwardPlan {
        self.skip = skip;
        self
    }

    /// The same plan over the token tree `tree` (its length must be the pass's).
    pub const fn tree(mut self, tree: TokenTree) -> ForwardPlan {
        self.tree = Some(tree);
        self
    }

    /// The same plan computing the head's rows `vocab` only.
    pub const fn vocab(mut self, vocab: HeadVocab) -> ForwardPlan {
        self.vocab = vocab;
        self
    }

    /// The same plan stopping after `layer`.
    pub const fn exit_after(mut self, layer: usize) -> ForwardPlan {
        self.exit_after = Some(layer);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_set_round_trips() {
        let mut s = SkipSet::none();
        assert!(s.is_empty());
        s.insert(3, SubLayer::Attention).unwrap();
        s.insert(70, SubLayer::Mlp).unwrap();
        assert!(s.contains(3, SubLayer::Attention) && !s.contains(3, SubLayer::Mlp));
        assert!(s.contains(70, SubLayer::Mlp) && !s.contains(70, SubLayer::Attention));
        assert_eq!(s.len(), 2);
        assert!(s.insert(MAX_LAYERS, SubLayer::Mlp).is_err());
        assert!(!s.contains(MAX_LAYERS + 5, SubLayer::Mlp));
    }

    #[test]
    fn logit_rows_select() {
        assert_eq!(LogitRows::Last.count(5), 1);
        assert!(LogitRows::Last.wants(4, 5) && !LogitRows::Last.wants(3, 5));
        assert_eq!(LogitRows::All.count(5), 5);
        assert_eq!(LogitRows::None.count(5), 0);
        assert_eq!(LogitRows::Mask(0b1010).count(3), 1);
    }
}
