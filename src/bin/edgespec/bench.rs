//! `edgespec bench`: load the model once, run the suite (and, with a meter, the energy protocol;
//! with `--vs-llama-cpp`, llama.cpp beside us), print the report (progress on stderr).

use std::time::Duration;

use edgespec::bench::{self, BenchOptions, Suite};
use edgespec::catalog;
use edgespec::power::PowerChoice;
use edgespec::session::SessionOptions;
use edgespec::{Error, Result};

use crate::args::{BenchArgs, BenchFormat};

pub fn bench(a: BenchArgs) -> Result<()> {
    let threads = crate::args::checked_threads(a.threads)?;
    // Fail before loading anything when the flags cannot work.
    bench::llama::check_available(a.vs_llama_cpp)?;
    let power: PowerChoice = a.power.parse()?;
    let energy_window = match a.energy_window {
        None => None,
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => return Err(Error::invalid(format!("--energy-window must be positive seconds, not {s}"))),
    };
    let strategies = a.strategies.iter().map(|s| s.library()).collect::<Result<Vec<_>>>()?;
    let named_suite = a.suite.as_deref().map(Suite::load).transpose()?;
    let path = catalog::resolve_model(&a.model)?;
    let opts = SessionOptions { threads, device: a.device, ..Default::default() };
    // Ctrl-C ends a benchmark as it always did (a run cut short measures nothing).
    let mut session = crate::setup::open_session(&path, opts, a.kv_type, a.mem_budget, false)?;
    let suite = match named_suite {
        Some(s) => s,
        None => Suite::for_model(session.model().file())?,
    };
    let opts = BenchOptions {
        strategies,
        reps: a.reps,
        warmup: a.warmup,
        max_tokens: a.n_predict,
        only: a.prompts,
        power,
        power_env: None,
        energy_window,
        vs_llama_cpp: a.vs_llama_cpp,
    };
    let report = bench::run(&mut session, &suite, &opts, &mut |line| eprintln!("{line}"))?;
    let json =
        serde_json::to_string_pretty(&report).map_err(|e| Error::internal(format!("report to JSON: {e}")))?;
    if let Some(p) = &a.json_out {
        std::fs::write(p, &json).map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
    }
    if let Some(p) = &a.plot {
        std::fs::write(p, bench::plot::svg(&report))
            .map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
    }
    match a.format {
        BenchFormat::Md => crate::commands::print_out(&report.to_markdown())?,
        BenchFormat::Json => crate::commands::print_out(&format!("{json}\n"))?,
    }
    if !report.greedy_equivalence {
        return Err(Error::internal("a strategy did not reproduce plain decoding's tokens (see the table)"));
    }
    Ok(())
}
