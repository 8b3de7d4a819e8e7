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

/// Varied prose, a list and code: long enough to run well past Gemma 3's 512-position window.
pub const LONG_TEXT: &str =
    "The lighthouse at the end of the harbour had been dark for eleven years when Mara \
arrived with a toolbox, a notebook and a letter from the harbour master. The letter said that the lamp \
could be repaired if someone patient enough could be found, and that the town would pay for the parts. \
She spent the first week cleaning: salt had crusted on every brass fitting, gulls had nested in the \
gallery, and the great lens was clouded with a film of soot. Each evening she wrote down what she had \
done and what she would need, and each morning she walked to the hardware shop, where the owner began \
to keep a box of odd screws and gaskets for her.\n\nBy the second month the clockwork that turned the \
lens was running again. It was an old mechanism, driven by a falling weight that had to be wound by hand \
every four hours, and it ticked loudly enough to be heard from the keeper's cottage. Mara learned to \
sleep in short stretches. The fishermen noticed the lens turning before they noticed any light, and a \
few of them came up the hill to ask what she was doing. She showed them the notebook, with its careful \
drawings of gears and its lists of measurements, and they went away impressed and a little puzzled.\n\n\
Recipe for the keeper's bread, as written on the inside cover of the notebook:\n\
1. Mix 500 g of flour, 10 g of salt and 7 g of dried yeast.\n\
2. Add 320 ml of warm water and knead for ten minutes.\n\
3. Leave the dough to rise until it has doubled, about an hour.\n\
4. Shape it, let it rise again, and bake at 220 degrees for 35 minutes.\n\n\
The lamp itself was the hardest part. The original burner had been converted to electricity decades ago, \
and the wiring had rotted in the damp. Mara replaced it cable by cable, testing each section with a \
small meter, and in the evenings she wrote a program to log the voltage:\n\n\
def log_voltage(readings, threshold=11.5):\n\
    alerts = []\n\
    for time, volts in readings:\n\
        if volts < threshold:\n\
            alerts.append((time, volts))\n\
    return alerts\n\n\
On the night the light finally came on, half the town gathered on the quay. The beam swept across the \
water, caught the masts of the boats and the white walls of the houses, and moved on into the dark. \
Nobody cheered at first; they simply watched it turn, once, twice, three times, as if checking that it \
would keep going. Then the harbour master raised his cap, and the children began to shout, and somebody \
rang the bell of the old chapel. Mara stood in the gallery with her hands on the cold rail and counted \
the seconds between flashes, as the notebook said she should: ten seconds, exactly, every time.\n\n\
In the years that followed the lighthouse became a small museum as well as a working light. Visitors \
climbed the hundred and twelve steps, read the notebook in its glass case, and asked Mara questions \
about the weights, the lens and the storms. She answered them patiently, and when the winter came and \
the visitors stopped, she went back to winding the clock every four hours, writing down the weather, \
and baking bread from the recipe on the inside cover. The town never again let the light go dark.";

/// Self-speculation that drafts at every step: a few attention and MLP sub-layers skipped, and
/// early exit after half the layers, both with the reduced drafter head.
pub fn forced_self_spec(n_layers: usize) -> Vec<edgespec::decode::SelfSpecDrafter> {
    let mut skip = edgespec::model::SkipSet::none();
    for l in (2..n_layers - 1).step_by(3) {
        skip.insert(l, edgespec::model::SubLayer::Attention).unwrap();
    }
    skip.insert(n_layers - 2, edgespec::model::SubLayer::Mlp).unwrap();
    let layer_skip = edgespec::decode::SelfSpecParams {
        skip,
        ..edgespec::decode::SelfSpecParams::layer_skip(n_layers).unwrap()
    };
    let exit = edgespec::decode::SelfSpecParams::early_exit(n_layers / 2).unwrap();
    [("self-spec", layer_skip), ("early-exit", exit)]
        .into_iter()
        .map(|(name, p)| {
            edgespec::decode::SelfSpecDrafter::new(
                name,
                edgespec::decode::SelfSpecParams { always_draft: true, min_confidence_milli: 0, ..p },
            )
        })
        .collect()
}

/// The reply's tokens and the statistics, by strategy or by a drafter of the test's own.
pub fn reply(
    s: &mut edgespec::session::Session,
    text: &str,
    p: &edgespec::session::GenerateParams,
    drafter: Option<&mut dyn edgespec::decode::Drafter>,
) -> (Vec<edgespec::tokenizer::TokenId>, edgespec::session::GenerationStats) {
    s.reset();
    let st = match drafter {
        Some(d) => s.chat_with(text, p, d, &mut |_| edgespec::session::Flow::Continue),
        None => s.chat(text, p, &mut |_| edgespec::session::Flow::Continue),
    }
    .unwrap()
    .1;
    let tokens: Vec<edgespec::tokenizer::TokenId> = s.tokens().collect();
    (tokens[tokens.len() - st.generated_tokens..].to_vec(), st)
}

/// Whether a GPU adapter is there; without one the GPU tests say so and pass, unless
/// `EDGESPEC_REQUIRE_GPU` is set (CI), which makes that a failure.
#[cfg(feature = "gpu")]
pub fn have_gpu() -> bool {
    if edgespec::gpu::adapters().is_empty() {
        assert!(
            std::env::var("EDGESPEC_REQUIRE_GPU").is_err(),
            "EDGESPEC_REQUIRE_GPU is set but no adapter was found"
        );
        eprintln!("no Vulkan/Metal adapter: GPU test skipped");
        return false;
    }
    true
}
