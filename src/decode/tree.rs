//! Token-tree drafts: a drafter may propose several candidate continuations at once (two lookup
//! matches, the lookahead pool's n-grams, the lookahead window itself) as a tree under the
//! pending token, verified in one pass with the model's tree mask
//! ([`TokenTree`]).
//!
//! Verification walks down the tree: at a node, draw the model's token there exactly as plain
//! decoding would (argmax, or one sample from p — one draw per emitted token); if a child holds
//! that token, it stands and the walk continues there, else the drawn token is the next pending
//! one. This is sample-and-match on the path the model itself chooses, so greedy output equals
//! plain decoding's and, with the same seed, so does sampled output. Where two children hold the
//! same token (their rows have bitwise the same logits), the one with the deeper subtree is
//! taken. The accepted path's rows are then moved to consecutive cache positions
//! ([`KvCache::keep_path`](crate::model::KvCache::keep_path)).

use crate::error::{Error, Result};
use crate::model::{TokenTree, MAX_BATCH};
use crate::tokenizer::TokenId;

use super::adaptive::CostModel;

/// What a tree draft is expected to be worth as it grows: the expected tokens of its pass, its
/// rows (the pending token included), and the chance that none of its branches so far holds the
/// next token. A further branch is worth adding only when it raises the expected tokens per unit
/// of (measured) pass cost; it helps only where the branches before it fail.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct TreeValue {
    pub expected: f32,
    pub rows: usize,
    pub miss: f32,
}

impl TreeValue {
    /// An empty draft: one token per pass of one row.
    pub fn new() -> TreeValue {
        TreeValue { expected: 1.0, rows: 1, miss: 1.0 }
    }

    /// The best length in `1 ..= max_len` of a further branch whose tokens are each accepted with
    /// probability `alpha` (the first only where earlier branches miss), with the expected tokens
    /// it adds — or `None` when no length pays.
    pub fn best_branch(&self, alpha: f32, max_len: usize, cost: &CostModel) -> Option<(usize, f32)> {
        let a = alpha.clamp(0.0, 0.999);
        let now = self.expected / cost.rel(self.rows);
        let gain = |l: usize| self.miss * a * (1.0 - a.powi(l as i32)) / (1.0 - a);
        (1..=max_len.min(MAX_BATCH - self.rows.min(MAX_BATCH)))
            .map(|l| (l, gain(l), (self.expected + gain(l)) / cost.rel(self.rows + l)))
            .filter(|&(.., speed)| speed > now)
            .max_by(|x, y| x.2.total_cmp(&y.2))
            .map(|(l, g, _)| (l, g))
    }

    /// Account for a branch that added `rows` rows and `gain` expected tokens at acceptance
    /// `alpha`.
    pub fn add(&mut self, rows: usize, gain: f32, alpha: f32) {
        self.rows += rows;
        self.expected += gain;
        self.miss *= 1.0 - alpha.clamp(0.0, 0.999);
    }
}

/// A tree draft's shape over a pass's rows: row 0 is the pending token, row `i + 1` drafted
/// token `i`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TreeShape {
    /// The pass's tree.
    pub tree: TokenTree,
    /// Height of the subtree under each row (0 for a leaf), `(MAX_BATCH)`.
    height: [u8; MAX_BATCH],
}

impl TreeShape {
    /// The shape of a draft whose token `i` hangs under `parents[i]` (`None`: the pending token).
    pub fn new(parents: &[Option<usize>]) -> Result<TreeShape> {
        if parents.len() + 1 > MAX_BATCH {
            return Err(Error::internal("a tree draft larger than a pass"));
        }
        let tree = TokenTree::from_parents(
            std::iter::once(None).chain(parents.iter().map(|p| Some(p.map_or(0, |j| j + 1)))),
        )
        .map_err(|e| e.context("drafter returned a malformed token tree"))?;
        let mut height = [0u8; MAX_BATCH];
        for row in (1..tree.len()).rev() {
            if let Some(p) = tree.parent(row) {
                height[p] = height[p].max(height[row] + 1);
            }
        }
        Ok(TreeShape { tree, height })
    }

    /// Longest branch (drafted tokens on it).
    pub fn depth(&self) -> usize {
        usize::from(self.height[0])
    }

    /// The children of any of `rows` that hold `token`, in row order, into `out` (cleared
    /// first); `batch` is the pass's tokens.
    ///
    /// `rows` are rows for the same context: the same tokens at the same depths (a tree may hold
    /// a continuation twice, e.g. a lookup branch and a Jacobi chain that agree). Their logits
    /// and cached keys and values are bitwise equal (a row's result depends only on its token,
    /// its position and what it attends to), so the walk follows all of them at once and a draft
    /// is accepted as far as any of its copies reaches.
    pub fn children(&self, rows: &[usize], token: TokenId, batch: &[TokenId], out: &mut Vec<usize>) {
        out.clear();
        let n = self.tree.len().min(batch.len());
        let Some(&first) = rows.first() else { return };
        for (c, &t) in batch.iter().enumerate().take(n).skip(first + 1) {
            if t == token && self.tree.parent(c).is_some_and(|p| rows.contains(&p)) {
                out.push(c);
            }
        }
    }
}

/// Insert the chain `tokens` under the pending token into a tree draft (`out_tokens`,
/// `out_parents`), sharing the prefix it has in common with branches already there; stops when
/// the draft holds `max` tokens. Returns how many new tokens were added.
pub(crate) fn insert_branch(
    out_tokens: &mut Vec<TokenId>,
    out_parents: &mut Vec<Option<usize>>,
    tokens: &[TokenId],
    max: usize,
) -> usize {
    let mut parent: Option<usize> = None;
    let mut added = 0;
    for &t in tokens {
        let existing = (0..out_tokens.len()).find(|&i| out_parents[i] == parent && out_tokens[i] == t);
        match existing {
            Some(i) => parent = Some(i),
            None => {
                if out_tokens.len() >= max {
                    break;
                }
                out_tokens.push(t);
                out_parents.push(parent);
                parent = Some(out_tokens.len() - 1);
                added += 1;
            }
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_share_prefixes_and_the_walk_follows_every_copy() {
        let (mut t, mut p) = (Vec::new(), Vec::new());
        assert_eq!(insert_branch(&mut t, &mut p, &[5, 6, 7], 15), 3);
        assert_eq!(insert_branch(&mut t, &mut p, &[5, 6, 8, 9], 15), 2);
        assert_eq!(insert_branch(&mut t, &mut p, &[4], 15), 1);
        assert_eq!(t, [5, 6, 7, 8, 9, 4]);
        assert_eq!(p, [None, Some(0), Some(1), Some(1), Some(3), None]);
        assert_eq!(insert_branch(&mut t, &mut p, &[3, 3, 3], 7), 1, "bounded by max");
        let shape = TreeShape::new(&p).unwrap();
        assert_eq!(shape.depth(), 4);
        let mut batch = vec![1];
        batch.extend(&t);
        let mut out = Vec::new();
        shape.children(&[0], 5, &batch, &mut out);
        assert_eq!(out, [1]);
        shape.children(&[2], 8, &batch, &mut out);
        assert_eq!(out, [4]);
        shape.children(&[2], 9, &batch, &mut out);
        assert!(out.is_empty());
        // Two children with the same token: both, and then the children of either.
        let shape = TreeShape::new(&[None, None, Some(0), Some(1)]).unwrap();
        let batch = [1, 7, 7, 2, 3];
        shape.children(&[0], 7, &batch, &mut out);
        assert_eq!(out, [1, 2]);
        let dup = out.clone();
        shape.children(&dup, 3, &batch, &mut out);
        assert_eq!(out, [4]);
        shape.children(&dup, 2, &batch, &mut out);
        assert_eq!(out, [3]);
        assert!(TreeShape::new(&[Some(0)]).is_err(), "a token cannot be its own parent");
    }
}
