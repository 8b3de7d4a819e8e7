//! `edgespec bench`: load the model once, run the suite, print the report (progress on stderr).

use edgespec::bench::{self, BenchOptions, Suite};
use edgespec::catalog;
use edgespec::session::{Session, SessionOptions};
use edgespec::{Error, Result};

use crate::args::{BenchArgs, BenchFormat};

pub fn bench(a: BenchArgs) -> Result<()> {
    if a.threads == Some(0) {
        return Err(Error::invalid("--threads must be at least 1"));
    }
    let strategies = a.strategies.iter().map(|s| s.library()).collect::<Result<Vec<_>>>()?;
    let energy_note = match a.power.as_str() {
        "none" => "energy: not measured (--power none)".to_string(),
        other => {
            format!("energy: unavailable (the power meters are not wired into `bench` yet; --power {other})")
        }
    };
    let suite = Suite::load(&a.suite)?;
    let path = catalog::resolve_model(&a.model)?;
    let mut session = Session::load(&path, &SessionOptions { threads: a.threads, ..Default::default() })?;
    let opts =
        BenchOptions { strategies, reps: a.reps, warmup: a.warmup, max_tokens: a.n_predict, only: a.prompts };
    let report = bench::run(&mut session, &suite, &opts, &mut |line| eprintln!("{line}"))?;
    let json =
        serde_json::to_string_pretty(&report).map_err(|e| Error::internal(format!("report to JSON: {e}")))?;
    if let Some(p) = &a.json_out {
        std::fs::write(p, &json).map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
    }
    match a.format {
        BenchFormat::Md => {
            print!("{}", report.to_markdown());
            println!("{energy_note}");
        }
        BenchFormat::Json => println!("{json}"),
    }
    if !report.greedy_equivalence {
        return Err(Error::internal("a strategy did not reproduce plain decoding's tokens (see the table)"));
    }
    Ok(())
}
