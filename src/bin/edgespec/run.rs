//! `edgespec run`: one prompt in, its continuation out (stdout carries only generated text).

use std::io::{IsTerminal, Read, Write};

use edgespec::catalog;
use edgespec::power::{self, Measurement, Phase, PowerChoice};
use edgespec::session::{Flow, GenerateParams, GenerationStats, Session, StopReason};
use edgespec::{Error, ErrorKind, Result};

use super::args::RunArgs;
use super::setup;

pub fn run(a: RunArgs) -> Result<()> {
    let opts = a.model.session_options()?;
    let sampling = a.sampling.params()?;
    let prompt = match (&a.prompt, &a.file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) if f.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Error::io("cannot read the prompt from standard input", e))?;
            text
        }
        (None, Some(f)) => {
            std::fs::read_to_string(f).map_err(|e| Error::io(format!("cannot read {}", f.display()), e))?
        }
        (None, None) => return Err(Error::invalid("give a prompt with -p TEXT or -f FILE")),
    };
    let path = catalog::resolve_model(&a.model.model)?;
    let mut session = setup::open_session(&path, opts, a.model.kv_type, a.model.mem_budget, true)?;
    let params = GenerateParams { max_tokens: a.n_predict, sampling, strategy: a.model.strategy.library()? };
    session.prepare_strategy(params.strategy)?;
    setup::print_notes(&mut session);
    let choice: PowerChoice = a.power.parse()?;
    let sampler = power::Sampler::start(power::detect(&choice)?, Phase::Prefill)?;
    let mut first_piece = true;

    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    let mut out = stdout.lock();
    let mut broken = false;
    let mut write_error: Option<std::io::Error> = None;
    let mut on_token = |piece: &str| {
        if first_piece {
            // The first token comes from the prompt's last pass: decoding starts here.
            sampler.mark(Phase::Decode);
            first_piece = false;
        }
        match out.write_all(piece.as_bytes()).and_then(|_| out.flush()) {
            Ok(()) => Flow::Continue,
            // e.g. `| head`: the reader has what it wanted; stop quietly.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                broken = true;
                Flow::Stop
            }
            // e.g. a full disk: the text is lost, which must not look like success.
            Err(e) => {
                write_error = Some(e);
                Flow::Stop
            }
        }
    };
    let result = if a.chat {
        session.chat(&prompt, &params, &mut on_token).map(|r| r.1)
    } else {
        session.generate(&prompt, &params, &mut on_token)
    };
    if let Some(e) = write_error {
        return Err(Error::io("cannot write the generated text to standard output", e));
    }
    let stats = match result {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::Cancelled => {
            return Err(Error::new(
                ErrorKind::Cancelled,
                "interrupted while processing the prompt; nothing generated",
            ))
        }
        Err(e) => return Err(e),
    };
    if tty && !broken {
        let _ = writeln!(out);
    }
    drop(out);
    let interrupted = stats.stop == StopReason::Cancelled && setup::interrupted();
    if stats.stop == StopReason::ContextFull {
        eprintln!(
            "edgespec: output cut after {} tokens: the context of {} tokens is full (raise --ctx)",
            stats.generated_tokens, stats.context_size
        );
    }
    let energy = Energy::of(&sampler.stop()?, stats.generated_tokens);
    let human = a.stats.then_some(a.verbose);
    report(&stats, &session, &path, sampling.seed, human, a.stats_json.as_deref(), &energy)?;
    if interrupted {
        return Err(Error::new(
            ErrorKind::Cancelled,
            format!("interrupted after {} generated tokens", stats.generated_tokens),
        ));
    }
    Ok(())
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

/// Print `stats` to stderr (`human`: `--stats`, with `Some(true)` for `--verbose`) and/or as JSON
/// to a file (`--stats-json`).
pub fn report(
    stats: &GenerationStats,
    session: &Session,
    model: &std::path::Path,
    seed: u64,
    human: Option<bool>,
    json: Option<&std::path::Path>,
    energy: &Energy,
) -> Result<()> {
    if let Some(verbose) = human {
        eprintln!("{stats}");
        eprintln!(
            "device {}, threads {}, seed {seed}, model {}",
            session.device(),
            session.threads(),
            model.display()
        );
        if let Some(choice) = session.drafter_summary() {
            eprintln!("drafter: {choice}");
        }
        match energy {
            Energy::Measured { joules, tokens_per_j, source, provenance } => {
                eprintln!("energy {joules:.3} J, {tokens_per_j:.2} tokens/J ({source}, {provenance})")
            }
            // Every meter's reason together is long: only with --verbose (and always in the
            // JSON); a short one (e.g. `--power none`) is said as it is.
            Energy::Unavailable(why) if verbose || why.len() <= 120 => {
                eprintln!("energy: unavailable ({why})")
            }
            Energy::Unavailable(_) => eprintln!("energy: unavailable (--verbose says why)"),
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
            obj.insert("device".into(), session.device().into());
            if let Some(choice) = session.drafter_summary() {
                obj.insert("drafter_choice".into(), choice.into());
            }
            if let Energy::Unavailable(why) = energy {
                obj.insert("energy_unavailable".into(), why.clone().into());
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
