//! Lookahead decoding (Fu et al. 2024): find future tokens without a drafter by running Jacobi
//! iterations on a window of guesses in the spare rows of every verify pass, harvesting the
//! n-grams they produce into a pool, and verifying pool n-grams that start with the pending token
//! in the same pass.
//!
//! The window holds `N − 1` levels of `W` guesses; the guess at level `j`, column `i` stands for
//! the token `i + j` positions after the pending token. In one pass (a token tree, see
//! [`super::tree`]):
//! - the **lookahead branch**: level 0 is a chain from the pending token through columns
//!   `1 .. W`; level `j > 0` of column `i` hangs under level `j − 1` of the same column. So column
//!   `i`'s deepest row sees `[pending, g0_1 .. g0_i, g1_i .. g(N−2)_i]` and the model's argmax
//!   there is one Jacobi step: the next guess of column `i`. Each column then yields an n-gram
//!   `[g0_i, g1_i .. g(N−2)_i, new]` keyed by its first token, and the levels shift up by one
//!   with the new guesses as the last level;
//! - the **verification branch**: up to `G` pool n-grams keyed by the pending token, merged into
//!   a trie under it.
//!
//! The engine walks the whole tree (verification branch and lookahead rows alike: the level-0
//! chain is plain Jacobi decoding) with the exact tree verifier, so output never changes. The
//! context's own n-grams are candidates too: the verification branch starts with prompt lookup's
//! token tree ([`LookupDrafter::propose_tree`]: the continuations of the longest suffix matches,
//! each with its own measured acceptance), and pool n-grams follow where lookup finds nothing.
//!
//! `W`, `N` and `G` are not fixed. Pool n-grams are verified only as far as the pool's measured
//! acceptance pays for their rows at the measured pass cost (the engine's [`CostModel`], learnt
//! on this device from the decode loop's own passes). Windows are chosen from a small set by
//! their measured tokens per pass over their cost: the base (no window) is used until a window
//! measures faster, and windows are explored at a backing-off interval, only those that could pay
//! at the current cost. Where batched passes are expensive (today's CPU kernels) that leaves the
//! pool checks; as batches get cheaper the larger windows win on their own.

use std::collections::HashMap;

use crate::error::Result;
use crate::model::MAX_BATCH;
use crate::sampling::argmax;
use crate::tokenizer::TokenId;

use super::adaptive::CostModel;
use super::lookup::{LookupDrafter, LookupParams};
use super::tree::TreeValue;
use super::{Built, Draft, DraftInput, Drafter, Setup};

/// Most window columns.
const W_MAX: usize = 8;
/// Most n-gram length (`N`); the window has `N − 1` levels.
const N_MAX: usize = 5;
/// Most n-grams kept per first token.
const POOL_PER_KEY: usize = 8;
/// No slot: the row is not in the draft.
const NO_SLOT: u8 = u8::MAX;

/// One window/pool shape: `w` columns, n-grams of `n`, `g` verified candidates (`w = 0`: no
/// lookahead branch, only pool candidates; `g = 0` and `w = 0`: a plain pass).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookaheadConfig {
    /// Window columns `W`.
    pub w: usize,
    /// N-gram length `N` (levels: `N − 1`).
    pub n: usize,
    /// Verification candidates `G`.
    pub g: usize,
}

impl LookaheadConfig {
    /// Rows of the lookahead branch (the pending token excluded).
    pub fn lookahead_rows(&self) -> usize {
        if self.w == 0 {
            0
        } else {
            (self.w - 1) + self.n.saturating_sub(2) * self.w
        }
    }

    /// Most rows of a pass (the pending token included).
    pub fn max_batch(&self) -> usize {
        1 + self.lookahead_rows() + self.g * self.n.saturating_sub(1)
    }
}

/// The configurations tried. The first, the base, has no window: it verifies pool n-grams only,
/// each branch only where the pool's measured acceptance pays for its rows (like prompt lookup),
/// so it costs nothing when nothing pays. The others add windows of growing size (each fits a
/// pass of [`MAX_BATCH`]) and must measure faster than the base to be used.
const CONFIGS: [LookaheadConfig; 7] = [
    LookaheadConfig { w: 0, n: 4, g: 2 },
    LookaheadConfig { w: 2, n: 2, g: 2 },
    LookaheadConfig { w: 2, n: 3, g: 1 },
    LookaheadConfig { w: 3, n: 3, g: 2 },
    LookaheadConfig { w: 4, n: 3, g: 2 },
    LookaheadConfig { w: 3, n: 4, g: 2 },
    LookaheadConfig { w: 5, n: 3, g: 3 },
];

/// Measured yield of one configuration (discounted sums over the passes that used it).
#[derive(Clone, Copy, Debug, Default)]
struct Yield {
    passes: f32,
    tokens: f32,
    rows: f32,
    /// Undiscounted passes, for the report.
    used: u64,
}

/// Weight of the prior in passes: until measured, a window is taken to yield one token per pass
/// at its full batch's cost, so it has to earn its place.
const PRIOR: f32 = 2.0;
/// Forgetting factor of the yields at each pass.
const FORGET: f32 = 0.98;
/// Forgetting factor of the pool's acceptance on passes that verified no pool n-gram.
const SLOW_FORGET: f32 = 0.998;
/// First exploration interval (passes) and its cap.
const EXPLORE_MIN: u32 = 32;
const EXPLORE_MAX: u32 = 256;

/// An n-gram continuation: up to `N_MAX − 1` tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Gram {
    toks: [TokenId; N_MAX - 1],
    len: u8,
}

impl Gram {
    fn new(tokens: &[TokenId]) -> Gram {
        let mut toks = [0; N_MAX - 1];
        let len = tokens.len().min(N_MAX - 1);
        toks[..len].copy_from_slice(&tokens[..len]);
        Gram { toks, len: len as u8 }
    }

    fn tokens(&self) -> &[TokenId] {
        &self.toks[..usize::from(self.len)]
    }
}

/// Lookahead decoding's state: the Jacobi window, the n-gram pool and the measured yields.
#[derive(Debug)]
pub struct LookaheadDrafter {
    /// Guesses, `(N_MAX − 1 levels, W_MAX columns)`; level 0 column 0 is the pending token.
    window: [[TokenId; W_MAX]; N_MAX - 1],
    window_ready: bool,
    /// Draft index of each window row in the last draft, or `NO_SLOT`, `(levels, columns)`.
    slots: [[u8; W_MAX]; N_MAX - 1],
    /// First token → continuations harvested from the window, most recent first.
    pool: HashMap<TokenId, Vec<Gram>>,
    /// The context's n-grams (prompt lookup's index and acceptance statistics).
    lookup: LookupDrafter,
    /// Rows of the last draft that lookup proposed.
    lookup_rows: usize,
    /// The context as last seen (to notice a rewrite).
    seen: Vec<TokenId>,
    yields: [Yield; CONFIGS.len()],
    /// Configuration of the pass awaiting feedback.
    chosen: usize,
    /// Passes since the last exploration, and the current interval.
    since_explore: u32,
    explore_every: u32,
    exploring: bool,
    /// State of the window's initial guesses.
    rng: u64,
    /// A configuration imposed by the caller (no adaptation).
    fixed: Option<usize>,
    /// The pass cost model as of the last choice.
    cost: CostModel,
    /// Longest verification branch of the pass awaiting feedback.
    verify_depth: usize,
    /// Discounted tokens accepted from verification branches, and branches that failed.
    pool_accepted: f32,
    pool_failed: f32,
}

impl LookaheadDrafter {
    /// A drafter for a context of about `ctx` tokens.
    pub fn new(ctx: usize) -> Result<LookaheadDrafter> {
        Ok(LookaheadDrafter {
            window: [[0; W_MAX]; N_MAX - 1],
            window_ready: false,
            slots: [[NO_SLOT; W_MAX]; N_MAX - 1],
            pool: HashMap::with_capacity(ctx.min(1 << 16)),
            lookup: LookupDrafter::new(LookupParams::default(), ctx)?,
            lookup_rows: 0,
            seen: Vec::with_capacity(ctx),
            yields: [Yield::default(); CONFIGS.len()],
            chosen: 0,
            since_explore: 0,
            explore_every: EXPLORE_MIN,
            exploring: false,
            rng: 0x2545_F491_4F6C_DD1D,
            fixed: None,
            cost: CostModel::default(),
            verify_depth: 0,
            pool_accepted: 0.0,
            pool_failed: 0.0,
        })
    }

    /// A drafter that always uses `config` (for tests and measurements), if it is one of the
    /// configurations the adaptive choice knows ([`LookaheadDrafter::configs`]).
    pub fn fixed(ctx: usize, config: LookaheadConfig) -> Result<LookaheadDrafter> {
        let at = CONFIGS.iter().position(|&c| c == config).ok_or_else(|| {
            crate::error::Error::invalid(format!("{config:?} is not one of the lookahead configurations"))
        })?;
        Ok(LookaheadDrafter { fixed: Some(at), ..LookaheadDrafter::new(ctx)? })
    }

    /// The configurations the adaptive choice picks from (the first has no window).
    pub fn configs() -> &'static [LookaheadConfig] {
        &CONFIGS
    }

    /// Passes run so far with each configuration (plain ones included).
    pub fn usage(&self) -> impl Iterator<Item = (LookaheadConfig, u64)> + '_ {
        CONFIGS.iter().zip(&self.yields).map(|(&c, y)| (c, y.used))
    }

    /// The configuration used most so far.
    pub fn most_used(&self) -> LookaheadConfig {
        self.usage().max_by_key(|&(_, n)| n).map_or(CONFIGS[0], |(c, _)| c)
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: the window's initial guesses only (never the sampler's stream).
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Per-token acceptance of pool n-grams: accepted tokens over accepted tokens and failures (a
    /// branch that stops inside counts one), with the prior of prompt lookup's one-token matches
    /// (0.4, weighted as 4 tokens) — pool n-grams are keyed by one token too.
    fn pool_acceptance(&self) -> f32 {
        (self.pool_accepted + 1.6) / (self.pool_accepted + self.pool_failed + 4.0)
    }

    /// Measured speed of configuration `c` relative to plain decoding at the current cost.
    fn score(&self, c: usize, cost: &CostModel) -> f32 {
        let y = &self.yields[c];
        // The prior: one token per pass, at the cost of the configuration's full batch (for the
        // base, whose rows are only spent where they pay, plain decoding's).
        let prior_rel = if c == 0 { 1.0 } else { cost.rel(CONFIGS[c].max_batch()) };
        // Σ rel(b) over the passes, with rel linear in b.
        let rel = y.passes + cost.slope() * (y.rows - y.passes) + PRIOR * prior_rel;
        (y.tokens + PRIOR) / rel
    }

    /// The configuration with the best measured speed that fits `room` drafted rows (the base
    /// unless a window is strictly faster).
    fn best(&self, cost: &CostModel, room: usize) -> usize {
        let mut best = (0, self.score(0, cost));
        for (c, cfg) in CONFIGS.iter().enumerate().skip(1) {
            let s = self.score(c, cost);
            if cfg.max_batch() <= room + 1 && s > best.1 {
                best = (c, s);
            }
        }
        best.0
    }

    /// Pick the configuration of this pass.
    fn choose(&mut self, cost: &CostModel, room: usize) -> usize {
        let fits = |c: &LookaheadConfig| c.max_batch() <= room + 1;
        if let Some(f) = self.fixed {
            return if fits(&CONFIGS[f]) { f } else { 0 };
        }
        self.cost = *cost;
        let best = self.best(cost, room);
        self.since_explore += 1;
        // Windows are judged by the measured pass cost: wait until the cost model has measured
        // some multi-token passes (the base's pool checks give them) rather than trusting its prior.
        if self.since_explore >= self.explore_every && cost.observed() >= 4 {
            self.since_explore = 0;
            // The least-used other window that fits and could pay: one that yields half the most
            // tokens its pass can give (n) beats plain at the current cost.
            let plausible = |c: &LookaheadConfig| cost.rel(c.max_batch()) < 1.0 + (c.n as f32 - 1.0) / 2.0;
            let other = (1..CONFIGS.len())
                .filter(|&c| c != best && fits(&CONFIGS[c]) && plausible(&CONFIGS[c]))
                .min_by(|&a, &b| self.yields[a].passes.total_cmp(&self.yields[b].passes));
            if let Some(o) = other {
                self.exploring = true;
                return o;
            }
        }
        best
    }

    /// Start over on a rewritten context (the pool's n-grams and the window belong to the old
    /// one).
    fn sync(&mut self, context: &[TokenId]) {
        let n = self.seen.len();
        let tail = n.saturating_sub(8);
        if context.len() < n || context[tail..n] != self.seen[tail..] {
            self.pool.clear();
            self.seen.clear();
            self.window_ready = false;
        }
        self.seen.extend_from_slice(&context[self.seen.len()..]);
    }

    /// Fill the window with tokens of the context (Jacobi needs some starting guess).
    fn init_window(&mut self, context: &[TokenId]) {
        for l in 0..N_MAX - 1 {
            for c in 0..W_MAX {
                let r = self.next_rand() as usize;
                self.window[l][c] = context.get(r % context.len().max(1)).copied().unwrap_or(0);
            }
        }
        self.window_ready = true;
    }
}

/// Remember `gram` after `first`, most recent first, without duplicates.
fn add_gram(pool: &mut HashMap<TokenId, Vec<Gram>>, first: TokenId, gram: Gram) {
    let list = pool.entry(first).or_insert_with(|| Vec::with_capacity(POOL_PER_KEY));
    if let Some(at) = list.iter().position(|g| *g == gram || g.tokens().starts_with(gram.tokens())) {
        let g = list.remove(at);
        list.insert(0, g);
        return;
    }
    if list.len() >= POOL_PER_KEY {
        list.pop();
    }
    list.insert(0, gram);
}

/// The drafter of strategy `lookahead`.
pub(crate) fn build(s: &mut Setup<'_>) -> Built {
    Ok(Some(Box::new(LookaheadDrafter::new(s.ctx)?)))
}

impl Drafter for LookaheadDrafter {
    fn name(&self) -> &'static str {
        "lookahead"
    }

    fn describe(&self) -> Option<String> {
        let mut used: Vec<(LookaheadConfig, u64)> = self.usage().filter(|&(_, n)| n > 0).collect();
        if used.is_empty() {
            return None;
        }
        used.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        let parts: Vec<String> = used.iter().map(|(c, n)| format!("{}/{}/{} ×{n}", c.w, c.n, c.g)).collect();
        Some(format!("W/N/G by passes: {}", parts.join(", ")))
    }

    fn draft(&mut self, input: &mut DraftInput<'_>, out: &mut Draft) -> Result<()> {
        self.slots = [[NO_SLOT; W_MAX]; N_MAX - 1];
        let Some(&pending) = input.context.last() else { return Ok(()) };
        self.sync(input.context);
        if !self.window_ready {
            self.init_window(input.context);
        }
        let room = input.room.min(MAX_BATCH - 1);
        self.chosen = self.choose(input.cost, room);
        let cfg = CONFIGS[self.chosen];
        let look = if cfg.lookahead_rows() <= room { cfg.lookahead_rows() } else { 0 };
        // Verification branch: the context's matches (prompt lookup's tree), else pool n-grams
        // after the pending token, as a trie, each as long as its expected tokens pay for its
        // rows at the pool's measured acceptance (a branch with the window's rows counted in:
        // they are paid for anyway).
        out.parents.clear();
        self.verify_depth = 0;
        let budget = room - look;
        self.lookup.propose_tree(input.context, input.max.min(budget), budget, input.cost, out);
        self.lookup_rows = out.tokens.len();
        let alpha = self.pool_acceptance();
        let mut value = TreeValue::new();
        value.rows += look;
        let pool = if self.lookup_rows == 0 { self.pool.get(&pending) } else { None };
        if let Some(list) = pool {
            for gram in list.iter().take(cfg.g) {
                let toks = gram.tokens();
                let max_len = toks.len().min(cfg.n - 1).min((room - look).saturating_sub(out.tokens.len()));
                let Some((l, gain)) = value.best_branch(alpha, max_len, input.cost) else { continue };
                let added = out.add_branch(&toks[..l], room - look);
                value.add(added, gain, alpha);
                self.verify_depth = self.verify_depth.max(l);
            }
        }
        if look == 0 {
            if out.tokens.is_empty() {
                // Nothing to verify: a plain pass, which the engine reports to no one.
                self.record(0, 0);
            }
            return Ok(());
        }
        // Lookahead branch: level 0 chains from the pending token, level j hangs under level
        // j − 1 of its column (column 0's level 0 is the pending token itself).
        out.make_tree();
        self.window[0][0] = pending;
        let push = |out: &mut Draft, tok: TokenId, parent: Option<usize>| {
            out.tokens.push(tok);
            out.parents.push(parent);
            (out.tokens.len() - 1) as u8
        };
        let slot = |s: u8| (s != NO_SLOT).then_some(usize::from(s));
        for c in 1..cfg.w {
            let parent = slot(self.slots[0][c - 1]);
            self.slots[0][c] = push(out, self.window[0][c], parent);
        }
        for l in 1..cfg.n - 1 {
            for c in 0..cfg.w {
                let parent = slot(self.slots[l - 1][c]);
                self.slots[l][c] = push(out, self.window[l][c], parent);
            }
        }
        Ok(())
    }

    fn observe(&mut self, draft: &Draft, logits: &[f32], vocab: usize) {
        let cfg = CONFIGS[self.chosen];
        if cfg.w == 0 || !draft.is_tree() || vocab == 0 {
            return;
        }
        let last = cfg.n.saturating_sub(2);
        for c in 0..cfg.w {
            // Column 0's level 0 is the pending token: row 0 of the pass.
            let row = match self.slots[last][c] {
                NO_SLOT if c == 0 && last == 0 => 0,
                NO_SLOT => continue,
                s => usize::from(s) + 1,
            };
            let Some(next) = logits.get(row * vocab..(row + 1) * vocab).and_then(argmax) else { continue };
            // The column's n-gram: its guesses from level 0 up, then the new token.
            let mut toks = [0; N_MAX - 1];
            for (l, t) in toks.iter_mut().enumerate().take(last) {
                *t = self.window[l + 1][c];
            }
            toks[last] = next;
            add_gram(&mut self.pool, self.window[0][c], Gram::new(&toks[..=last]));
            // One Jacobi step: the levels move up, the new guesses become the last level.
            for l in 0..last {
                self.window[l][c] = self.window[l + 1][c];
            }
            self.window[last][c] = next;
        }
    }

    fn feedback(&mut self, drafted: usize, accepted: usize) {
        self.record(drafted, accepted);
    }

    fn reset(&mut self) {
        self.pool.clear();
        self.lookup.reset();
        self.lookup_rows = 0;
        self.seen.clear();
        self.window_ready = false;
        self.chosen = 0;
    }
}

impl LookaheadDrafter {
    /// Account the pass of the chosen configuration: `accepted` of `drafted` rows.
    fn record(&mut self, drafted: usize, accepted: usize) {
        for y in self.yields.iter_mut() {
            y.passes *= FORGET;
            y.tokens *= FORGET;
            y.rows *= FORGET;
        }
        // Verified branches forget at the yields' rate; passes without one barely (an estimate
        // that stopped the drafting drifts back toward the prior over a few hundred passes, so
        // drafting is tried again, but rarely enough not to cost).
        if self.lookup_rows > 0 {
            // Counted against lookup's main branch (see `LookupDrafter::learn`).
            self.lookup.learn(drafted, accepted);
            self.lookup_rows = 0;
        }
        let forget = if self.verify_depth > 0 { FORGET } else { SLOW_FORGET };
        self.pool_accepted *= forget;
        self.pool_failed *= forget;
        if self.verify_depth > 0 {
            // Tokens past the verification branch came from the window's rows.
            self.pool_accepted += accepted.min(self.verify_depth) as f32;
            self.pool_failed += f32::from(u8::from(accepted < self.verify_depth));
            self.verify_depth = 0;
        }
        let y = &mut self.yields[self.chosen];
        y.passes += 1.0;
        y.tokens += (accepted + 1) as f32;
        y.rows += (drafted + 1) as f32;
        y.used += 1;
        if self.exploring {
            // Explore again soon when the configuration tried is now the best, else back off.
            self.exploring = false;
            self.explore_every = if self.best(&self.cost, MAX_BATCH) == self.chosen {
                EXPLORE_MIN
            } else {
                (self.explore_every * 2).min(EXPLORE_MAX)
            };
        }
        self.chosen = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_fit_a_pass() {
        for c in CONFIGS {
            assert!(c.max_batch() <= MAX_BATCH, "{c:?}");
            assert!(c.n <= N_MAX && c.w <= W_MAX);
        }
        assert_eq!(LookaheadConfig { w: 3, n: 4, g: 2 }.lookahead_rows(), 2 + 6);
    }

    #[test]
    fn pool_keeps_recent_distinct_grams() {
        let mut pool = HashMap::new();
        add_gram(&mut pool, 1, Gram::new(&[2, 3]));
        add_gram(&mut pool, 1, Gram::new(&[4, 5]));
        add_gram(&mut pool, 1, Gram::new(&[2, 3]));
        assert_eq!(
            pool[&1].iter().map(|g| g.tokens().to_vec()).collect::<Vec<_>>(),
            [vec![2, 3], vec![4, 5]]
        );
        for i in 0..20 {
            add_gram(&mut pool, 1, Gram::new(&[i + 10]));
        }
        assert_eq!(pool[&1].len(), POOL_PER_KEY);
    }

    #[test]
    fn describes_the_configurations_it_used_most_first() {
        let mut d = LookaheadDrafter::new(64).unwrap();
        assert_eq!(d.describe(), None, "nothing used yet");
        d.yields[0].used = 5;
        d.yields[1].used = 9;
        let (a, b) = (CONFIGS[1], CONFIGS[0]);
        let want = format!("W/N/G by passes: {}/{}/{} ×9, {}/{}/{} ×5", a.w, a.n, a.g, b.w, b.n, b.g);
        assert_eq!(d.describe(), Some(want));
    }

    #[test]
    fn cheap_batches_favour_larger_windows() {
        let mut d = LookaheadDrafter::new(64).unwrap();
        // Larger batches yielded more tokens per pass: 1 + 0.15 per extra row.
        for (c, y) in d.yields.iter_mut().enumerate().skip(1) {
            let b = CONFIGS[c].max_batch() as f32;
            *y = Yield { passes: 10.0, tokens: 10.0 * (1.0 + 0.15 * (b - 1.0)), rows: 10.0 * b, used: 10 };
        }
        let dear = CostModel::linear(0.5);
        assert_eq!(d.choose(&dear, 15), 0, "expensive batches: no window");
        let cheap = CostModel::linear(0.01);
        let largest = (0..CONFIGS.len()).max_by_key(|&c| CONFIGS[c].max_batch()).unwrap();
        assert_eq!(d.choose(&cheap, 15), largest, "cheap batches: the largest window");
        assert_eq!(d.choose(&cheap, 5), 2, "the largest that fits");
    }
}
