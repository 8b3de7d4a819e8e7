//! Token trees: one forward pass over several candidate continuations that share the cached
//! prefix (and each other's prefixes), each row seeing only its own ancestors.
//!
//! A speculative pass usually feeds one chain `[pending, d1 .. dk]`. A tree lets it verify
//! several alternatives at once (two lookup matches, the lookahead pool's n-grams) and lets
//! lookahead decoding run its Jacobi window in the same pass. Row `i` of a tree pass has a parent
//! (an earlier row, or the cached prefix) and a depth (0 under the prefix); it is stored in the
//! KV cache at position `start + i` (its *slot*) but computed at the RoPE position
//! `start + depth`, and it attends to the cached prefix `[0, start)` plus exactly its ancestors
//! and itself, in increasing depth order. That is the sequence of keys a plain chain of its
//! root-to-row path would attend to, visited in the same order, so a row's logits and its keys
//! and values are bitwise those of the chain (batch invariance, ARCHITECTURE.md invariant 3).
//! After verification, [`KvCache::keep_path`](super::KvCache::keep_path) moves the accepted
//! path's rows to consecutive positions and drops the rest.

use std::ops::Range;

use crate::error::{Error, Result};

use super::plan::MAX_BATCH;

/// Parent marker of a row directly under the cached prefix.
const PREFIX: u8 = u8::MAX;

/// The shape of a tree pass: each row's parent and depth. Plain `Copy` data (part of a
/// [`ForwardPlan`](super::ForwardPlan)); rows come in topological order (a parent before its
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
#[path = "tree_tests.rs"]
mod tests;
