//! The rule that keeps drafters saved earlier when this run's measured worse (the profile itself
//! is [`crate::decode::profile`]).

use super::{TuneReport, PAYS_MARGIN};

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
