//! Prompt-lookup drafting (Saxena 2023): when the last few tokens already occurred earlier in the
//! context — the prompt or the text generated so far — propose what followed them then.
//! Summaries, answers quoting a document, edits of code and extraction into JSON copy long spans
//! of their input, and each copied span is verified in one pass instead of token by token.
//!
//! The index maps every n-gram (`n_min ..= n_max` tokens) to the position right after its most
//! recent occurrence, and is updated only with the tokens appended since the last call, so a
//! draft costs O(n_max) lookups, never a rescan of the context. Matches are tried longest first.
//!
//! Whether a match is worth verifying depends on how often matches of that length have been
//! right (tracked per length, with exponential forgetting) and on what a longer verify pass
//! costs on this machine ([`CostModel`]): the drafter proposes the number of tokens with the best
//! expected speed, which is zero — a plain pass — when drafting does not pay. That keeps prompts
//! with nothing to copy at plain decoding's speed.
//!
//! With a [`Corpus`] (`auto`, after `edgespec tune`), the model's own earlier replies are a second
//! place to find a match, with its own acceptance statistics.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::tokenizer::TokenId;

use super::adaptive::CostModel;
use super::corpus::Corpus;
use super::ngram::{gram_key, Index};
use super::tree::TreeValue;
use super::{Built, Draft, DraftInput, Drafter, Setup};

/// Settings of the lookup drafter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LookupParams {
    /// Shortest n-gram that may match (≥ 1).
    pub n_min: usize,
    /// Longest n-gram tried first (≤ 8).
    pub n_max: usize,
    /// Prior acceptance of a drafted token before any feedback, per match length: `prior_base +
    /// prior_step · (n − 1)`, capped at 0.9.
    pub prior_base: f32,
    /// See `prior_base`.
    pub prior_step: f32,
    /// Weight of the prior in drafted tokens (how quickly feedback overrides it).
    pub prior_weight: f32,
    /// Forgetting factor applied to the acceptance counts at each feedback (0 < f ≤ 1).
    pub forget: f32,
}

impl Default for LookupParams {
    fn default() -> Self {
        LookupParams {
            n_min: 1,
            n_max: 4,
            prior_base: 0.4,
            prior_step: 0.15,
            prior_weight: 4.0,
            forget: 0.97,
        }
    }
}

/// Most n-gram lengths the drafter tracks.
const MAX_N: usize = 8;

/// Where a match was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Earlier in the context (prompt lookup).
    Context = 0,
    /// In the model's own generations ([`Corpus`]).
    Corpus = 1,
}

/// How much lower the prior acceptance of a corpus match is than that of a context match of
/// the same length: a phrase the model used elsewhere continues the same way less often than
/// one it is copying.
const CORPUS_PRIOR_OFFSET: f32 = 0.15;

/// The prompt-lookup drafter.
#[derive(Debug)]
pub struct LookupDrafter {
    params: LookupParams,
    /// n-gram key → position of the token that followed its latest occurrence.
    index: Index,
    /// The context indexed so far (to append to it and to notice a rewritten context).
    seen: Vec<TokenId>,
    /// The model's own generations, consulted where the context has no better match.
    corpus: Option<Arc<Corpus>>,
    /// Per source ([`Source`]) and match length `n`: discounted accepted tokens and rejections.
    accepted: [[f32; MAX_N + 1]; 2],
    rejected: [[f32; MAX_N + 1]; 2],
    /// Match length and source of the draft awaiting feedback.
    last_n: usize,
    last_src: Source,
    /// Where the continuation of that match starts in the context, and its drafted length.
    last_j: usize,
    last_gamma: usize,
}

impl LookupDrafter {
    /// A drafter with `params`, expecting about `ctx` tokens of context (to size its index).
    pub fn new(params: LookupParams, ctx: usize) -> Result<LookupDrafter> {
        if params.n_min == 0 || params.n_min > params.n_max || params.n_max > MAX_N {
            return Err(Error::invalid(format!(
                "lookup n-grams must satisfy 1 <= n_min <= n_max <= {MAX_N}"
            )));
        }
        if !(params.forget > 0.0 && params.forget <= 1.0) || params.prior_weight.is_nan() {
            return Err(Error::invalid("lookup: the forgetting factor must be in (0, 1]"));
        }
        let grams = params.n_max - params.n_min + 1;
        Ok(LookupDrafter {
            params,
            index: Index::with_capacity_and_hasher(ctx.saturating_mul(grams), Default::default()),
            seen: Vec::with_capacity(ctx),
            corpus: None,
            accepted: [[0.0; MAX_N + 1]; 2],
            rejected: [[0.0; MAX_N + 1]; 2],
            last_n: 0,
            last_src: Source::Context,
            last_j: 0,
            last_gamma: 0,
        })
    }

    /// Also draft from `corpus` (the model's own generations) where the context has no match
    /// expected to be right as often.
    pub fn with_corpus(mut self, corpus: Option<Arc<Corpus>>) -> LookupDrafter {
        self.corpus = corpus.filter(|c| !c.is_empty());
        self
    }

    /// Whether the draft awaiting feedback came from the corpus.
    pub fn last_from_corpus(&self) -> bool {
        self.last_n > 0 && self.last_src == Source::Corpus
    }

    /// Estimated per-token acceptance of a context match of length `n`.
    pub fn acceptance(&self, n: usize) -> f32 {
        self.acceptance_in(Source::Context, n)
    }

    fn acceptance_in(&self, src: Source, n: usize) -> f32 {
        let p = &self.params;
        let s = src as usize;
        let n_min = if src == Source::Corpus { super::corpus::N_MIN } else { p.n_min };
        // The prior of a length follows what the next shorter one measured, when it measured
        // anything: longer matches are more reliable, but not more than the text allows.
        let shorter =
            n.checked_sub(1).filter(|&m| m >= n_min && self.accepted[s][m] + self.rejected[s][m] >= 1.0);
        let prior = match shorter {
            Some(m) => self.acceptance_in(src, m) + p.prior_step,
            None => {
                let offset = if src == Source::Corpus { CORPUS_PRIOR_OFFSET } else { 0.0 };
                p.prior_base + p.prior_step * (n.saturating_sub(1)) as f32 - offset
            }
        }
        .min(0.9);
        let (a, r) = (self.accepted[s][n], self.rejected[s][n]);
        (a + prior * p.prior_weight) / (a + r + p.prior_weight)
    }

    /// The longest context match: its length and where its continuation starts.
    fn context_match(&self, context: &[TokenId]) -> Option<(usize, usize)> {
        let len = context.len();
        for n in (self.params.n_min..=self.params.n_max.min(len)).rev() {
            let gram = &context[len - n..];
            let Some(&j) = self.index.get(&gram_key(gram)) else { continue };
            let j = j as usize;
            if j < n || j >= len || context[j - n..j] != *gram {
                continue;
            }
            return Some((n, j));
        }
        None
    }

    /// Bring the index up to date with `context`, from scratch if it is not a continuation of
    /// what was indexed.
    fn sync(&mut self, context: &[TokenId]) {
        let n = self.seen.len();
        let tail = n.saturating_sub(8);
        if context.len() < n || context[tail..n] != self.seen[tail..] {
            self.index.clear();
            self.seen.clear();
        }
        for &t in &context[self.seen.len()..] {
            self.seen.push(t);
            // The n-grams ending just before the new token now have a continuation: it.
            let j = self.seen.len() - 1;
            for g in self.params.n_min..=self.params.n_max.min(j) {
                self.index.insert(gram_key(&self.seen[j - g..j]), j as u32);
            }
        }
    }
}

/// The drafter of strategy `lookup`.
pub(crate) fn build(s: &mut Setup<'_>) -> Built {
    Ok(Some(Box::new(LookupDrafter::new(LookupParams::default(), s.ctx)?)))
}

impl Drafter for LookupDrafter {
    fn name(&self) -> &'static str {
        "lookup"
    }

    fn draft(&mut self, input: &mut DraftInput<'_>, out: &mut Draft) -> Result<()> {
        self.propose(input.context, input.max, input.cost, out);
        Ok(())
    }

    fn feedback(&mut self, drafted: usize, accepted: usize) {
        self.learn(drafted, accepted);
    }

    fn reset(&mut self) {
        LookupDrafter::reset(self)
    }
}

impl LookupDrafter {
    /// Forget the index (the context was cleared).
    pub fn reset(&mut self) {
        self.index.clear();
        self.seen.clear();
        self.last_n = 0;
        self.last_gamma = 0;
    }

    /// Propose up to `max` tokens continuing `context` into `out`: the continuation of the
    /// longest context match, or of the corpus's longest match where that is expected to be
    /// right more often.
    pub fn propose(&mut self, context: &[TokenId], max: usize, cost: &CostModel, out: &mut Draft) {
        self.last_n = 0;
        self.last_gamma = 0;
        self.sync(context);
        if max == 0 {
            return;
        }
        let from_context = self.context_match(context);
        let corpus = self.corpus.clone();
        let from_corpus = corpus.as_deref().and_then(|c| c.continuation(context, self.params.n_max.max(2)));
        let a_context = from_context.map_or(-1.0, |(n, _)| self.acceptance_in(Source::Context, n));
        let a_corpus = from_corpus.map_or(-1.0, |(n, _)| self.acceptance_in(Source::Corpus, n));
        // The longest match of the better source decides; shorter ones are less reliable still.
        let (src, n, a, cont) = match (from_context, from_corpus) {
            (Some((n, j)), _) if a_context >= a_corpus => (Source::Context, n, a_context, &context[j..]),
            (_, Some((n, cont))) => (Source::Corpus, n, a_corpus, cont),
            _ => return,
        };
        let (gamma, _) = cost.best_gamma(a, max.min(cont.len()));
        if gamma > 0 {
            out.tokens.extend_from_slice(&cont[..gamma]);
            self.last_n = n;
            self.last_src = src;
            self.last_j = if src == Source::Context { context.len() - cont.len() } else { usize::MAX };
            self.last_gamma = gamma;
        }
    }

    /// [`propose`](Self::propose) as a token tree: the chosen match's continuation (up to `max`
    /// tokens), plus the continuations of shorter context matches found elsewhere in the context
    /// (of any context match, when the corpus's was chosen), each
    /// added (as a branch under the pending token, sharing any common prefix) only when its
    /// expected tokens — it helps only where the branches before it fail — pay for its rows at
    /// the measured cost; `room` bounds the whole tree.
    pub fn propose_tree(
        &mut self,
        context: &[TokenId],
        max: usize,
        room: usize,
        cost: &CostModel,
        out: &mut Draft,
    ) {
        self.propose(context, max, cost, out);
        let (n_p, gamma_p, src_p) = (self.last_n, out.tokens.len(), self.last_src);
        if n_p == 0 || gamma_p == 0 {
            return;
        }
        let a_p = self.acceptance_in(src_p, n_p);
        let mut value = TreeValue::new();
        value.add(gamma_p, CostModel::expected_tokens(a_p, gamma_p) - 1.0, a_p);
        let len = context.len();
        let mut used = [usize::MAX; MAX_N + 1];
        let n_top = if src_p == Source::Context {
            used[n_p] = self.last_j;
            n_p - 1
        } else {
            self.params.n_max
        };
        for n in (self.params.n_min..=n_top.min(len)).rev() {
            let gram = &context[len - n..];
            let Some(&j) = self.index.get(&gram_key(gram)) else { continue };
            let j = j as usize;
            if j < n || j >= len || context[j - n..j] != *gram || used.contains(&j) {
                continue;
            }
            used[n] = j;
            let a = self.acceptance(n);
            let budget = room.saturating_sub(out.tokens.len()).min(len - j);
            if let Some((l, gain)) = value.best_branch(a, budget, cost) {
                let added = out.add_branch(&context[j..j + l], room);
                value.add(added, gain, a);
            }
        }
    }

    /// Learn from the fate of the last proposal: `accepted` of `drafted` tokens taken (of a tree,
    /// counted against its main branch).
    pub fn learn(&mut self, drafted: usize, accepted: usize) {
        let (drafted, accepted) = if drafted > self.last_gamma && self.last_gamma > 0 {
            (self.last_gamma, accepted.min(self.last_gamma))
        } else {
            (drafted, accepted)
        };
        let n = self.last_n;
        if n == 0 || drafted == 0 {
            return;
        }
        let f = self.params.forget;
        for v in self.accepted.iter_mut().chain(self.rejected.iter_mut()).flatten() {
            *v *= f;
        }
        let s = self.last_src as usize;
        self.accepted[s][n] += accepted as f32;
        if accepted < drafted {
            self.rejected[s][n] += 1.0;
        }
        self.last_n = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drafter() -> LookupDrafter {
        LookupDrafter::new(LookupParams::default(), 256).unwrap()
    }

    const CHEAP: CostModel = CostModel::linear_const(0.01);

    #[test]
    fn proposes_what_followed_the_latest_match() {
        let mut d = drafter();
        let mut out = Draft::default();
        // "1 2 3 4 5 ... 1 2 3" → propose "4 5".
        let ctx = [1, 2, 3, 4, 5, 9, 9, 1, 2, 3];
        d.propose(&ctx, 2, &CHEAP, &mut out);
        assert_eq!(out.tokens, [4, 5]);
        // The latest occurrence wins: "7 8" followed "2 3" later.
        out.clear();
        let ctx = [1, 2, 3, 4, 5, 1, 2, 3, 7, 8, 0, 2, 3];
        d.propose(&ctx, 2, &CHEAP, &mut out);
        assert_eq!(out.tokens, [7, 8]);
        // Nothing matches the last token: no draft.
        out.clear();
        d.propose(&[1, 2, 3, 4], 4, &CHEAP, &mut out);
        assert!(out.tokens.is_empty());
    }

    #[test]
    fn index_follows_appends_and_rewrites() {
        let mut d = drafter();
        let mut out = Draft::default();
        let mut ctx = vec![5, 6, 7, 8];
        d.propose(&ctx, 3, &CHEAP, &mut out);
        assert!(out.tokens.is_empty());
        ctx.extend([5, 6]);
        d.propose(&ctx, 3, &CHEAP, &mut out);
        assert_eq!(out.tokens, [7, 8, 5]);
        // A different context of the same length: rebuilt, not confused with the old one.
        out.clear();
        d.propose(&[1, 1, 1, 1, 1, 2], 3, &CHEAP, &mut out);
        assert!(out.tokens.is_empty(), "{:?}", out.tokens);
    }

    #[test]
    fn trees_add_the_continuations_of_shorter_matches() {
        let mut d = drafter();
        let mut out = Draft::default();
        // "7 8 3" continued as "4 5 ..."; the latest "3" as "6 6 ...".
        let ctx = [7, 8, 3, 4, 5, 0, 3, 6, 6, 1, 7, 8, 3];
        d.propose_tree(&ctx, 6, 15, &CHEAP, &mut out);
        assert_eq!(out.tokens[..2], [4, 5], "the longest match first");
        assert!(out.is_tree());
        assert!(out.tokens.contains(&6), "a shorter match's continuation: {:?}", out.tokens);
        assert!(out.parents.iter().filter(|p| p.is_none()).count() >= 2);
        // At full price per row, no second branch.
        out.clear();
        d.propose_tree(&ctx, 6, 15, &CostModel::linear(0.9), &mut out);
        assert!(!out.tokens.contains(&6));
    }

    #[test]
    fn rejections_turn_drafting_off_for_that_match_length() {
        let mut d = LookupDrafter::new(LookupParams::default(), 64).unwrap();
        let cost = CostModel::linear(0.15);
        let ctx = [3, 4, 9, 3];
        let mut out = Draft::default();
        d.propose(&ctx, 4, &cost, &mut out);
        assert!(!out.tokens.is_empty(), "the prior drafts a one-token match at first");
        for _ in 0..30 {
            let k = out.tokens.len();
            d.learn(k, 0);
            out.clear();
            d.propose(&ctx, 4, &cost, &mut out);
        }
        assert!(out.tokens.is_empty(), "always rejected: stop drafting");
        assert!(d.acceptance(1) < 0.2, "{}", d.acceptance(1));
    }

    #[test]
    fn the_corpus_drafts_where_the_context_has_no_match_and_learns_on_its_own() {
        let corpus = Arc::new(Corpus::new([0; 32], [&[40, 41, 42, 43, 44][..]]));
        let mut d = drafter().with_corpus(Some(corpus));
        let mut out = Draft::default();
        // Nothing in the context continues "41 42"; the corpus does.
        let ctx = [7, 8, 41, 42];
        d.propose(&ctx, 2, &CHEAP, &mut out);
        assert_eq!(out.tokens, [43, 44]);
        // A longer context match wins over a corpus match of the same reliability or less.
        out.clear();
        let ctx = [41, 42, 9, 9, 7, 41, 42];
        d.propose(&ctx, 2, &CHEAP, &mut out);
        assert_eq!(out.tokens, [9, 9]);
        // Rejections of corpus drafts lower the corpus's estimate, not the context's.
        let before = d.acceptance(2);
        let ctx = [7, 8, 41, 42];
        for _ in 0..20 {
            out.clear();
            d.propose(&ctx, 2, &CostModel::linear(0.15), &mut out);
            if out.tokens.is_empty() {
                break;
            }
            assert_eq!(out.tokens[0], 43);
            d.learn(out.tokens.len(), 0);
        }
        assert!(out.tokens.is_empty(), "always rejected: stop drafting from the corpus");
        assert_eq!(d.acceptance(2), before);
    }
}
