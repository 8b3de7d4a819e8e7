//! Parity with llama.cpp on the same GGUF file (feature `llama-cpp`).
//!
//! Teacher-forced: eight varied prompts, each followed by llama.cpp's own greedy continuation,
//! are scored by both programs at every position. The argmax must agree everywhere except
//! where llama.cpp's own top-2 margin is under 0.5 (a near-tie, where the two programs' different
//! rounding — and llama.cpp's own batch-size-dependent attention — may flip the order). The
//! agreement rate and |Δlogit| relative to the logit range are printed.
//!
//! Free-running: both programs continue each prompt greedily for 128 tokens; the matching prefix
//! is printed per prompt, and a divergence must start at a near-tie, which is printed too.
//!
//! Why the logits differ at all: both programs round activations to 8 bits before every mat-vec,
//! so a last-bit difference anywhere (float summation order in a dot product, an `expf`
//! approximation, the quantizer's tie rule) can flip one 8-bit code, and the flip propagates
//! through the remaining layers. Measured on SmolLM2, changing only our activation quantizer's
//! tie rule to llama.cpp's AVX2 one (127/amax, half-to-even) moves our own logits by a mean
//! 0.43% of the logit range — the same size as the whole gap to llama.cpp (0.46%), and it did not
//! shrink that gap. Matching llama.cpp's f16-table GELU on Gemma 3 did not either. The gap is this
//! noise floor, not a modelling difference.
//!
//! Past the sliding window: Gemma 3's local layers see only the last 512 positions, which the
//! prompts above never reach. A long text (over 600 tokens) is scored teacher-forced by both
//! programs, with our local layers' keys in rings of 528 positions that wrap, under the same
//! near-tie rule; the agreement and |Δlogit| before and after position 512 are printed.
//!
//! `cargo test --release --features llama-cpp --test model_parity -- --nocapture --test-threads 1`
#![cfg(feature = "llama-cpp")]

mod common;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use common::*;
use edgespec::model::{ForwardPlan, KvLayout, KvType, LogitRows, Model};
use edgespec::reference::LlamaCppModel;
use edgespec::tokenizer::Tokenizer;

const NEAR_TIE: f32 = 0.5;
const CONTINUATION: usize = 64;
const FREE_RUN: usize = 128;

const PROMPTS: [&str; 8] = [
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village at the edge of a forest,",
    "<|im_start|>user\nWhat are three tips for staying healthy?<|im_end|>\n<|im_start|>assistant\n",
    "1, 2, 3, 5, 8, 13,",
    "La tour Eiffel est",
    "{\"name\": \"Alice\", \"age\": 30, \"city\":",
    "Photosynthesis is the process by which plants",
];

/// llama.cpp and our kernels each use every core; two parity tests at once oversubscribe the
/// machine and llama.cpp's threads then wait on each other for minutes. The tests take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The two largest values and the index of the largest.
fn top2(l: &[f32]) -> (usize, f32, f32) {
    let best = argmax(l);
    let second = l.iter().enumerate().filter(|&(i, _)| i != best).map(|(_, &v)| v).fold(f32::MIN, f32::max);
    (best, l[best], second)
}

fn margin(l: &[f32]) -> f32 {
    let (_, a, b) = top2(l);
    a - b
}

fn ours_teacher_forced(model: &Model, tokens: &[u32], kv: KvType) -> Vec<Vec<f32>> {
    let (mut ws, mut cache) = session(model, 2, 512, kv);
    logits_in_batches(model, &mut ws, &mut cache, tokens, 16)
}

fn ours_greedy(model: &Model, prompt: &[u32], n: usize, kv: KvType) -> Vec<u32> {
    let (mut ws, mut cache) = session(model, 2, 512, kv);
    let mut next = argmax(model.prefill(&mut ws, &mut cache, prompt, 0, 16).unwrap()) as u32;
    let mut out = vec![next];
    while out.len() < n {
        let pos = cache.len();
        next = argmax(model.forward(&mut ws, &mut cache, &[next], &ForwardPlan::at(pos)).unwrap()) as u32;
        out.push(next);
    }
    out
}

fn piece(tok: &Tokenizer, id: u32) -> String {
    format!("{:?}", String::from_utf8_lossy(&tok.token_to_piece(id, true).unwrap()))
}

struct Summary {
    positions: usize,
    agree: usize,
    max_rel: f64,
    sum_rel: f64,
}

/// Code for the coder model, beside the mixed prompts above (its parity covers ≥ 600 positions).
const CODE_PROMPTS: [&str; 3] = [
    "<|im_start|>user\nPort this to JavaScript:\n```python\ndef clamp(x, lo, hi):\n    return max(lo, min(x, hi))\n```<|im_end|>\n<|im_start|>assistant\n",
    "class Inventory:\n    def __init__(self):\n        self.items = {}\n\n    def add(self, name, qty):\n",
    "-- Customers with more than five orders\nSELECT c.id, c.name, COUNT(o.id) AS n\nFROM customers c\n",
];

fn parity(path: PathBuf, prompts: &[&str], kv: KvType, min_positions: usize) {
    let ours = Model::load(&path).unwrap();
    let tok = Tokenizer::from_gguf(ours.file()).unwrap();
    let reference = LlamaCppModel::load(&path, 2, 512).unwrap().with_kv_type(kv);
    let mut s = Summary { positions: 0, agree: 0, max_rel: 0.0, sum_rel: 0.0 };
    let mut failures = Vec::new();
    println!("model {}, {kv} KV caches", path.display());
    for (pi, text) in prompts.iter().enumerate() {
        let prompt = tok.encode(text, true, true);
        assert_eq!(prompt, reference.tokenize(text, true, true).unwrap(), "tokenizers disagree on {text:?}");
        let theirs_run = reference.greedy(&prompt, FREE_RUN).unwrap();

        // Teacher-forced over the prompt and llama.cpp's continuation.
        let mut seq = prompt.clone();
        seq.extend_from_slice(&theirs_run[..CONTINUATION]);
        let want = reference.logits_for(&seq).unwrap();
        let got = ours_teacher_forced(&ours, &seq, kv);
        let mut agree = 0;
        for (p, (w, g)) in want.iter().zip(&got).enumerate() {
            let range = (w.iter().cloned().fold(f32::MIN, f32::max)
                - w.iter().cloned().fold(f32::MAX, f32::min)) as f64;
            let d = w.iter().zip(g).map(|(a, b)| (a - b).abs() as f64).collect::<Vec<_>>();
            let rel_max = d.iter().cloned().fold(0.0, f64::max) / range;
            s.max_rel = s.max_rel.max(rel_max);
            s.sum_rel += d.iter().sum::<f64>() / d.len() as f64 / range;
            s.positions += 1;
            let (wa, ga) = (argmax(w), argmax(g));
            if wa == ga {
                agree += 1;
            } else {
                let m = margin(w);
                println!(
                    "  prompt {pi} position {p}: llama.cpp {} vs ours {} (llama.cpp top-2 margin {m:.3}, ours {:.3})",
                    piece(&tok, wa as u32),
                    piece(&tok, ga as u32),
                    margin(g)
                );
                if m >= NEAR_TIE {
                    failures.push(format!("prompt {pi} position {p}: argmax differs with margin {m}"));
                }
            }
        }
        s.agree += agree;

        // Free-running greedy.
        let ours_run = ours_greedy(&ours, &prompt, FREE_RUN, kv);
        let same = ours_run.iter().zip(&theirs_run).take_while(|(a, b)| a == b).count();
        print!(
            "  prompt {pi}: teacher-forced argmax agreement {agree}/{}; free run matches {same}/{FREE_RUN}",
            seq.len()
        );
        if same < FREE_RUN {
            let mut prefix = prompt.clone();
            prefix.extend_from_slice(&theirs_run[..same]);
            let w = reference.logits_for(&prefix).unwrap().pop().unwrap();
            let g = ours_teacher_forced(&ours, &prefix, kv).pop().unwrap();
            let m = margin(&w);
            println!(
                "; diverges at token {same}: llama.cpp {} vs ours {} (llama.cpp teacher-forced top-2 margin {m:.3}, ours {:.3})",
                piece(&tok, theirs_run[same]),
                piece(&tok, ours_run[same]),
                margin(&g)
            );
            println!(
                "    shared text: {:?}",
                String::from_utf8_lossy(&tok.decode_bytes(&theirs_run[..same], true).unwrap())
            );
            if m >= NEAR_TIE {
                failures.push(format!("prompt {pi}: free run diverges at {same} with llama.cpp margin {m}"));
            }
        } else {
            println!();
        }
    }
    println!(
        "teacher-forced: {} positions, argmax agreement {:.2}%, max |Δlogit|/range {:.4}, mean |Δlogit|/range {:.5}",
        s.positions,
        100.0 * s.agree as f64 / s.positions as f64,
        s.max_rel,
        s.sum_rel / s.positions as f64
    );
    assert!(s.positions >= min_positions, "only {} positions", s.positions);
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn smollm2_matches_llama_cpp() {
    let _turn = turn();
    parity(edgespec::catalog::resolve_model("smollm2-135m").unwrap(), &PROMPTS, KvType::F16, 400);
}

/// Both programs with 8-bit caches: llama.cpp's `--cache-type-k q8_0 --cache-type-v q8_0`
/// (its flash-attention path) against edgespec's q8_0 cache, under the same near-tie rule.
#[test]
fn smollm2_matches_llama_cpp_with_q8_0_caches() {
    let _turn = turn();
    parity(edgespec::catalog::resolve_model("smollm2-135m").unwrap(), &PROMPTS, KvType::Q8_0, 400);
}

/// The real-size coder model (qwen2: QKV biases, Q5_0/Q4_K/Q6_K blocks, an untied Q8_0 head) on
/// the mixed prompts and code.
#[test]
fn qwen_coder_matches_llama_cpp() {
    let _turn = turn();
    let prompts: Vec<&str> = PROMPTS.iter().chain(&CODE_PROMPTS).copied().collect();
    parity(edgespec::catalog::resolve_model("qwen2.5-coder-0.5b").unwrap(), &prompts, KvType::F16, 600);
}

#[test]
fn gemma3_matches_llama_cpp() {
    let _turn = turn();
    let local = PathBuf::from("/tmp/models/gemma-3-270m-q4_k_m.gguf");
    let path = if local.exists() { local } else { edgespec::catalog::resolve_model("gemma3-270m").unwrap() };
    let prompts: Vec<&str> = PROMPTS
        .iter()
        .map(|p| if p.starts_with("<|im_start|>") { "<start_of_turn>user\nWhat are three tips for staying healthy?<end_of_turn>\n<start_of_turn>model\n" } else { p })
        .collect();
    parity(path, &prompts, KvType::F16, 400);
}

/// Agreement with llama.cpp over one sequence, split at `split`: `[before, from split on]`.
#[derive(Clone, Copy, Default)]
struct Stats {
    positions: usize,
    agree: usize,
    max_rel: f64,
    sum_rel: f64,
}

impl Stats {
    fn mean_rel(&self) -> f64 {
        self.sum_rel / self.positions as f64
    }

    fn agreement(&self) -> f64 {
        100.0 * self.agree as f64 / self.positions as f64
    }
}

/// A sequence and llama.cpp's logits for it, with the position where statistics are split.
struct Reference<'a> {
    seq: &'a [u32],
    want: &'a [Vec<f32>],
    split: usize,
    tok: &'a Tokenizer,
}

/// Score `r.seq` with `model` in passes of 16 on `cache` against llama.cpp's rows: the
/// statistics before and from `r.split` on, and the argmax misses at or above the near-tie
/// margin. With `check`, every pass is rerun on `check` and must give the same bits.
fn score(
    model: &Model,
    cache: &mut edgespec::model::KvCache,
    mut check: Option<&mut edgespec::model::KvCache>,
    r: &Reference<'_>,
    verbose: bool,
) -> ([Stats; 2], Vec<String>) {
    let Reference { seq, want, split, tok } = *r;
    let (mut ws, _) = session(model, 2, cache.capacity(), KvType::F16);
    let vocab = model.config().vocab_size;
    let mut stats = [Stats::default(); 2];
    let mut failures = Vec::new();
    for (c, part) in seq.chunks(16).enumerate() {
        let plan = ForwardPlan::at(c * 16).logits(LogitRows::All);
        let got = model.forward(&mut ws, cache, part, &plan).unwrap().to_vec();
        if let Some(check) = check.as_deref_mut() {
            let again = model.forward(&mut ws, check, part, &plan).unwrap();
            assert!(bits(&got) == bits(again), "the two caches' logits differ at chunk {c}");
        }
        for (i, g) in got.chunks_exact(vocab).enumerate() {
            let p = c * 16 + i;
            let w = &want[p];
            let range = (w.iter().cloned().fold(f32::MIN, f32::max)
                - w.iter().cloned().fold(f32::MAX, f32::min)) as f64;
            let d: Vec<f64> = w.iter().zip(g).map(|(a, b)| (a - b).abs() as f64).collect();
            let s = &mut stats[usize::from(p >= split)];
            s.positions += 1;
            s.max_rel = s.max_rel.max(d.iter().cloned().fold(0.0, f64::max) / range);
            s.sum_rel += d.iter().sum::<f64>() / d.len() as f64 / range;
            let (wa, ga) = (argmax(w), argmax(g));
            if wa == ga {
                s.agree += 1;
                continue;
            }
            let m = margin(w);
            if verbose {
                println!(
                    "  position {p}: llama.cpp {} vs ours {} (llama.cpp top-2 margin {m:.3}, ours {:.3})",
                    piece(tok, wa as u32),
                    piece(tok, ga as u32),
                    margin(g)
                );
            }
            if m >= NEAR_TIE {
                failures.push(format!("position {p}: argmax differs with margin {m}"));
            }
        }
    }
    (stats, failures)
}

fn gemma3_path() -> PathBuf {
    let local = PathBuf::from("/tmp/models/gemma-3-270m-q4_k_m.gguf");
    if local.exists() {
        local
    } else {
        edgespec::catalog::resolve_model("gemma3-270m").unwrap()
    }
}

/// [`LONG_TEXT`] tokenized by both programs (which must agree), and llama.cpp's logits for it.
fn long_text_reference(path: &PathBuf, tok: &Tokenizer) -> (Vec<u32>, Vec<Vec<f32>>) {
    let seq = tok.encode(LONG_TEXT, true, true);
    let reference = LlamaCppModel::load(path, 2, 1024).unwrap();
    assert_eq!(seq, reference.tokenize(LONG_TEXT, true, true).unwrap());
    let want = reference.logits_for(&seq).unwrap();
    (seq, want)
}

/// Teacher-forced parity past the sliding window, on a cache whose local-layer rings wrap.
#[test]
fn gemma3_past_the_sliding_window_matches_llama_cpp() {
    let _turn = turn();
    let path = gemma3_path();
    let ours = Model::load(&path).unwrap();
    let window = ours.config().sliding_window.expect("gemma 3 has a sliding window");
    let tok = Tokenizer::from_gguf(ours.file()).unwrap();
    let (seq, want) = long_text_reference(&path, &tok);
    assert!(seq.len() > window + 64, "the text is only {} tokens", seq.len());

    // Ours in passes of 16 over a 1024-position context: local layers keep rings of
    // window + 16 rows, which wrap from position 528 on; the whole-context layout gives the
    // same bits at every pass.
    let mut ring = ours.new_cache(1024, KvType::F16).unwrap();
    let mut full = ours.new_cache_with_layout(1024, KvType::F16, KvLayout::Full).unwrap();
    assert!(ring.bytes() < full.bytes());
    let (stats, failures) = score(
        &ours,
        &mut ring,
        Some(&mut full),
        &Reference { seq: &seq, want: &want, split: window, tok: &tok },
        true,
    );
    for (what, s) in ["before the window's end", "past the window's end"].iter().zip(stats) {
        println!(
            "gemma3 long text, {what}: {} positions, argmax agreement {:.2}%, max |Δlogit|/range {:.4}, \
             mean |Δlogit|/range {:.5}",
            s.positions,
            s.agreement(),
            s.max_rel,
            s.mean_rel()
        );
    }
    assert!(stats[1].positions >= 64, "only {} positions past the window", stats[1].positions);
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Gemma 3 270M's file with `attention.sliding_window` patched from 512 to `window` in its
/// header (the local layers stay local, with their RoPE base; only the window widens).
fn gemma3_with_window(path: &PathBuf, window: u32) -> edgespec::gguf::GgufFile {
    let mut bytes = std::fs::read(path).unwrap();
    let key = b"gemma3.attention.sliding_window";
    let at = bytes.windows(key.len()).position(|w| w == key).expect("the window key") + key.len();
    // GGUF: the key, then the value's type (u32 LE, 4 = UINT32), then the value.
    assert_eq!(bytes[at..at + 4], 4u32.to_le_bytes(), "sliding_window is a UINT32");
    assert_eq!(bytes[at + 4..at + 8], 512u32.to_le_bytes());
    bytes[at + 4..at + 8].copy_from_slice(&window.to_le_bytes());
    edgespec::gguf::GgufFile::from_bytes(bytes).unwrap()
}

/// Each of Gemma 3's differences from llama, as llama.cpp runs the file, matters: turning any
/// one of them off (or to the other convention) moves our logits far from llama.cpp's, while the
/// spec as written stays at the noise floor. The window is judged past its end (before it, a
/// window widened past the text gives bitwise the same logits); everything else over the whole
/// text.
#[test]
fn gemma3_every_architectural_choice_matters() {
    let _turn = turn();
    use edgespec::model::{Activation, ArchSpec, EmbedScale};
    let path = gemma3_path();
    let file = std::sync::Arc::new(edgespec::gguf::GgufFile::open(&path).unwrap());
    let wide = std::sync::Arc::new(gemma3_with_window(&path, 4096));
    let spec = ArchSpec::for_arch("gemma3").unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let (seq, want) = long_text_reference(&path, &tok);
    let window = Model::from_file(file.clone()).unwrap().config().sliding_window.unwrap();
    let variants = [
        ("as specified", spec.clone(), &file),
        ("no sqrt(dim) embedding scale", ArchSpec { embed_scale: EmbedScale::None, ..spec.clone() }, &file),
        ("norms as (1 + stored w)", ArchSpec { norm_weight_offset: 1.0, ..spec.clone() }, &file),
        ("SiLU instead of GELU-tanh", ArchSpec { activation: Activation::SiluGated, ..spec.clone() }, &file),
        ("local layers at the global RoPE base", ArchSpec { rope_base_local: None, ..spec.clone() }, &file),
        ("sliding window widened to 4096", spec.clone(), &wide),
    ];
    let r = Reference { seq: &seq, want: &want, split: window, tok: &tok };
    let mut results = Vec::new();
    for (name, arch, file) in variants {
        let model = Model::from_file_with_arch(file.clone(), arch).unwrap();
        let mut cache = model.new_cache(1024, KvType::F16).unwrap();
        let (stats, failures) = score(&model, &mut cache, None, &r, false);
        let all = Stats {
            positions: stats[0].positions + stats[1].positions,
            agree: stats[0].agree + stats[1].agree,
            max_rel: stats[0].max_rel.max(stats[1].max_rel),
            sum_rel: stats[0].sum_rel + stats[1].sum_rel,
        };
        println!(
            "{name:>38}: all {} positions agreement {:.1}%, mean |Δ|/range {:.5}; past {window}: \
             agreement {:.1}%, mean |Δ|/range {:.5}; {} misses above the near-tie margin",
            all.positions,
            all.agreement(),
            all.mean_rel(),
            stats[1].agreement(),
            stats[1].mean_rel(),
            failures.len()
        );
        results.push((name, stats, all, failures.len()));
    }
    let (_, base, base_all, base_failures) = results[0];
    assert_eq!(base_failures, 0, "the spec as written misses at non-ties");
    for &(name, stats, all, failures) in &results[1..] {
        let (s, b) = if name.contains("window") {
            // Before the window's end nothing changes, to the bit.
            assert_eq!(stats[0].sum_rel.to_bits(), base[0].sum_rel.to_bits(), "{name}: before the window");
            (stats[1], base[1])
        } else {
            (all, base_all)
        };
        assert!(
            s.mean_rel() > 3.0 * b.mean_rel() && failures > 0,
            "{name}: mean |Δ|/range {:.5} (as specified {:.5}), {failures} misses above the margin",
            s.mean_rel(),
            b.mean_rel()
        );
    }
}
