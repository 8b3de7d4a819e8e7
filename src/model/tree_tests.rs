//! Tree passes against chains: every node's logits and K/V rows equal those of its root-to-node
//! path run as a plain chain, bitwise, and keeping a path leaves the chain's cache — on a
//! llama-shaped model and on a gemma3-shaped one (sliding-window rings with a window shorter
//! than the tree's depth).

use std::sync::Arc;

use super::*;
use crate::gguf::GgufFile;
use crate::kernels::KernelPool;
use crate::model::kv_cache::KvRows;
use crate::model::synthetic::{self, SyntheticSpec};
use crate::model::{ForwardPlan, KvCache, KvLayout, KvType, LogitRows, Model, Workspace};
use crate::sampling::Rng;

#[test]
fn parents_depths_and_paths() {
    let t = TokenTree::from_parents([None, Some(0), Some(1), Some(0), Some(3), None, Some(5)]).unwrap();
    assert_eq!(t.len(), 7);
    assert_eq!((0..7).map(|i| t.depth(i)).collect::<Vec<_>>(), [0, 1, 2, 1, 2, 0, 1]);
    assert_eq!(t.parent(4), Some(3));
    assert_eq!(t.parent(5), None);
    let mut p = [0; MAX_BATCH];
    assert_eq!(t.path(4, &mut p), 3);
    assert_eq!(p[..3], [0, 3, 4]);
    // Spans of row 4 at start 10: the prefix, then slots 10, 13, 14 (13 and 14 merged).
    let mut s: [Range<usize>; MAX_BATCH + 1] = Default::default();
    let n = t.spans(4, 10, 0, &mut s);
    assert_eq!(s[..n], [0..11, 13..15]);
    // A window that starts inside the path drops the prefix and the root.
    let n = t.spans(4, 10, 11, &mut s);
    assert_eq!((n, &s[0]), (1, &(13..15)));
    assert!(TokenTree::from_parents([None, Some(1)]).is_err());
    assert!(TokenTree::from_parents((0..MAX_BATCH + 1).map(|_| None)).is_err());
    let c = TokenTree::chain(4).unwrap();
    assert_eq!(c.depth(3), 3);
}

fn model(spec: &SyntheticSpec) -> Model {
    Model::from_file(Arc::new(GgufFile::from_bytes(synthetic::build(spec).unwrap()).unwrap())).unwrap()
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// The key and value rows of every layer and KV head at `pos`, as bits.
fn kv_at(cache: &KvCache, n_layers: usize, n_kv: usize, pos: usize) -> Vec<u32> {
    let mut out = Vec::new();
    for l in 0..n_layers {
        for h in 0..n_kv {
            for part in cache
                .keys(l, h, pos..pos + 1)
                .unwrap()
                .into_iter()
                .chain(cache.values(l, h, pos..pos + 1).unwrap())
            {
                match part {
                    KvRows::F16(r) => out.extend(r.iter().map(|v| u32::from(v.to_bits()))),
                    KvRows::F32(r) => out.extend(r.iter().map(|v| v.to_bits())),
                    KvRows::Q8_0(r) => out.extend(
                        r.iter().flat_map(|b| std::iter::once(u32::from(b.d)).chain(b.qs.map(|q| q as u32))),
                    ),
                }
            }
        }
    }
    out
}

/// A random tree of `n` rows (row 0 a root; a second root now and then).
fn random_tree(rng: &mut Rng, n: usize) -> TokenTree {
    TokenTree::from_parents((0..n).map(|i| match i {
        0 => None,
        _ if rng.next_u64().is_multiple_of(9) => None,
        _ => Some((rng.next_u64() % i as u64) as usize),
    }))
    .unwrap()
}

fn check_tree_against_chains(spec: &SyntheticSpec, layout: KvLayout, kv: KvType) {
    let m = model(spec);
    let c = m.config().clone();
    let vocab = c.vocab_size;
    let ctx = 160;
    let mut ws = Workspace::new(&m, KernelPool::new(Some(2)).unwrap(), ctx).unwrap();
    let mut rng = Rng::new(spec.seed);
    let tok = |rng: &mut Rng| (rng.next_u64() % vocab as u64) as u32;
    // The tree cache advances by keeping one path per round; the reference by running that path
    // as a chain.
    let mut tree_cache = m.new_cache_with_layout(ctx, kv, layout).unwrap();
    let mut chain_cache = tree_cache.clone();
    let prompt: Vec<u32> = (0..11).map(|_| tok(&mut rng)).collect();
    m.prefill(&mut ws, &mut tree_cache, &prompt, 0, 5).unwrap();
    m.prefill(&mut ws, &mut chain_cache, &prompt, 0, 5).unwrap();
    let mut path = [0usize; MAX_BATCH];
    for round in 0..8 {
        let start = tree_cache.len();
        let n = 2 + (rng.next_u64() % (MAX_BATCH as u64 - 1)) as usize;
        let tree = random_tree(&mut rng, n);
        let tokens: Vec<u32> = (0..n).map(|_| tok(&mut rng)).collect();
        let plan = ForwardPlan::at(start).logits(LogitRows::All).tree(tree);
        let tree_logits = m.forward(&mut ws, &mut tree_cache, &tokens, &plan).unwrap().to_vec();
        for row in 0..n {
            let depth = tree.path(row, &mut path);
            let chain: Vec<u32> = path[..depth].iter().map(|&r| tokens[r]).collect();
            let mut alone = chain_cache.clone();
            let l = m.forward(&mut ws, &mut alone, &chain, &ForwardPlan::at(start)).unwrap();
            assert_eq!(
                bits(l),
                bits(&tree_logits[row * vocab..(row + 1) * vocab]),
                "{} round {round}: logits of row {row} (depth {})",
                spec.arch,
                depth - 1
            );
            assert_eq!(
                kv_at(&alone, c.n_layers, c.n_kv_heads, start + depth - 1),
                kv_at(&tree_cache, c.n_layers, c.n_kv_heads, start + row),
                "{} round {round}: K/V of row {row}",
                spec.arch
            );
        }
        // Keep the path to a random row whose root is row 0.
        let leaf = (0..n).rev().find(|&r| {
            tree.path(r, &mut path);
            path[0] == 0 && !rng.next_u64().is_multiple_of(3)
        });
        let depth = tree.path(leaf.unwrap_or(0), &mut path);
        tree_cache.keep_path(start, &path[..depth]).unwrap();
        let chain: Vec<u32> = path[..depth].iter().map(|&r| tokens[r]).collect();
        m.forward(&mut ws, &mut chain_cache, &chain, &ForwardPlan::at(start)).unwrap();
        assert_eq!(tree_cache.len(), chain_cache.len());
        // Every position both caches still hold is bitwise the same.
        let lo = tree_cache.len().saturating_sub(spec.sliding_window.unwrap_or(ctx));
        for pos in lo..tree_cache.len() {
            assert_eq!(
                kv_at(&tree_cache, c.n_layers, c.n_kv_heads, pos),
                kv_at(&chain_cache, c.n_layers, c.n_kv_heads, pos),
                "{} round {round}: cache differs at {pos} after keeping the path",
                spec.arch
            );
        }
    }
    // And decoding goes on identically.
    let next = [tok(&mut rng), tok(&mut rng), tok(&mut rng)];
    let start = tree_cache.len();
    let a = m
        .forward(&mut ws, &mut tree_cache, &next, &ForwardPlan::at(start).logits(LogitRows::All))
        .unwrap()
        .to_vec();
    let b =
        m.forward(&mut ws, &mut chain_cache, &next, &ForwardPlan::at(start).logits(LogitRows::All)).unwrap();
    assert_eq!(bits(&a), bits(b));
}

#[test]
fn tree_rows_equal_their_paths_run_alone_llama() {
    check_tree_against_chains(&SyntheticSpec::llama(21), KvLayout::Ring, KvType::F16);
}

#[test]
fn tree_rows_equal_their_paths_run_alone_gemma3() {
    let spec = SyntheticSpec::gemma3(22);
    assert!(spec.sliding_window.is_some_and(|w| w < MAX_BATCH), "the window must be shorter than a tree");
    check_tree_against_chains(&spec, KvLayout::Ring, KvType::F16);
    check_tree_against_chains(&spec, KvLayout::Full, KvType::F16);
    // Moving Q8_0 rows along a kept path moves whole blocks (scales and quants).
    check_tree_against_chains(&spec, KvLayout::Ring, KvType::Q8_0);
}

#[test]
fn keep_path_refuses_bad_paths_and_changes_nothing() {
    let m = model(&SyntheticSpec::llama(23));
    let mut ws = Workspace::new(&m, KernelPool::new(Some(1)).unwrap(), 64).unwrap();
    let mut cache = m.new_cache(64, KvType::F16).unwrap();
    m.prefill(&mut ws, &mut cache, &[1, 2, 3, 4, 5, 6], 0, 6).unwrap();
    assert!(cache.keep_path(2, &[0, 2, 1]).is_err());
    assert!(cache.keep_path(2, &[0, 4]).is_err(), "slot 6 is not cached");
    assert_eq!(cache.len(), 6);
    cache.keep_path(2, &[0, 1, 3]).unwrap();
    assert_eq!(cache.len(), 5);
    let plan = ForwardPlan::at(0).tree(TokenTree::chain(2).unwrap());
    assert!(m.forward(&mut ws, &mut cache, &[1, 2, 3], &plan).is_err(), "tree of the wrong size");
}
