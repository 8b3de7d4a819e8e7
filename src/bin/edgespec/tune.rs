//! `edgespec tune`: train the model's draft heads within a time budget and report what was
//! measured (progress on stderr, the summary on stdout).

use std::fmt::Write;
use std::time::Duration;

use edgespec::bench::Suite;
use edgespec::catalog;
use edgespec::tune::{self, TuneOptions};
use edgespec::{Error, Result};

use crate::args::TuneArgs;

pub fn tune(a: TuneArgs) -> Result<()> {
    let threads = crate::args::checked_threads(a.threads)?;
    if a.heads == 0 || a.rank == 0 || a.vocab == 0 || a.budget == 0 || a.n_predict == 0 {
        return Err(Error::invalid("--heads, --rank, --vocab, --budget and -n must be at least 1"));
    }
    let path = catalog::resolve_model(&a.model)?;
    let mut opts = TuneOptions::new(path);
    opts.budget = Duration::from_secs(a.budget);
    opts.seed = a.seed;
    opts.heads = a.heads;
    opts.vocab = a.vocab;
    opts.rank = a.rank;
    opts.max_tokens = a.n_predict;
    opts.threads = threads;
    opts.quiet = a.quiet;
    opts.data = a.data;
    opts.device = a.device;
    opts.suite = a.suite.as_deref().map(Suite::load).transpose()?;
    if a.eagle_only {
        return eagle_only(opts);
    }
    let r = tune::tune(opts)?;
    // The summary is gathered, then written once: a failed write is an error.
    let mut o = String::new();
    let _ = writeln!(o, "model: {}", r.model);
    let _ = writeln!(o, "heads: K {} rank {} V {} seed {}", r.heads, r.rank, r.vocab, r.seed);
    let _ = writeln!(
        o,
        "data: {} replies, {} training / {} held-out positions; {} of {} planned steps",
        r.sequences, r.train.train_samples, r.train.heldout_samples, r.train.steps, r.train.planned_steps
    );
    for (k, (a1, a3)) in r.train.alpha_top1.iter().zip(&r.train.alpha_top3).enumerate() {
        let loss = (r.train.first_loss.get(k), r.train.last_loss.get(k));
        let loss = match loss {
            (Some(f), Some(l)) => format!("loss {f:.3} -> {l:.3}"),
            _ => String::new(),
        };
        let _ =
            writeln!(o, "head {} (token +{}): held-out α top-1 {a1:.3}, top-3 {a3:.3}; {loss}", k + 1, k + 2);
    }
    let _ = writeln!(o,
        "decode: plain {:.1} tok/s, heads {:.1} tok/s ({:.2}x, {:.1}% of the time drafting), {:.2} tokens/pass, \
         acceptance {:.2}, outputs equal: {}",
        r.plain_tokens_per_s,
        r.heads_tokens_per_s,
        r.speedup,
        100.0 * r.heads_draft_share,
        r.heads_tokens_per_pass,
        r.heads_acceptance,
        r.greedy_equal
    );
    let _ = writeln!(
        o,
        "drafting: chain {:.1} tok/s, tree (width 3) {:.1} tok/s: chose {}",
        r.chain_tokens_per_s,
        r.tree_tokens_per_s,
        if r.width > 1 { format!("the tree (width {})", r.width) } else { "the chain".into() }
    );
    let stages: Vec<String> = r.stage_seconds.iter().map(|(n, s)| format!("{n} {s:.0} s")).collect();
    let _ = writeln!(o, "time: {:.0} s ({})", r.total_seconds, stages.join(", "));
    eagle_lines(&r, &mut o);
    if r.kept_previous.is_empty() {
        let _ = writeln!(
            o,
            "saved: {}\ncorpus: {} tokens of the model's replies ({})\nprofile: {}",
            r.heads_file, r.corpus_tokens, r.corpus_file, r.profile_file
        );
    } else {
        // Said on stderr too: a user watching the progress should not miss it.
        eprintln!("tune: {}", r.kept_previous);
        let _ = writeln!(o, "not saved: {}", r.kept_previous);
    }
    crate::commands::print_out(&o)
}

/// `tune --eagle-only`: collect (replies, then `--data` files), then train the eagle drafter
/// for the rest of the budget.
fn eagle_only(mut opts: TuneOptions) -> Result<()> {
    opts.eagle_budget = Some(opts.budget.mul_f64(0.4));
    let mut t = tune::Tuner::new(opts)?;
    t.run(&mut tune::eagle_stages())?;
    let r = &t.report;
    let mut o = String::new();
    let _ = writeln!(o, "model: {}", r.model);
    let _ = writeln!(o, "data: {} replies", r.sequences);
    eagle_lines(r, &mut o);
    crate::commands::print_out(&o)
}

/// The eagle drafter's lines of the summary.
fn eagle_lines(r: &tune::TuneReport, o: &mut String) {
    let e = &r.eagle;
    let _ = writeln!(
        o,
        "eagle: {} weights, {} training ({} from data files) / {} held-out positions, {} of {} planned steps, loss {:.4} -> {:.4}",
        e.params, e.train_samples, e.file_samples, e.heldout_samples, e.steps, e.planned_steps, e.first_loss, e.last_loss
    );
    let _ = writeln!(
        o,
        "eagle: held-out acceptance first token {:.3}, second given first {:.3} (training first {:.3}); {}",
        e.alpha_first,
        e.alpha_second,
        e.train_first,
        if r.eagle_saved { format!("saved {}", r.eagle_file) } else { "kept the saved drafter".into() }
    );
}
