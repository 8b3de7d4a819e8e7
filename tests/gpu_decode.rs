//! Every strategy emits plain decoding's tokens on the GPU too: SmolLM2-135M on the machine's
//! GPU adapter (lavapipe here and in CI), on a grounded prompt (drafts from context are
//! accepted), greedy and with a seed; self-speculation, early exit and draft heads are forced to
//! draft at every step. Skipped with a note without an adapter, unless
//! `EDGESPEC_REQUIRE_GPU=1`.
#![cfg(feature = "gpu")]

mod common;

use common::{forced_self_spec, have_gpu, reply};
use edgespec::decode::heads::{model_identity, DraftHeads};
use edgespec::decode::{CostModel, Drafter, Strategy};
use edgespec::model::Device;
use edgespec::sampling::SamplingParams;
use edgespec::session::{GenerateParams, Session, SessionOptions};

fn gpu_session() -> Option<Session> {
    if !have_gpu() {
        return None;
    }
    let path = edgespec::catalog::resolve_model("smollm2-135m").unwrap();
    let opts = SessionOptions { threads: Some(2), ctx: Some(512), device: Device::Gpu, ..Default::default() };
    let s = Session::load(path, &opts).unwrap();
    assert!(s.device().starts_with("gpu"), "{}", s.device());
    Some(s)
}

const GROUNDED: &str =
    "Repeat this list exactly, then say done: apples, pears, plums, cherries, figs, dates, limes.";

#[test]
fn every_strategy_is_plain_on_the_gpu() {
    let Some(mut s) = gpu_session() else { return };
    let n_layers = s.model().config().n_layers;
    let greedy =
        GenerateParams { max_tokens: 24, sampling: SamplingParams::greedy(), strategy: Strategy::Plain };
    let (plain, st) = reply(&mut s, GROUNDED, &greedy, None);
    assert!(st.generated_tokens > 8, "the reply is too short to test");
    let mut accepted = 0;
    for strategy in [Strategy::Lookup, Strategy::Lookahead, Strategy::Auto] {
        let (got, st) = reply(&mut s, GROUNDED, &GenerateParams { strategy, ..greedy }, None);
        assert_eq!(plain, got, "{strategy} differs from plain on the GPU");
        accepted += st.accepted_tokens;
    }
    // Every draft pays under this curve: the forced drafters and the heads draft at every step,
    // so their drafts (early exit, skipped layers, reduced heads, hidden states) are verified.
    s.set_cost_model(CostModel::frozen(0.0));
    for mut d in forced_self_spec(n_layers) {
        let (got, st) = reply(&mut s, GROUNDED, &greedy, Some(&mut d));
        let name = d.describe().unwrap_or_default();
        assert_eq!(plain, got, "forced {name} differs from plain on the GPU");
        assert!(st.drafted_tokens > 0, "forced {name} drafted nothing");
        accepted += st.accepted_tokens;
    }
    let c = s.model().config();
    let heads = DraftHeads::init(model_identity(s.model()), c.dim, 2, 32, 4096, 7, true);
    s.set_heads(heads).unwrap();
    let (got, st) = reply(&mut s, GROUNDED, &GenerateParams { strategy: Strategy::Heads, ..greedy }, None);
    assert_eq!(plain, got, "heads differ from plain on the GPU");
    assert!(st.drafted_tokens > 0, "the heads drafted nothing");
    s.set_cost_model(CostModel::default());
    // Sampling with a seed: the same tokens too.
    let sampled =
        GenerateParams { sampling: SamplingParams { seed: 7, ..SamplingParams::default() }, ..greedy };
    let (plain, _) = reply(&mut s, GROUNDED, &sampled, None);
    let (got, st) = reply(&mut s, GROUNDED, &GenerateParams { strategy: Strategy::Lookup, ..sampled }, None);
    assert_eq!(plain, got, "seeded lookup differs from plain on the GPU");
    accepted += st.accepted_tokens;
    assert!(accepted > 0, "no drafted token was ever accepted: the equalities above prove little");
}
