//! `edgespec tune`: derive drafters from the model itself on this machine, within a time budget,
//! and save them beside the model with a profile of what was measured.
//!
//! Tuning is a list of [`Stage`]s run in order over one [`Tuner`] (the loaded model, the
//! calibration prompts, what earlier stages produced, the report). The default list collects
//! the model's greedy replies to the calibration prompts, trains the draft heads on them,
//! measures decode speed with and without them, and saves the heads and the profile; further
//! searches (e.g. self-speculation skip masks) are more stages.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::bench::Suite;
use crate::decode::corpus::{corpus_path, Corpus};
use crate::decode::heads::{
    heads_path, model_identity, profile_path, train, Dataset, DraftHeads, TrainConfig,
};
use crate::decode::Strategy;
use crate::error::{Error, Result};
use crate::kernels::KernelPool;
use crate::model::{KvType, Model, Workspace};
use crate::sampling::SamplingParams;
use crate::session::{DecodeTotals, Flow, GenerateParams, GenerationStats, Session, SessionOptions};
use crate::tokenizer::TokenId;

mod bar;
pub mod eagle;
mod profile;
pub mod self_spec_rank;
pub mod self_spec_search;

pub use crate::decode::profile::{
    load_profile, read_profile, read_profile_file, shipped_profile, SelfSpecChoice, TuneReport, PAYS_MARGIN,
};
use bar::Bar;
use profile::keep_previous;

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
    /// Where the measured sessions run.
    pub device: crate::model::Device,
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
            device: crate::model::Device::Cpu,
        }
    }
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
                device: opts.device,
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
            let n = scaled_tokens(t.opts.max_tokens, until - t.elapsed());
            let stats = reply(&mut t.session, &p.text, &greedy(n, Strategy::Plain))?;
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
        // What is left until 85% of the budget (a second at least: a step or two).
        let left = (t.by(0.85) - t.elapsed()).max(1.0);
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
        let mut totals = [DecodeTotals::default(); 3];
        let mut equal = true;
        // Shorter replies when little of the budget is left (a short budget is honoured, with
        // a noisier measurement).
        let n = scaled_tokens(128, t.by(0.8) - t.elapsed());
        for (i, text) in prompts.iter().enumerate() {
            // One prompt at least; more while the budget allows (to 80% of it).
            if i > 0 && t.elapsed() > t.by(0.8) {
                break;
            }
            let mut plain: Vec<TokenId> = Vec::new();
            for (w, &width) in widths.iter().enumerate() {
                let strategy = if width == 0 { Strategy::Plain } else { Strategy::Heads };
                if width > 0 {
                    heads.width = width;
                    t.session.set_heads(heads.clone())?;
                }
                t.session.reset();
                let st = reply(&mut t.session, text, &greedy(n, strategy))?;
                let tokens: Vec<TokenId> = t.session.tokens().collect();
                if width == 0 {
                    plain = tokens;
                } else {
                    equal &= tokens == plain;
                }
                totals[w].add(&st);
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
        r.heads_acceptance = h.acceptance();
        r.heads_tokens_per_pass = h.tokens_per_pass();
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
/// ([`self_spec_search`]), in what is left of the budget (at most a quarter of
/// it), on a few calibration prompts; `auto` uses the best variant only where it paid.
pub struct SelfSpecSearch;

impl Stage for SelfSpecSearch {
    fn name(&self) -> &'static str {
        "search self-speculation"
    }

    fn run(&mut self, t: &mut Tuner) -> Result<()> {
        use crate::tune::self_spec_search::{search_default, SearchOptions};
        let left = (t.opts.budget.as_secs_f64() - t.elapsed()).max(0.0);
        let Some(budget_s) = search_seconds(left, t.opts.budget.as_secs_f64()) else {
            if !t.opts.quiet {
                eprintln!("tune: no time left in the budget for the self-speculation search; skipped");
            }
            t.report.self_spec_skipped = true;
            return Ok(());
        };
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
            session: SessionOptions {
                threads: t.opts.threads,
                ctx: Some(1024),
                device: t.opts.device,
                ..Default::default()
            },
        };
        let mut bar = Bar::new("self-spec search", 1, t.opts.quiet);
        // The session's model: on the GPU when `--device` put it there (the variants share it).
        let report = search_default(t.session.model(), &opts, &mut |i, n, v| {
            bar.set_total(n);
            bar.update(i + 1, &format!("{} {:.2}×", v.name, v.speedup));
        })?;
        let r = &mut t.report;
        r.self_spec_variants = report.variants.len();
        if let Some(b) = report.best() {
            r.self_spec_best = b.name.clone();
            r.self_spec_best_speedup = b.speedup;
        }
        let paying = report.best_paying(PAYS_MARGIN);
        r.self_spec_pays = paying.is_some();
        r.self_spec_params = paying.map(|v| SelfSpecChoice::of(&v.params));
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

/// `tokens` per reply when `left_s` seconds remain for a stage: all of them with 10 s or more,
/// proportionally fewer below (an eighth at least, 16 tokens at least).
fn scaled_tokens(tokens: usize, left_s: f64) -> usize {
    let share = (left_s / 10.0).clamp(0.125, 1.0);
    ((tokens as f64 * share) as usize).max(16).min(tokens)
}

/// Seconds the self-speculation search may take with `left` of a `total` budget: at most a
/// quarter of the budget and never past it; `None` (skip it) when under 2 s remain, too few to
/// measure one variant against plain decoding.
pub fn search_seconds(left: f64, total: f64) -> Option<f64> {
    let s = left.min(total * 0.25);
    (s >= 2.0).then_some(s)
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
        // Never replace drafters saved earlier with ones that measured worse (e.g. heads from a
        // short budget's few replies): keep the files, say so in the report.
        let previous = read_profile_file(&pp).ok().flatten().filter(|_| hp.exists());
        if let Some(prev) = previous.filter(|p| keep_previous(p, &t.report)) {
            t.report.kept_previous = format!(
                "kept the drafters saved earlier ({}: heads {:.2}x plain) over this run's ({:.2}x{})",
                pp.display(),
                prev.speedup,
                t.report.speedup,
                if t.report.greedy_equal { "" } else { ", outputs not equal to plain" }
            );
            t.report.heads_file = hp.display().to_string();
            t.report.corpus_file = cp.display().to_string();
            t.report.profile_file = pp.display().to_string();
            t.report.corpus_tokens = prev.corpus_tokens;
            t.report.total_seconds = t.elapsed();
            return Ok(());
        }
        if t.report.self_spec_skipped {
            // No new search: the earlier one's findings still hold for this model and machine.
            if let Some(prev) = read_profile_file(&pp).ok().flatten() {
                let r = &mut t.report;
                r.self_spec_variants = prev.self_spec_variants;
                r.self_spec_best = prev.self_spec_best;
                r.self_spec_best_speedup = prev.self_spec_best_speedup;
                r.self_spec_pays = prev.self_spec_pays;
                r.self_spec_params = prev.self_spec_params;
                r.self_spec_table = prev.self_spec_table;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::heads::TrainReport;

    #[test]
    fn the_search_fits_the_budget_and_better_saved_drafters_are_kept() {
        assert_eq!(search_seconds(100.0, 600.0), Some(100.0));
        assert_eq!(search_seconds(500.0, 600.0), Some(150.0), "a quarter at most");
        assert_eq!(search_seconds(1.0, 3.0), None, "`tune --budget 3` has no time for it");
        assert_eq!(search_seconds(0.0, 600.0), None);
        let r = |speedup: f64, greedy_equal: bool| TuneReport { speedup, greedy_equal, ..Default::default() };
        assert!(keep_previous(&r(1.3, true), &r(0.9, true)));
        assert!(!keep_previous(&r(1.1, true), &r(1.2, true)));
        assert!(keep_previous(&r(1.0, true), &r(1.5, false)), "unequal outputs never replace");
        assert!(!keep_previous(&r(2.0, false), &r(0.5, true)));
        // Heads that predict worse win only by more than the noise margin.
        let with_alpha = |speedup: f64, alpha: f32| {
            let mut t = r(speedup, true);
            t.train.alpha_top1 = vec![alpha, alpha / 2.0];
            t
        };
        assert!(keep_previous(&with_alpha(1.02, 0.3), &with_alpha(1.04, 0.0)));
        assert!(!keep_previous(&with_alpha(1.02, 0.3), &with_alpha(1.2, 0.0)));
        assert!(!keep_previous(&with_alpha(1.02, 0.1), &with_alpha(1.04, 0.3)));
    }

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
