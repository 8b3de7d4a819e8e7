//! Draft heads on SmolLM2-135M: heads trained briefly on a few of the model's own replies to
//! calibration prompts draft tokens that are accepted, and strategy `heads` (chain and token
//! tree, drafting at every step) emits exactly plain decoding's tokens on prompts of the bench
//! suite.

use std::time::Duration;

use edgespec::bench::Suite;
use edgespec::decode::heads::{train, Dataset, TrainConfig};
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
fn smollm2_heads_are_plain() {
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
    let cfg = TrainConfig {
        k: 2,
        vocab: 4096,
        epochs: 2,
        holdout_every: 4,
        budget: Duration::from_secs(120),
        ..Default::default()
    };
    let (mut heads, rep) = train::train(&model, &data, &cfg, &mut |_, _, _| {}).unwrap();
    assert!(rep.last_loss[0] < rep.first_loss[0], "{rep:?}");

    // A cost curve under which every draft pays, so the heads draft at every step (with the
    // measured one they mostly decline on this model).
    s.set_cost_model(CostModel::frozen(0.0));
    let suite = Suite::load("default").unwrap();
    let mut accepted = [0; 2];
    for p in suite.prompts.iter().take(3) {
        let (plain, _, _) = reply(&mut s, &p.text, Strategy::Plain, 64);
        for (i, width) in [1, 3].into_iter().enumerate() {
            heads.width = width;
            s.set_heads(heads.clone()).unwrap();
            let (with, _, a) = reply(&mut s, &p.text, Strategy::Heads, 64);
            assert_eq!(plain, with, "prompt `{}` differs with heads of width {width}", p.name);
            accepted[i] += a;
        }
    }
    assert!(accepted.iter().all(|&a| a > 0), "accepted {accepted:?}");
}
