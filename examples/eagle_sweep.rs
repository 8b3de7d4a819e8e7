//! Where the eagle drafter stands: held-out acceptance (first token, second given first) against
//! the amount of training data and the drafter's size, on one collection of the model's replies
//! and of teacher-forced text files, with the draft heads' first head on the same data beside it.
//!
//! `cargo run --release --example eagle_sweep -- MODEL.gguf SECONDS_OF_REPLIES TRAIN_SECONDS [DATA…]`
//! (replies are collected for the given seconds, the files until twice that, every configuration
//! trains for TRAIN_SECONDS; held-out positions are the replies' every 10th sequence).

use std::time::Duration;

use edgespec::decode::eagle::{train, EagleConfig};
use edgespec::decode::heads::{self, Dataset, TrainConfig};
use edgespec::tune::{self, eagle::CollectFiles, Collect, Stage, TuneOptions};

/// The samples of `data` whose sequence is a reply or one of the first `files` file sequences.
fn subset(data: &Dataset, replies: u32, files: u32) -> Dataset {
    let mut out = Dataset::new(data.dim, data.k);
    for i in 0..data.len() {
        let s = data.sequence[i];
        if s < replies + files {
            out.hidden.extend_from_slice(&data.hidden[i * data.dim..(i + 1) * data.dim]);
            out.targets.extend_from_slice(&data.targets[i * data.k..(i + 1) * data.k]);
            out.pending.push(data.pending[i]);
            out.sequence.push(s);
        }
    }
    out
}

fn main() -> edgespec::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, replies_s, train_s, data @ ..] = &args[..] else {
        eprintln!("usage: eagle_sweep MODEL.gguf SECONDS_OF_REPLIES TRAIN_SECONDS [DATA…]");
        std::process::exit(2);
    };
    let (replies_s, train_s): (f64, u64) =
        (replies_s.parse().unwrap_or(120.0), train_s.parse().unwrap_or(60));
    let mut opts = TuneOptions::new(model);
    // Collect stops at 40% of the budget, the files at 60%.
    opts.budget = Duration::from_secs_f64(replies_s / 0.4);
    opts.threads = Some(2);
    opts.quiet = true;
    opts.data = data.iter().map(Into::into).collect();
    let mut t = tune::Tuner::new(opts)?;
    t.run(&mut [Box::new(Collect) as Box<dyn Stage>, Box::new(CollectFiles)])?;
    let data = t.data.take().expect("collected");
    let replies = t.report.sequences as u32;
    let files = data.sequence.iter().copied().max().unwrap_or(0) + 1 - replies;
    println!(
        "{} samples: {} replies, {} file sequences ({} samples); training {train_s} s per configuration",
        data.len(),
        replies,
        files,
        t.report.eagle.file_samples
    );
    println!("| data | drafter | train samples | held-out | steps | α first | α second given first | train α first |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let base =
        EagleConfig { budget: Duration::from_secs(train_s), holdout_below: replies, ..Default::default() };
    let runs: Vec<(&str, u32, EagleConfig)> = vec![
        ("replies only", 0, base.clone()),
        ("replies + ¼ files", files / 4, base.clone()),
        ("replies + ½ files", files / 2, base.clone()),
        ("replies + all files", files, base.clone()),
        ("replies + all files", files, EagleConfig { rank: 64, ..base.clone() }),
        ("replies + all files", files, EagleConfig { rank: 1024, ..base.clone() }),
        ("replies + all files", files, EagleConfig { unroll: false, ..base.clone() }),
        ("replies + all files", files, EagleConfig { ce_weight: 1.0, ..base.clone() }),
    ];
    for (name, f, cfg) in runs {
        let sub = subset(&data, replies, f);
        let (_, r) = train::train(&t.model, &sub, &cfg, &mut |_, _, _| {})?;
        let what = format!(
            "rank {}{}{}",
            cfg.rank,
            if cfg.unroll { "" } else { ", no unroll" },
            if cfg.ce_weight != 0.1 { format!(", CE weight {}", cfg.ce_weight) } else { String::new() }
        );
        println!(
            "| {name} | eagle {what} | {} | {} | {}/{} | {:.3} | {:.3} | {:.3} |",
            r.train_samples,
            r.heldout_samples,
            r.steps,
            r.planned_steps,
            r.alpha_first,
            r.alpha_second,
            r.train_first
        );
    }
    // The heads' first head (the same token as eagle's first) on the same data.
    let cfg = TrainConfig { k: 2, budget: Duration::from_secs(train_s), ..Default::default() };
    let (_, r) = heads::train::train(&t.model, &subset(&data, replies, 0), &cfg, &mut |_, _, _| {})?;
    println!(
        "| replies only | heads (K 2, rank 128) | {} | {} | {}/{} | {:.3} | - | {:.3} |",
        r.train_samples, r.heldout_samples, r.steps, r.planned_steps, r.alpha_top1[0], r.train_top1[0]
    );
    Ok(())
}
