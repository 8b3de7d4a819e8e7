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
