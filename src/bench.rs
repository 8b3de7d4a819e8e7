//! The benchmark behind `edgespec bench`: a suite of prompts decoded under each strategy on one
//! loaded session, after warm-up, several repetitions interleaved across strategies (so a noisy
//! machine slows them alike), medians; speedups over plain decoding, acceptance figures, and a
//! check that every strategy produced exactly plain decoding's tokens.
//!
//! Suites are TOML files (`benches/prompts/*.toml`; `default` and `code` are built in, and
//! [`Suite::for_model`] picks `code` for coder models): each prompt has a
//! name, a kind (`grounded`: the answer reuses text of the prompt; `open`: it does not), the text
//! sent as one user turn through the model's chat template, and a token budget.
//!
//! With a power meter (`BenchOptions::power`), the energy protocol of [`energy`] runs after the
//! timed runs; without one the report says why energy is unavailable and nothing else changes.
//! [`plot`] draws the report as SVG; [`llama`] runs llama.cpp beside us (feature `llama-cpp`).

pub mod energy;
pub mod llama;
pub mod machine;
pub mod plot;

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::decode::Strategy;
use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::power::{Phase, PowerChoice, PowerEnv, Sampler};
use crate::sampling::SamplingParams;
use crate::session::{Flow, GenerateParams, GenerationStats, Session};
use crate::tokenizer::TokenId;

/// The built-in default suite.
pub const DEFAULT_SUITE: &str = include_str!("../benches/prompts/default.toml");

/// The built-in suite of code edits and code requests, the default for coder models.
pub const CODE_SUITE: &str = include_str!("../benches/prompts/code.toml");

/// Whether the model is one trained for code (its GGUF name, base name or fine-tune says
/// "coder" or "code", as Qwen2.5-Coder, CodeLlama, StarCoder or CodeGemma do): coder models are
/// benchmarked and calibrated on code prompts by default.
pub fn is_code_model(file: &GgufFile) -> bool {
    ["general.name", "general.basename", "general.finetune"].iter().any(|k| {
        file.get_str(k).ok().flatten().is_some_and(|v| {
            let v = v.to_ascii_lowercase();
            v.contains("coder")
                || v.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w.starts_with("code"))
        })
    })
}

/// Whether a prompt's answer copies from the prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptKind {
    /// Summaries, questions over a context, extraction, code edits.
    Grounded,
    /// Chat questions, stories.
    Open,
}

/// One prompt of a suite.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchPrompt {
    /// Short name (table rows, `--prompts` filter).
    pub name: String,
    /// Grounded or open.
    pub kind: PromptKind,
    /// Tokens to generate at most.
    pub max_tokens: usize,
    /// The user message.
    pub text: String,
}

/// A named list of prompts.
#[derive(Clone, Debug, PartialEq)]
pub struct Suite {
    /// `default`, or the file's stem.
    pub name: String,
    /// The prompts, in order.
    pub prompts: Vec<BenchPrompt>,
}

#[derive(Deserialize)]
struct SuiteFile {
    prompt: Vec<BenchPrompt>,
}

impl Suite {
    /// Parse a suite file's text.
    pub fn from_toml(name: &str, text: &str) -> Result<Suite> {
        let f: SuiteFile =
            toml::from_str(text).map_err(|e| Error::invalid(format!("suite `{name}`: {e}")))?;
        if f.prompt.is_empty() {
            return Err(Error::invalid(format!("suite `{name}` has no prompts")));
        }
        if let Some(p) = f.prompt.iter().find(|p| p.max_tokens == 0 || p.text.is_empty()) {
            return Err(Error::invalid(format!(
                "suite `{name}`: prompt `{}` is empty or has max_tokens 0",
                p.name
            )));
        }
        Ok(Suite { name: name.to_string(), prompts: f.prompt })
    }

    /// `default` or `code` (built in), or the path of a suite file.
    pub fn load(name_or_path: &str) -> Result<Suite> {
        match name_or_path {
            "default" => return Suite::from_toml("default", DEFAULT_SUITE),
            "code" => return Suite::from_toml("code", CODE_SUITE),
            _ => {}
        }
        let path = Path::new(name_or_path);
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading suite {}", path.display()), e))?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or(name_or_path);
        Suite::from_toml(stem, &text)
    }

    /// The suite a model is benchmarked on when none is named: `code` for coder models
    /// ([`is_code_model`]), `default` otherwise.
    pub fn for_model(file: &GgufFile) -> Result<Suite> {
        Suite::load(if is_code_model(file) { "code" } else { "default" })
    }
}

/// How to run a suite.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Strategies to compare (`plain` is added first when missing: speedups need it).
    pub strategies: Vec<Strategy>,
    /// Measured repetitions per prompt and strategy.
    pub reps: usize,
    /// Unmeasured runs per prompt and strategy before the measured ones.
    pub warmup: usize,
    /// Override every prompt's token budget.
    pub max_tokens: Option<usize>,
    /// Only the prompts with these names (all when empty).
    pub only: Vec<String>,
    /// The power meter (`--power`); `None` skips the energy protocol.
    pub power: PowerChoice,
    /// Where the meters look (`None`: the defaults with the `EDGESPEC_*` overrides).
    pub power_env: Option<PowerEnv>,
    /// Minimum length of the idle baseline and of each energy window; `None` is the protocol's
    /// max(10 s, 100 × the meter's period). Shorter windows are flagged in the report.
    pub energy_window: Option<Duration>,
    /// Also run llama.cpp's plain decoding on the same prompts (feature `llama-cpp`).
    pub vs_llama_cpp: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            strategies: vec![Strategy::Plain, Strategy::Lookup],
            reps: 3,
            warmup: 1,
            max_tokens: None,
            only: Vec::new(),
            power: PowerChoice::None,
            power_env: None,
            energy_window: None,
            vs_llama_cpp: false,
        }
    }
}

/// One strategy on one prompt.
#[derive(Clone, Debug, Serialize)]
pub struct StrategyResult {
    /// Strategy name.
    pub strategy: &'static str,
    /// Median decode tokens per second over the measured runs.
    pub decode_tokens_per_s: f64,
    /// Every measured run's decode tokens per second.
    pub runs_tokens_per_s: Vec<f64>,
    /// Median decode speed over plain decoding's median on the same prompt.
    pub speedup: f64,
    /// Generated tokens (the same in every run: greedy).
    pub generated_tokens: usize,
    /// Tokens per producing pass.
    pub mean_accepted_per_pass: f64,
    /// Drafted tokens accepted / drafted.
    pub acceptance_rate: f64,
    /// Drafted tokens.
    pub drafted_tokens: usize,
    /// Seconds in the drafter per run (median).
    pub draft_s: f64,
    /// Whether the tokens equal plain decoding's, in every run.
    pub identical_to_plain: bool,
    /// What the drafter chose in the last run (lookahead: W/N/G per pass), if it says.
    pub drafter_choice: Option<String>,
}

/// One prompt's results.
#[derive(Clone, Debug, Serialize)]
pub struct PromptResult {
    /// Prompt name.
    pub name: String,
    /// Grounded or open.
    pub kind: PromptKind,
    /// Prompt tokens (the chat template applied).
    pub prompt_tokens: usize,
    /// Per strategy, in the order asked.
    pub strategies: Vec<StrategyResult>,
}

/// Summary of one strategy over one kind of prompt.
#[derive(Clone, Debug, Serialize)]
pub struct KindSummary {
    /// Strategy name.
    pub strategy: &'static str,
    /// Grounded or open.
    pub kind: PromptKind,
    /// Median of the per-prompt speedups.
    pub median_speedup: f64,
    /// Smallest per-prompt speedup.
    pub min_speedup: f64,
    /// Median of the per-prompt tokens per pass.
    pub median_accepted_per_pass: f64,
}

/// Everything a bench run found.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The model file.
    pub model: String,
    /// Suite name.
    pub suite: String,
    /// Kernel threads.
    pub threads: usize,
    /// CPU (from the OS), if known.
    pub cpu: Option<String>,
    /// Repetitions measured.
    pub reps: usize,
    /// Per prompt.
    pub prompts: Vec<PromptResult>,
    /// Per strategy and kind.
    pub summary: Vec<KindSummary>,
    /// Whether every strategy gave plain decoding's tokens on every prompt.
    pub greedy_equivalence: bool,
    /// Relative cost of a verify pass of b = 1..16 tokens, as measured by the session.
    pub verify_cost: Vec<f32>,
    /// The machine: CPU, cores, kernels, governor, platform profile.
    pub machine: machine::Machine,
    /// Energy per strategy and phase, or why it is unavailable.
    pub energy: energy::EnergyReport,
    /// llama.cpp beside us (`--vs-llama-cpp`).
    pub llama_cpp: Option<llama::VsLlamaCpp>,
}

fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Where a run marks its phases: the energy protocol's sampler and window number.
#[derive(Clone, Copy)]
pub(crate) struct Marks<'a> {
    pub sampler: &'a Sampler,
    pub window: u32,
}

/// One greedy generation of `prompt` from an empty context; returns the tokens after the
/// prompt and the statistics. With `marks`, the prefill starts after the reset, the decode at
/// the first piece of text, and the run ends before the tokens are collected.
pub(crate) fn one_run(
    session: &mut Session,
    prompt: &BenchPrompt,
    strategy: Strategy,
    max_tokens: usize,
    marks: Option<Marks<'_>>,
) -> Result<(Vec<TokenId>, GenerationStats)> {
    session.reset();
    let params = GenerateParams { max_tokens, sampling: SamplingParams::greedy(), strategy };
    let mut decoding = false;
    let mut sink = |_: &str| {
        if let (Some(m), false) = (marks, decoding) {
            m.sampler.mark(Phase::Numbered(energy::DECODE, m.window));
            decoding = true;
        }
        Flow::Continue
    };
    if let Some(m) = marks {
        m.sampler.mark(Phase::Numbered(energy::PREFILL, m.window));
    }
    let stats = if session.chat_template().is_some() {
        session.chat(&prompt.text, &params, &mut sink).map(|r| r.1)
    } else {
        session.generate(&prompt.text, &params, &mut sink)
    };
    if let Some(m) = marks {
        m.sampler.mark(energy::BETWEEN);
    }
    let stats = stats?;
    let tokens: Vec<TokenId> = session.tokens().collect();
    let start = tokens.len().saturating_sub(stats.generated_tokens);
    Ok((tokens[start..].to_vec(), stats))
}

/// Run `suite` on `session`; `progress` receives a line per measured run.
pub fn run(
    session: &mut Session,
    suite: &Suite,
    opts: &BenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchReport> {
    let mut strategies = opts.strategies.clone();
    for s in &strategies {
        s.check()?;
    }
    if !strategies.contains(&Strategy::Plain) {
        strategies.insert(0, Strategy::Plain);
    }
    let prompts: Vec<&BenchPrompt> =
        suite.prompts.iter().filter(|p| opts.only.is_empty() || opts.only.contains(&p.name)).collect();
    if prompts.is_empty() {
        return Err(Error::invalid("no prompt of the suite matches the filter"));
    }
    llama::check_available(opts.vs_llama_cpp)?;
    // Open the meter before anything runs, so a wrong `--power` fails at once.
    let meter = match opts.power {
        PowerChoice::None => None,
        ref c => {
            let env = opts.power_env.clone().unwrap_or_else(PowerEnv::from_env);
            Some(crate::power::detect_in(c, &env)?)
        }
    };
    let reps = opts.reps.max(1);
    let mut results = Vec::new();
    let mut all_identical = true;
    for &p in &prompts {
        let n = opts.max_tokens.unwrap_or(p.max_tokens);
        let mut reference: Option<Vec<TokenId>> = None;
        let mut runs: Vec<Vec<GenerationStats>> = vec![Vec::new(); strategies.len()];
        let mut identical = vec![true; strategies.len()];
        let mut choices: Vec<Option<String>> = vec![None; strategies.len()];
        for round in 0..opts.warmup + reps {
            for (i, &s) in strategies.iter().enumerate() {
                let (tokens, stats) = one_run(session, p, s, n, None)?;
                if s != Strategy::Plain {
                    choices[i] = session.drafter_summary();
                }
                match &reference {
                    None => reference = Some(tokens),
                    Some(r) => identical[i] &= *r == tokens,
                }
                if round >= opts.warmup {
                    progress(&format!(
                        "{:<16} {:<10} run {}/{}: {:.1} tok/s, {:.2} tokens/pass",
                        p.name,
                        s.name(),
                        round - opts.warmup + 1,
                        reps,
                        stats.decode_tokens_per_s,
                        stats.mean_accepted_per_pass
                    ));
                    runs[i].push(stats);
                }
            }
        }
        let prompt_tokens = runs[0].first().map_or(0, |s| s.prompt_tokens);
        let plain_tps = median(&runs[0].iter().map(|s| s.decode_tokens_per_s).collect::<Vec<_>>());
        let mut out = Vec::new();
        for (i, &s) in strategies.iter().enumerate() {
            let r = &runs[i];
            let tps: Vec<f64> = r.iter().map(|s| s.decode_tokens_per_s).collect();
            let med = median(&tps);
            let last = r.last().ok_or_else(|| Error::internal("no measured run"))?;
            all_identical &= identical[i];
            out.push(StrategyResult {
                strategy: s.name(),
                decode_tokens_per_s: med,
                runs_tokens_per_s: tps,
                speedup: if plain_tps > 0.0 { med / plain_tps } else { 0.0 },
                generated_tokens: last.generated_tokens,
                mean_accepted_per_pass: last.mean_accepted_per_pass,
                acceptance_rate: last.acceptance_rate,
                drafted_tokens: last.drafted_tokens,
                draft_s: median(&r.iter().map(|s| s.draft_s).collect::<Vec<_>>()),
                identical_to_plain: identical[i],
                drafter_choice: choices[i].take(),
            });
        }
        results.push(PromptResult { name: p.name.clone(), kind: p.kind, prompt_tokens, strategies: out });
    }
    let mut summary = Vec::new();
    for &s in &strategies {
        for kind in [PromptKind::Grounded, PromptKind::Open] {
            let rows: Vec<&StrategyResult> = results
                .iter()
                .filter(|r| r.kind == kind)
                .flat_map(|r| r.strategies.iter().filter(|x| x.strategy == s.name()))
                .collect();
            if rows.is_empty() {
                continue;
            }
            let sp: Vec<f64> = rows.iter().map(|r| r.speedup).collect();
            summary.push(KindSummary {
                strategy: s.name(),
                kind,
                median_speedup: median(&sp),
                min_speedup: sp.iter().copied().fold(f64::INFINITY, f64::min),
                median_accepted_per_pass: median(
                    &rows.iter().map(|r| r.mean_accepted_per_pass).collect::<Vec<_>>(),
                ),
            });
        }
    }
    let verify_cost = session
        .cost_model()
        .map(|c| (1..=crate::model::MAX_BATCH).map(|b| c.rel(b)).collect())
        .unwrap_or_default();
    let choice = opts.power.to_string();
    let energy = match meter {
        None => energy::EnergyReport::unavailable(&choice, "disabled by --power none"),
        Some(meter) => {
            let plan = energy::EnergyPlan {
                strategies: &strategies,
                prompts: &prompts,
                max_tokens: opts.max_tokens,
                reps,
                window: opts.energy_window,
                choice,
            };
            energy::measure(session, meter, &plan, progress)?
        }
    };
    let llama_cpp = if opts.vs_llama_cpp {
        Some(llama::compare(session, &prompts, opts.max_tokens, reps, progress)?)
    } else {
        None
    };
    let mut machine = machine::Machine::current(session.threads());
    machine.device = session.device();
    Ok(BenchReport {
        model: session.model().file().path().map(|p| p.display().to_string()).unwrap_or_default(),
        suite: suite.name.clone(),
        threads: session.threads(),
        cpu: machine.cpu_model.clone(),
        reps,
        prompts: results,
        summary,
        greedy_equivalence: all_identical,
        verify_cost,
        machine,
        energy,
        llama_cpp,
    })
}

impl BenchReport {
    /// The report as Markdown tables.
    pub fn to_markdown(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "model: {}  ", self.model);
        let _ = writeln!(s, "{}  ", self.machine.describe());
        let _ = writeln!(
            s,
            "suite: {}, {} threads, CPU: {}, median of {} runs, greedy",
            self.suite,
            self.threads,
            self.cpu.as_deref().unwrap_or("unknown"),
            self.reps
        );
        if !self.verify_cost.is_empty() {
            let c: Vec<String> = [2usize, 4, 8, 16]
                .iter()
                .filter_map(|&b| self.verify_cost.get(b - 1))
                .map(|x| format!("{x:.2}"))
                .collect();
            let _ = writeln!(s, "\nverify pass cost vs 1 token (b = 2, 4, 8, 16): {}", c.join(", "));
        }
        let _ = writeln!(
            s,
            "\n| prompt | kind | strategy | decode tok/s | speedup | tokens/pass | acceptance | tokens | same as plain |"
        );
        let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---:|---|");
        for p in &self.prompts {
            for r in &p.strategies {
                let _ = writeln!(
                    s,
                    "| {} | {:?} | {} | {:.1} | {:.2}x | {:.2} | {} | {} | {} |",
                    p.name,
                    p.kind,
                    r.strategy,
                    r.decode_tokens_per_s,
                    r.speedup,
                    r.mean_accepted_per_pass,
                    if r.drafted_tokens > 0 {
                        format!("{:.0}%", 100.0 * r.acceptance_rate)
                    } else {
                        "-".into()
                    },
                    r.generated_tokens,
                    if r.identical_to_plain { "yes" } else { "NO" }
                );
            }
        }
        let choices: Vec<String> = self
            .prompts
            .iter()
            .flat_map(|p| {
                p.strategies.iter().filter_map(move |r| {
                    r.drafter_choice.as_ref().map(|c| format!("- {} / {}: {c}", p.name, r.strategy))
                })
            })
            .collect();
        if !choices.is_empty() {
            let _ = writeln!(s, "\ndrafter choices (last run of each):\n{}", choices.join("\n"));
        }
        let _ = writeln!(s, "\n| strategy | kind | median speedup | min speedup | median tokens/pass |");
        let _ = writeln!(s, "|---|---|---:|---:|---:|");
        for k in &self.summary {
            let _ = writeln!(
                s,
                "| {} | {:?} | {:.2}x | {:.2}x | {:.2} |",
                k.strategy, k.kind, k.median_speedup, k.min_speedup, k.median_accepted_per_pass
            );
        }
        let _ = writeln!(
            s,
            "\ngreedy equivalence: {}",
            if self.greedy_equivalence {
                "every strategy emitted plain decoding's tokens"
            } else {
                "MISMATCH"
            }
        );
        if let Some(l) = &self.llama_cpp {
            s.push_str(&l.to_markdown());
        }
        s.push_str(&self.energy.to_markdown());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_suite_parses_with_both_kinds() {
        let s = Suite::load("default").unwrap();
        assert!(s.prompts.len() >= 6);
        assert!(s.prompts.iter().any(|p| p.kind == PromptKind::Grounded));
        assert!(s.prompts.iter().any(|p| p.kind == PromptKind::Open));
        assert!(Suite::from_toml("x", "prompt = []").is_err());
        assert!(Suite::from_toml("x", "[[prompt]]\nname='a'\nkind='weird'\nmax_tokens=1\ntext='t'").is_err());
        assert!(Suite::load("/nonexistent/suite.toml").is_err());
    }

    #[test]
    fn code_suite_has_the_issue_mix() {
        let s = Suite::load("code").unwrap();
        let grounded = s.prompts.iter().filter(|p| p.kind == PromptKind::Grounded).count();
        let open = s.prompts.iter().filter(|p| p.kind == PromptKind::Open).count();
        assert!(grounded >= 10 && open >= 6, "{grounded} grounded, {open} open");
        let mut names: Vec<&str> = s.prompts.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), s.prompts.len(), "prompt names repeat");
    }

    fn named(pairs: &[(&str, &str)]) -> GgufFile {
        use crate::gguf::GgufWriter;
        let mut w = GgufWriter::new();
        for (k, v) in pairs {
            w.kv(k, v.to_string());
        }
        GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap()
    }

    #[test]
    fn coder_models_get_the_code_suite() {
        let coder = named(&[
            ("general.name", "Qwen2.5 Coder 0.5B Instruct AWQ"),
            ("general.basename", "Qwen2.5-Coder"),
        ]);
        assert!(is_code_model(&coder));
        assert_eq!(Suite::for_model(&coder).unwrap().name, "code");
        assert!(is_code_model(&named(&[("general.name", "CodeLlama 7B")])));
        assert!(is_code_model(&named(&[("general.basename", "starcoder2")])));
        for plain in [
            named(&[("general.name", "SmolLM2 135M Instruct")]),
            named(&[]),
            named(&[("general.name", "Unicode test")]),
        ] {
            assert!(!is_code_model(&plain));
            assert_eq!(Suite::for_model(&plain).unwrap().name, "default");
        }
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
