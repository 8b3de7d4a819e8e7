//! The `tune` stage that distils the eagle drafter ([`crate::decode::eagle`]) from the
//! calibration data the collect stage gathered, reports its held-out acceptance, and saves it
//! beside the model only where it measured better than the drafter already saved there.

use std::path::PathBuf;
use std::time::Duration;

use crate::decode::eagle::{eagle_path, train, EagleConfig, EagleNet};
use crate::error::{Error, Result};

use super::{Bar, Stage, Tuner};

/// Share of the tuning budget the eagle drafter trains for at most.
const SHARE: f64 = 0.25;

/// Train the eagle drafter on the collected data and save it where it beats the saved one.
pub struct EagleTrain;

impl Stage for EagleTrain {
    fn name(&self) -> &'static str {
        "train eagle drafter"
    }

    fn run(&mut self, t: &mut Tuner) -> Result<()> {
        let data = t.data.as_ref().ok_or_else(|| Error::internal("no calibration data collected"))?;
        let budget = t.opts.eagle_budget.unwrap_or_else(|| Duration::from_secs_f64(t.by(SHARE).max(10.0)));
        let cfg = EagleConfig { vocab: t.opts.vocab, seed: t.opts.seed, budget, ..Default::default() };
        let mut bar = Bar::new("eagle", 1, t.opts.quiet);
        let (net, rep) = train::train(&t.model, data, &cfg, &mut |step, planned, loss| {
            bar.set_total(planned);
            bar.update(step, &format!("loss {loss:.4}"));
        })?;
        let path = eagle_out(t);
        // Keep what is saved where it measured at least as well (same model only).
        let saved = EagleNet::load(&path, &t.model).ok().map(|n| n.alpha[0]);
        let better = saved.is_none_or(|a| net.alpha[0] > a);
        if better {
            net.save(&path)?;
        }
        bar.finish(&format!(
            "{} steps, loss {:.4} -> {:.4}; held-out α first {:.3}, second {:.3}; {}",
            rep.steps,
            rep.first_loss,
            rep.last_loss,
            rep.alpha_first,
            rep.alpha_second,
            if better {
                format!("saved {}", path.display())
            } else {
                format!("kept the saved one (α first {:.3})", saved.unwrap_or(0.0))
            }
        ));
        t.report.eagle = rep;
        t.report.eagle_saved = better;
        t.report.eagle_file = path.display().to_string();
        Ok(())
    }
}

/// Where the drafter goes: beside the model, or in the output folder.
fn eagle_out(t: &Tuner) -> PathBuf {
    let model = &t.opts.model;
    match t.opts.out_dir.as_deref() {
        Some(d) => {
            eagle_path(&d.join(model.file_name().map(PathBuf::from).unwrap_or_else(|| "model".into())))
        }
        None => eagle_path(model),
    }
}
