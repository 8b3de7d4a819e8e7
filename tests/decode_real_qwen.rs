//! Exactness on the real-size model, Qwen2.5-Coder-0.5B (qwen2: QKV biases, untied Q8_0 head,
//! Q5_0/Q4_K/Q6_K blocks), over prompts of the `code` suite: every strategy emits plain
//! decoding's tokens, greedy and with the same seed when sampling. The self-derived drafters
//! and the draft heads are made to draft at every step (a cost curve under which every draft
//! pays, `always_draft`), so their drafts are really verified, accepted and rolled back.

mod common;

use common::{forced_self_spec, reply};
use edgespec::bench::{PromptKind, Suite};
use edgespec::decode::heads::{model_identity, DraftHeads};
use edgespec::decode::{CostModel, Drafter, Strategy};
use edgespec::sampling::SamplingParams;
use edgespec::session::{GenerateParams, Session, SessionOptions};

const MODEL: &str = "qwen2.5-coder-0.5b";

fn load() -> Session {
    let path = edgespec::catalog::resolve_model(MODEL).unwrap();
    Session::load(path, &SessionOptions { threads: Some(2), ctx: Some(1024), ..Default::default() }).unwrap()
}

/// Untrained heads (each starts as the model's own head at offset 1): they draft plausible
/// tokens, some accepted, and exercise the heads' verification path.
fn heads_for(s: &Session) -> DraftHeads {
    let c = s.model().config();
    DraftHeads::init(model_identity(s.model()), c.dim, 2, 32, 4096, 7, true)
}

/// Every strategy, and the forced drafters, against plain on `prompts` with `params`.
fn check(s: &mut Session, prompts: &[&str], params: GenerateParams) -> usize {
    let n_layers = s.model().config().n_layers;
    let heads = heads_for(s);
    let mut accepted = 0;
    for text in prompts {
        s.set_cost_model(CostModel::default());
        let plain_p = GenerateParams { strategy: Strategy::Plain, ..params };
        let (plain, st) = reply(s, text, &plain_p, None);
        assert!(st.generated_tokens > 8, "the reply to {text:?} is too short to test");
        for strategy in
            [Strategy::Lookup, Strategy::Lookahead, Strategy::SelfSpec, Strategy::EarlyExit, Strategy::Auto]
        {
            let (got, st) = reply(s, text, &GenerateParams { strategy, ..params }, None);
            assert_eq!(plain, got, "{MODEL}: {strategy} differs from plain on {text:?}");
            accepted += st.accepted_tokens;
        }
        // Every draft pays under this curve: the forced drafters and the heads draft each step.
        s.set_cost_model(CostModel::frozen(0.0));
        for mut d in forced_self_spec(n_layers) {
            let (got, st) = reply(s, text, &plain_p, Some(&mut d));
            assert_eq!(
                plain,
                got,
                "{MODEL}: forced {} differs from plain on {text:?}",
                d.describe().unwrap_or_default()
            );
            assert!(st.drafted_tokens > 0, "forced {} drafted nothing", d.describe().unwrap_or_default());
            accepted += st.accepted_tokens;
        }
        s.set_heads(heads.clone()).unwrap();
        let (got, st) = reply(s, text, &GenerateParams { strategy: Strategy::Heads, ..params }, None);
        assert_eq!(plain, got, "{MODEL}: heads differ from plain on {text:?}");
        accepted += st.accepted_tokens;
    }
    s.set_cost_model(CostModel::default());
    accepted
}

fn code_prompts(kind: PromptKind, n: usize) -> Vec<String> {
    let suite = Suite::load("code").unwrap();
    suite.prompts.iter().filter(|p| p.kind == kind).take(n).map(|p| p.text.clone()).collect()
}

#[test]
fn qwen_every_strategy_is_plain_greedy() {
    let mut s = load();
    let mut prompts = code_prompts(PromptKind::Grounded, 3);
    prompts.extend(code_prompts(PromptKind::Open, 2));
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let p = GenerateParams { max_tokens: 48, sampling: SamplingParams::greedy(), strategy: Strategy::Plain };
    let accepted = check(&mut s, &texts, p);
    assert!(accepted > 50, "drafts were accepted ({accepted})");
}

#[test]
fn qwen_every_strategy_is_plain_with_the_same_seed() {
    let mut s = load();
    let prompts =
        [code_prompts(PromptKind::Grounded, 1).remove(0), code_prompts(PromptKind::Open, 1).remove(0)];
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    for seed in [3, 11] {
        let sampling = SamplingParams { temperature: 0.8, seed, ..Default::default() };
        let p = GenerateParams { max_tokens: 40, sampling, strategy: Strategy::Plain };
        let accepted = check(&mut s, &texts, p);
        assert!(accepted > 0, "seed {seed}: no draft was accepted");
    }
}
