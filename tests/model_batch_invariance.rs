//! Invariant 3 (docs/architecture.md): a token's logits are bitwise the same whether it is scored
//! alone, inside a batch of 2..16 tokens, or at the end of any prefill chunking — and the same
//! after a rollback as on a fresh cache. Checked on tiny random llama and gemma3 models (gemma3
//! adds sliding-window layers, QK-norm, post-norms and GELU) and on SmolLM2-135M.

mod common;

use common::*;
use edgespec::model::synthetic::SyntheticSpec;
use edgespec::model::{ForwardPlan, KvType, LogitRows, Model, SkipSet, SubLayer, MAX_BATCH};

fn check_batchings(model: &Model, n: usize, batch_sizes: &[usize], threads: usize) {
    let vocab = model.config().vocab_size;
    let toks = tokens(n, vocab, 7);
    let (mut ws, mut cache) = session(model, threads, 128, KvType::F16);
    let one = logits_in_batches(model, &mut ws, &mut cache, &toks, 1);
    assert_eq!(cache.len(), n);
    // The logits are not degenerate: positions differ from each other.
    assert_ne!(bits(&one[0]), bits(&one[1]));
    for &k in batch_sizes {
        cache.clear();
        let batched = logits_in_batches(model, &mut ws, &mut cache, &toks, k);
        assert_bitwise(&one, &batched, &format!("batches of {k}"));
    }
    // Prefill: the last position's logits for every chunk size.
    for chunk in 1..=MAX_BATCH {
        cache.clear();
        let last = model.prefill(&mut ws, &mut cache, &toks, 0, chunk).unwrap().to_vec();
        assert_bitwise(&one[n - 1..], &[last], &format!("prefill in chunks of {chunk}"));
    }
}

#[test]
fn tiny_llama_logits_do_not_depend_on_batching() {
    let model = tiny(&SyntheticSpec::llama(1));
    check_batchings(&model, 37, &(2..=MAX_BATCH).collect::<Vec<_>>(), 2);
}

#[test]
fn tiny_gemma3_logits_do_not_depend_on_batching() {
    let model = tiny(&SyntheticSpec::gemma3(2));
    check_batchings(&model, 37, &(2..=MAX_BATCH).collect::<Vec<_>>(), 2);
}

#[test]
fn tiny_qwen2_with_biases_and_untied_head_is_batch_invariant() {
    let spec = SyntheticSpec { arch: "qwen2", qkv_bias: true, tied: false, ..SyntheticSpec::llama(3) };
    let model = tiny(&spec);
    assert!(!model.tied_embeddings());
    check_batchings(&model, 21, &[2, 5, 16], 2);
}

#[test]
fn logits_do_not_depend_on_thread_count() {
    let model = tiny(&SyntheticSpec::gemma3(4));
    let toks = tokens(20, model.config().vocab_size, 9);
    let mut runs = Vec::new();
    for threads in [1, 2, 3] {
        let (mut ws, mut cache) = session(&model, threads, 64, KvType::F16);
        runs.push(logits_in_batches(&model, &mut ws, &mut cache, &toks, 6));
    }
    assert_bitwise(&runs[0], &runs[1], "1 vs 2 threads");
    assert_bitwise(&runs[0], &runs[2], "1 vs 3 threads");
}

#[test]
fn rollback_equals_a_fresh_cache() {
    for spec in [SyntheticSpec::llama(5), SyntheticSpec::gemma3(5)] {
        let model = tiny(&spec);
        let vocab = model.config().vocab_size;
        let (a, b) = (tokens(30, vocab, 1), tokens(12, vocab, 2));
        let (mut ws, mut cache) = session(&model, 2, 64, KvType::F16);
        logits_in_batches(&model, &mut ws, &mut cache, &a, 16);
        // Roll back to 20 positions by truncation, and once more by a pass that starts there.
        cache.truncate(20).unwrap();
        let after_truncate = logits_in_batches(&model, &mut ws, &mut cache, &b, 4);
        logits_in_batches(&model, &mut ws, &mut cache, &a[..5], 5);
        let plan = ForwardPlan::at(20).logits(LogitRows::All);
        let restarted = model.forward(&mut ws, &mut cache, &b[..4], &plan).unwrap().to_vec();

        let (mut ws2, mut fresh) = session(&model, 2, 64, KvType::F16);
        let mut seq = a[..20].to_vec();
        seq.extend(&b);
        let reference = logits_in_batches(&model, &mut ws2, &mut fresh, &seq, 1);
        assert_bitwise(&reference[20..], &after_truncate, &format!("{}: after truncate", spec.arch));
        let restarted: Vec<Vec<f32>> = restarted.chunks(vocab).map(|r| r.to_vec()).collect();
        assert_bitwise(&reference[20..24], &restarted, &format!("{}: pass at an earlier start", spec.arch));
    }
}

#[test]
fn logit_row_selection_returns_the_same_rows() {
    let model = tiny(&SyntheticSpec::llama(6));
    let vocab = model.config().vocab_size;
    let toks = tokens(8, vocab, 3);
    let (mut ws, mut cache) = session(&model, 2, 32, KvType::F16);
    let all = model
        .forward(&mut ws, &mut cache, &toks, &ForwardPlan::at(0).logits(LogitRows::All))
        .unwrap()
        .to_vec();
    let some = model
        .forward(&mut ws, &mut cache, &toks, &ForwardPlan::at(0).logits(LogitRows::Mask(0b1000_0101)))
        .unwrap()
        .to_vec();
    assert_eq!(some.len(), 3 * vocab);
    for (r, i) in [0, 2, 7].into_iter().enumerate() {
        assert_eq!(bits(&some[r * vocab..(r + 1) * vocab]), bits(&all[i * vocab..(i + 1) * vocab]));
    }
    let none =
        model.forward(&mut ws, &mut cache, &toks, &ForwardPlan::at(0).logits(LogitRows::None)).unwrap();
    assert!(none.is_empty());
}

#[test]
fn skipping_the_last_layer_equals_exiting_before_it() {
    let model = tiny(&SyntheticSpec::gemma3(8));
    let n_layers = model.config().n_layers;
    let toks = tokens(10, model.config().vocab_size, 4);
    let run = |plan: ForwardPlan| {
        let (mut ws, mut cache) = session(&model, 2, 32, KvType::F16);
        model.forward(&mut ws, &mut cache, &toks, &plan.logits(LogitRows::All)).unwrap().to_vec()
    };
    let full = run(ForwardPlan::at(0));
    assert_eq!(bits(&full), bits(&run(ForwardPlan::at(0).exit_after(n_layers - 1))));
    let mut skip = SkipSet::none();
    skip.insert(n_layers - 1, SubLayer::Attention).unwrap();
    skip.insert(n_layers - 1, SubLayer::Mlp).unwrap();
    let skipped = run(ForwardPlan::at(0).skip(skip));
    assert_eq!(bits(&skipped), bits(&run(ForwardPlan::at(0).exit_after(n_layers - 2))));
    assert_ne!(bits(&skipped), bits(&full));
    // Skipping one MLP changes the result but is itself batch invariant.
    let mut mlp = SkipSet::none();
    mlp.insert(2, SubLayer::Mlp).unwrap();
    let (mut ws, mut cache) = session(&model, 2, 32, KvType::F16);
    let mut one = Vec::new();
    for (i, &t) in toks.iter().enumerate() {
        let plan = ForwardPlan::at(i).skip(mlp);
        one.extend_from_slice(model.forward(&mut ws, &mut cache, &[t], &plan).unwrap());
    }
    let batched = run(ForwardPlan::at(0).skip(mlp));
    assert_eq!(bits(&one), bits(&batched));
    assert_ne!(bits(&batched), bits(&full));
}

#[test]
fn f32_cache_is_batch_invariant_too_and_close_to_f16() {
    let model = tiny(&SyntheticSpec::llama(10));
    let toks = tokens(24, model.config().vocab_size, 5);
    let (mut ws, mut c32) = session(&model, 2, 64, KvType::F32);
    let one = logits_in_batches(&model, &mut ws, &mut c32, &toks, 1);
    c32.clear();
    let batched = logits_in_batches(&model, &mut ws, &mut c32, &toks, 7);
    assert_bitwise(&one, &batched, "f32 cache, batches of 7");
    let (mut ws, mut c16) = session(&model, 2, 64, KvType::F16);
    let half = logits_in_batches(&model, &mut ws, &mut c16, &toks, 1);
    for (a, b) in one.iter().zip(&half) {
        let range = a.iter().fold(f32::MIN, |m, &v| m.max(v)) - a.iter().fold(f32::MAX, |m, &v| m.min(v));
        let d = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(d < 0.02 * range, "f16 cache moved a logit by {d} (range {range})");
    }
}

#[test]
fn q8_cache_is_batch_invariant_rolls_back_exactly_and_stays_close_to_f16() {
    let llama32 = SyntheticSpec { head_dim: 32, ..SyntheticSpec::llama(12) };
    for spec in [llama32, SyntheticSpec::gemma3(12)] {
        let model = tiny(&spec);
        let vocab = model.config().vocab_size;
        let toks = tokens(30, vocab, 5);
        let (mut ws, mut c8) = session(&model, 2, 64, KvType::Q8_0);
        assert!(c8.bytes() < model.new_cache(64, KvType::F16).unwrap().bytes() * 55 / 100);
        let one = logits_in_batches(&model, &mut ws, &mut c8, &toks, 1);
        for k in [3, 7, 16] {
            c8.clear();
            let batched = logits_in_batches(&model, &mut ws, &mut c8, &toks, k);
            assert_bitwise(&one, &batched, &format!("{}: q8_0 cache, batches of {k}", spec.arch));
        }
        // Rolled back over quantized rows, then continued: what a fresh cache gives.
        c8.truncate(20).unwrap();
        let after = logits_in_batches(&model, &mut ws, &mut c8, &toks[20..], 4);
        assert_bitwise(&one[20..], &after, &format!("{}: q8_0 cache after truncate", spec.arch));
        // Eight bits per cached value move the logits, but not far.
        let (mut ws, mut c16) = session(&model, 2, 64, KvType::F16);
        let half = logits_in_batches(&model, &mut ws, &mut c16, &toks, 1);
        let mut moved = false;
        for (a, b) in one.iter().zip(&half) {
            let range = b.iter().fold(f32::MIN, |m, &v| m.max(v)) - b.iter().fold(f32::MAX, |m, &v| m.min(v));
            let d = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(d < 0.05 * range, "{}: the q8_0 cache moved a logit by {d} (range {range})", spec.arch);
            moved |= d > 0.0;
        }
        assert!(moved, "{}: a q8_0 cache left every logit bitwise at f16's", spec.arch);
    }
    // Rows of 16 values are not whole Q8_0 blocks.
    let err = tiny(&SyntheticSpec::llama(12)).new_cache(16, KvType::Q8_0).unwrap_err();
    assert!(err.to_string().contains("multiples of 32"), "{err}");
}

#[test]
fn errors_instead_of_panics() {
    let model = tiny(&SyntheticSpec::llama(11));
    let (mut ws, mut cache) = session(&model, 1, 8, KvType::F16);
    let e = model.forward(&mut ws, &mut cache, &[], &ForwardPlan::at(0)).unwrap_err();
    assert_eq!(e.kind(), edgespec::ErrorKind::InvalidArgument);
    let too_many = vec![1u32; MAX_BATCH + 1];
    assert!(model.forward(&mut ws, &mut cache, &too_many, &ForwardPlan::at(0)).is_err());
    let e = model.forward(&mut ws, &mut cache, &[1], &ForwardPlan::at(3)).unwrap_err();
    assert_eq!(e.kind(), edgespec::ErrorKind::InvalidArgument, "{e}");
    let e = model.forward(&mut ws, &mut cache, &[100_000], &ForwardPlan::at(0)).unwrap_err();
    assert_eq!(e.kind(), edgespec::ErrorKind::InvalidArgument, "{e}");
    assert_eq!(cache.len(), 0);
    model.prefill(&mut ws, &mut cache, &[1, 2, 3, 4, 5, 6], 0, 4).unwrap();
    let e = model.prefill(&mut ws, &mut cache, &[1, 2, 3], 6, 4).unwrap_err();
    assert_eq!(e.kind(), edgespec::ErrorKind::ContextOverflow, "{e}");
    assert_eq!(cache.len(), 6, "a failed pass leaves the cache as it was");
    let e = model.forward(&mut ws, &mut cache, &[1, 2, 3], &ForwardPlan::at(6)).unwrap_err();
    assert_eq!(e.kind(), edgespec::ErrorKind::ContextOverflow, "{e}");
    assert_eq!(cache.len(), 6);
    // A cache from another model is refused.
    let other = tiny(&SyntheticSpec::gemma3(1));
    let mut wrong = other.new_cache(8, KvType::F16).unwrap();
    assert!(model.forward(&mut ws, &mut wrong, &[1], &ForwardPlan::at(0)).is_err());
}

#[test]
fn smollm2_logits_do_not_depend_on_batching() {
    let model = smollm2();
    let sizes: &[usize] = if cfg!(debug_assertions) { &[5] } else { &[2, 3, 4, 5, 7, 8, 11, 13, 16] };
    let n = if cfg!(debug_assertions) { 10 } else { 40 };
    check_batchings_smollm(&model, n, sizes);
}

fn check_batchings_smollm(model: &Model, n: usize, sizes: &[usize]) {
    let vocab = model.config().vocab_size;
    let toks = tokens(n, vocab, 11);
    let (mut ws, mut cache) = session(model, 2, 64, KvType::F16);
    let one = logits_in_batches(model, &mut ws, &mut cache, &toks, 1);
    for &k in sizes {
        cache.clear();
        let batched = logits_in_batches(model, &mut ws, &mut cache, &toks, k);
        assert_bitwise(&one, &batched, &format!("SmolLM2, batches of {k}"));
    }
    for chunk in [3, 16] {
        cache.clear();
        let last = model.prefill(&mut ws, &mut cache, &toks, 0, chunk).unwrap().to_vec();
        assert_bitwise(&one[n - 1..], &[last], &format!("SmolLM2, prefill in chunks of {chunk}"));
    }
}

#[test]
fn unsupported_rope_variants_are_refused() {
    use edgespec::gguf::GgufFile;
    let load = |w: edgespec::gguf::GgufWriter| {
        Model::from_file(std::sync::Arc::new(GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap()))
    };
    let mut w = edgespec::model::synthetic::writer(&SyntheticSpec::llama(12)).unwrap();
    w.kv("llama.rope.scaling.type", "yarn");
    let e = load(w).unwrap_err();
    assert_eq!(e.kind(), edgespec::ErrorKind::Unsupported, "{e}");
    let mut w = edgespec::model::synthetic::writer(&SyntheticSpec::llama(12)).unwrap();
    w.tensor_f32("rope_freqs.weight", &[8], &[1.0; 8]).unwrap();
    let e = load(w).unwrap_err();
    assert_eq!(e.kind(), edgespec::ErrorKind::Unsupported, "{e}");
    let mut w = edgespec::model::synthetic::writer(&SyntheticSpec::llama(12)).unwrap();
    w.kv("llama.rope.scaling.type", "linear").kv("llama.rope.scaling.factor", 2.0f32);
    let m = load(w).unwrap();
    assert_eq!(m.config().rope_freq_scale, 0.5);
    // An architecture without a spec is refused by name.
    let w = edgespec::model::synthetic::writer(&SyntheticSpec { arch: "mamba", ..SyntheticSpec::llama(12) })
        .unwrap();
    let e = load(w).unwrap_err();
    assert!(e.kind() == edgespec::ErrorKind::Unsupported && e.message().contains("mamba"), "{e}");
}
