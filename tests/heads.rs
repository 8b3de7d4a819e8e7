//! Draft heads on tiny random models: the artifact round-trips and refuses what does not fit,
//! training learns a learnable task, and strategy `heads` emits exactly plain decoding's tokens.

use std::sync::Arc;
use std::time::Duration;

use edgespec::decode::corpus::{corpus_path, Corpus};
use edgespec::decode::heads::{heads_path, model_identity, train, Dataset, DraftHeads, TrainConfig};
use edgespec::decode::{CostModel, Strategy};
use edgespec::error::ErrorKind;
use edgespec::gguf::GgufFile;
use edgespec::kernels::KernelPool;
use edgespec::model::synthetic::{self, SyntheticSpec};
use edgespec::model::{KvType, Model, Workspace};
use edgespec::sampling::{Rng, SamplingParams};
use edgespec::session::{Flow, GenerateParams, GenerationStats, Session, SessionOptions};
use edgespec::tokenizer::TokenId;

fn file(spec: &SyntheticSpec) -> Arc<GgufFile> {
    Arc::new(GgufFile::from_bytes(synthetic::build(spec).unwrap()).unwrap())
}

fn opts() -> SessionOptions {
    SessionOptions { threads: Some(2), ctx: Some(256), ..Default::default() }
}

fn gen(s: &mut Session, prompt: &str, n: usize, strategy: Strategy) -> (Vec<TokenId>, GenerationStats) {
    s.reset();
    let p = GenerateParams { max_tokens: n, sampling: SamplingParams::greedy(), strategy };
    let st = s.generate(prompt, &p, &mut |_| Flow::Continue).unwrap();
    (s.tokens().collect(), st)
}

const PROMPTS: [&str; 6] = [
    "the cat sat on the mat",
    "abc abc abc",
    "one two three four",
    "hello world, hello",
    "xyzzy plugh",
    "zero one zero one zero",
];

/// Heads for `spec`'s model trained for a few steps on its own greedy continuations.
fn trained_heads(spec: &SyntheticSpec, k: usize, budget: Duration) -> (DraftHeads, train::TrainReport) {
    let f = file(spec);
    let model = Model::from_file(f.clone()).unwrap();
    let mut s = Session::new(Model::from_file(f).unwrap(), &opts()).unwrap();
    let mut ws = Workspace::new(&model, KernelPool::new(Some(2)).unwrap(), 256).unwrap();
    let mut cache = model.new_cache(256, KvType::F16).unwrap();
    let mut data = Dataset::new(model.config().dim, k);
    for p in PROMPTS {
        let (tokens, st) = gen(&mut s, p, 60, Strategy::Plain);
        data.add_sequence(&model, &mut ws, &mut cache, &tokens, st.prompt_tokens - 1).unwrap();
    }
    assert!(data.len() > 100, "{} samples", data.len());
    let cfg = TrainConfig {
        k,
        rank: 32,
        vocab: 128,
        seed: 3,
        epochs: 3,
        batch: 64,
        budget,
        holdout_every: 3,
        ..Default::default()
    };
    train::train(&model, &data, &cfg, &mut |_, _, _| {}).unwrap()
}

#[test]
fn artifact_round_trips_and_is_refused_for_another_model_or_when_damaged() {
    let spec = SyntheticSpec::llama(1);
    let model = Model::from_file(file(&spec)).unwrap();
    let mut heads = DraftHeads::init(model_identity(&model), model.config().dim, 2, 16, 100, 9, true);
    heads.w2.iter_mut().enumerate().for_each(|(i, w)| *w = i as f32 * 1e-3);
    heads.alpha_top1 = vec![0.5, 0.25];
    heads.width = 3;
    let bytes = heads.to_bytes();
    let back = DraftHeads::from_bytes(&bytes).unwrap();
    assert_eq!(back, heads);
    back.check_for(&model).unwrap();

    // Through a file beside a model that was loaded from a path.
    let dir = std::env::temp_dir().join(format!("edgespec-heads-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.gguf");
    std::fs::write(&path, synthetic::build(&spec).unwrap()).unwrap();
    let from_path = Model::load(&path).unwrap();
    let missing = DraftHeads::load_for(&from_path).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    assert!(missing.to_string().contains("edgespec tune"), "{missing}");
    heads.save(&heads_path(&path)).unwrap();
    assert_eq!(DraftHeads::load_for(&from_path).unwrap(), heads);
    // The corpus tune saves beside them: found, and refused for another model.
    let missing = Corpus::load_for(&from_path).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    let corpus = Corpus::new(model_identity(&from_path), [&[5u32, 6, 7, 8][..]]);
    corpus.save(&corpus_path(&path)).unwrap();
    let back = Corpus::load_for(&from_path).unwrap();
    assert_eq!(back.continuation(&[5, 6], 4), Some((2, &[7, 8][..])));
    let stranger = Corpus::new(
        model_identity(&Model::from_file(file(&SyntheticSpec::llama(2))).unwrap()),
        [&[5u32, 6, 7][..]],
    );
    stranger.save(&corpus_path(&path)).unwrap();
    let e = Corpus::load_for(&from_path).unwrap_err();
    assert!(e.to_string().contains("another model"), "{e}");

    // Another model (other weights, same shapes).
    let other = Model::from_file(file(&SyntheticSpec::llama(2))).unwrap();
    let e = heads.check_for(&other).unwrap_err();
    assert!(e.to_string().contains("another model"), "{e}");
    // Wrong width.
    let mut wide = heads.clone();
    wide.dim += 32;
    wide.w1 = vec![0.0; wide.k * wide.rank * wide.inputs()];
    wide.w2 = vec![0.0; wide.k * wide.rank * wide.dim];
    let e = DraftHeads::from_bytes(&wide.to_bytes()).unwrap().check_for(&model).unwrap_err();
    assert!(e.to_string().contains("width"), "{e}");
    // Truncated, bad magic, another version.
    let e = DraftHeads::from_bytes(&bytes[..bytes.len() - 4]).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert_eq!(DraftHeads::from_bytes(&bad).unwrap_err().kind(), ErrorKind::Format);
    let mut v2 = bytes.clone();
    v2[8] = 2;
    assert!(DraftHeads::from_bytes(&v2).unwrap_err().to_string().contains("version"));
    // A session on the path finds the file for strategy `heads`.
    let mut s = Session::load(&path, &opts()).unwrap();
    gen(&mut s, "abc", 8, Strategy::Heads);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn training_learns_a_learnable_task() {
    // Hidden states near one of eight centres; head 1's target is the centre's token, head 2's
    // the token after it. The identity head (W2 = 0) cannot know this mapping.
    let model = Model::from_file(file(&SyntheticSpec::llama(4))).unwrap();
    let dim = model.config().dim;
    let mut rng = Rng::new(11);
    let mut uniform = || 2.0 * rng.next_f64() as f32 - 1.0;
    let centres: Vec<Vec<f32>> = (0..8).map(|_| (0..dim).map(|_| uniform()).collect()).collect();
    let mut data = Dataset::new(dim, 2);
    for i in 0..1200 {
        let c = i % 8;
        data.hidden.extend(centres[c].iter().map(|&x| x + 0.05 * uniform()));
        data.targets.extend([10 + c as u32 * 3, 40 + c as u32]);
        data.pending.push(c as u32);
        data.sequence.push((i % 10) as u32);
    }
    let cfg = TrainConfig {
        k: 2,
        rank: 32,
        vocab: 64,
        seed: 1,
        epochs: 30,
        batch: 64,
        lr: 1e-2,
        holdout_every: 10,
        budget: Duration::from_secs(120),
        token_input: false,
        weight_decay: 0.0,
        distill: false,
    };
    let (heads, rep) = train::train(&model, &data, &cfg, &mut |_, _, _| {}).unwrap();
    assert_eq!(rep.steps, rep.planned_steps);
    for j in 0..2 {
        assert!(rep.last_loss[j] < 0.3 * rep.first_loss[j], "head {j}: {rep:?}");
        assert!(rep.alpha_top1[j] > 0.95, "head {j}: {rep:?}");
    }
    assert_eq!(heads.alpha_top1, rep.alpha_top1);
    // Deterministic from the seed.
    let (again, _) = train::train(&model, &data, &cfg, &mut |_, _, _| {}).unwrap();
    assert_eq!(again, heads);
}

#[test]
fn heads_greedy_emits_plain_tokens() {
    let mut drafted = [0; 3];
    for spec in [SyntheticSpec::llama(1), SyntheticSpec::llama(5), SyntheticSpec::gemma3(3)] {
        let (heads, rep) = trained_heads(&spec, 3, Duration::from_secs(60));
        assert!(rep.steps > 0);
        let f = file(&spec);
        let mut plain = Session::new(Model::from_file(f.clone()).unwrap(), &opts()).unwrap();
        let mut with = Session::new(Model::from_file(f).unwrap(), &opts()).unwrap();
        // Without heads the strategy says what to do.
        let p =
            GenerateParams { max_tokens: 4, sampling: SamplingParams::greedy(), strategy: Strategy::Heads };
        let e = with.generate("x", &p, &mut |_| Flow::Continue).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        // A cost curve that makes every draft look worth it, so the heads draft every step.
        with.set_cost_model(CostModel::frozen(0.0));
        // A chain of the heads' top tokens, and token trees of their top candidates.
        for width in [1, 2, 3] {
            let mut h = heads.clone();
            h.width = width;
            with.set_heads(h).unwrap();
            for prompt in PROMPTS.iter().chain(&["a new prompt, never seen in training"]) {
                let (pt, _) = gen(&mut plain, prompt, 80, Strategy::Plain);
                let (ht, st) = gen(&mut with, prompt, 80, Strategy::Heads);
                assert_eq!(pt, ht, "{} width {width} / {prompt:?}", spec.arch);
                drafted[width - 1] += st.drafted_tokens;
            }
        }
    }
    assert!(drafted.iter().all(|&d| d > 100), "the heads drafted {drafted:?} tokens");
}
