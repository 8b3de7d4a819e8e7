//! The GPU backend against the CPU backend on tiny random models of every GPU block type and
//! architecture: the logits are bitwise the CPU's; and on the GPU a token's logits are
//! bitwise the same in every batching (so speculative passes verify exactly what plain decoding
//! would compute). Runs on any Vulkan adapter, lavapipe included; without one the tests say so
//! and pass, unless `EDGESPEC_REQUIRE_GPU=1` (CI) makes that a failure.
#![cfg(feature = "gpu")]

mod common;

use common::*;
use edgespec::model::synthetic::SyntheticSpec;
use edgespec::model::{Device, ForwardPlan, KvType, LogitRows, Model, TokenTree};
use edgespec::quant::GgmlType;

/// `model` moved to the GPU, or `None` (with a note) on a machine without an adapter.
fn gpu(mut model: Model) -> Option<Model> {
    if !have_gpu() {
        return None;
    }
    model.set_device(Device::Gpu).expect("move the model to the GPU");
    assert!(model.on_gpu());
    Some(model)
}

fn specs() -> Vec<(&'static str, SyntheticSpec)> {
    vec![
        ("llama Q4_1 + Q8_0 head", SyntheticSpec::llama(11)),
        (
            "qwen2 Q5_0, biases, untied Q8_0 head",
            SyntheticSpec {
                arch: "qwen2",
                qkv_bias: true,
                tied: false,
                weight_type: GgmlType::Q5_0,
                out_type: GgmlType::Q8_0,
                ..SyntheticSpec::llama(12)
            },
        ),
        (
            "gemma3 Q5_0 + Q4_K",
            SyntheticSpec {
                weight_type: GgmlType::Q5_0,
                out_type: GgmlType::Q4_K,
                ..SyntheticSpec::gemma3(13)
            },
        ),
        (
            "gemma3 Q8_0 + Q6_K",
            SyntheticSpec {
                weight_type: GgmlType::Q8_0,
                out_type: GgmlType::Q6_K,
                ..SyntheticSpec::gemma3(14)
            },
        ),
    ]
}

#[test]
fn gpu_logits_are_the_cpus_on_every_block_type() {
    for (name, spec) in specs() {
        let cpu = tiny(&spec);
        let Some(gpu) = gpu(tiny(&spec)) else { return };
        let toks = tokens(23, cpu.config().vocab_size, 5);
        let (mut ws, mut cache) = session(&cpu, 2, 64, KvType::F16);
        let want = logits_in_batches(&cpu, &mut ws, &mut cache, &toks, 5);
        let (mut ws, mut cache) = session(&gpu, 2, 64, KvType::F16);
        let got = logits_in_batches(&gpu, &mut ws, &mut cache, &toks, 5);
        // The shaders compute what the CPU computes, operation for operation (fused
        // multiply-adds emulated where the device does not fuse, float-float for the CPU's f64
        // sums): the logits are the CPU's to the bit.
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            let d = w.iter().zip(g).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(
                bits(w) == bits(g),
                "{name}: position {i}: GPU logits differ from the CPU's (max |Δ| {d})"
            );
        }
    }
}

#[test]
fn gpu_logits_do_not_depend_on_batching() {
    for (name, spec) in specs() {
        let Some(model) = gpu(tiny(&spec)) else { return };
        let toks = tokens(19, model.config().vocab_size, 8);
        let (mut ws, mut cache) = session(&model, 1, 64, KvType::F16);
        let one = logits_in_batches(&model, &mut ws, &mut cache, &toks, 1);
        for k in [2, 3, 8, 16] {
            cache.clear();
            let batched = logits_in_batches(&model, &mut ws, &mut cache, &toks, k);
            assert_bitwise(&one, &batched, &format!("{name}: batches of {k}"));
        }
        // A rollback then the same tokens again gives the same bits.
        cache.truncate(10).unwrap();
        let again = logits_in_batches(&model, &mut ws, &mut cache, &toks[10..], 4);
        assert_bitwise(&one[10..], &again, &format!("{name}: after a rollback"));
    }
}

#[test]
fn gpu_tree_pass_equals_the_chain_along_the_kept_path() {
    for (name, spec) in specs() {
        let Some(model) = gpu(tiny(&spec)) else { return };
        let vocab = model.config().vocab_size;
        let prefix = tokens(9, vocab, 3);
        let (mut ws, mut cache) = session(&model, 1, 64, KvType::F16);
        logits_in_batches(&model, &mut ws, &mut cache, &prefix, 4);
        // Rows: 0 root, 1 and 2 children of 0, 3 child of 2, 4 child of 1.
        let tree = TokenTree::from_parents([None, Some(0), Some(0), Some(2), Some(1)]).unwrap();
        let toks = tokens(5, vocab, 4);
        let plan = ForwardPlan::at(9).logits(LogitRows::All).tree(tree);
        let tree_logits = model.forward(&mut ws, &mut cache, &toks, &plan).unwrap().to_vec();
        // The path 0 → 2 → 3 as a chain on a fresh copy of the prefix.
        let (mut ws2, mut chain) = session(&model, 1, 64, KvType::F16);
        logits_in_batches(&model, &mut ws2, &mut chain, &prefix, 4);
        let path = [toks[0], toks[2], toks[3]];
        let chain_logits = logits_in_batches(&model, &mut ws2, &mut chain, &path, 3);
        for (j, &row) in [0usize, 2, 3].iter().enumerate() {
            let t = tree_logits[row * vocab..(row + 1) * vocab].to_vec();
            assert_bitwise(&[chain_logits[j].clone()], &[t], &format!("{name}: tree row {row}"));
        }
        // Keeping the path leaves the cache as the chain left it: the next token agrees.
        cache.keep_path(9, &[0, 2, 3]).unwrap();
        let next = tokens(1, vocab, 6);
        let a = logits_in_batches(&model, &mut ws, &mut cache, &next, 1);
        let b = logits_in_batches(&model, &mut ws2, &mut chain, &next, 1);
        assert_bitwise(&a, &b, &format!("{name}: after keep_path"));
    }
}

#[test]
fn unsupported_block_types_are_named_and_auto_stays_on_the_cpu() {
    if edgespec::gpu::adapters().is_empty() {
        return;
    }
    // The gemma3 spec's default Q4_0 weights have no GPU kernel.
    let mut model = tiny(&SyntheticSpec::gemma3(15));
    let err = model.set_device(Device::Gpu).unwrap_err().to_string();
    assert!(err.contains("Q4_0"), "{err}");
    assert!(!model.on_gpu());
    let note = model.set_device(Device::Auto).unwrap().expect("auto says why it stays on the CPU");
    assert!(note.contains("CPU"), "{note}");
    assert_eq!(model.device_name(), "cpu");
}

#[test]
fn gpu_q8_0_cache_is_the_cpus_and_batch_invariant() {
    let mut tested = 0;
    for (name, spec) in specs() {
        let cpu = tiny(&spec);
        if !edgespec::model::KvCache::q8_0_supported(cpu.config()) {
            continue;
        }
        let Some(gpu) = gpu(tiny(&spec)) else { return };
        let toks = tokens(21, cpu.config().vocab_size, 9);
        let (mut ws, mut cache) = session(&cpu, 2, 64, KvType::Q8_0);
        let want = logits_in_batches(&cpu, &mut ws, &mut cache, &toks, 4);
        let (mut ws, mut cache) = session(&gpu, 2, 64, KvType::Q8_0);
        let got = logits_in_batches(&gpu, &mut ws, &mut cache, &toks, 4);
        assert_bitwise(&want, &got, &format!("{name}: q8_0 cache, GPU against CPU"));
        cache.clear();
        let one = logits_in_batches(&gpu, &mut ws, &mut cache, &toks, 1);
        assert_bitwise(&one, &got, &format!("{name}: q8_0 cache, batches of 1 and 4"));
        tested += 1;
    }
    assert!(tested > 0, "no spec has head dimensions a q8_0 cache takes");
}
