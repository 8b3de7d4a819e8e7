//! The candidate self-derived drafters of a model: early-exit depths, drafter-head vocabularies,
//! skip sets, confidence thresholds and cache-resident masks, with the weight bytes each draft
//! step reads. Pure data about the model (no decoding): the measured search that ranks them is
//! `tune`'s (`tune::self_spec_search`).

use crate::error::{Error, Result};
use crate::model::{Model, SkipSet, SubLayer};

use super::self_spec::{SelfSpecParams, DEFAULT_HEAD_VOCAB};

/// Share of the last-level cache a cache-resident drafter may fill (the rest holds the KV
/// cache, activations and whatever else runs).
const LLC_SHARE: f64 = 0.75;

/// One configuration to measure.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// Short name for the table.
    pub name: String,
    /// The drafter's parameters.
    pub params: SelfSpecParams,
}

/// The size of the last-level (L3) cache, from `/sys` (`None` where it says nothing).
pub fn last_level_cache_bytes() -> Option<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cache/index3/size").ok()?;
    parse_cache_size(text.trim())
}

/// `32768K`, `32M`, `1048576` → bytes.
fn parse_cache_size(s: &str) -> Option<usize> {
    let (digits, mult) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    digits.trim().parse::<usize>().ok().map(|n| n * mult)
}

/// Weight bytes of the sub-layers and head of a model, from its tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelBytes {
    /// Per layer: (attention, MLP) bytes, norms and biases included.
    pub layers: Vec<(usize, usize)>,
    /// Bytes of one row of the output head.
    pub head_row: usize,
    /// Rows of the output head (the vocabulary).
    pub head_rows: usize,
}

impl ModelBytes {
    /// Read the sizes from `model`'s tensor table.
    pub fn of(model: &Model) -> Result<ModelBytes> {
        let file = model.file();
        let n_layers = model.config().n_layers;
        let mut layers = vec![(0usize, 0usize); n_layers];
        for t in file.tensors() {
            let Some(rest) = t.name.strip_prefix("blk.") else { continue };
            let Some((l, name)) = rest.split_once('.') else { continue };
            let Some(slot) = l.parse::<usize>().ok().and_then(|l| layers.get_mut(l)) else { continue };
            if name.starts_with("ffn") || name.starts_with("post_ffw") {
                slot.1 += t.n_bytes as usize;
            } else {
                slot.0 += t.n_bytes as usize;
            }
        }
        let head = file
            .tensor("output.weight")
            .or_else(|| file.tensor("token_embd.weight"))
            .ok_or_else(|| Error::format("the model has no output head"))?;
        let head_rows = model.config().vocab_size;
        Ok(ModelBytes { layers, head_row: head.n_bytes as usize / head_rows.max(1), head_rows })
    }

    /// Bytes a full pass reads.
    pub fn full(&self) -> usize {
        self.layers.iter().map(|(a, m)| a + m).sum::<usize>() + self.head_row * self.head_rows
    }

    /// Bytes a draft step with `p` reads (the reduced head's extra rows not counted: a few
    /// hundred at most).
    pub fn draft(&self, p: &SelfSpecParams) -> usize {
        let last = p.exit_after.unwrap_or(usize::MAX);
        let body: usize = self
            .layers
            .iter()
            .enumerate()
            .filter(|(l, _)| *l <= last)
            .map(|(l, (a, m))| {
                let a = if p.skip.contains(l, SubLayer::Attention) { 0 } else { *a };
                let m = if p.skip.contains(l, SubLayer::Mlp) { 0 } else { *m };
                a + m
            })
            .sum();
        let rows = p.head_vocab.map_or(self.head_rows, |v| (v as usize).clamp(1, self.head_rows));
        body + rows * self.head_row
    }
}

fn params(skip: SkipSet, exit: Option<usize>, head_vocab: Option<u32>, conf: u16) -> SelfSpecParams {
    SelfSpecParams { skip, exit_after: exit, min_confidence_milli: conf, head_vocab, always_draft: true }
}

/// The largest working set a cache-resident drafter may have, for a cache of `llc` bytes.
fn resident_budget(llc: usize) -> usize {
    (llc as f64 * LLC_SHARE) as usize
}

/// The default candidate list for `model`: early-exit depths, drafter-head vocabularies,
/// layer-skip sets of increasing size (middle attention first, then middle MLPs: early
/// attention and early MLPs matter most), confidence thresholds and — when `llc` is known —
/// two cache-resident masks (the deepest early exit whose layers and reduced head fit in a
/// share of the cache, and the first layers plus the last one under the same bound). All
/// candidates but the two cost-gated presets (listed first) draft every step (`always_draft`).
pub fn candidates(model: &Model, llc: Option<usize>) -> Result<Vec<Candidate>> {
    let n = model.config().n_layers;
    let bytes = ModelBytes::of(model)?;
    let v = Some(DEFAULT_HEAD_VOCAB);
    let mut out = Vec::new();
    let mut add = |name: String, p: SelfSpecParams| {
        if !out.iter().any(|c: &Candidate| c.params == p) {
            out.push(Candidate { name, params: p });
        }
    };
    // The cost-gated presets as the strategies ship them first (quick where they decline, and
    // the "don't draft" baseline a tuner needs even when the budget cuts the list short).
    add("preset self-spec (cost-gated)".into(), SelfSpecParams::layer_skip(n)?);
    add("preset early-exit (cost-gated)".into(), SelfSpecParams::early_exit(n.div_ceil(2))?);
    // The whole model with the reduced head only: what the head alone costs in acceptance.
    add(format!("no skip V={DEFAULT_HEAD_VOCAB}"), params(SkipSet::none(), None, v, 500));
    // Early exit at several depths, reduced head.
    for e in [2, 3, 4, 6, 8, 10, 12, 15] {
        if e < n {
            add(format!("exit E={e}"), params(SkipSet::none(), Some(e - 1), v, 500));
        }
    }
    // Head vocabularies at one depth.
    let e = 4.min(n);
    for hv in [None, Some(4096), Some(8192), Some(32768)] {
        let name = hv.map_or("full head".into(), |h| format!("V={h}"));
        add(format!("exit E={e} {name}"), params(SkipSet::none(), Some(e - 1), hv, 500));
    }
    // Confidence thresholds.
    for conf in [0, 300, 700] {
        add(format!("exit E={e} conf {conf}"), params(SkipSet::none(), Some(e - 1), v, conf));
    }
    // A few attention sub-layers (each α 0.90–0.98 alone in the measurements), from
    // the late-middle layers outward, with the full model otherwise.
    for k in [4, 8, 14] {
        let mut s = SkipSet::none();
        for l in (2..n.saturating_sub(1)).rev().skip(2).take(k) {
            s.insert(l, SubLayer::Attention)?;
        }
        add(format!("skip {k} late attn"), params(s, None, v, 500));
    }
    for hv in [4096, 8192] {
        add(format!("no skip V={hv}"), params(SkipSet::none(), None, Some(hv), 500));
    }
    // Layer skipping, increasing: attention of the middle layers, then middle MLPs.
    let mid = 2..n.saturating_sub(1);
    let mut attn = SkipSet::none();
    for l in mid.clone() {
        attn.insert(l, SubLayer::Attention)?;
    }
    add("skip mid attn".into(), params(attn, None, v, 500));
    for step in [4, 2, 1] {
        let mut s = attn;
        for l in (n / 4..3 * n / 4).step_by(step) {
            s.insert(l, SubLayer::Mlp)?;
        }
        add(format!("skip mid attn + MLP every {step} (n/4..3n/4)"), params(s, None, v, 500));
    }
    let mut mlp_late = attn;
    for l in n / 3..n.saturating_sub(1) {
        mlp_late.insert(l, SubLayer::Mlp)?;
    }
    add("skip mid attn + MLPs n/3..n-1".into(), params(mlp_late, None, v, 500));
    // Cache-resident masks.
    if let Some(llc) = llc {
        let budget = resident_budget(llc);
        for hv in [4096u32, 8192, DEFAULT_HEAD_VOCAB] {
            let fits = |p: &SelfSpecParams| bytes.draft(p) <= budget;
            if let Some(e) =
                (1..n).rev().find(|&e| fits(&params(SkipSet::none(), Some(e - 1), Some(hv), 500)))
            {
                add(format!("LLC exit E={e} V={hv}"), params(SkipSet::none(), Some(e - 1), Some(hv), 500));
            }
            // First k layers plus the last one (the rest skipped).
            let first_plus_last = |k: usize| -> Result<SelfSpecParams> {
                let mut s = SkipSet::none();
                for l in k..n.saturating_sub(1) {
                    s.insert(l, SubLayer::Attention)?;
                    s.insert(l, SubLayer::Mlp)?;
                }
                Ok(params(s, None, Some(hv), 500))
            };
            let mut best = None;
            for k in 1..n.saturating_sub(1) {
                let p = first_plus_last(k)?;
                if fits(&p) {
                    best = Some((k, p));
                }
            }
            if let Some((k, p)) = best {
                add(format!("LLC first {k} + last layer V={hv}"), p);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes_parse() {
        assert_eq!(parse_cache_size("32768K"), Some(32 << 20));
        assert_eq!(parse_cache_size("8M"), Some(8 << 20));
        assert_eq!(parse_cache_size("1024"), Some(1024));
        assert_eq!(parse_cache_size("x"), None);
        assert_eq!(parse_cache_size(""), None);
    }
}
