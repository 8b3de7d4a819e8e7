//! The eagle (feature-level) drafter on tiny random models: the artifact round-trips and is
//! refused for another model or when damaged, training reduces its loss deterministically from
//! the seed, and strategy `eagle` emits exactly plain decoding's tokens, greedy and sampled.

use std::sync::Arc;
use std::time::Duration;

use edgespec::decode::eagle::{eagle_path, train, EagleConfig, EagleNet};
use edgespec::decode::heads::{model_identity, Dataset};
use edgespec::decode::{CostModel, Strategy};
use edgespec::error::ErrorKind;
use edgespec::gguf::GgufFile;
use edgespec::kernels::KernelPool;
use edgespec::model::synthetic::{self, SyntheticSpec};
use edgespec::model::{KvType, Model, Workspace};
use edgespec::sampling::SamplingParams;
use edgespec::session::{Flow, GenerateParams, GenerationStats, Session, SessionOptions};
use edgespec::tokenizer::TokenId;

fn file(spec: &SyntheticSpec) -> Arc<GgufFile> {
    Arc::new(GgufFile::from_bytes(synthetic::build(spec).unwrap()).unwrap())
}

fn opts() -> SessionOptions {
    SessionOptions { threads: Some(2), ctx: Some(256), ..Default::default() }
}

fn gen(
    s: &mut Session,
    prompt: &str,
    n: usize,
    sampling: SamplingParams,
    strategy: Strategy,
) -> (Vec<TokenId>, GenerationStats) {
    s.reset();
    let p = GenerateParams { max_tokens: n, sampling, strategy };
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

/// Teacher-forced data from `spec`'s model over its own greedy continuations.
fn dataset(spec: &SyntheticSpec) -> (Model, Dataset) {
    let f = file(spec);
    let model = Model::from_file(f.clone()).unwrap();
    let mut s = Session::new(Model::from_file(f).unwrap(), &opts()).unwrap();
    let mut ws = Workspace::new(&model, KernelPool::new(Some(2)).unwrap(), 256).unwrap();
    let mut cache = model.new_cache(256, KvType::F16).unwrap();
    let mut data = Dataset::new(model.config().dim, 3);
    for p in PROMPTS {
        let (tokens, st) = gen(&mut s, p, 60, SamplingParams::greedy(), Strategy::Plain);
        data.add_sequence(&model, &mut ws, &mut cache, &tokens, st.prompt_tokens - 1).unwrap();
    }
    assert!(data.len() > 100, "{} samples", data.len());
    (model, data)
}

fn config() -> EagleConfig {
    EagleConfig {
        rank: 32,
        vocab: 128,
        seed: 3,
        epochs: 6,
        batch: 32,
        lr: 3e-3,
        holdout_every: 3,
        budget: Duration::from_secs(60),
        ..Default::default()
    }
}

#[test]
fn artifact_round_trips_and_is_refused_for_another_model_or_when_damaged() {
    let spec = SyntheticSpec::llama(1);
    let model = Model::from_file(file(&spec)).unwrap();
    let mut net = EagleNet::init(model_identity(&model), model.config().dim, 16, 100, 9);
    net.w2.iter_mut().enumerate().for_each(|(i, w)| *w = i as f32 * 1e-3);
    net.alpha = [0.5, 0.25];
    let bytes = net.to_bytes();
    let back = EagleNet::from_bytes(&bytes).unwrap();
    assert_eq!(back, net);
    back.check_for(&model).unwrap();

    let dir = std::env::temp_dir().join(format!("edgespec-eagle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.gguf");
    std::fs::write(&path, synthetic::build(&spec).unwrap()).unwrap();
    let from_path = Model::load(&path).unwrap();
    let missing = EagleNet::load_for(&from_path).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    assert!(missing.to_string().contains("edgespec tune"), "{missing}");
    net.save(&eagle_path(&path)).unwrap();
    assert_eq!(EagleNet::load_for(&from_path).unwrap(), net);
    // A session on the path finds the file for strategy `eagle`.
    let mut s = Session::load(&path, &opts()).unwrap();
    gen(&mut s, "abc", 8, SamplingParams::greedy(), Strategy::Eagle);

    // Another model (other weights, same shapes).
    let other = Model::from_file(file(&SyntheticSpec::llama(2))).unwrap();
    let e = net.check_for(&other).unwrap_err();
    assert!(e.to_string().contains("another model"), "{e}");
    let mut s = Session::new(other, &opts()).unwrap();
    assert!(s.set_eagle(net.clone()).is_err());
    // Wrong width.
    let mut wide = EagleNet::init(net.identity, net.dim + 32, 16, 100, 9);
    wide.alpha = net.alpha;
    let e = EagleNet::from_bytes(&wide.to_bytes()).unwrap().check_for(&model).unwrap_err();
    assert!(e.to_string().contains("width"), "{e}");
    // Truncated, bad magic, another version, non-finite weights.
    let e = EagleNet::from_bytes(&bytes[..bytes.len() - 4]).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert_eq!(EagleNet::from_bytes(&bad).unwrap_err().kind(), ErrorKind::Format);
    let mut v2 = bytes.clone();
    v2[8] = 2;
    assert!(EagleNet::from_bytes(&v2).unwrap_err().to_string().contains("version"));
    let mut nan = bytes.clone();
    let at = nan.len() - 4;
    nan[at..].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(EagleNet::from_bytes(&nan).unwrap_err().to_string().contains("non-finite"));
    // A damaged file beside the model is refused by the session.
    std::fs::write(eagle_path(&path), &bytes[..100]).unwrap();
    let mut s = Session::load(&path, &opts()).unwrap();
    let p = GenerateParams { max_tokens: 4, sampling: SamplingParams::greedy(), strategy: Strategy::Eagle };
    assert!(s.generate("abc", &p, &mut |_| Flow::Continue).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn training_reduces_the_loss_and_is_deterministic_from_the_seed() {
    let (model, data) = dataset(&SyntheticSpec::llama(5));
    let cfg = config();
    let (net, rep) = train::train(&model, &data, &cfg, &mut |_, _, _| {}).unwrap();
    assert_eq!(rep.steps, rep.planned_steps, "{rep:?}");
    assert!(rep.last_loss < 0.8 * rep.first_loss, "{rep:?}");
    assert!(rep.heldout_samples > 0 && rep.params == net.params());
    assert_eq!(net.alpha, [rep.alpha_first, rep.alpha_second]);
    let (again, _) = train::train(&model, &data, &cfg, &mut |_, _, _| {}).unwrap();
    assert_eq!(again, net);
    let (other, _) = train::train(&model, &data, &EagleConfig { seed: 4, ..cfg }, &mut |_, _, _| {}).unwrap();
    assert_ne!(other, net);
}

#[test]
fn eagle_greedy_and_seeded_sampling_emit_plain_tokens() {
    let mut drafted = 0;
    for spec in [SyntheticSpec::llama(1), SyntheticSpec::gemma3(3)] {
        let (model, data) = dataset(&spec);
        let (net, _) = train::train(&model, &data, &config(), &mut |_, _, _| {}).unwrap();
        let f = file(&spec);
        let mut plain = Session::new(Model::from_file(f.clone()).unwrap(), &opts()).unwrap();
        let mut with = Session::new(Model::from_file(f).unwrap(), &opts()).unwrap();
        // Without a drafter the strategy says what to do.
        let p =
            GenerateParams { max_tokens: 4, sampling: SamplingParams::greedy(), strategy: Strategy::Eagle };
        let e = with.generate("x", &p, &mut |_| Flow::Continue).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        // A cost curve that makes every draft look worth it, so the drafter drafts every step.
        with.set_cost_model(CostModel::frozen(0.0));
        with.set_eagle(net).unwrap();
        for prompt in PROMPTS.iter().chain(&["a new prompt, never seen in training"]) {
            let (pt, _) = gen(&mut plain, prompt, 80, SamplingParams::greedy(), Strategy::Plain);
            let (et, st) = gen(&mut with, prompt, 80, SamplingParams::greedy(), Strategy::Eagle);
            assert_eq!(pt, et, "{} / {prompt:?}", spec.arch);
            drafted += st.drafted_tokens;
            for seed in 0..3 {
                let sp = SamplingParams {
                    temperature: 0.8,
                    top_k: 0,
                    top_p: 1.0,
                    min_p: 0.0,
                    seed,
                    ..Default::default()
                };
                let (pt, _) = gen(&mut plain, prompt, 40, sp, Strategy::Plain);
                let (et, _) = gen(&mut with, prompt, 40, sp, Strategy::Eagle);
                assert_eq!(pt, et, "{} / {prompt:?} seed {seed}", spec.arch);
            }
        }
    }
    assert!(drafted > 100, "eagle drafted {drafted} tokens");
}
