//! Command-line arguments as parsed (clap), and their validation into library calls.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// edgespec: run GGUF language models on the CPU, faster by lossless speculative decoding.
#[derive(Parser, Debug)]
#[command(name = "edgespec", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Download a catalog model into the cache (verified by sha256) and print its path.
    Pull(PullArgs),
    /// Describe a model: architecture, tokenizer, tensors, and the memory a session needs.
    Info(InfoArgs),
    /// Generate a continuation of a prompt; only the generated text goes to stdout.
    Run(RunArgs),
    /// Talk with a model in a read-eval-print loop (/reset, /stats, /help, /quit; Ctrl-C stops a reply).
    Chat(ChatArgs),
    /// Decode a prompt suite under each strategy: tokens/s, speedup over plain, acceptance.
    Bench(BenchArgs),
    /// Derive drafters from the model on this machine: train its draft heads (strategy `heads`)
    /// on its own replies to calibration prompts, measure them, save them beside the model.
    Tune(TuneArgs),
}

#[derive(Args, Debug)]
pub struct TuneArgs {
    /// A catalog name (pulled on first use) or a path to a .gguf file.
    #[arg(short = 'm', long = "model", default_value = "smollm2-135m")]
    pub model: String,
    /// Time budget in seconds for the whole run.
    #[arg(long, default_value_t = 600)]
    pub budget: u64,
    /// Seed of the heads' training (same seed and data: same heads).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of draft heads (tokens drafted per step at most).
    #[arg(long = "heads", default_value_t = 3)]
    pub heads: usize,
    /// Reduced vocabulary of the heads (the lowest token ids).
    #[arg(long, default_value_t = 8192)]
    pub vocab: usize,
    /// Width of each head's SiLU block.
    #[arg(long, default_value_t = 128)]
    pub rank: usize,
    /// Tokens generated per calibration prompt at most.
    #[arg(short = 'n', long = "n-predict", default_value_t = 192)]
    pub n_predict: usize,
    /// Calibration prompts: a suite file (built in: benches/prompts/calibration.toml, or
    /// calibration_code.toml for coder models).
    #[arg(long)]
    pub suite: Option<String>,
    /// Kernel threads (default: the number of physical cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Train only the eagle drafter (strategy `eagle`): collect, train it, save it where it
    /// measured better than the saved one.
    #[arg(long)]
    pub eagle_only: bool,
    /// Text files or folders the eagle drafter also learns from (teacher-forced, at prefill
    /// speed): e.g. your own repository for a code model.
    #[arg(long, num_args = 1..)]
    pub data: Vec<std::path::PathBuf>,
    /// Where the measured sessions run: `cpu` (the default), `gpu` or `auto` (see `run --help`).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: edgespec::model::Device,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A catalog name (pulled on first use) or a path to a .gguf file.
    #[arg(short = 'm', long = "model", default_value = "smollm2-135m")]
    pub model: String,
    /// Strategies to compare, comma-separated (plain is always measured, as the baseline).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "plain,lookup")]
    pub strategies: Vec<Strategy>,
    /// `default` or `code` (built in) or the path of a suite file (see benches/prompts/);
    /// without it, `code` for coder models and `default` for the others.
    #[arg(long)]
    pub suite: Option<String>,
    /// Only these prompts of the suite, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub prompts: Vec<String>,
    /// Measured repetitions per prompt and strategy (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Unmeasured warm-up runs per prompt and strategy.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Override every prompt's token budget.
    #[arg(short = 'n', long = "n-predict")]
    pub n_predict: Option<usize>,
    /// Kernel threads (default: the number of physical cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// KV cache type: f16 (the default), f32 or q8_0.
    #[arg(long = "kv-type", value_parser = parse_kv_type)]
    pub kv_type: Option<edgespec::model::KvType>,
    /// Most memory the session may take (e.g. 300M, 1.5G): picks the context length and KV cache
    /// type that fit.
    #[arg(long = "mem-budget", value_name = "SIZE", value_parser = parse_mem_budget)]
    pub mem_budget: Option<u64>,
    /// Energy measurement: `none`, `auto` (the best meter found), or a backend: `rapl`,
    /// `hwmon[:NAME]`, `battery`, `pi5`, `nvml`, `powermetrics`, `csv:PATH` (an external meter's
    /// log), `estimate:WATTS` (printed as ESTIMATE).
    #[arg(long, default_value = "none")]
    pub power: String,
    /// Minimum seconds of the idle baseline and of each energy window (default: the protocol's
    /// max(10 s, 100 × the meter's period); shorter windows are flagged).
    #[arg(long = "energy-window", value_name = "SECONDS")]
    pub energy_window: Option<f64>,
    /// Draw the report as SVG: the power trace and tokens/J per strategy (tokens/s without a meter).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Also run llama.cpp's plain decoding on the same prompts, alternating with ours (needs a
    /// build with the `llama-cpp` feature).
    #[arg(long = "vs-llama-cpp")]
    pub vs_llama_cpp: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "md")]
    pub format: BenchFormat,
    /// Also write the JSON report to PATH.
    #[arg(long = "json-out", value_name = "PATH")]
    pub json_out: Option<PathBuf>,
    /// Where the forward pass runs: `cpu` (the default), `gpu` or `auto` (see `run --help`).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: edgespec::model::Device,
}

/// How `bench` prints its report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchFormat {
    /// Markdown tables.
    Md,
    /// One JSON document.
    Json,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Catalog name (default: the catalog's default model, smollm2-135m).
    pub name: Option<String>,
    /// List the catalog (name, size, cached or not) instead of pulling.
    #[arg(long)]
    pub list: bool,
    /// Re-hash a cached file even if it was verified before.
    #[arg(long)]
    pub verify: bool,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// A catalog name (pulled on first use) or a path to a .gguf file.
    #[arg(default_value = "smollm2-135m")]
    pub model: String,
    /// Context length for the memory estimate (default: the model's trained context).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Show the context length and KV cache type a session gets within SIZE (e.g. 300M, 1.5G).
    #[arg(long = "mem-budget", value_name = "SIZE", value_parser = parse_mem_budget)]
    pub mem_budget: Option<u64>,
    /// Also print every metadata entry.
    #[arg(long)]
    pub metadata: bool,
    /// List the GPU adapters (backend, type, limits) instead of describing a model.
    #[arg(long)]
    pub devices: bool,
}

/// How tokens are decoded: the library's [`edgespec::decode::Strategy`] as a flag value. Its
/// values, names and help come from the library's strategy list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strategy(pub edgespec::decode::Strategy);

/// Every strategy, as flag values.
static STRATEGIES: [Strategy; edgespec::decode::Strategy::ALL.len()] = {
    let all = edgespec::decode::Strategy::ALL;
    let mut out = [Strategy(all[0]); edgespec::decode::Strategy::ALL.len()];
    let mut i = 0;
    while i < all.len() {
        out[i] = Strategy(all[i]);
        i += 1;
    }
    out
};

impl ValueEnum for Strategy {
    fn value_variants<'a>() -> &'a [Self] {
        &STRATEGIES
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.0.name()).help(self.0.description()))
    }
}

/// Options every generating command shares.
#[derive(Args, Debug)]
pub struct ModelArgs {
    /// A catalog name (pulled on first use) or a path to a .gguf file.
    #[arg(short = 'm', long = "model", default_value = "smollm2-135m")]
    pub model: String,
    /// Decoding strategy. Every strategy emits plain decoding's tokens; `auto` (the default)
    /// drafts where its measured acceptance and pass cost say a draft pays, `plain` never drafts.
    #[arg(long, value_enum, default_value = "auto")]
    pub strategy: Strategy,
    /// Kernel threads (default: the number of physical cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Context length in tokens (default: the model's, at most 4096).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// KV cache type: f16 (the default), f32, or q8_0 (8-bit, 53% of f16's memory and bandwidth;
    /// needs head dimensions that are multiples of 32).
    #[arg(long = "kv-type", value_parser = parse_kv_type)]
    pub kv_type: Option<edgespec::model::KvType>,
    /// Most memory the session may take (e.g. 300M, 1.5G; weights count as their file size):
    /// picks the context length and KV cache type that fit, says which on stderr, and refuses
    /// naming the smallest budget that works when nothing fits.
    #[arg(long = "mem-budget", value_name = "SIZE", value_parser = parse_mem_budget)]
    pub mem_budget: Option<u64>,
    /// Where the forward pass runs: `cpu` (the default), `gpu` (Vulkan or Metal; a software
    /// adapter such as lavapipe only when it is the only one), or `auto` (a hardware GPU the
    /// model fits, else the CPU, saying why on stderr).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: edgespec::model::Device,
}

/// `--device`'s parser.
pub fn parse_device(s: &str) -> Result<edgespec::model::Device, String> {
    s.parse().map_err(|e: edgespec::Error| e.message().to_string())
}

/// `--mem-budget`'s parser.
pub fn parse_mem_budget(s: &str) -> Result<u64, String> {
    edgespec::memory::parse_size(s).map_err(|e| e.message().to_string())
}

/// `--kv-type`'s parser.
pub fn parse_kv_type(s: &str) -> Result<edgespec::model::KvType, String> {
    edgespec::model::KvType::from_name(s).map_err(|e| e.to_string())
}

/// Sampling options.
#[derive(Args, Debug)]
pub struct SamplingArgs {
    /// Temperature (0 or more); 0 means greedy (argmax) decoding.
    #[arg(long = "temp", default_value_t = 0.8)]
    pub temp: f32,
    /// Random seed (default: a fresh one, reported by --stats).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Keep only the K most likely tokens (0 disables).
    #[arg(long = "top-k", default_value_t = 40)]
    pub top_k: usize,
    /// Keep the most likely tokens up to a total probability P (1 disables).
    #[arg(long = "top-p", default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than MIN_P times the most likely one (0 disables).
    #[arg(long = "min-p", default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalise tokens seen in the last --repeat-last-n tokens (1 disables).
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens the repetition penalty considers.
    #[arg(long = "repeat-last-n", default_value_t = 64)]
    pub repeat_last_n: usize,
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["prompt", "file"]))]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt text.
    #[arg(short = 'p', long = "prompt")]
    pub prompt: Option<String>,
    /// Read the prompt from FILE (`-` for standard input).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Most tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 256)]
    pub n_predict: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Wrap the prompt in the model's chat template as one user message.
    #[arg(long)]
    pub chat: bool,
    /// Print speed and memory figures to stderr.
    #[arg(long)]
    pub stats: bool,
    /// With --stats: say why figures are missing (e.g. why no energy meter was found).
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Write the figures as JSON to PATH.
    #[arg(long = "stats-json", value_name = "PATH")]
    pub stats_json: Option<PathBuf>,
    /// Energy of the generation: `auto` (the best meter found; figures only when one is),
    /// `none`, or a backend as for `bench --power`.
    #[arg(long, default_value = "auto")]
    pub power: String,
}

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Most tokens per reply.
    #[arg(short = 'n', long = "n-predict", default_value_t = 1024)]
    pub n_predict: usize,
    /// A system message to start the conversation with.
    #[arg(long)]
    pub system: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

impl Strategy {
    /// The library's strategy; refused when this build does not implement it yet.
    pub fn library(self) -> edgespec::Result<edgespec::decode::Strategy> {
        self.0.check()?;
        Ok(self.0)
    }
}

impl ModelArgs {
    /// Session options from the flags.
    pub fn session_options(&self) -> edgespec::Result<edgespec::session::SessionOptions> {
        self.strategy.library()?;
        Ok(edgespec::session::SessionOptions {
            threads: checked_threads(self.threads)?,
            ctx: self.ctx,
            kv_type: self.kv_type.unwrap_or_default(),
            device: self.device,
            ..Default::default()
        })
    }
}

/// `--threads`: at least 1, and at most this machine's logical CPUs (more only time-slice the
/// same cores: capped, and said on stderr).
pub fn checked_threads(threads: Option<usize>) -> edgespec::Result<Option<usize>> {
    let Some(n) = threads else { return Ok(None) };
    if n == 0 {
        return Err(edgespec::Error::invalid("--threads must be at least 1"));
    }
    let cpus = std::thread::available_parallelism().map_or(n, |c| c.get());
    if n > cpus {
        eprintln!("edgespec: --threads {n} is more than the {cpus} logical CPUs here; using {cpus}");
        return Ok(Some(cpus));
    }
    Ok(Some(n))
}

impl SamplingArgs {
    /// Sampling settings from the flags; a missing seed is drawn from the clock.
    pub fn params(&self) -> edgespec::Result<edgespec::sampling::SamplingParams> {
        let seed = self.seed.unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            now.as_nanos() as u64 ^ u64::from(std::process::id())
        });
        if self.temp.is_nan() || self.temp < 0.0 {
            return Err(edgespec::Error::invalid(format!(
                "--temp must be 0 (greedy) or more, not {}",
                self.temp
            )));
        }
        let p = edgespec::sampling::SamplingParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed,
        };
        p.validate()?;
        Ok(p)
    }
}
