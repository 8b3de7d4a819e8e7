//! What each drafting strategy could give on the prompt suite at a given verify-pass cost,
//! without timing noise: the cost model is frozen at `rel(b) = 1 + slope·(b − 1)` (so draft
//! lengths depend on acceptance alone), and the speedup is modeled as decoded tokens over
//! `Σ rel(b)` of the decode passes, i.e. `passes + slope · drafted rows` (the prompt's passes
//! and the first token, which comes from them, are left out, as in `edgespec bench`). With `--slopes 0` it is the
//! ceiling a strategy reaches when verifying any number of tokens costs as much as one. With
//! `--curve` (the measured `rel(b)` at a few `b`, e.g. from `benches/forward_cost.rs`) every run
//! is scored with that curve, and `curve` among the slopes lets the drafters decide with it too:
//! what a cost model that knows the true curve gains over one that assumes a line.
//!
//! `cargo bench --bench draft_ceiling -- [--model NAME|PATH] [--strategies lookup,auto]
//! [--slopes 0,0.05,0.13,curve] [--curve 2:1.05,4:1.55,8:2.27,16:3.94] [--verbose]` (`--verbose`: what each drafter chose, per prompt; greedy, through the chat template, the default suite).

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
    // The true cost curve to score with (`--curve 2:1.05,4:1.55,...`, e.g. from
    // `benches/forward_cost.rs`); without it each run is scored with the line it decides with.
    let curve = match arg("--curve") {
        Some(text) => {
            let points: Vec<(usize, f32)> = text
                .split(',')
                .filter_map(|p| p.split_once(':'))
                .filter_map(|(b, r)| Some((b.trim().parse().ok()?, r.trim().parse().ok()?)))
                .collect();
            Some(CostModel::frozen_curve(&points).ok_or_else(|| {
                edgespec::Error::invalid(format!("--curve {text}: want b:rel pairs, b in 2..=16 increasing"))
            })?)
        }
        None => None,
    };
    // Cost models to decide with: slopes of a line, and `curve` (the `--curve` itself).
    let slopes: Vec<Option<f32>> = arg("--slopes")
        .unwrap_or_else(|| "0,0.05,0.13".into())
        .split(',')
        .filter_map(|s| if s.trim() == "curve" { Some(None) } else { s.trim().parse().ok().map(Some) })
        .collect();
    let verbose = argv.iter().any(|a| a == "--verbose");
    let path = edgespec::catalog::resolve_model(&model)?;
    let suite = Suite::load("default")?;
    match &curve {
        Some(c) => println!(
            "{model}: modeled speedup over plain (tokens / Σ rel(b)), scored with rel(b) = {}; drafters decide with the line of the slope shown, or the curve\n",
            (2..=16).map(|b| format!("{:.2}", c.rel(b))).collect::<Vec<_>>().join(", ")
        ),
        None => println!(
            "{model}: modeled speedup over plain (tokens / Σ rel(b)), frozen rel(b) = 1 + slope·(b − 1)\n"
        ),
    }
    println!("| decides with | strategy | kind | median | min | per prompt |");
    println!("|---:|---|---|---:|---:|---|");
    for &spec in &slopes {
        let decide = match (spec, curve) {
            (Some(slope), _) => CostModel::frozen(slope),
            (None, Some(c)) => c,
            (None, None) => return Err(edgespec::Error::invalid("`curve` in --slopes needs --curve")),
        };
        let score = curve.unwrap_or(decide);
        let slope = spec.map_or("curve".to_string(), |s| s.to_string());
        for &strategy in &strategies {
            // A fresh session per run: drafters keep what they learnt across prompts (as in
            // `edgespec bench`), not across runs.
            let mut s = Session::load(&path, &SessionOptions { ctx: Some(1024), ..Default::default() })?;
            let mut rows: Vec<(PromptKind, String, f64)> = Vec::new();
            for p in &suite.prompts {
                s.reset();
                s.set_cost_model(decide);
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
                // Decoding only, as `edgespec bench` times it: the prompt's passes cost every
                // strategy the same, and the first token comes from the prompt's last pass.
                let cost = (1..st.passes_by_batch.len())
                    .map(|b| f64::from(st.passes_by_batch[b]) * f64::from(score.rel(b)))
                    .sum::<f64>();
                let decoded = st.generated_tokens.saturating_sub(1) as f64;
                rows.push((p.kind, p.name.clone(), decoded / cost.max(1.0)));
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
