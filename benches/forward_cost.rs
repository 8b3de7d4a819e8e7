//! What a verify pass costs: the real model's forward pass over b = 1..16 tokens, relative to
//! one token, with logits for every row (verification), for the last row only (prefill), and as
//! a bushy token tree with logits for every row (tree verification, lookahead), at a given
//! context position. Speculative decoding pays only while these ratios stay near 1.
//!
//! `cargo bench --bench forward_cost -- [--model NAME|PATH] [--threads N] [--pos P] [--runs R]`
//! Each cell is the fastest of `--runs` timings (the better estimate on a shared machine) and,
//! beside it, the median.

use std::time::Instant;

use edgespec::kernels::KernelPool;
use edgespec::model::{ForwardPlan, LogitRows, Model, TokenTree, Workspace};

fn main() -> edgespec::Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1)).cloned();
    let model_name = arg("--model").unwrap_or_else(|| "smollm2-135m".into());
    let threads: Option<usize> = arg("--threads").and_then(|v| v.parse().ok());
    let pos: usize = arg("--pos").and_then(|v| v.parse().ok()).unwrap_or(128);
    let runs: usize = arg("--runs").and_then(|v| v.parse().ok()).unwrap_or(9);

    let model = Model::load(edgespec::catalog::resolve_model(&model_name)?)?;
    let ctx = pos + 64;
    let pool = KernelPool::new(threads)?;
    let nthreads = pool.threads();
    let mut ws = Workspace::new(&model, pool, ctx)?;
    let mut cache = model.new_cache(ctx, Default::default())?;
    let tokens: Vec<u32> = (0..ctx as u32).map(|i| 100 + (i * 37) % 1000).collect();
    if pos > 0 {
        model.prefill(&mut ws, &mut cache, &tokens[..pos], 0, 16)?;
    }
    println!("{model_name}, {nthreads} threads, position {pos}, {runs} runs (min / median ms)");
    println!(
        "| b | all rows: min | median | rel | last row: min | median | rel | tree: min | median | rel |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut base = [0f64; 3];
    for b in [1usize, 2, 3, 4, 6, 8, 12, 16] {
        let mut cells = Vec::new();
        // A tree of b rows: each row under the row two before it (two interleaved chains).
        let tree = TokenTree::from_parents((0..b).map(|i| i.checked_sub(2)))?;
        let plans = [
            ForwardPlan::at(pos).logits(LogitRows::All),
            ForwardPlan::at(pos).logits(LogitRows::Last),
            ForwardPlan::at(pos).logits(LogitRows::All).tree(tree),
        ];
        for (k, plan) in plans.iter().enumerate() {
            let mut t = Vec::with_capacity(runs);
            for _ in 0..runs {
                let t0 = Instant::now();
                model.forward(&mut ws, &mut cache, &tokens[pos..pos + b], plan)?;
                t.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            t.sort_by(f64::total_cmp);
            if b == 1 {
                base[k] = t[0];
            }
            cells.push(format!("{:.2} | {:.2} | {:.2}", t[0], t[t.len() / 2], t[0] / base[k]));
        }
        println!("| {b} | {} | {} | {} |", cells[0], cells[1], cells[2]);
    }
    Ok(())
}
