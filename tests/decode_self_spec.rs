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
    GenerateParams {
        max_tokens: n,
        sampling: SamplingParams::greedy(),
        strategy: edgespec::decode::Strategy::Plain,
    }
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

#[test]
fn search_measures_every_candidate_and_respects_its_budget() {
    use edgespec::decode::self_spec_candidates::{candidates, ModelBytes};
    use edgespec::tune::self_spec_search::{search, SearchOptions};
    let model = tiny(&SyntheticSpec::gemma3(5));
    let n = model.config().n_layers;
    let bytes = ModelBytes::of(&model).unwrap();
    let all = SelfSpecParams { head_vocab: None, ..SelfSpecParams::early_exit(n).unwrap() };
    assert_eq!(bytes.draft(&all), bytes.full());
    let two = SelfSpecParams::early_exit(2).unwrap();
    assert!(bytes.draft(&two) < bytes.draft(&SelfSpecParams { exit_after: Some(3), ..two }));
    // A cache that holds about half the model: the cache-resident candidates fit its share.
    let llc = bytes.full() * 2 / 3;
    let list = candidates(&model, Some(llc)).unwrap();
    let resident: Vec<_> = list.iter().filter(|c| c.name.starts_with("LLC")).collect();
    assert!(!resident.is_empty());
    assert!(resident.iter().all(|c| bytes.draft(&c.params) as f64 <= 0.75 * llc as f64));
    // The cost-gated presets come first; they may decline to draft.
    assert!(!list[0].params.always_draft && !list[1].params.always_draft);
    let list: Vec<_> = list.into_iter().skip(2).take(3).collect();

    let opts = SearchOptions {
        prompts: vec!["abc abc abc".into(), "the cat sat on the".into()],
        max_tokens: 12,
        budget_s: 1e6,
        session: SessionOptions { threads: Some(2), ctx: Some(128), ..Default::default() },
    };
    let mut seen = 0;
    let report = search(&model, &opts, &list, &mut |_, _, _| seen += 1).unwrap();
    assert_eq!((report.variants.len(), seen), (list.len(), list.len()));
    for v in &report.variants {
        assert!(v.drafted > 0, "{}: drafted nothing", v.name);
        assert!(v.alpha.is_some_and(|a| (0.0..=1.0).contains(&a)));
        assert!(v.tokens_per_s > 0.0 && v.speedup > 0.0 && v.draft_rel.is_some());
        assert!(v.mean_accepted_per_pass >= 1.0);
    }
    let best = report.best().unwrap();
    assert!(report.variants.iter().all(|v| v.speedup <= best.speedup));
    assert!(report.to_markdown().contains(&best.name));

    let none = search(&model, &SearchOptions { budget_s: 0.0, ..opts }, &list, &mut |_, _, _| {}).unwrap();
    assert!(none.variants.is_empty() && none.skipped.len() == list.len());
}

#[test]
fn teacher_forced_agreement_ranks_and_grows_skip_sets() {
    use edgespec::tune::self_spec_rank::{greedy_sequences, grow_sets, rank_sublayers, AgreementProbe};
    let model = tiny(&SyntheticSpec::llama(6));
    let n = model.config().n_layers;
    let opts = SessionOptions { threads: Some(2), ctx: Some(128), ..Default::default() };
    let prompts = vec!["the cat sat on the mat".to_string(), "xyzzy".to_string()];
    let seqs = greedy_sequences(&model, &prompts, 30, &opts).unwrap();
    assert!(seqs.iter().all(|s| s.prompt > 0 && s.tokens.len() > s.prompt));
    let mut probe = AgreementProbe::new(&model, seqs, Some(2)).unwrap();
    let full = SelfSpecParams { head_vocab: None, ..SelfSpecParams::early_exit(n).unwrap() };
    // The full model reading its own greedy output agrees everywhere, in any chunking (batch
    // invariance), and again after other drafters ran (the probe restores the cache).
    for chunk in [1, 5, 16] {
        let a = probe.agreement(&model, &full, chunk).unwrap();
        assert_eq!(a.agreed, a.scored, "chunk {chunk}");
        assert!(a.scored >= 50);
    }
    let exit = SelfSpecParams { head_vocab: None, ..SelfSpecParams::early_exit(1).unwrap() };
    assert!(probe.agreement(&model, &exit, 8).unwrap().rate() < 1.0);
    assert_eq!(probe.agreement(&model, &full, 7).unwrap().rate(), 1.0);

    let ranked = rank_sublayers(&model, &mut probe, &full, 8, 1e6).unwrap();
    assert_eq!(ranked.len(), 2 * n);
    let grown = grow_sets(&model, &mut probe, &full, &ranked, &[0.05, 0.2, 0.5], 8).unwrap();
    assert!(!grown.is_empty());
    assert!(grown.windows(2).all(|w| w[0].skipped < w[1].skipped && w[0].bytes_rel > w[1].bytes_rel));
    assert!(grown.iter().all(|g| g.params.skip.len() == g.skipped && (0.0..=1.0).contains(&g.alpha)));
}
