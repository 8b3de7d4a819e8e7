//! Reading the profile `tune` saves beside a model (a damaged one is an error the caller can
//! report, not silently nothing), and the rule that keeps drafters saved earlier when this run's
//! measured worse.

use std::path::Path;

use crate::decode::heads::profile_path;
use crate::error::{Error, Result};

use super::{TuneReport, PAYS_MARGIN};

/// The profile `tune` saved beside the model at `model_path`, if there is one that parses.
pub fn load_profile(model_path: &Path) -> Option<TuneReport> {
    read_profile(model_path).ok().flatten()
}

/// Whether drafters saved earlier (`prev`'s profile) beat this run's (`new`): they reproduced
/// plain decoding and measured faster, or this run's did not reproduce it, or this run's heads
/// predict worse on held-out data and measured faster only by less than [`PAYS_MARGIN`] (a
/// machine's noise: heads trained on a short budget's few replies must not win by it).
pub(super) fn keep_previous(prev: &TuneReport, new: &TuneReport) -> bool {
    let alpha = |r: &TuneReport| {
        let a = &r.train.alpha_top1;
        if a.is_empty() {
            0.0
        } else {
            a.iter().map(|&x| f64::from(x)).sum::<f64>() / a.len() as f64
        }
    };
    prev.greedy_equal
        && (!new.greedy_equal
            || prev.speedup > new.speedup
            || (new.speedup - prev.speedup < PAYS_MARGIN && alpha(prev) > alpha(new)))
}

/// The profile `tune` saved beside the model at `model_path`: `None` when there is none, an
/// error naming the file when it cannot be read or does not parse (a damaged profile).
pub fn read_profile(model_path: &Path) -> Result<Option<TuneReport>> {
    read_profile_file(&profile_path(model_path))
}

pub(super) fn read_profile_file(path: &Path) -> Result<Option<TuneReport>> {
    let path = path.to_path_buf();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("ignoring the tuning profile {}", path.display()), e)),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        Error::new(
            crate::error::ErrorKind::Format,
            format!(
                "ignoring the damaged tuning profile {} ({e}); run `edgespec tune` again",
                path.display()
            ),
        )
    })
}
