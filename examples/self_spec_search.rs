//! Run the self-derived drafter search on a model and print its table: every candidate's α,
//! tokens per pass, draft-step cost (bytes and measured) and decode tokens/s against plain.
//!
//! `cargo run --release --example self_spec_search -- [MODEL] [BUDGET_S] [MAX_TOKENS] [THREADS]`
//! (MODEL: a catalog name or a .gguf path, default `smollm2-135m`). Environment:
//! `SEARCH_ONLY=a,b` keeps the candidates whose names contain one of the parts;
//! `SEARCH_STEPS=1` instead times consecutive draft steps against a full pass (cache residency).

use edgespec::decode::self_spec_search::{
    candidates, last_level_cache_bytes, search, time_draft_steps, SearchOptions,
};
use edgespec::model::Model;

fn main() -> edgespec::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map_or("smollm2-135m", |s| s.as_str());
    let mut opts = SearchOptions::default();
    if let Some(b) = args.get(1).and_then(|s| s.parse().ok()) {
        opts.budget_s = b;
    }
    if let Some(n) = args.get(2).and_then(|s| s.parse().ok()) {
        opts.max_tokens = n;
    }
    if let Some(t) = args.get(3).and_then(|s| s.parse().ok()) {
        opts.session.threads = Some(t);
    }
    let only: Vec<String> =
        std::env::var("SEARCH_ONLY").map(|s| s.split(',').map(str::to_string).collect()).unwrap_or_default();
    let model = Model::load(edgespec::catalog::resolve_model(name)?)?;
    let llc = last_level_cache_bytes();
    let mut list = candidates(&model, llc)?;
    if !only.is_empty() {
        list.retain(|c| only.iter().any(|o| c.name.contains(o.as_str())));
    }
    if std::env::var("SEARCH_STEPS").is_ok() {
        // Item 2 of issue 6: do consecutive draft steps cost less than their bytes suggest?
        println!("| variant | draft MB | full ms | first step ms | later steps ms | full GB/s | first GB/s | later GB/s | later/first |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for c in &list {
            let t = time_draft_steps(&model, &c.params, opts.session.threads, 6, 15)?;
            let (bf, b1, b2) = t.bandwidths();
            println!(
                "| {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.2} |",
                c.name,
                t.draft_bytes as f64 / 1e6,
                t.full_s * 1e3,
                t.first_s * 1e3,
                t.later_s * 1e3,
                bf / 1e9,
                b1 / 1e9,
                b2 / 1e9,
                t.later_s / t.first_s
            );
        }
        return Ok(());
    }
    eprintln!("{} candidates, budget {} s, {} tokens per prompt", list.len(), opts.budget_s, opts.max_tokens);
    let report = search(&model, &opts, &list, &mut |i, n, r| {
        eprintln!(
            "[{}/{n}] {:<44} α {} {:.1} tok/s ({:.2}×)",
            i + 1,
            r.name,
            r.alpha.map_or("–".into(), |a| format!("{a:.2}")),
            r.tokens_per_s,
            r.speedup
        );
    })?;
    println!("{}", report.to_markdown());
    Ok(())
}
