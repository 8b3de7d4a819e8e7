//! Run the self-derived drafter search on a model and print its table: every candidate's α,
//! tokens per pass, draft-step cost (bytes and measured) and decode tokens/s against plain.
//!
//! `cargo run --release --example self_spec_search -- [MODEL] [BUDGET_S] [MAX_TOKENS] [THREADS]`
//! (MODEL: a catalog name or a .gguf path, default `smollm2-135m`). Environment:
//! `SEARCH_ONLY=a,b` keeps the candidates whose names contain one of the parts;
//! `SEARCH_RANK=1` first ranks sub-layers by teacher-forced agreement and speed-tests the skip
//! sets grown from that ranking (`SEARCH_RANK=heads`: only the head-vocabulary sweep);
//! `SEARCH_STEPS=1` instead times consecutive draft steps against a full pass (cache residency).

use edgespec::decode::self_spec::{SelfSpecParams, DEFAULT_HEAD_VOCAB};
use edgespec::decode::self_spec_candidates::{candidates, last_level_cache_bytes, Candidate};
use edgespec::model::Model;
use edgespec::model::SkipSet;
use edgespec::tune::self_spec_rank::{
    greedy_sequences, grow_sets, grown_candidates, rank_sublayers, AgreementProbe,
};
use edgespec::tune::self_spec_search::{search, time_draft_steps, SearchOptions};

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
    if std::env::var("SEARCH_RANK").is_ok() {
        // Rank sub-layers by teacher-forced agreement, grow skip sets, then speed-test those.
        let t0 = std::time::Instant::now();
        let seqs = greedy_sequences(&model, &opts.prompts, opts.max_tokens, &opts.session)?;
        let mut probe = AgreementProbe::new(&model, seqs, opts.session.threads)?;
        let base = SelfSpecParams {
            skip: SkipSet::none(),
            exit_after: None,
            min_confidence_milli: 500,
            head_vocab: Some(DEFAULT_HEAD_VOCAB),
            always_draft: true,
        };
        let full_head = SelfSpecParams { head_vocab: None, ..base };
        println!(
            "teacher-forced agreement: full model + full head {:.3}, + head {} ids {:.3}",
            probe.agreement(&model, &full_head, 16)?.rate(),
            DEFAULT_HEAD_VOCAB,
            probe.agreement(&model, &base, 16)?.rate()
        );
        for v in [2048, 4096, 8192, 16384, 24576, 32768] {
            let p = SelfSpecParams { head_vocab: Some(v), ..base };
            println!(
                "full model, head {v} ids + context: tf α {:.3}",
                probe.agreement(&model, &p, 16)?.rate()
            );
        }
        if std::env::var("SEARCH_RANK").is_ok_and(|v| v == "heads") {
            return Ok(());
        }
        for e in [2, 4, 8, 12, 15, 20, 25] {
            let p = SelfSpecParams { exit_after: Some(e - 1), ..base };
            println!("early exit E={e}: tf α {:.3}", probe.agreement(&model, &p, 16)?.rate());
        }
        let ranked = rank_sublayers(&model, &mut probe, &base, 16, opts.budget_s)?;
        println!(
            "\nsub-layers skipped alone ({:.0} s), least harmful per byte first:",
            t0.elapsed().as_secs_f64()
        );
        for r in &ranked {
            println!(
                "  layer {:2} {:?}: tf α {:.3} ({:.2} MB)",
                r.layer,
                r.which,
                r.alpha,
                r.bytes as f64 / 1e6
            );
        }
        let targets = [0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3];
        let sets = grow_sets(&model, &mut probe, &base, &ranked, &targets, 16)?;
        println!("\ngrown skip sets (teacher-forced):");
        for g in &sets {
            println!("  {} skipped, bytes rel {:.3}: tf α {:.3}", g.skipped, g.bytes_rel, g.alpha);
        }
        println!("ranking and growing took {:.0} s\n", t0.elapsed().as_secs_f64());
        list = grown_candidates(&sets);
        list.insert(0, Candidate { name: "no skip V=16384".into(), params: base });
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
