//! A measured search over self-derived drafter configurations (skip masks, early-exit depths,
//! drafter-head vocabularies, confidence thresholds, a cache-resident mask): each candidate
//! decodes a calibration prompt set and is ranked by decode tokens/s against plain decoding
//! measured in the same run, because on a memory-bound CPU neither acceptance nor bytes alone
//! predicts speed.
//!
//! Every variant's row keeps what explains its speed: α (accepted / drafted), mean tokens per
//! pass, the weight bytes one draft step reads relative to a full pass, and what a draft step
//! actually cost relative to a full pass. A drafter whose working set fits the last-level cache
//! should show a measured cost well below its byte share; the table says whether it did.
//!
//! A tuner calls [`search_default`] (or [`search`] on its own list, e.g. [`candidates`] plus
//! the skip sets [`super::self_spec_rank`] grows from a teacher-forced ranking) and keeps
//! [`SearchReport::best_paying`]; `None` there means drafting from the model itself does not
//! pay on this model and machine. `examples/self_spec_search.rs` prints the whole table.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::sampling::SamplingParams;
use crate::session::{DecodeTotals, Flow, GenerateParams, Session, SessionOptions};

use crate::decode::self_spec::{SelfSpecDrafter, SelfSpecParams};
use crate::decode::self_spec_candidates::{candidates, last_level_cache_bytes, Candidate, ModelBytes};
use crate::decode::{Drafter, Strategy};

/// How to search.
#[derive(Clone, Debug)]
pub struct SearchOptions {
    /// Calibration prompts (user messages; sent through the chat template when the model has
    /// one).
    pub prompts: Vec<String>,
    /// Tokens to generate per prompt.
    pub max_tokens: usize,
    /// Stop starting new variants after this many seconds (the ones left are listed as skipped).
    pub budget_s: f64,
    /// Session options (threads, context) of every run.
    pub session: SessionOptions,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            prompts: CALIBRATION.iter().map(|s| s.to_string()).collect(),
            max_tokens: 64,
            budget_s: 120.0,
            session: SessionOptions { ctx: Some(1024), ..SessionOptions::default() },
        }
    }
}

/// A small calibration set of open prompts (the self-derived drafters' case: nothing to copy).
pub const CALIBRATION: [&str; 4] = [
    "What are the main causes of the seasons on Earth?",
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a hash table works to a beginner programmer.",
    "Give me three tips for staying focused while studying.",
];

/// What one variant measured.
#[derive(Clone, Debug, PartialEq)]
pub struct VariantResult {
    /// The candidate's name.
    pub name: String,
    /// Its parameters.
    pub params: SelfSpecParams,
    /// Decode tokens/s over the calibration set.
    pub tokens_per_s: f64,
    /// `tokens_per_s` over plain decoding's, measured just before.
    pub speedup: f64,
    /// Accepted / drafted (`None` when nothing was drafted).
    pub alpha: Option<f64>,
    /// Tokens drafted and accepted.
    pub drafted: usize,
    /// Drafted tokens accepted.
    pub accepted: usize,
    /// Tokens emitted per forward pass of the full model.
    pub mean_accepted_per_pass: f64,
    /// Weight bytes one draft step reads over a full pass's.
    pub bytes_rel: f64,
    /// Weight bytes one draft step reads.
    pub draft_bytes: usize,
    /// Measured seconds of one draft step over one plain decode step (`None`: no step ran).
    pub draft_rel: Option<f64>,
    /// Seconds of one draft step.
    pub draft_step_s: Option<f64>,
}

impl VariantResult {
    /// What a draft step cost relative to what its bytes suggest (`draft_rel / bytes_rel`):
    /// well under 1 when its working set stays in cache.
    pub fn cost_over_bytes(&self) -> Option<f64> {
        self.draft_rel.map(|d| d / self.bytes_rel.max(1e-9))
    }
}

/// The search's outcome.
#[derive(Clone, Debug)]
pub struct SearchReport {
    /// Plain decoding's tokens/s in the runs paired with each variant (same order).
    pub plain_tokens_per_s: Vec<f64>,
    /// Seconds of one plain decode step (in the runs paired with the first variant).
    pub plain_step_s: f64,
    /// Weight bytes one plain step reads.
    pub full_bytes: usize,
    /// The last-level cache size the cache-resident candidates were sized for.
    pub llc_bytes: Option<usize>,
    /// Every variant measured, in order, winners and losers.
    pub variants: Vec<VariantResult>,
    /// Candidates not run because the time budget ran out.
    pub skipped: Vec<String>,
    /// Wall seconds of the whole search.
    pub elapsed_s: f64,
}

impl SearchReport {
    /// The variant with the highest speedup over its paired plain runs, if any ran. A variant
    /// that declined to draft (a cost-gated one) scores about 1.0: on a model where nothing
    /// pays, "don't draft" is the right answer.
    pub fn best(&self) -> Option<&VariantResult> {
        self.variants.iter().max_by(|a, b| a.speedup.total_cmp(&b.speedup))
    }

    /// [`SearchReport::best`] when it beat its paired plain runs by more than `margin`
    /// (e.g. 0.05 for 5%); `None` means no variant paid and drafting should stay off.
    pub fn best_paying(&self, margin: f64) -> Option<&VariantResult> {
        self.best().filter(|b| b.speedup > 1.0 + margin && b.drafted > 0)
    }

    /// The table, as Markdown.
    pub fn to_markdown(&self) -> String {
        let plain: Vec<String> = self.plain_tokens_per_s.iter().map(|t| format!("{t:.1}")).collect();
        let mut s = format!(
            "plain (paired runs): {} tok/s (first: step {:.2} ms, {:.1} MB of weights → {:.1} GB/s \
             effective); LLC {}; search took {:.0} s\n\n",
            plain.join(" / "),
            self.plain_step_s * 1e3,
            self.full_bytes as f64 / 1e6,
            self.full_bytes as f64 / self.plain_step_s.max(1e-9) / 1e9,
            self.llc_bytes.map_or("unknown".into(), |b| format!("{:.0} MiB", b as f64 / 1048576.0)),
            self.elapsed_s
        );
        s.push_str(
            "| variant | draft MB | bytes rel | step ms | step rel | cost/bytes | step GB/s | α | drafted | tok/pass | tok/s | plain tok/s | × plain |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        let opt = |v: Option<f64>, prec: usize| v.map_or("–".to_string(), |v| format!("{v:.prec$}"));
        for v in &self.variants {
            s.push_str(&format!(
                "| {} | {:.1} | {:.2} | {} | {} | {} | {} | {} | {} | {:.2} | {:.1} | {:.1} | {:.2} |\n",
                v.name,
                v.draft_bytes as f64 / 1e6,
                v.bytes_rel,
                opt(v.draft_step_s.map(|t| t * 1e3), 2),
                opt(v.draft_rel, 2),
                opt(v.cost_over_bytes(), 2),
                opt(v.draft_step_s.map(|t| v.draft_bytes as f64 / t / 1e9), 1),
                opt(v.alpha, 2),
                v.drafted,
                v.mean_accepted_per_pass,
                v.tokens_per_s,
                v.tokens_per_s / v.speedup.max(1e-9),
                v.speedup
            ));
        }
        if let Some(b) = self.best() {
            s.push_str(&format!("\nbest: {} ({:.2}× plain)", b.name, b.speedup));
            let pays = self.best_paying(0.05).is_some();
            s.push_str(if pays { "\n" } else { "; no drafting variant paid by more than 5%\n" });
        }
        if !self.skipped.is_empty() {
            s.push_str(&format!("\nskipped (time budget): {}\n", self.skipped.join(", ")));
        }
        s
    }
}

/// What consecutive draft steps cost, measured directly: a full pass (which streams every
/// weight and evicts the drafter's working set), then `steps` draft steps in a row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepTiming {
    /// Median seconds of a full single-token pass.
    pub full_s: f64,
    /// Median seconds of the first draft step after a full pass (cache cold).
    pub first_s: f64,
    /// Median seconds of the later draft steps (the drafter's working set may be cached).
    pub later_s: f64,
    /// Weight bytes of one draft step.
    pub draft_bytes: usize,
    /// Weight bytes of a full pass.
    pub full_bytes: usize,
}

impl StepTiming {
    /// Effective bandwidth (weight bytes / second) of a full pass, a cold and a warm draft step.
    pub fn bandwidths(&self) -> (f64, f64, f64) {
        let bw = |b: usize, t: f64| b as f64 / t.max(1e-12);
        (
            bw(self.full_bytes, self.full_s),
            bw(self.draft_bytes, self.first_s),
            bw(self.draft_bytes, self.later_s),
        )
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Time `reps` rounds of (one full pass, `steps` draft steps with `p`) on `model` after a
/// 64-token prompt, with `threads` kernel threads (see [`StepTiming`]).
pub fn time_draft_steps(
    model: &Model,
    p: &SelfSpecParams,
    threads: Option<usize>,
    steps: usize,
    reps: usize,
) -> Result<StepTiming> {
    use crate::kernels::KernelPool;
    use crate::model::{ForwardPlan, HeadVocab, KvType, LogitRows, Workspace};
    let vocab = model.config().vocab_size;
    let (prompt, steps, reps) = (64usize, steps.max(2), reps.max(1));
    let ctx = prompt + reps * (steps + 1) + 1;
    let mut ws = Workspace::new(model, KernelPool::new(threads)?, ctx)?;
    let mut cache = model.new_cache(ctx, KvType::F16)?;
    let toks: Vec<u32> = (0..prompt as u32).map(|i| (i * 7919 + 13) % (vocab as u32)).collect();
    model.prefill(&mut ws, &mut cache, &toks, 0, 16)?;
    let mut plan = ForwardPlan::at(0).logits(LogitRows::Last).skip(p.skip);
    if let Some(e) = p.exit_after {
        plan = plan.exit_after(e);
    }
    if let Some(v) = p.head_vocab {
        ws.set_head_extra(&toks)?;
        plan = plan.vocab(HeadVocab::Reduced { prefix: v });
    }
    let (mut full, mut first, mut later) = (Vec::new(), Vec::new(), Vec::new());
    let mut pos = prompt;
    for _ in 0..reps {
        let t = Instant::now();
        model.forward(&mut ws, &mut cache, &[1], &ForwardPlan::at(pos))?;
        full.push(t.elapsed().as_secs_f64());
        pos += 1;
        for i in 0..steps {
            plan.start = pos;
            let t = Instant::now();
            model.forward(&mut ws, &mut cache, &[2], &plan)?;
            let took = t.elapsed().as_secs_f64();
            if i == 0 {
                first.push(took)
            } else {
                later.push(took)
            }
            pos += 1;
        }
    }
    let bytes = ModelBytes::of(model)?;
    Ok(StepTiming {
        full_s: median(&mut full),
        first_s: median(&mut first),
        later_s: median(&mut later),
        draft_bytes: bytes.draft(p),
        full_bytes: bytes.full(),
    })
}

/// [`search`] over the default [`candidates`], sized for this machine's last-level cache.
pub fn search_default(
    model: &Model,
    opts: &SearchOptions,
    progress: &mut dyn FnMut(usize, usize, &VariantResult),
) -> Result<SearchReport> {
    search(model, opts, &candidates(model, last_level_cache_bytes())?, progress)
}

/// Decoded tokens per second of `t` (the search's own guard against a zero time).
fn tokens_per_s(t: &DecodeTotals) -> f64 {
    t.tokens as f64 / t.decode_s.max(1e-9)
}

/// A fresh session on `model`'s file (so no variant inherits another's learnt draft length or
/// costs), on `model`'s GPU upload when it has one.
fn fresh(model: &Model, opts: &SessionOptions) -> Result<Session> {
    let mut m = Model::from_file(model.file().clone())?;
    m.share_device(model);
    Session::new(m, opts)
}

/// Decode every prompt with `drafter` (plain with `None`), greedily.
fn calibrate(
    s: &mut Session,
    prompts: &[String],
    max_tokens: usize,
    mut drafter: Option<&mut dyn Drafter>,
) -> Result<DecodeTotals> {
    let mut t = DecodeTotals::default();
    let params = GenerateParams { max_tokens, sampling: SamplingParams::greedy(), strategy: Strategy::Plain };
    for prompt in prompts {
        s.reset();
        let mut sink = |_: &str| Flow::Continue;
        let chat = s.chat_template().is_some();
        let st = match (drafter.as_deref_mut(), chat) {
            (Some(d), true) => s.chat_with(prompt, &params, d, &mut sink)?.1,
            (Some(d), false) => s.generate_with(prompt, &params, d, &mut sink)?,
            (None, true) => s.chat(prompt, &params, &mut sink)?.1,
            (None, false) => s.generate(prompt, &params, &mut sink)?,
        };
        t.add(&st);
    }
    Ok(t)
}

/// Measure every candidate on `opts.prompts` (greedy, so every variant emits the same text)
/// against plain decoding, within `opts.budget_s`; `progress` gets each result as it comes
/// (index, total, result). Each variant runs on a fresh session over `model`'s file, after one
/// unmeasured warm-up prompt; plain decoding runs each prompt right before the variant does
/// (paired runs: the speed of a shared machine drifts by tens of percent within a minute), and
/// the speedup is the ratio of the paired totals.
pub fn search(
    model: &Model,
    opts: &SearchOptions,
    candidates: &[Candidate],
    progress: &mut dyn FnMut(usize, usize, &VariantResult),
) -> Result<SearchReport> {
    if opts.prompts.is_empty() || opts.max_tokens < 2 {
        return Err(Error::invalid("the search needs prompts and at least 2 tokens per prompt"));
    }
    let t0 = Instant::now();
    let bytes = ModelBytes::of(model)?;
    let full = bytes.full();
    let warm = &opts.prompts[..1];
    let warm_tokens = (opts.max_tokens / 4).max(2);
    let mut plain_session = fresh(model, &opts.session)?;
    calibrate(&mut plain_session, warm, warm_tokens, None)?;

    let mut plain = Vec::new();
    let mut plain_step_s = 0.0;
    let mut variants = Vec::new();
    let mut skipped = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        if t0.elapsed().as_secs_f64() > opts.budget_s {
            skipped.push(c.name.clone());
            continue;
        }
        let mut s = fresh(model, &opts.session)?;
        let mut d = SelfSpecDrafter::new("self-spec", c.params);
        calibrate(&mut s, warm, warm_tokens, Some(&mut d))?;
        let (steps0, secs0) = d.step_totals();
        let (mut p, mut t) = (DecodeTotals::default(), DecodeTotals::default());
        for prompt in &opts.prompts {
            let one = std::slice::from_ref(prompt);
            p.merge(&calibrate(&mut plain_session, one, opts.max_tokens, None)?);
            t.merge(&calibrate(&mut s, one, opts.max_tokens, Some(&mut d))?);
        }
        let (steps1, secs1) = d.step_totals();
        let steps = steps1.saturating_sub(steps0);
        let draft_step_s = (steps > 0).then(|| (secs1 - secs0) / steps as f64);
        let step_s = p.decode_s / p.tokens.max(1) as f64;
        if plain.is_empty() {
            plain_step_s = step_s;
        }
        plain.push(tokens_per_s(&p));
        let draft_bytes = bytes.draft(&c.params);
        let r = VariantResult {
            name: c.name.clone(),
            params: c.params,
            tokens_per_s: tokens_per_s(&t),
            speedup: tokens_per_s(&t) / tokens_per_s(&p).max(1e-9),
            alpha: (t.drafted > 0).then(|| t.accepted as f64 / t.drafted as f64),
            drafted: t.drafted,
            accepted: t.accepted,
            mean_accepted_per_pass: t.tokens as f64 / t.passes.max(1) as f64,
            bytes_rel: draft_bytes as f64 / full.max(1) as f64,
            draft_bytes,
            draft_rel: draft_step_s.map(|d| d / step_s.max(1e-12)),
            draft_step_s,
        };
        progress(i, candidates.len(), &r);
        variants.push(r);
    }
    Ok(SearchReport {
        plain_tokens_per_s: plain,
        plain_step_s,
        full_bytes: full,
        llc_bytes: last_level_cache_bytes(),
        variants,
        skipped,
        elapsed_s: t0.elapsed().as_secs_f64(),
    })
}
