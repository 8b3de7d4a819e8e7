//! What each drafting strategy could give on the prompt suite at a given verify-pass cost,
//! without timing noise: the cost model is frozen at `rel(b) = 1 + slope·(b − 1)` (so draft
//! lengths depend on acceptance alone), and the speedup is modeled as generated tokens over
//! `Σ rel(b)` of the passes, i.e. `passes + slope · drafted rows`. With `--slopes 0` it is the
//! ceiling a strategy reaches when verifying any number of tokens costs as much as one.
//!
//! `cargo bench --bench draft_ceiling -- [--model NAME|PATH] [--strategies lookup,auto]
//! [--slopes 0,0.05,0.13] [--verbose]` (`--verbose`: what each drafter chose, per prompt; greedy, through the chat template, the default suite).

use edgespec::bench::{PromptKind, Suite};
use edgespec::decode::{CostModel, Strategy};
use edgespec::sampling::SamplingParams;
use edgespec::session::{Flow, GenerateParams, Session, SessionOptions};

fn main() -> edgespec::Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1)).cloned();
    let model = arg("--model").unwrap_or_else(|| "smollm2-135m".into());
    let strategies: Vec<Strategy> = arg("--strategies")
        .unwrap_or_else(|| "lookup,lookahead,auto".into())
        .split(',')
        .map(str::parse)
        .collect::<edgespec::Result<_>>()?;
    let slopes: Vec<f32> = arg("--slopes")
        .unwrap_or_else(|| "0,0.05,0.13".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let verbose = argv.iter().any(|a| a == "--verbose");
    let path = edgespec::catalog::resolve_model(&model)?;
    let suite = Suite::load("default")?;
    println!("{model}: modeled speedup over plain (tokens / Σ rel(b)), frozen rel(b) = 1 + slope·(b − 1)\n");
    println!("| slope | strategy | kind | median | min | per prompt |");
    println!("|---:|---|---|---:|---:|---|");
    for &slope in &slopes {
        for &strategy in &strategies {
            // A fresh session per run: drafters keep what they learnt across prompts (as in
            // `edgespec bench`), not across runs.
            let mut s = Session::load(&path, &SessionOptions { ctx: Some(1024), ..Default::default() })?;
            let mut rows: Vec<(PromptKind, String, f64)> = Vec::new();
            for p in &suite.prompts {
                s.reset();
                s.set_cost_model(CostModel::frozen(slope));
                let gp =
                    GenerateParams { max_tokens: p.max_tokens, sampling: SamplingParams::greedy(), strategy };
                let st = if s.chat_template().is_some() {
                    s.chat(&p.text, &gp, &mut |_| Flow::Continue)?.1
                } else {
                    s.generate(&p.text, &gp, &mut |_| Flow::Continue)?
                };
                if verbose {
                    if let Some(what) = s.drafter_summary() {
                        println!("  {slope} {strategy} {}: {what}", p.name);
                    }
                }
                let cost = st.forward_passes as f64 + f64::from(slope) * st.drafted_tokens as f64;
                rows.push((p.kind, p.name.clone(), st.generated_tokens as f64 / cost.max(1.0)));
            }
            for kind in [PromptKind::Grounded, PromptKind::Open] {
                let mut v: Vec<&(PromptKind, String, f64)> = rows.iter().filter(|r| r.0 == kind).collect();
                if v.is_empty() {
                    continue;
                }
                let each: Vec<String> = v.iter().map(|r| format!("{} {:.2}", r.1, r.2)).collect();
                v.sort_by(|a, b| a.2.total_cmp(&b.2));
                println!(
                    "| {slope} | {strategy} | {kind:?} | {:.2}x | {:.2}x | {} |",
                    v[v.len() / 2].2,
                    v[0].2,
                    each.join(", ")
                );
            }
        }
    }
    Ok(())
}
