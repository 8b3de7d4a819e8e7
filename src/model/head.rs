//! The output head over a subset of the vocabulary, for drafters: one mat-vec over the first
//! rows of the mapped head (zero copy) plus one row dot per extra id, every other logit `-inf`.
//!
//! Each computed logit is bitwise what the full head gives: a row's dot product does not depend
//! on which other rows the kernel is given (the mat-vec splits rows over threads and tiles
//! freely, and `tests/model_reduced_head.rs` checks the equality on tiny models and SmolLM2).

use crate::error::{Error, Result};
use crate::kernels::{matvec, KernelPool, QuantizedActs, WeightMatrix, MAX_COLUMNS};

/// The extra ids a reduced head computes besides its prefix, kept by the workspace.
#[derive(Debug)]
pub(crate) struct HeadExtra {
    /// Distinct ids, in the order given, `< vocab` (capacity `vocab`: never reallocates).
    ids: Vec<u32>,
    /// One bit per vocabulary id: whether it is in `ids`.
    seen: Vec<u64>,
}

impl HeadExtra {
    /// Room for every id of a `vocab`-sized vocabulary.
    pub fn new(vocab: usize) -> HeadExtra {
        HeadExtra { ids: Vec::with_capacity(vocab), seen: vec![0; vocab.div_ceil(64)] }
    }

    /// Replace the set by `ids` (duplicates dropped). Fails, leaving the set empty, on an id
    /// outside the vocabulary.
    pub fn set(&mut self, ids: &[u32], vocab: usize) -> Result<()> {
        self.clear();
        for &id in ids {
            let i = id as usize;
            if i >= vocab {
                self.clear();
                return Err(Error::invalid(format!("token id {id} is outside the vocabulary of {vocab}")));
            }
            let (w, bit) = (i / 64, 1u64 << (i % 64));
            if let Some(word) = self.seen.get_mut(w) {
                if *word & bit == 0 {
                    *word |= bit;
                    self.ids.push(id);
                }
            }
        }
        Ok(())
    }

    fn clear(&mut self) {
        for &id in &self.ids {
            if let Some(word) = self.seen.get_mut(id as usize / 64) {
                *word = 0;
            }
        }
        self.ids.clear();
    }

    /// The ids.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}

/// Logits of the head `head` (all `vocab` rows) for `rows` activation columns in `acts`, into
/// `logits` (`(rows, vocab)`), computing only ids `[0, prefix)` (`prefix` ≤ vocab) and
/// `extra`; every other entry is `-inf`. `softcap` is applied to the computed entries only.
pub(crate) fn reduced_head(
    pool: &KernelPool,
    head: &WeightMatrix<'_>,
    prefix_rows: &WeightMatrix<'_>,
    extra: &[u32],
    acts: &QuantizedActs,
    softcap: Option<f32>,
    logits: &mut [f32],
) -> Result<()> {
    let vocab = head.rows();
    let prefix = prefix_rows.rows();
    let rows = acts.b();
    if prefix > vocab || logits.len() != rows * vocab || rows > MAX_COLUMNS {
        return Err(Error::internal("reduced head: shapes do not match"));
    }
    let cap = |v: f32| softcap.map_or(v, |c| c * (v / c).tanh());
    // The prefix mat-vec writes `(rows, prefix)` contiguously; spread it to rows of `vocab`,
    // last row first so no row overwrites one not yet moved (row j moves from j·prefix to
    // j·vocab ≥ j·prefix, beyond every earlier row's source).
    matvec(pool, prefix_rows, acts, &mut logits[..rows * prefix])?;
    for j in (0..rows).rev() {
        logits.copy_within(j * prefix..(j + 1) * prefix, j * vocab);
        let row = &mut logits[j * vocab..(j + 1) * vocab];
        if softcap.is_some() {
            row[..prefix].iter_mut().for_each(|v| *v = cap(*v));
        }
        row[prefix..].fill(f32::NEG_INFINITY);
    }
    let kernels = pool.kernels();
    let mut one = [0f32; MAX_COLUMNS];
    for &id in extra {
        let id = id as usize;
        if id < prefix {
            continue;
        }
        if id >= vocab {
            return Err(Error::internal("reduced head: extra id outside the vocabulary"));
        }
        kernels.dot_rows(head, id..id + 1, acts, &mut one[..rows])?;
        for (j, &v) in one[..rows].iter().enumerate() {
            logits[j * vocab + id] = cap(v);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_set_dedups_and_validates() {
        let mut e = HeadExtra::new(100);
        e.set(&[5, 7, 5, 99], 100).unwrap();
        assert_eq!(e.ids(), &[5, 7, 99]);
        e.set(&[7, 3], 100).unwrap();
        assert_eq!(e.ids(), &[7, 3]);
        assert!(e.set(&[1, 100], 100).is_err());
        assert!(e.ids().is_empty());
        e.set(&[5], 100).unwrap();
        assert_eq!(e.ids(), &[5]);
    }
}
