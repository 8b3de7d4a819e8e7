//! `edgespec tune`: derive drafters from the model itself on this machine, within a time budget,
//! and save them beside the model with a profile of what was measured.
//!
//! Tuning is a list of [`Stage`]s run in order over one [`Tuner`] (the loaded model, the
//! calibration prompts, what earlier stages produced, the report). The default list collects
//! the model's greedy replies to the calibration prompts, trains the draft heads on them,
//! measures decode speed with and without them, and saves the heads and the profile; further
//! searches (e.g. self-speculation skip masks) are more stages.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::bench::Suite;
use crate::decode::corpus::{corpus_path, Corpus};
use crate::decode::heads::{
    heads_path, model_identity, profile_path, train, Dataset, DraftHeads, TrainConfig, TrainReport,
};
use crate::decode::Strategy;
use crate::error::{Error, Result};
use crate::kernels::KernelPool;
use crate::model::{KvType, Model, Workspace};
use crate::sampling::SamplingParams;
use crate::session::{Flow, GenerateParams, GenerationStats, Session, SessionOptions};
use crate::tokenizer::TokenId;

pub mod eagle;

/// The built-in calibration prompts (none of the bench suite's).
pub const CALIBRATION_SUITE: &str = include_str!("../benches/prompts/calibration.toml");

/// The built-in calibration prompts for coder models (none of the `code` bench suite's).
pub const CODE_CALIBRATION_SUITE: &str = include_str!("../benches/prompts/calibration_code.toml");

/// The calibration prompts `tune` uses for a model when none are given: code requests for coder
/// models ([`crate::bench::is_code_model`]), everyday instructions for the others.
pub fn calibration_suite_for(model: &Model) -> Result<Suite> {
    if crate::bench::is_code_model(model.file()) {
        Suite::from_toml("calibration_code", CODE_CALIBRATION_SUITE)
    } else {
        Suite::from_toml("calibration", CALIBRATION_SUITE)
    }
}

/// What to tune and how long.
#[derive(Clone, Debug)]
pub struct TuneOptions {
    /// The model file.
    pub model: PathBuf,
    /// Wall-clock budget for the whole run (stages share it).
    pub budget: Duration,
    /// Seed of the heads' training.
    pub seed: u64,
    /// Number of draft heads.
    pub heads: usize,
    /// Reduced vocabulary of the heads.
    pub vocab: usize,
    /// Width of each head's SiLU block.
    pub rank: usize,
    /// Kernel threads (`None`: the physical cores).
    pub threads: Option<usize>,
    /// Calibration prompts (`None`: the built-in set).
    pub suite: Option<Suite>,
    /// Tokens generated per calibration prompt at most.
    pub max_tokens: usize,
    /// Prompts decoded with and without the heads to measure the speed-up.
    pub measure_prompts: usize,
    /// Where to save (`None`: beside the model, [`heads_path`] and [`profile_path`]).
    pub out_dir: Option<PathBuf>,
    /// No progress output.
    pub quiet: bool,
    /// Training time of the eagle drafter (`None`: a quarter of the budget).
    pub eagle_budget: Option<Duration>,
    /// Files or folders of text the eagle drafter also learns from (`tune --data`).
    pub data: Vec<PathBuf>,
}

impl TuneOptions {
    /// Defaults for the model at `model`.
    pub fn new(model: impl Into<PathBuf>) -> TuneOptions {
        TuneOptions {
            model: model.into(),
            budget: Duration::from_secs(600),
            seed: 0,
            heads: 3,
            vocab: 8192,
            rank: 128,
            threads: None,
            suite: None,
            max_tokens: 192,
            measure_prompts: 4,
            out_dir: None,
            quiet: false,
            eagle_budget: None,
            data: Vec::new(),
        }
    }
}

/// What tuning measured and chose (also saved as the profile, JSON).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TuneReport {
    /// The model file's name.
    pub model: String,
    /// Heads, their rank, the reduced vocabulary, the seed.
    pub heads: usize,
    pub rank: usize,
    pub vocab: usize,
    pub seed: u64,
    /// How drafts are cut: by the expected gain under the measured verify cost.
    pub draft_rule: String,
    /// Calibration sequences used.
    pub sequences: usize,
    /// What training measured: samples, steps, losses, held-out α per head.
    #[serde(flatten)]
    pub train: TrainReport,
    /// Decode tokens/s on the measurement prompts, plain and with the heads, and their ratio.
    pub plain_tokens_per_s: f64,
    pub heads_tokens_per_s: f64,
    pub speedup: f64,
    /// Decode tokens/s drafting chains and token trees, and the width chosen (1: chain).
    pub chain_tokens_per_s: f64,
    pub tree_tokens_per_s: f64,
    pub width: usize,
    /// With the heads: tokens per forward pass and the share of drafted tokens accepted.
    pub heads_tokens_per_pass: f64,
    pub heads_acceptance: f64,
    /// With the heads: the share of decode time spent drafting (running the heads).
    pub heads_draft_share: f64,
    /// Whether the heads' output equalled plain decoding's on every measurement prompt.
    pub greedy_equal: bool,
    /// Seconds per stage, and in all.
    pub stage_seconds: Vec<(String, f64)>,
    pub total_seconds: f64,
    /// The self-speculation search: variants measured, the best one's name and speedup over
    /// its paired plain runs, whether it paid (by more than 5%), and the whole table (Markdown).
    pub self_spec_variants: usize,
    pub self_spec_best: String,
    pub self_spec_best_speedup: f64,
    pub self_spec_pays: bool,
    pub self_spec_table: String,
    /// Tokens in the corpus of the model's replies (what `auto`'s lookup drafts from where the
    /// context has no match).
    pub corpus_tokens: usize,
    /// Where the heads, the corpus and the profile were written.
    pub corpus_file: String,
    pub heads_file: String,
    pub profile_file: String,
    /// The eagle drafter's training (held-out acceptance), whether it was saved, and where.
    pub eagle: crate::decode::eagle::EagleReport,
    pub eagle_saved: bool,
    pub eagle_file: String,
}

/// The state stages share.
pub struct Tuner {
    /// The options.
    pub opts: TuneOptions,
    /// A session on the model (generation, measurement).
    pub session: Session,
    /// The model again, for passes that keep hidden states.
    pub model: Model,
    /// Calibration prompts.
    pub suite: Suite,
    /// Collected training data.
    pub data: Option<Dataset>,
    /// The model's greedy replies to the calibration prompts (with the few tokens before each),
    /// saved as its [`Corpus`].
    pub replies: Vec<Vec<TokenId>>,
    /// Trained heads.
    pub heads: Option<DraftHeads>,
    /// The report so far.
    pub report: TuneReport,
    start: Instant,
}

/// One step of tuning.
pub trait Stage {
    /// Shown in progress and in the report.
    fn name(&self) -> &'static str;
    /// Run, reading and writing the tuner's state.
    fn run(&mut self, t: &mut Tuner) -> Result<()>;
}

impl Tuner {
    /// Load the model and the prompts.
    pub fn new(opts: TuneOptions) -> Result<Tuner> {
        let session = Session::load(
            &opts.model,
            &SessionOptions {
                threads: opts.threads,
                ctx: Some(1024),
                kv_type: KvType::F16,
                ..Default::default()
            },
        )?;
        let model = Model::load(&opts.model)?;
        let suite = match &opts.suite {
            Some(s) => s.clone(),
            None => calibration_suite_for(&model)?,
        };
        let name = opts.model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let report = TuneReport {
            model: name,
            heads: opts.heads,
            rank: opts.rank,
            vocab: opts.vocab.min(model.config().vocab_size),
            seed: opts.seed,
            draft_rule: "expected-gain (product of the heads' top-1 probabilities vs the verify cost)".into(),
            ..Default::default()
        };
        Ok(Tuner {
            opts,
            session,
            model,
            suite,
            data: None,
            replies: Vec::new(),
            heads: None,
            report,
            start: Instant::now(),
        })
    }

    /// Seconds since tuning started.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// The point (seconds from the start) by which the fraction `share` of the budget is used.
    pub fn by(&self, share: f64) -> f64 {
        self.opts.budget.as_secs_f64() * share
    }

    /// Run `stages` in order, timing each.
    pub fn run(&mut self, stages: &mut [Box<dyn Stage>]) -> Result<()> {
        for stage in stages.iter_mut() {
            let t0 = Instant::now();
            if !self.opts.quiet {
                eprintln!("tune: {} ({:.0} s elapsed)", stage.name(), self.elapsed());
            }
            stage.run(self).map_err(|e| e.context(format!("tune stage `{}`", stage.name())))?;
            self.report.stage_seconds.push((stage.name().to_string(), t0.elapsed().as_secs_f64()));
        }
        self.report.total_seconds = self.elapsed();
        Ok(())
    }
}

/// The default stages: collect, train, measure, search self-speculation, save.
pub fn default_stages() -> Vec<Box<dyn Stage>> {
    vec![
        Box::new(Collect),
        Box::new(eagle::CollectFiles),
        Box::new(eagle::EagleTrain),
        Box::new(Train),
        Box::new(Measure),
        Box::new(SelfSpecSearch),
        Box::new(Save),
    ]
}

/// The stages that train the eagle drafter alone: collect, train it, save it.
pub fn eagle_stages() -> Vec<Box<dyn Stage>> {
    vec![Box::new(Collect), Box::new(eagle::CollectFiles), Box::new(eagle::EagleTrain)]
}

/// Tune the model with the default stages.
pub fn tune(opts: TuneOptions) -> Result<TuneReport> {
    let mut t = Tuner::new(opts)?;
    t.run(&mut default_stages())?;
    Ok(t.report)
}

/// The model's reply to `text`: through its chat template, or the text as it is where the
/// model has none (a base model such as the catalog's Gemma 3), as `edgespec bench` does.
fn reply(s: &mut Session, text: &str, p: &GenerateParams) -> Result<GenerationStats> {
    if s.chat_template().is_some() {
        Ok(s.chat(text, p, &mut |_| Flow::Continue)?.1)
    } else {
        s.generate(text, p, &mut |_| Flow::Continue)
    }
}

fn greedy(max_tokens: usize, strategy: Strategy) -> GenerateParams {
    GenerateParams { max_tokens, sampling: SamplingParams::greedy(), strategy }
}

/// Generate the model's greedy replies to the calibration prompts (until 40% of the budget is
/// used) and keep every reply position's hidden state and the tokens that followed it.
pub struct Collect;

impl Stage for Collect {
    fn name(&self) -> &'static str {
        "collect calibration data"
    }

    fn run(&mut self, t: &mut Tuner) -> Result<()> {
        let pool = KernelPool::new(t.opts.threads)?;
        let mut ws = Workspace::new(&t.model, pool, 1024)?;
        let mut cache = t.model.new_cache(1024, KvType::F16)?;
        let mut data = Dataset::new(t.model.config().dim, t.opts.heads);
        let n = t.suite.prompts.len();
        let mut bar = Bar::new("collect", n, t.opts.quiet);
        let until = t.by(0.4);
        let mut tokens: Vec<TokenId> = Vec::new();
        for (i, p) in t.suite.prompts.clone().iter().enumerate() {
            if t.elapsed() > until && !data.is_empty() {
                break;
            }
            t.session.reset();
            let stats = reply(&mut t.session, &p.text, &greedy(t.opts.max_tokens, Strategy::Plain))?;
            tokens.clear();
            tokens.extend(t.session.tokens());
            let first = stats.prompt_tokens.saturating_sub(1);
            data.add_sequence(&t.model, &mut ws, &mut cache, &tokens, first)?;
            // From a few tokens before the reply: its opening follows the template's tokens.
            t.replies.push(tokens[first.saturating_sub(CORPUS_LEAD)..].to_vec());
            t.report.sequences += 1;
            bar.update(i + 1, &format!("{} samples", data.len()));
        }
        bar.finish(&format!("{} samples from {} replies", data.len(), t.report.sequences));
        t.data = Some(data);
        Ok(())
    }
}

/// Train the heads (until 85% of the budget is used).
pub struct Train;

impl Stage for Train {
    fn name(&self) -> &'static str {
        "train draft heads"
    }

    fn run(&mut self, t: &mut Tuner) -> Result<()> {
        let data = t.data.as_ref().ok_or_else(|| Error::internal("no calibration data collected"))?;
        let left = (t.by(0.85) - t.elapsed()).max(10.0);
        let cfg = TrainConfig {
            k: t.opts.heads,
            rank: t.opts.rank,
            vocab: t.opts.vocab,
            seed: t.opts.seed,
            budget: Duration::from_secs_f64(left),
            ..Default::default()
        };
        let mut bar = Bar::new("train", 1, t.opts.quiet);
        let (heads, rep) = train::train(&t.model, data, &cfg, &mut |step, planned, loss| {
            bar.set_total(planned);
            bar.update(step, &format!("loss {loss:.3}"));
        })?;
        let a: Vec<String> =
            rep.alpha_top1.iter().zip(&rep.alpha_top3).map(|(a, b)| format!("{a:.3}/{b:.3}")).collect();
        bar.finish(&format!("{} steps; held-out α top-1/top-3 per head: {}", rep.steps, a.join(", ")));
        t.report.train = rep;
        t.heads = Some(heads);
        Ok(())
    }
}

/// Decode a few held-out calibration prompts plain and with the heads drafting chains and token
/// trees; keep the faster way of drafting, compare speed, check the outputs are equal.
pub struct Measure;

/// Totals of one way of decoding over the measurement prompts.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    tokens: usize,
    decode_s: f64,
    passes: f64,
    drafted: usize,
    accepted: usize,
    draft_s: f64,
}

impl Totals {
    fn tokens_per_s(&self) -> f64 {
        if self.decode_s > 0.0 {
            self.tokens as f64 / self.decode_s
        } else {
            0.0
        }
    }
}

/// Tree width tried beside the chain.
const TREE_WIDTH: usize = 3;

impl Stage for Measure {
    fn name(&self) -> &'static str {
        "measure decode speed"
    }

    fn run(&mut self, t: &mut Tuner) -> Result<()> {
        let mut heads = t.heads.clone().ok_or_else(|| Error::internal("no heads trained"))?;
        let every = TrainConfig::default().holdout_every.max(1);
        let prompts: Vec<String> = t
            .suite
            .prompts
            .iter()
            .skip(every - 1)
            .step_by(every)
            .take(t.opts.measure_prompts)
            .map(|p| p.text.clone())
            .collect();
        // Plain, the chain, the tree: interleaved per prompt so a noisy machine slows all alike.
        let widths = [0, 1, TREE_WIDTH];
        let mut bar = Bar::new("measure", prompts.len() * widths.len(), t.opts.quiet);
        let mut totals = [Totals::default(); 3];
        let mut equal = true;
        for (i, text) in prompts.iter().enumerate() {
            let mut plain: Vec<TokenId> = Vec::new();
            for (w, &width) in widths.iter().enumerate() {
                let strategy = if width == 0 { Strategy::Plain } else { Strategy::Heads };
                if width > 0 {
                    heads.width = width;
                    t.session.set_heads(heads.clone())?;
                }
                t.session.reset();
                let st = reply(&mut t.session, text, &greedy(128, strategy))?;
                let tokens: Vec<TokenId> = t.session.tokens().collect();
                if width == 0 {
                    plain = tokens;
                } else {
                    equal &= tokens == plain;
                }
                let e = &mut totals[w];
                e.tokens += st.generated_tokens.saturating_sub(1);
                e.decode_s += st.decode_s;
                // Passes that produced tokens (the prefill's last one gave the first token).
                e.passes += st.generated_tokens as f64 / st.mean_accepted_per_pass.max(1e-9) - 1.0;
                e.drafted += st.drafted_tokens;
                e.accepted += st.accepted_tokens;
                e.draft_s += st.draft_s;
                bar.update(widths.len() * i + w + 1, strategy.name());
            }
        }
        let best = if totals[2].tokens_per_s() > totals[1].tokens_per_s() { 2 } else { 1 };
        heads.width = widths[best];
        t.heads = Some(heads);
        let (p, h) = (totals[0], totals[best]);
        let r = &mut t.report;
        r.plain_tokens_per_s = p.tokens_per_s();
        r.heads_tokens_per_s = h.tokens_per_s();
        r.chain_tokens_per_s = totals[1].tokens_per_s();
        r.tree_tokens_per_s = totals[2].tokens_per_s();
        r.width = widths[best];
        r.speedup = if p.tokens_per_s() > 0.0 { h.tokens_per_s() / p.tokens_per_s() } else { 0.0 };
        r.heads_acceptance = if h.drafted > 0 { h.accepted as f64 / h.drafted as f64 } else { 0.0 };
        r.heads_tokens_per_pass = if h.passes > 0.0 { h.tokens as f64 / h.passes } else { 0.0 };
        r.greedy_equal = equal;
        r.heads_draft_share = if h.decode_s > 0.0 { h.draft_s / h.decode_s } else { 0.0 };
        bar.finish(&format!(
            "plain {:.1} tok/s, chain {:.1}, tree {:.1}: heads {:.2}× with the {} ({:.0}% drafting), outputs equal: {equal}",
            r.plain_tokens_per_s,
            r.chain_tokens_per_s,
            r.tree_tokens_per_s,
            r.speedup,
            if best == 1 { "chain" } else { "tree" },
            100.0 * r.heads_draft_share
        ));
        Ok(())
    }
}

/// Search skip masks, early-exit depths, head vocabularies and thresholds of the self-derived
/// drafters by measured speed against plain decoding
/// ([`crate::decode::self_spec_search`]), in what is left of the budget (at most a quarter of
/// it), on a few calibration prompts; `auto` uses the best variant only where it paid.
pub struct SelfSpecSearch;

impl Stage for SelfSpecSearch {
    fn name(&self) -> &'static str {
        "search self-speculation"
    }

    fn run(&mut self, t: &mut Tuner) -> Result<()> {
        use crate::decode::self_spec_search::{search_default, SearchOptions};
        let left = (t.opts.budget.as_secs_f64() - t.elapsed()).max(0.0);
        let budget_s = left.min(t.by(0.25)).max(20.0);
        let every = TrainConfig::default().holdout_every.max(1);
        let opts = SearchOptions {
            prompts: t
                .suite
                .prompts
                .iter()
                .skip(every - 1)
                .step_by(every)
                .take(3)
                .map(|p| p.text.clone())
                .collect(),
            max_tokens: 48,
            budget_s,
            session: SessionOptions { threads: t.opts.threads, ctx: Some(1024), ..Default::default() },
        };
        let mut bar = Bar::new("self-spec search", 1, t.opts.quiet);
        let report = search_default(&t.model, &opts, &mut |i, n, v| {
            bar.set_total(n);
            bar.update(i + 1, &format!("{} {:.2}×", v.name, v.speedup));
        })?;
        let r = &mut t.report;
        r.self_spec_variants = report.variants.len();
        if let Some(b) = report.best() {
            r.self_spec_best = b.name.clone();
            r.self_spec_best_speedup = b.speedup;
        }
        r.self_spec_pays = report.best_paying(PAYS_MARGIN).is_some();
        r.self_spec_table = report.to_markdown();
        bar.finish(&format!(
            "{} variants, best {} ({:.2}× plain){}",
            r.self_spec_variants,
            r.self_spec_best,
            r.self_spec_best_speedup,
            if r.self_spec_pays { "" } else { ": none pays, auto will not draft from the model itself" }
        ));
        Ok(())
    }
}

/// How much faster than plain decoding a tuned drafter must have measured for `auto` to use it.
pub const PAYS_MARGIN: f64 = 0.05;

/// Profiles `edgespec tune` wrote for the catalog's models on the reference machine (a 2-core
/// x86-64, see `models/profiles/`): settings and measurements, no weights. They stand in for a
/// local profile until `tune` runs here.
const SHIPPED: [&str; 3] = [
    include_str!("../models/profiles/smollm2-135m.tune.json"),
    include_str!("../models/profiles/gemma3-270m.tune.json"),
    include_str!("../models/profiles/qwen2.5-coder-0.5b.tune.json"),
];

/// The shipped profile of the model file named `file_name`, if the catalog has one.
pub fn shipped_profile(file_name: &str) -> Option<TuneReport> {
    SHIPPED
        .iter()
        .filter_map(|text| serde_json::from_str::<TuneReport>(text).ok())
        .find(|p| p.model == file_name)
}

/// The profile `tune` saved beside the model at `model_path`, if there is one that parses.
pub fn load_profile(model_path: &Path) -> Option<TuneReport> {
    let text = std::fs::read_to_string(profile_path(model_path)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Tokens before each reply kept in the corpus.
const CORPUS_LEAD: usize = 3;

/// Save the heads, the corpus of the model's replies and the profile.
pub struct Save;

impl Stage for Save {
    fn name(&self) -> &'static str {
        "save"
    }

    fn run(&mut self, t: &mut Tuner) -> Result<()> {
        let heads = t.heads.as_ref().ok_or_else(|| Error::internal("no heads trained"))?;
        let (hp, pp, cp) = out_paths(&t.opts.model, t.opts.out_dir.as_deref());
        heads.save(&hp)?;
        let corpus = Corpus::new(model_identity(&t.model), t.replies.iter().map(|r| &r[..]));
        corpus.save(&cp)?;
        t.report.corpus_tokens = corpus.len();
        t.report.corpus_file = cp.display().to_string();
        t.report.heads_file = hp.display().to_string();
        t.report.profile_file = pp.display().to_string();
        t.report.total_seconds = t.elapsed();
        let json = serde_json::to_string_pretty(&t.report)
            .map_err(|e| Error::internal(format!("profile to JSON: {e}")))?;
        std::fs::write(&pp, json).map_err(|e| Error::io(format!("writing {}", pp.display()), e))
    }
}

fn out_paths(model: &Path, dir: Option<&Path>) -> (PathBuf, PathBuf, PathBuf) {
    let at = match dir {
        Some(d) => d.join(model.file_name().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("model"))),
        None => model.to_path_buf(),
    };
    (heads_path(&at), profile_path(&at), corpus_path(&at))
}

/// A progress bar on stderr (redrawn on a terminal; a line per quarter otherwise).
struct Bar {
    label: &'static str,
    total: usize,
    quiet: bool,
    terminal: bool,
    quarter: usize,
    last: Option<Instant>,
    start: Instant,
}

impl Bar {
    fn new(label: &'static str, total: usize, quiet: bool) -> Bar {
        let terminal = std::io::stderr().is_terminal();
        Bar { label, total: total.max(1), quiet, terminal, quarter: 1, last: None, start: Instant::now() }
    }

    fn set_total(&mut self, total: usize) {
        self.total = total.max(1);
    }

    fn update(&mut self, done: usize, detail: &str) {
        if self.quiet {
            return;
        }
        let pct = (done.min(self.total) * 100) / self.total;
        if self.terminal {
            if self.last.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) && done < self.total {
                return;
            }
            self.last = Some(Instant::now());
            let filled = pct * 24 / 100;
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r{} [{}{}] {pct:>3}% {:.0} s, {detail}\x1b[K",
                self.label,
                "#".repeat(filled),
                "-".repeat(24 - filled),
                self.start.elapsed().as_secs_f64()
            );
            let _ = err.flush();
        } else {
            while self.quarter <= 3 && pct >= 25 * self.quarter {
                eprintln!(
                    "{}: {}% ({:.0} s, {detail})",
                    self.label,
                    25 * self.quarter,
                    self.start.elapsed().as_secs_f64()
                );
                self.quarter += 1;
            }
        }
    }

    fn finish(&mut self, summary: &str) {
        if self.quiet {
            return;
        }
        if self.terminal {
            eprintln!();
        }
        eprintln!("{}: done in {:.1} s: {summary}", self.label, self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_profile_loads_back_and_a_missing_or_broken_one_does_not() {
        let dir = std::env::temp_dir().join(format!("edgespec-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let model = dir.join("m.gguf");
        assert!(load_profile(&model).is_none(), "no profile yet");
        let r = TuneReport {
            speedup: 1.07,
            self_spec_variants: 12,
            self_spec_best: "exit E=4".into(),
            self_spec_pays: true,
            train: TrainReport { alpha_top1: vec![0.12, 0.06], ..Default::default() },
            ..Default::default()
        };
        std::fs::write(profile_path(&model), serde_json::to_string(&r).unwrap()).unwrap();
        let back = load_profile(&model).unwrap();
        assert_eq!(back.self_spec_best, "exit E=4");
        assert!(back.self_spec_pays && back.self_spec_variants == 12 && back.speedup == 1.07);
        assert_eq!(back.train.alpha_top1, [0.12, 0.06]);
        // A profile from before the self-spec search: those fields take their defaults.
        std::fs::write(profile_path(&model), r#"{"speedup": 0.97, "heads": 3}"#).unwrap();
        let old = load_profile(&model).unwrap();
        assert!(!old.self_spec_pays && old.self_spec_variants == 0 && old.heads == 3);
        std::fs::write(profile_path(&model), "not json").unwrap();
        // The shipped profiles parse and name their model files.
        let smollm2 = shipped_profile("SmolLM2-135M-Instruct.Q4_1.gguf").unwrap();
        assert!(smollm2.self_spec_variants > 0 && smollm2.train.alpha_top1.len() == smollm2.heads);
        // Every catalog model has one, under its cached file name.
        for m in crate::catalog::Catalog::embedded().unwrap().list() {
            let p = shipped_profile(&m.file).unwrap_or_else(|| panic!("no shipped profile for {}", m.name));
            assert!(p.self_spec_variants > 0, "{}: the profile has no self-spec search", m.name);
        }
        assert!(shipped_profile("nothing.gguf").is_none());
        assert!(load_profile(&model).is_none());
        std::fs::remove_dir_all(&dir).ok();
    }
}
