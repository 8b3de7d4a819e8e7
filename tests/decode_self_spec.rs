//! Self-derived drafters with a reduced-vocabulary head stay exact: greedy decoding with any
//! skip set, early exit and head prefix emits plain decoding's tokens (tiny models, where the
//! prefix is smaller than the vocabulary, and SmolLM2-135M with its default 16,384 ids).

use std::sync::Arc;

use edgespec::decode::{SelfSpecDrafter, SelfSpecParams};
use edgespec::gguf::GgufFile;
use edgespec::model::synthetic::{self, SyntheticSpec};
use edgespec::model::{Model, SkipSet, SubLayer};
use edgespec::sampling::SamplingParams;
use edgespec::session::{Flow, GenerateParams, GenerationStats, Session, SessionOptions};
use edgespec::tokenizer::TokenId;

fn session(model: Model, ctx: usize) -> Session {
    Session::new(model, &SessionOptions { threads: Some(2), ctx: Some(ctx), ..Default::default() }).unwrap()
}

fn tiny(spec: &SyntheticSpec) -> Model {
    Model::from_file(Arc::new(GgufFile::from_bytes(synthetic::build(spec).unwrap()).unwrap())).unwrap()
}

fn greedy(n: usize) -> GenerateParams {
    GenerateParams { max_tokens: n, sampling: SamplingParams::greedy(), ..Default::default() }
}

/// Tokens and stats of `prompt` decoded with `drafter` (plain with `None`).
fn run(
    s: &mut Session,
    prompt: &str,
    n: usize,
    drafter: Option<&mut SelfSpecDrafter>,
) -> (Vec<TokenId>, GenerationStats) {
    s.reset();
    let st = match drafter {
        Some(d) => s.generate_with(prompt, &greedy(n), d, &mut |_| Flow::Continue),
        None => s.generate(prompt, &greedy(n), &mut |_| Flow::Continue),
    }
    .unwrap();
    (s.tokens().collect(), st)
}

fn variants(n_layers: usize, head_vocab: u32) -> Vec<SelfSpecParams> {
    let mut skip = SkipSet::none();
    skip.insert(1, SubLayer::Attention).unwrap();
    skip.insert(n_layers - 1, SubLayer::Mlp).unwrap();
    let layer_skip = SelfSpecParams { skip, ..SelfSpecParams::layer_skip(n_layers).unwrap() };
    let exit = SelfSpecParams::early_exit(1).unwrap();
    [layer_skip, exit]
        .into_iter()
        .flat_map(|p| [None, Some(head_vocab), Some(1)].map(|v| SelfSpecParams { head_vocab: v, ..p }))
        .map(|p| SelfSpecParams { always_draft: true, min_confidence_milli: 0, ..p })
        .collect()
}

#[test]
fn tiny_reduced_head_drafters_are_plain() {
    let mut drafted = 0;
    for spec in [SyntheticSpec::llama(1), SyntheticSpec::gemma3(3)] {
        let mut s = session(tiny(&spec), 200);
        let n_layers = s.model().config().n_layers;
        for prompt in ["the cat sat on the mat; the cat sat on the", "xyzzy abc"] {
            let (plain, _) = run(&mut s, prompt, 60, None);
            for p in variants(n_layers, 100) {
                let mut d = SelfSpecDrafter::new("self-spec", p);
                let (toks, st) = run(&mut s, prompt, 60, Some(&mut d));
                assert_eq!(plain, toks, "{p:?} on {}: tokens differ", spec.arch);
                drafted += st.drafted_tokens;
            }
        }
    }
    assert!(drafted > 100, "the drafters drafted ({drafted})");
}

#[test]
fn smollm2_reduced_head_drafters_are_plain() {
    let path = edgespec::catalog::resolve_model("smollm2-135m").unwrap();
    let mut s = session(Model::load(path).unwrap(), 512);
    let prompt = "Explain in two sentences why the sky is blue.";
    let (plain, _) = run(&mut s, prompt, 40, None);
    let mut accepted = 0;
    for p in variants(30, 16_384) {
        let p = SelfSpecParams { exit_after: p.exit_after.map(|_| 9), ..p };
        let mut d = SelfSpecDrafter::new("self-spec", p);
        let (toks, st) = run(&mut s, prompt, 40, Some(&mut d));
        assert_eq!(plain, toks, "{p:?}: tokens differ");
        accepted += st.accepted_tokens;
    }
    assert!(accepted > 10, "drafts were accepted ({accepted})");
}
