//! What one forward pass is asked to do: where its tokens go (a chain, or a token tree of
//! candidate continuations), which rows need logits, and which sub-layers run.
//!
//! Plain decoding asks for the last row's logits of one token; verification of `k` drafted
//! tokens asks for all `k` rows; prefill asks for none until its last chunk. A self-speculative
//! drafter runs the same weights with some attention or MLP sub-layers skipped, or stops after
//! an early layer and applies the head there. A plan is plain `Copy` data, built per call
//! without allocating.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::kernels::MAX_COLUMNS;

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

// ---- Token trees: one forward pass over several candidate continuations that share the cached
// prefix (and each other's prefixes), each row seeing only its own ancestors ----
//
// A speculative pass usually feeds one chain `[pending, d1 .. dk]`. A tree lets it verify
// several alternatives at once (two lookup matches, the lookahead pool's n-grams) and lets
// lookahead decoding run its Jacobi window in the same pass. Row `i` of a tree pass has a parent
// (an earlier row, or the cached prefix) and a depth (0 under the prefix); it is stored in the
// KV cache at position `start + i` (its *slot*) but computed at the RoPE position
// `start + depth`, and it attends to the cached prefix `[0, start)` plus exactly its ancestors
// and itself, in increasing depth order. That is the sequence of keys a plain chain of its
// root-to-row path would attend to, visited in the same order, so a row's logits and its keys
// and values are bitwise those of the chain (batch invariance, docs/architecture.md invariant 3).
// After verification, `KvCache::keep_path` moves the accepted
// path's rows to consecutive positions and drops the rest.

/// Parent marker of a row directly under the cached prefix.
const PREFIX: u8 = u8::MAX;

/// The shape of a tree pass: each row's parent and depth. Plain `Copy` data (part of a
/// [`ForwardPlan`]); rows come in topological order (a parent before its
/// children).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenTree {
    /// Parent row of each row, or `PREFIX`, `(MAX_BATCH)`.
    parent: [u8; MAX_BATCH],
    /// Depth of each row (0 under the prefix), `(MAX_BATCH)`.
    depth: [u8; MAX_BATCH],
    len: u8,
}

impl TokenTree {
    /// A tree from each row's parent (`None`: the cached prefix). A parent must be an earlier
    /// row; at most [`MAX_BATCH`] rows.
    pub fn from_parents(parents: impl IntoIterator<Item = Option<usize>>) -> Result<TokenTree> {
        let mut t = TokenTree { parent: [PREFIX; MAX_BATCH], depth: [0; MAX_BATCH], len: 0 };
        for (i, p) in parents.into_iter().enumerate() {
            if i >= MAX_BATCH {
                return Err(Error::invalid(format!("a token tree holds at most {MAX_BATCH} rows")));
            }
            match p {
                None => {}
                Some(p) if p < i => {
                    t.parent[i] = p as u8;
                    t.depth[i] = t.depth[p] + 1;
                }
                Some(p) => {
                    return Err(Error::invalid(format!(
                        "token tree row {i} names row {p} as its parent: parents come first"
                    )))
                }
            }
            t.len = i as u8 + 1;
        }
        Ok(t)
    }

    /// A chain of `n` rows (the shape of a plain pass).
    pub fn chain(n: usize) -> Result<TokenTree> {
        TokenTree::from_parents((0..n).map(|i| i.checked_sub(1)))
    }

    /// Rows in the tree.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether the tree has no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The parent of `row` (`None`: the cached prefix, or no such row).
    pub fn parent(&self, row: usize) -> Option<usize> {
        self.parent.get(row).filter(|&&p| p != PREFIX && row < self.len()).map(|&p| usize::from(p))
    }

    /// The depth of `row` (0 under the prefix): its RoPE position is `start + depth`.
    pub fn depth(&self, row: usize) -> usize {
        self.depth.get(row).map_or(0, |&d| usize::from(d))
    }

    /// The rows from `row`'s root down to `row` (in increasing depth) into `out`; returns how
    /// many (`depth(row) + 1`). `path[d]` is the ancestor at depth `d`.
    pub fn path(&self, row: usize, out: &mut [usize; MAX_BATCH]) -> usize {
        if row >= self.len() {
            return 0;
        }
        let n = self.depth(row) + 1;
        let mut at = row;
        for d in (0..n).rev() {
            out[d] = at;
            at = self.parent(at).unwrap_or(at);
        }
        n
    }

    /// The storage spans a row at slot `row` of a pass at `start` attends to, in the order it
    /// visits them: the cached prefix from `lo` (the first position its window still sees, in
    /// RoPE positions) and then its ancestors' slots, adjacent slots merged. Returns how many of
    /// `out` were filled.
    pub(crate) fn spans(&self, row: usize, start: usize, lo: usize, out: &mut [Range<usize>]) -> usize {
        let mut path = [0usize; MAX_BATCH];
        let n = self.path(row, &mut path);
        let mut count = 0;
        let mut push = |r: Range<usize>, out: &mut [Range<usize>]| {
            if r.is_empty() {
                return;
            }
            if count > 0 && out[count - 1].end == r.start {
                out[count - 1].end = r.end;
            } else if count < out.len() {
                out[count] = r;
                count += 1;
            }
        };
        push(lo.min(start)..start, out);
        // The ancestor at depth d sits at RoPE position start + d: keep those the window sees.
        for &a in &path[lo.saturating_sub(start).min(n)..n] {
            push(start + a..start + a + 1, out);
        }
        count
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

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tree_tests;
