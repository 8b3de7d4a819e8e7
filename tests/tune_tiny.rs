//! `edgespec tune` end to end on a tiny random model: every stage runs, and what it saves beside
//! the model (heads, the corpus of the model's replies, the profile) loads back for that model and
//! is what `auto` then drafts from, with plain decoding's output.

use std::time::Duration;

use edgespec::bench::Suite;
use edgespec::decode::corpus::{corpus_path, Corpus};
use edgespec::decode::heads::{heads_path, DraftHeads};
use edgespec::decode::Strategy;
use edgespec::model::synthetic::{self, SyntheticSpec};
use edgespec::model::Model;
use edgespec::sampling::SamplingParams;
use edgespec::session::{Flow, GenerateParams, Session, SessionOptions};
use edgespec::tune::{self, TuneOptions};

#[test]
fn tune_saves_heads_corpus_and_profile_that_auto_uses() {
    let dir = std::env::temp_dir().join(format!("edgespec-tune-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.gguf");
    std::fs::write(&path, synthetic::build(&SyntheticSpec::llama(5)).unwrap()).unwrap();
    let prompts: String = (0..10)
        .map(|i| format!("[[prompt]]\nname = \"p{i}\"\nkind = \"open\"\nmax_tokens = 24\ntext = \"prompt number {i}: abc\"\n\n"))
        .collect();
    let mut opts = TuneOptions::new(&path);
    opts.suite = Some(Suite::from_toml("tiny", &prompts).unwrap());
    opts.budget = Duration::from_secs(60);
    opts.max_tokens = 24;
    opts.measure_prompts = 1;
    opts.heads = 2;
    opts.rank = 16;
    opts.vocab = 128;
    opts.threads = Some(2);
    opts.quiet = true;
    let report = tune::tune(opts).unwrap();
    assert_eq!(report.sequences, 10);
    assert!(report.greedy_equal);
    let model = Model::load(&path).unwrap();
    // The corpus holds every reply (plus a few tokens before each, and a separator).
    assert!(report.corpus_tokens >= 10 * 24, "{}", report.corpus_tokens);
    let corpus = Corpus::load(&corpus_path(&path), &model).unwrap();
    assert_eq!(corpus.len(), report.corpus_tokens);
    assert_eq!(DraftHeads::load_for(&model).unwrap().k, 2);
    // The eagle drafter is trained and saved beside the model, with its held-out acceptance.
    assert!(report.eagle.steps > 0 && report.eagle_saved, "{:?}", report.eagle);
    let eagle = edgespec::decode::EagleNet::load_for(&model).unwrap();
    assert_eq!(eagle.alpha[0], report.eagle.alpha_first);
    assert_eq!(heads_path(&path).display().to_string(), report.heads_file);
    let profile = tune::load_profile(&path).unwrap();
    assert_eq!(profile.corpus_tokens, report.corpus_tokens);

    // `auto` on a calibration prompt: the reply is in the corpus, and the output is plain's.
    let mut s =
        Session::load(&path, &SessionOptions { threads: Some(2), ctx: Some(256), ..Default::default() })
            .unwrap();
    let run = |s: &mut Session, strategy| {
        s.reset();
        let p = GenerateParams { max_tokens: 24, sampling: SamplingParams::greedy(), strategy };
        s.generate("prompt number 3: abc", &p, &mut |_| Flow::Continue).unwrap();
        s.tokens().collect::<Vec<_>>()
    };
    let plain = run(&mut s, Strategy::Plain);
    assert_eq!(run(&mut s, Strategy::Auto), plain);
    let said = s.drafter_summary().unwrap_or_default();
    assert!(said.contains("drafts"), "auto drafted nothing: {said}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_short_budget_is_honoured_and_better_saved_drafters_are_kept() {
    let dir = std::env::temp_dir().join(format!("edgespec-tune-keep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.gguf");
    std::fs::write(&path, synthetic::build(&SyntheticSpec::llama(6)).unwrap()).unwrap();
    let prompts: String = (0..4)
        .map(|i| {
            format!(
                "[[prompt]]\nname = \"p{i}\"\nkind = \"open\"\nmax_tokens = 16\ntext = \"prompt {i}\"\n\n"
            )
        })
        .collect();
    let opts = |secs: u64| {
        let mut o = TuneOptions::new(&path);
        o.suite = Some(Suite::from_toml("tiny", &prompts).unwrap());
        o.budget = Duration::from_secs(secs);
        o.max_tokens = 16;
        o.measure_prompts = 1;
        o.heads = 2;
        o.rank = 8;
        o.vocab = 64;
        o.threads = Some(1);
        o.quiet = true;
        o
    };
    // `tune --budget 3`: no time for the self-speculation search, and the whole run within it.
    let first = tune::tune(opts(3)).unwrap();
    assert!(first.self_spec_skipped);
    assert!(first.total_seconds < 3.0 + 1.0, "{}", first.total_seconds);
    assert!(first.kept_previous.is_empty());
    // Pretend the saved heads measured far better than any new ones can.
    let profile = edgespec::decode::heads::profile_path(&path);
    let mut saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&profile).unwrap()).unwrap();
    saved["speedup"] = 100.0.into();
    saved["greedy_equal"] = true.into();
    std::fs::write(&profile, saved.to_string()).unwrap();
    let heads_before = std::fs::read(heads_path(&path)).unwrap();
    let mut o = opts(3);
    o.seed = 99;
    let second = tune::tune(o).unwrap();
    assert!(second.kept_previous.contains("kept the drafters saved earlier"), "{}", second.kept_previous);
    assert_eq!(std::fs::read(heads_path(&path)).unwrap(), heads_before, "the better heads stay");
    assert_eq!(tune::load_profile(&path).unwrap().speedup, 100.0, "and their profile");
    std::fs::remove_dir_all(&dir).ok();
}
