//! Helpers shared by the model tests: loading tiny synthetic models and the real SmolLM2, and
//! running sequences through the forward pass in different batchings.
#![allow(dead_code)]

use std::sync::Arc;

use edgespec::gguf::GgufFile;
use edgespec::kernels::KernelPool;
use edgespec::model::synthetic::{self, SyntheticSpec};
use edgespec::model::{ForwardPlan, KvCache, KvType, LogitRows, Model, Workspace};

pub fn tiny(spec: &SyntheticSpec) -> Model {
    let bytes = synthetic::build(spec).unwrap();
    Model::from_file(Arc::new(GgufFile::from_bytes(bytes).unwrap())).unwrap()
}

pub fn smollm2() -> Model {
    let path = edgespec::catalog::resolve_model("smollm2-135m").unwrap();
    Model::load(path).unwrap()
}

/// A workspace and cache for `ctx` positions on `threads` threads.
pub fn session(model: &Model, threads: usize, ctx: usize, kv: KvType) -> (Workspace, KvCache) {
    let pool = KernelPool::new(Some(threads)).unwrap();
    (Workspace::new(model, pool, ctx).unwrap(), model.new_cache(ctx, kv).unwrap())
}

/// Logits of every position of `tokens`, fed in batches of `k` (all rows asked for).
pub fn logits_in_batches(
    model: &Model,
    ws: &mut Workspace,
    cache: &mut KvCache,
    tokens: &[u32],
    k: usize,
) -> Vec<Vec<f32>> {
    let vocab = model.config().vocab_size;
    let mut out = Vec::new();
    let start = cache.len();
    for (c, part) in tokens.chunks(k).enumerate() {
        let plan = ForwardPlan::at(start + c * k).logits(LogitRows::All);
        let l = model.forward(ws, cache, part, &plan).unwrap();
        assert_eq!(l.len(), part.len() * vocab);
        out.extend(l.chunks_exact(vocab).map(|r| r.to_vec()));
    }
    out
}

/// Deterministic pseudo-random tokens in `0..vocab`.
pub fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) % vocab as u64) as u32
        })
        .collect()
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Assert two sets of logit rows are bitwise equal, naming the first differing position.
pub fn assert_bitwise(a: &[Vec<f32>], b: &[Vec<f32>], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: row counts differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if bits(x) != bits(y) {
            let d = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            panic!("{what}: position {i} differs (max |Δ| {d})");
        }
    }
}

pub fn argmax(l: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in l.iter().enumerate() {
        if v > l[best] {
            best = i;
        }
    }
    best
}
