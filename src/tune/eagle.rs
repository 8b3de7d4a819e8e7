//! The `tune` stage that distils the eagle drafter ([`crate::decode::eagle`]) from the
//! calibration data the collect stage gathered, reports its held-out acceptance, and saves it
//! beside the model only where it measured better than the drafter already saved there.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::decode::eagle::{eagle_path, train, EagleConfig, EagleNet, EagleReport};
use crate::error::{Error, Result};
use crate::kernels::KernelPool;
use crate::model::{KvType, Workspace, MAX_BATCH};

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
        let cfg = EagleConfig {
            vocab: t.opts.vocab,
            seed: t.opts.seed,
            budget,
            holdout_below: t.report.sequences as u32,
            ..Default::default()
        };
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
        t.report.eagle = EagleReport { file_samples: t.report.eagle.file_samples, ..rep };
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

/// Tokens per sequence of a data file.
const FILE_CHUNK: usize = 2 * MAX_BATCH;
/// Share of the budget by which reading data files stops.
const FILES_UNTIL: f64 = 0.6;
/// Largest data file read, bytes.
const MAX_FILE: u64 = 1 << 20;

/// Add teacher-forced passes over the user's files (`tune --data PATH…`) to the collected data:
/// every text file under the paths (sorted, hidden entries skipped) in sequences of
/// `FILE_CHUNK` (32) tokens, at prefill speed, until 60% of the budget is used. The features are
/// the model's own whatever the text, so any text in the domain the model will serve teaches
/// the drafter; these sequences always train (held-out acceptance stays on the model's replies).
pub struct CollectFiles;

impl Stage for CollectFiles {
    fn name(&self) -> &'static str {
        "collect data files"
    }

    fn run(&mut self, t: &mut Tuner) -> Result<()> {
        if t.opts.data.is_empty() {
            return Ok(());
        }
        let mut files = Vec::new();
        for p in &t.opts.data {
            list_files(p, &mut files)?;
        }
        files.sort();
        let mut data = t.data.take().ok_or_else(|| Error::internal("no calibration data collected"))?;
        let pool = KernelPool::new(t.opts.threads)?;
        let mut ws = Workspace::new(&t.model, pool, FILE_CHUNK)?;
        let mut cache = t.model.new_cache(FILE_CHUNK, KvType::F16)?;
        let mut bar = Bar::new("data files", files.len(), t.opts.quiet);
        let (before, until) = (data.len(), t.by(FILES_UNTIL));
        let mut read = 0;
        'files: for f in &files {
            let Ok(text) = std::fs::read_to_string(f) else { continue };
            let tokens = t.session.tokenizer().encode(&text, false, false);
            for chunk in tokens.chunks(FILE_CHUNK).filter(|c| c.len() > 8) {
                if t.elapsed() > until {
                    break 'files;
                }
                data.add_sequence(&t.model, &mut ws, &mut cache, chunk, 0)?;
            }
            read += 1;
            bar.update(read, &format!("{} samples", data.len() - before));
        }
        bar.finish(&format!("{} samples from {read} of {} files", data.len() - before, files.len()));
        t.report.eagle.file_samples = data.len() - before;
        t.data = Some(data);
        Ok(())
    }
}

/// Regular files under `p` (recursively; entries whose names start with `.` skipped; files
/// over 1 MiB skipped).
fn list_files(p: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(p).map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
    if meta.is_file() {
        if meta.len() <= MAX_FILE {
            out.push(p.to_path_buf());
        }
        return Ok(());
    }
    let entries = std::fs::read_dir(p).map_err(|e| Error::io(format!("listing {}", p.display()), e))?;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        list_files(&entry.path(), out)?;
    }
    Ok(())
}
