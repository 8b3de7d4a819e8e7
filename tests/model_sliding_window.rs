//! Sliding-window layers keep a ring of `window + MAX_BATCH` positions instead of the whole
//! context, and that changes nothing: after any sequence of batched passes, truncations and
//! passes at an earlier start (the rollbacks of speculative decoding, at most `MAX_BATCH + 1`
//! positions deep) and speculative rounds with drafter passes that skip sub-layers, every
//! logit is bitwise the one a whole-context cache ([`KvLayout::Full`]) gives. Deeper rollbacks are refused without touching the cache. Checked on tiny gemma3 and
//! mistral models (five local layers per global one, and every layer local) with a window of 8
//! over many windows of tokens; on the real Gemma 3 270M, the cache's size is checked.

mod common;

use common::*;
use edgespec::kernels::KernelPool;
use edgespec::model::synthetic::SyntheticSpec;
use edgespec::model::{
    ForwardPlan, KvCache, KvLayout, KvType, LogitRows, Model, SkipSet, SubLayer, Workspace, MAX_BATCH,
};
use edgespec::ErrorKind;

const WINDOW: usize = 8;
const CTX: usize = 400;

/// A tiny model whose local layers attend to the last `WINDOW` positions.
fn windowed(arch: &'static str, seed: u64) -> Model {
    let spec = SyntheticSpec { arch, sliding_window: Some(WINDOW), ..SyntheticSpec::gemma3(seed) };
    tiny(&spec)
}

/// SplitMix64 for the schedule of passes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The same model with two caches: the ring under test and the whole-context reference.
struct Pair<'m> {
    model: &'m Model,
    ws: Workspace,
    ring: KvCache,
    full: KvCache,
}

impl<'m> Pair<'m> {
    fn new(model: &'m Model, threads: usize, kv: KvType) -> Pair<'m> {
        let pool = KernelPool::new(Some(threads)).unwrap();
        let ws = Workspace::new(model, pool, CTX).unwrap();
        let ring = model.new_cache(CTX, kv).unwrap();
        let full = model.new_cache_with_layout(CTX, kv, KvLayout::Full).unwrap();
        assert_eq!(ring.layout(), KvLayout::Ring);
        Pair { model, ws, ring, full }
    }

    /// Run one pass on both caches; the logit rows must be bitwise equal.
    fn pass(&mut self, tokens: &[u32], plan: &ForwardPlan, what: &str) {
        let want = self.model.forward(&mut self.ws, &mut self.full, tokens, plan).unwrap().to_vec();
        let got = self.model.forward(&mut self.ws, &mut self.ring, tokens, plan).unwrap().to_vec();
        assert_eq!(want.len(), plan.logits.count(tokens.len()) * self.model.config().vocab_size);
        if bits(&want) != bits(&got) {
            panic!("{what}: logits differ between the ring and the whole-context cache");
        }
        assert_eq!(self.ring.len(), self.full.len());
    }
}

/// A drafter's plan: some attention/MLP sub-layers skipped, or an early exit.
fn draft_plan(rng: &mut Rng, n_layers: usize) -> ForwardPlan {
    let plan = ForwardPlan::at(0).logits(LogitRows::All);
    if rng.below(2) == 0 {
        return plan.exit_after(rng.below(n_layers));
    }
    let mut skip = SkipSet::none();
    for l in 0..n_layers {
        if rng.below(3) == 0 {
            let which = if rng.below(2) == 0 { SubLayer::Attention } else { SubLayer::Mlp };
            skip.insert(l, which).unwrap();
        }
    }
    plan.skip(skip)
}

/// A random schedule until the cache has seen `positions` positions: passes of 1..=16 tokens,
/// each at the cache's end or up to `MAX_BATCH + 1` positions before it (never below the
/// ring's floor), sometimes after an explicit truncation; and speculative rounds as the decode
/// engine runs them: 1..=8 one-token drafter passes (sub-layers skipped or an early exit; they
/// write only the layers they run), a full verification pass from the round's start over up to
/// 16 tokens, and a truncation to the accepted length. Returns the number of rollbacks.
fn random_schedule(pair: &mut Pair<'_>, seed: u64, positions: usize) -> usize {
    let mut rng = Rng(seed);
    let (vocab, n_layers) = (pair.model.config().vocab_size, pair.model.config().n_layers);
    let mut rollbacks = 0;
    let mut step = 0;
    while pair.ring.len() < positions {
        step += 1;
        let len = pair.ring.len();
        if rng.below(4) == 0 && len + MAX_BATCH <= CTX {
            // A speculative round.
            let plan = draft_plan(&mut rng, n_layers);
            let drafts = 1 + rng.below(8);
            for d in 0..drafts {
                let tok = [rng.below(vocab) as u32];
                let plan = ForwardPlan { start: len + d, ..plan };
                pair.pass(&tok, &plan, &format!("step {step}: draft {d} at {}", len + d));
            }
            let n = drafts + 1 + rng.below(MAX_BATCH - drafts);
            let toks: Vec<u32> = (0..n).map(|_| rng.below(vocab) as u32).collect();
            let plan = ForwardPlan::at(len).logits(LogitRows::All);
            pair.pass(&toks, &plan, &format!("step {step}: verify {n} tokens at {len}"));
            let keep = len + 1 + rng.below(n);
            pair.ring.truncate(keep).unwrap();
            pair.full.truncate(keep).unwrap();
            rollbacks += 1;
            continue;
        }
        let mut start = len;
        if len > 0 && rng.below(3) == 0 {
            let back = 1 + rng.below(len.min(MAX_BATCH + 1));
            if len - back >= pair.ring.rollback_floor() || len == back {
                start = len - back;
                rollbacks += 1;
                if rng.below(2) == 0 {
                    // An explicit truncation first; otherwise the pass itself rolls back.
                    pair.ring.truncate(start).unwrap();
                    pair.full.truncate(start).unwrap();
                }
            }
        }
        let n = (1 + rng.below(MAX_BATCH)).min(CTX - start);
        let toks: Vec<u32> = (0..n).map(|_| rng.below(vocab) as u32).collect();
        let plan = ForwardPlan::at(start).logits(LogitRows::All);
        pair.pass(&toks, &plan, &format!("step {step}: {n} tokens at {start} (cache held {len})"));
    }
    rollbacks
}

#[test]
fn ring_gives_the_same_logits_as_the_whole_context() {
    for (arch, seed) in [("gemma3", 11), ("mistral", 12)] {
        let model = windowed(arch, seed);
        let mut pair = Pair::new(&model, 2, KvType::F16);
        // The ring really is smaller: local layers keep WINDOW + MAX_BATCH rows.
        let rows: Vec<usize> =
            (0..model.config().n_layers).map(|l| pair.ring.layer_rows(l).unwrap()).collect();
        let want: Vec<usize> = (0..model.config().n_layers)
            .map(|l| if model.arch().is_local(l) { WINDOW + MAX_BATCH } else { CTX })
            .collect();
        assert_eq!(rows, want, "{arch}");
        assert!(pair.ring.bytes() < pair.full.bytes());
        // Over more than 3 windows many times, then a fresh start and again.
        let rollbacks = random_schedule(&mut pair, seed, CTX - MAX_BATCH);
        assert!(rollbacks > 20, "{arch}: only {rollbacks} rollbacks");
        pair.ring.clear();
        pair.full.clear();
        random_schedule(&mut pair, seed + 100, 5 * WINDOW);
    }
}

#[test]
fn ring_matches_with_f32_rows_and_three_threads() {
    let model = windowed("gemma3", 13);
    let mut pair = Pair::new(&model, 3, KvType::F32);
    random_schedule(&mut pair, 7, 6 * WINDOW);
}

/// Every position of a long sequence, fed one token at a time, in batches of 16 and through a
/// ring, matches the whole-context cache fed one at a time (the windows slide past the ring's
/// end many times and wrap inside a batch).
#[test]
fn long_sequences_in_any_batching_match() {
    let model = windowed("gemma3", 14);
    let toks = tokens(CTX, model.config().vocab_size, 5);
    let (mut ws, _) = session(&model, 2, CTX, KvType::F16);
    let mut full = model.new_cache_with_layout(CTX, KvType::F16, KvLayout::Full).unwrap();
    let reference = logits_in_batches(&model, &mut ws, &mut full, &toks, 1);
    for k in [1, 3, 16] {
        let mut ring = model.new_cache(CTX, KvType::F16).unwrap();
        let got = logits_in_batches(&model, &mut ws, &mut ring, &toks, k);
        assert_bitwise(&reference, &got, &format!("ring, batches of {k}"));
    }
}

#[test]
fn rollbacks_deeper_than_the_ring_are_refused_and_change_nothing() {
    let model = windowed("gemma3", 15);
    let (mut ws, _) = session(&model, 2, CTX, KvType::F16);
    let mut ring = model.new_cache(CTX, KvType::F16).unwrap();
    let toks = tokens(100, model.config().vocab_size, 6);
    logits_in_batches(&model, &mut ws, &mut ring, &toks[..60], 16);
    // Positions below 60 − (WINDOW + MAX_BATCH) are overwritten; a pass at L needs L + 1 − WINDOW.
    let floor = 60 - (WINDOW + MAX_BATCH) + WINDOW - 1;
    assert_eq!(ring.rollback_floor(), floor);
    assert_eq!(floor, 60 - (MAX_BATCH + 1));
    let err = ring.truncate(floor - 1).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert_eq!(ring.len(), 60);
    let err = model.forward(&mut ws, &mut ring, &toks[..2], &ForwardPlan::at(floor - 1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert_eq!(ring.len(), 60);
    // The deepest allowed rollback, then on: the same as a fresh whole-context run.
    ring.truncate(floor).unwrap();
    let after = logits_in_batches(&model, &mut ws, &mut ring, &toks[floor..floor + 20], 7);
    let mut full = model.new_cache_with_layout(CTX, KvType::F16, KvLayout::Full).unwrap();
    let reference = logits_in_batches(&model, &mut ws, &mut full, &toks[..floor + 20], 16);
    assert_bitwise(&reference[floor..], &after, "after the deepest rollback");
    // A whole-context cache rolls back anywhere; truncating a ring to 0 always works.
    full.truncate(3).unwrap();
    assert_eq!(full.rollback_floor(), 0);
    ring.truncate(0).unwrap();
    assert_eq!(ring.rollback_floor(), 0);
    let again = logits_in_batches(&model, &mut ws, &mut ring, &toks[..floor + 20], 5);
    assert_bitwise(&reference, &again, "after truncating to 0");
}

#[test]
fn a_ring_no_larger_than_the_context_is_the_whole_context() {
    let model = windowed("gemma3", 16);
    let short = model.new_cache(WINDOW + 3, KvType::F16).unwrap();
    let full = model.new_cache_with_layout(WINDOW + 3, KvType::F16, KvLayout::Full).unwrap();
    assert_eq!(short.bytes(), full.bytes());
    assert_eq!(
        KvCache::bytes_for(model.config(), model.arch(), 1000, KvType::F16, KvLayout::Ring) as usize,
        model.new_cache(1000, KvType::F16).unwrap().bytes()
    );
    // A ring cache made for one window does not serve a model with another.
    let other = tiny(&SyntheticSpec { sliding_window: Some(WINDOW + 1), ..SyntheticSpec::gemma3(16) });
    let (mut ws, _) = session(&other, 1, 64, KvType::F16);
    let mut cache = model.new_cache(64, KvType::F16).unwrap();
    let err = other.forward(&mut ws, &mut cache, &[1], &ForwardPlan::at(0)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

/// Gemma 3 270M: 18 layers, 15 of them local with a window of 512, one KV head of 256 (keys and
/// values), f16. Local layers keep 528 positions whatever the context.
#[test]
fn gemma3_270m_cache_is_windowed() {
    let path = edgespec::catalog::resolve_model("gemma3-270m").expect("pull gemma3-270m");
    let model = Model::load(&path).unwrap();
    let c = model.config();
    assert_eq!((c.n_layers, c.n_kv_heads, c.head_dim, c.head_dim_v), (18, 1, 256, 256));
    assert_eq!(c.sliding_window, Some(512));
    let local = (0..c.n_layers).filter(|&l| model.arch().is_local(l)).count();
    assert_eq!(local, 15);
    let per_row = 2 * 256 * 2;
    for ctx in [4096, 32768] {
        let ring = model.new_cache(ctx, KvType::F16).unwrap();
        let full = KvCache::bytes_for(c, model.arch(), ctx, KvType::F16, KvLayout::Full);
        assert_eq!(full as usize, 18 * ctx * per_row);
        assert_eq!(ring.bytes(), (3 * ctx + 15 * (512 + MAX_BATCH)) * per_row);
        println!(
            "gemma3-270m KV cache at ctx {ctx}: {} bytes windowed, {full} bytes whole-context",
            ring.bytes()
        );
        let info = edgespec::info::ModelInfo::gather(&path, Some(ctx)).unwrap();
        assert_eq!(info.kv_cache_bytes() as usize, ring.bytes());
    }
}
