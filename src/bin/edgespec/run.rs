//! `edgespec run`: one prompt in, its continuation out (stdout carries only generated text).

use std::io::{IsTerminal, Write};

use edgespec::catalog;
use edgespec::power::{self, Measurement, Phase, PowerChoice};
use edgespec::session::{Flow, GenerateParams, GenerationStats, Session};
use edgespec::{Error, Result};

use super::args::RunArgs;

pub fn run(a: RunArgs) -> Result<()> {
    let opts = a.model.session_options()?;
    let sampling = a.sampling.params()?;
    let prompt = match (&a.prompt, &a.file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).map_err(|e| Error::io(format!("cannot read {}", f.display()), e))?
        }
        (None, None) => return Err(Error::invalid("give a prompt with -p TEXT or -f FILE")),
    };
    let path = catalog::resolve_model(&a.model.model)?;
    let mut session = Session::load(&path, &opts)?;
    let params = GenerateParams { max_tokens: a.n_predict, sampling, strategy: a.model.strategy.library()? };
    let choice: PowerChoice = a.power.parse()?;
    let sampler = power::Sampler::start(power::detect(&choice)?, Phase::Prefill)?;
    let mut first_piece = true;

    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    let mut out = stdout.lock();
    let mut broken = false;
    let mut on_token = |piece: &str| {
        if first_piece {
            // The first token comes from the prompt's last pass: decoding starts here.
            sampler.mark(Phase::Decode);
            first_piece = false;
        }
        if out.write_all(piece.as_bytes()).and_then(|_| out.flush()).is_err() {
            broken = true; // e.g. `| head`: stop quietly
            return Flow::Stop;
        }
        Flow::Continue
    };
    let stats = if a.chat {
        session.chat(&prompt, &params, &mut on_token)?.1
    } else {
        session.generate(&prompt, &params, &mut on_token)?
    };
    if tty && !broken {
        let _ = writeln!(out);
    }
    drop(out);
    let energy = Energy::of(&sampler.stop()?, stats.generated_tokens);
    report(&stats, &session, &path, sampling.seed, a.stats, a.stats_json.as_deref(), &energy)
}

/// The energy of one generation (prefill and decode), or why there is none.
pub enum Energy {
    /// Measured (or, with `--power estimate:W`, estimated) by a meter.
    Measured {
        /// Joules of the headline domain over the generation.
        joules: f64,
        /// Generated tokens per joule.
        tokens_per_j: f64,
        /// The domain's label (e.g. `package-0`).
        source: String,
        /// Measured counter, sampled power, vendor model or estimate.
        provenance: String,
    },
    /// No meter, or nothing it could attribute.
    Unavailable(String),
}

impl Energy {
    /// Sum the headline domain over the prefill and decode phases of `m`.
    pub fn of(m: &Measurement, tokens: usize) -> Energy {
        if let Some(why) = &m.unavailable {
            return Energy::Unavailable(why.clone());
        }
        let (Some(h), Some(d)) = (m.headline_domain(), m.headline_domain().and_then(|h| m.domains.get(h)))
        else {
            return Energy::Unavailable(format!("{} measures nothing", m.meter));
        };
        let joules: f64 = [Phase::Prefill, Phase::Decode]
            .iter()
            .filter_map(|&p| m.phase(p)?.domains.get(h).map(|e| e.energy_j))
            .sum();
        if joules <= 0.0 {
            // A counter that did not move: the run was shorter than the meter's update interval.
            // Zero joules (and zero tokens per joule) would be a wrong figure, not a measurement.
            return Energy::Unavailable(format!(
                "{} registered no energy: the run was shorter than its update interval",
                d.label
            ));
        }
        Energy::Measured {
            joules,
            tokens_per_j: tokens as f64 / joules,
            source: d.label.clone(),
            provenance: d.provenance.describe().to_string(),
        }
    }
}

/// Print `stats` to stderr (`--stats`) and/or as JSON to a file (`--stats-json`).
pub fn report(
    stats: &GenerationStats,
    session: &Session,
    model: &std::path::Path,
    seed: u64,
    human: bool,
    json: Option<&std::path::Path>,
    energy: &Energy,
) -> Result<()> {
    if human {
        eprintln!("{stats}");
        eprintln!("threads {}, seed {seed}, model {}", session.threads(), model.display());
        if let Some(choice) = session.drafter_summary() {
            eprintln!("drafter: {choice}");
        }
        match energy {
            Energy::Measured { joules, tokens_per_j, source, provenance } => {
                eprintln!("energy {joules:.3} J, {tokens_per_j:.2} tokens/J ({source}, {provenance})")
            }
            Energy::Unavailable(why) => eprintln!("energy: unavailable ({why})"),
        }
    }
    if let Some(path) = json {
        let mut v =
            serde_json::to_value(stats).map_err(|e| Error::internal(format!("stats to JSON: {e}")))?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("model".into(), model.display().to_string().into());
            obj.insert("seed".into(), seed.into());
            obj.insert("threads".into(), session.threads().into());
            obj.insert("kv_cache_bytes".into(), session.cache().bytes().into());
            obj.insert("kv_type".into(), session.cache().kv_type().name().into());
            if let Some(choice) = session.drafter_summary() {
                obj.insert("drafter_choice".into(), choice.into());
            }
            if let Energy::Measured { joules, tokens_per_j, source, provenance } = energy {
                obj.insert("energy_j".into(), (*joules).into());
                obj.insert("tokens_per_j".into(), (*tokens_per_j).into());
                obj.insert("power_source".into(), source.clone().into());
                obj.insert("power_provenance".into(), provenance.clone().into());
            }
        }
        let text =
            serde_json::to_string_pretty(&v).map_err(|e| Error::internal(format!("stats to JSON: {e}")))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    }
    Ok(())
}
