//! The eagle drafter on SmolLM2-135M: trained briefly on a few of the model's own replies to
//! calibration prompts, it drafts tokens that are accepted, and strategy `eagle` (drafting at
//! every step) emits exactly plain decoding's tokens on prompts of the bench suite.

use std::time::Duration;

use edgespec::bench::Suite;
use edgespec::decode::eagle::{train, EagleConfig};
use edgespec::decode::heads::Dataset;
use edgespec::decode::{CostModel, Strategy};
use edgespec::kernels::KernelPool;
use edgespec::model::{KvType, Model, Workspace};
use edgespec::sampling::SamplingParams;
use edgespec::session::{Flow, GenerateParams, Session, SessionOptions};
use edgespec::tokenizer::TokenId;

fn reply(s: &mut Session, text: &str, strategy: Strategy, n: usize) -> (Vec<TokenId>, usize, usize) {
    s.reset();
    let p = GenerateParams { max_tokens: n, sampling: SamplingParams::greedy(), strategy };
    let st = s.chat(text, &p, &mut |_| Flow::Continue).unwrap().1;
    (s.tokens().collect(), st.prompt_tokens, st.accepted_tokens)
}

#[test]
fn smollm2_eagle_is_plain() {
    let path = edgespec::catalog::resolve_model("smollm2-135m").unwrap();
    let opts = SessionOptions { threads: Some(2), ctx: Some(1024), ..Default::default() };
    let mut s = Session::load(&path, &opts).unwrap();
    let model = Model::load(&path).unwrap();
    let mut ws = Workspace::new(&model, KernelPool::new(Some(2)).unwrap(), 1024).unwrap();
    let mut cache = model.new_cache(1024, KvType::F16).unwrap();
    let calibration = Suite::from_toml("calibration", edgespec::tune::CALIBRATION_SUITE).unwrap();
    let mut data = Dataset::new(model.config().dim, 2);
    for p in calibration.prompts.iter().take(8) {
        let (tokens, prompt, _) = reply(&mut s, &p.text, Strategy::Plain, 96);
        data.add_sequence(&model, &mut ws, &mut cache, &tokens, prompt - 1).unwrap();
    }
    let cfg = EagleConfig {
        rank: 64,
        vocab: 4096,
        epochs: 2,
        holdout_every: 4,
        budget: Duration::from_secs(120),
        ..Default::default()
    };
    let (net, rep) = train::train(&model, &data, &cfg, &mut |_, _, _| {}).unwrap();
    assert!(rep.last_loss < rep.first_loss, "{rep:?}");

    // A cost curve under which every draft pays, so the drafter drafts at every step.
    s.set_cost_model(CostModel::frozen(0.0));
    s.set_eagle(net).unwrap();
    let suite = Suite::load("default").unwrap();
    let mut accepted = 0;
    for p in suite
        .prompts
        .iter()
        .take(3)
        .chain(suite.prompts.iter().filter(|p| p.kind == edgespec::bench::PromptKind::Open).take(1))
    {
        let (plain, _, _) = reply(&mut s, &p.text, Strategy::Plain, 64);
        let (with, _, a) = reply(&mut s, &p.text, Strategy::Eagle, 64);
        assert_eq!(plain, with, "prompt `{}` differs with eagle", p.name);
        accepted += a;
    }
    assert!(accepted > 0, "no drafted token was accepted");
}
