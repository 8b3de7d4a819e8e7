//! What a verify pass costs: the real model's forward pass over b = 1..16 tokens, relative to
//! one token, with logits for every row (verification), for the last row only (prefill), and as
//! a bushy token tree with logits for every row (tree verification, lookahead), at a given
//! context position. Speculative decoding pays only while these ratios stay near 1.
//!
//! `cargo bench --bench forward_cost -- [--model NAME|PATH] [--threads N] [--pos P] [--runs R]
//! [--kernels avx2,avx512-vnni] [--kv f16,q8_0] [--layout plain,interleaved]` (several tables,
//! KV cache types or weight layouts: timed in interleaved runs, side by side)
//! Each cell is the fastest of `--runs` timings (the better estimate on a shared machine) and,
//! beside it, the median.

use std::time::Instant;

use edgespec::kernels::{KernelPool, Kernels};
use edgespec::model::{ForwardPlan, KvCache, KvType, LogitRows, Model, TokenTree, Workspace};

fn main() -> edgespec::Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1)).cloned();
    let model_name = arg("--model").unwrap_or_else(|| "smollm2-135m".into());
    let threads: Option<usize> = arg("--threads").and_then(|v| v.parse().ok());
    let pos: usize = arg("--pos").and_then(|v| v.parse().ok()).unwrap_or(128);
    let runs: usize = arg("--runs").and_then(|v| v.parse().ok()).unwrap_or(9);
    let tables: Vec<&'static Kernels> = match arg("--kernels") {
        Some(list) => list.split(',').map(|k| Kernels::by_name(k.trim())).collect::<edgespec::Result<_>>()?,
        None => vec![Kernels::get()],
    };
    let kvs: Vec<KvType> = match arg("--kv") {
        Some(list) => {
            list.split(',').map(|k| KvType::from_name(k.trim())).collect::<edgespec::Result<_>>()?
        }
        None => vec![KvType::F16],
    };
    // Weight layouts of the Q5_0/Q8_0 matrices (`None`: the default for the table).
    let layouts: Vec<Option<bool>> = match arg("--layout") {
        Some(list) => list
            .split(',')
            .map(|l| match l.trim() {
                "plain" => Ok(Some(false)),
                "interleaved" => Ok(Some(true)),
                other => Err(edgespec::Error::invalid(format!("unknown layout {other:?}"))),
            })
            .collect::<edgespec::Result<_>>()?,
        None => vec![None],
    };
    let mut configs: Vec<(&'static Kernels, KvType, Option<bool>)> = Vec::new();
    for &k in &tables {
        for &kv in &kvs {
            configs.extend(layouts.iter().map(|&l| (k, kv, l)));
        }
    }

    let path = edgespec::catalog::resolve_model(&model_name)?;
    // One model per layout (the same file mapped once per model).
    let mut models: Vec<Model> = Vec::new();
    for &(_, _, layout) in &configs {
        let mut m = Model::load(&path)?;
        if let Some(on) = layout {
            m.set_interleaved(on)?;
        }
        models.push(m);
    }
    let ctx = pos + 64;
    let tokens: Vec<u32> = (0..ctx as u32).map(|i| 100 + (i * 37) % 1000).collect();
    // One workspace and cache per table and cache type, each prefilled to `pos`.
    let mut states: Vec<(Workspace, KvCache)> = Vec::new();
    for (&(k, kv, _), model) in configs.iter().zip(&models) {
        let mut ws = Workspace::new(model, KernelPool::with_kernels(threads, k)?, ctx)?;
        let mut cache = model.new_cache(ctx, kv)?;
        if pos > 0 {
            model.prefill(&mut ws, &mut cache, &tokens[..pos], 0, 16)?;
        }
        states.push((ws, cache));
    }
    let nthreads = states.first().map_or(0, |(ws, _)| ws.pool().threads());
    let names: Vec<String> = configs
        .iter()
        .map(|(k, kv, layout)| {
            let mut name = k.name().to_string();
            if kvs.len() > 1 {
                name += &format!(" {kv}");
            }
            match layout {
                Some(true) => name += " interleaved",
                Some(false) => name += " plain",
                None => {}
            }
            name
        })
        .collect();
    println!("{model_name}, {nthreads} threads, position {pos}, {runs} interleaved runs (min / median ms)");
    for (label, rows, tree) in [
        ("logits for all rows (verify)", LogitRows::All, false),
        ("last row only (prefill)", LogitRows::Last, false),
        ("a token tree, logits for all rows (each row under the row two before it)", LogitRows::All, true),
    ] {
        println!("\n{label}:");
        let mut header = String::from("| b |");
        let mut rule = String::from("|---:|");
        for name in &names {
            header += &format!(" {name} min | median | rel |");
            rule += "---:|---:|---:|";
        }
        if configs.len() > 1 {
            header += &format!(" {} / {} |", names[names.len() - 1], names[0]);
            rule += "---:|";
        }
        println!("{header}\n{rule}");
        let mut base = vec![0f64; configs.len()];
        for b in [1usize, 2, 3, 4, 6, 8, 12, 16] {
            let mut plan = ForwardPlan::at(pos).logits(rows);
            if tree {
                plan = plan.tree(TokenTree::from_parents((0..b).map(|i| i.checked_sub(2)))?);
            }
            let mut t = vec![Vec::with_capacity(runs); configs.len()];
            for _ in 0..runs {
                for (((ws, cache), t), model) in states.iter_mut().zip(&mut t).zip(&models) {
                    let t0 = Instant::now();
                    model.forward(ws, cache, &tokens[pos..pos + b], &plan)?;
                    t.push(t0.elapsed().as_secs_f64() * 1e3);
                }
            }
            let mut line = format!("| {b} |");
            let mut mins = Vec::new();
            for (k, t) in t.iter_mut().enumerate() {
                t.sort_by(f64::total_cmp);
                if b == 1 {
                    base[k] = t[0];
                }
                line += &format!(" {:.2} | {:.2} | {:.2} |", t[0], t[t.len() / 2], t[0] / base[k]);
                mins.push(t[0]);
            }
            if configs.len() > 1 {
                line += &format!(" {:.2} |", mins[mins.len() - 1] / mins[0]);
            }
            println!("{line}");
        }
    }
    Ok(())
}
