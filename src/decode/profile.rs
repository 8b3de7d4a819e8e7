//! The tuned profile: what `edgespec tune` measured and chose for a model on this machine
//! (`<model>.tune.json` beside the model, or the one shipped for a catalog model), and the rule by
//! which decoding trusts it. `auto` ([`super::AutoDrafter::from_profile`]) reads it to decide
//! which drafters pay; `tune` writes it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::model::{SkipSet, SubLayer, MAX_LAYERS};

use super::heads::profile_path;
use super::heads::TrainReport;
use super::self_spec::SelfSpecParams;

/// What tuning measured and chose (also saved as the profile, JSON).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TuneReport {
    /// The model file's name.
    pub model: String,
    /// Heads, their rank, the reduced vocabulary, the seed.
    pub heads: usize,
    pub rank: usize,
    pub vocab: usize,
    pub seed: u64,
    /// How drafts are cut: by the expected gain under the measured verify cost.
    pub draft_rule: String,
    /// Calibration sequences used.
    pub sequences: usize,
    /// What training measured: samples, steps, losses, held-out α per head.
    #[serde(flatten)]
    pub train: TrainReport,
    /// Decode tokens/s on the measurement prompts, plain and with the heads, and their ratio.
    pub plain_tokens_per_s: f64,
    pub heads_tokens_per_s: f64,
    pub speedup: f64,
    /// Decode tokens/s drafting chains and token trees, and the width chosen (1: chain).
    pub chain_tokens_per_s: f64,
    pub tree_tokens_per_s: f64,
    pub width: usize,
    /// With the heads: tokens per forward pass and the share of drafted tokens accepted.
    pub heads_tokens_per_pass: f64,
    pub heads_acceptance: f64,
    /// With the heads: the share of decode time spent drafting (running the heads).
    pub heads_draft_share: f64,
    /// Whether the heads' output equalled plain decoding's on every measurement prompt.
    pub greedy_equal: bool,
    /// Seconds per stage, and in all.
    pub stage_seconds: Vec<(String, f64)>,
    pub total_seconds: f64,
    /// The self-speculation search: variants measured, the best one's name and speedup over
    /// its paired plain runs, whether it paid (by more than 5%), and the whole table (Markdown).
    pub self_spec_variants: usize,
    pub self_spec_best: String,
    pub self_spec_best_speedup: f64,
    pub self_spec_pays: bool,
    /// The paying variant's parameters (what `auto` drafts with; absent when none paid, and in
    /// profiles written before they were recorded).
    #[serde(default)]
    pub self_spec_params: Option<SelfSpecChoice>,
    pub self_spec_table: String,
    /// Tokens in the corpus of the model's replies (what `auto`'s lookup drafts from where the
    /// context has no match).
    pub corpus_tokens: usize,
    /// Where the heads, the corpus and the profile were written.
    pub corpus_file: String,
    pub heads_file: String,
    pub profile_file: String,
    /// The eagle drafter's training (held-out acceptance), whether it was saved, and where.
    pub eagle: super::eagle::EagleReport,
    pub eagle_saved: bool,
    pub eagle_file: String,
    /// Whether the self-speculation search was skipped (no time left in the budget).
    pub self_spec_skipped: bool,
    /// Set when the drafters saved earlier measured better than this run's, which were then not
    /// saved: what was kept and why.
    pub kept_previous: String,
}

/// How much faster than plain decoding a tuned drafter must have measured for `auto` to use it.
pub const PAYS_MARGIN: f64 = 0.05;

/// A self-derived drafter's parameters as the profile stores them (the skip set as layer lists),
/// so `auto` rebuilds exactly the variant `tune` measured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfSpecChoice {
    /// Layers whose attention sub-layer the drafter skips.
    pub skip_attention: Vec<usize>,
    /// Layers whose MLP sub-layer the drafter skips.
    pub skip_mlp: Vec<usize>,
    /// Exit after this layer (0-based), if any.
    pub exit_after: Option<usize>,
    /// Confidence threshold in thousandths.
    pub min_confidence_milli: u16,
    /// Reduced drafter-head vocabulary, if any.
    pub head_vocab: Option<u32>,
    /// Whether it drafts every step regardless of the cost model.
    pub always_draft: bool,
}

impl SelfSpecChoice {
    /// The stored form of `p`.
    pub fn of(p: &SelfSpecParams) -> SelfSpecChoice {
        let layers = |w| (0..MAX_LAYERS).filter(|&l| p.skip.contains(l, w)).collect();
        SelfSpecChoice {
            skip_attention: layers(SubLayer::Attention),
            skip_mlp: layers(SubLayer::Mlp),
            exit_after: p.exit_after,
            min_confidence_milli: p.min_confidence_milli,
            head_vocab: p.head_vocab,
            always_draft: p.always_draft,
        }
    }

    /// The parameters for a model of `n_layers` layers; an error when a layer is out of range.
    pub fn params(&self, n_layers: usize) -> Result<SelfSpecParams> {
        let mut skip = SkipSet::none();
        for (layers, w) in [(&self.skip_attention, SubLayer::Attention), (&self.skip_mlp, SubLayer::Mlp)] {
            for &l in layers {
                if l >= n_layers {
                    return Err(Error::format(format!(
                        "the profile skips layer {l} of a model with {n_layers} layers"
                    )));
                }
                skip.insert(l, w)?;
            }
        }
        if self.exit_after.is_some_and(|e| e >= n_layers) {
            return Err(Error::format(format!(
                "the profile exits after layer {:?} of {n_layers}",
                self.exit_after
            )));
        }
        Ok(SelfSpecParams {
            skip,
            exit_after: self.exit_after,
            min_confidence_milli: self.min_confidence_milli,
            head_vocab: self.head_vocab,
            always_draft: self.always_draft,
        })
    }
}

impl TuneReport {
    /// Whether the draft heads measured faster than plain decoding by more than [`PAYS_MARGIN`].
    pub fn heads_pay(&self) -> bool {
        self.speedup > 1.0 + PAYS_MARGIN
    }
}

/// Profiles `edgespec tune` wrote for the catalog's models on the reference machine (a 2-core
/// x86-64, see `models/profiles/`): settings and measurements, no weights. They stand in for a
/// local profile until `tune` runs here.
const SHIPPED: [&str; 3] = [
    include_str!("../../models/profiles/smollm2-135m.tune.json"),
    include_str!("../../models/profiles/gemma3-270m.tune.json"),
    include_str!("../../models/profiles/qwen2.5-coder-0.5b.tune.json"),
];

/// The shipped profile of the model file named `file_name`, if the catalog has one.
pub fn shipped_profile(file_name: &str) -> Option<TuneReport> {
    SHIPPED
        .iter()
        .filter_map(|text| serde_json::from_str::<TuneReport>(text).ok())
        .find(|p| p.model == file_name)
}

/// The profile `tune` saved beside the model at `model_path`, if there is one that parses.
pub fn load_profile(model_path: &Path) -> Option<TuneReport> {
    read_profile(model_path).ok().flatten()
}

/// The profile `tune` saved beside the model at `model_path`: `None` when there is none, an
/// error naming the file when it cannot be read or does not parse (a damaged profile).
pub fn read_profile(model_path: &Path) -> Result<Option<TuneReport>> {
    read_profile_file(&profile_path(model_path))
}

/// [`read_profile`] of the profile file itself.
pub fn read_profile_file(path: &Path) -> Result<Option<TuneReport>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("ignoring the tuning profile {}", path.display()), e)),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        Error::new(
            ErrorKind::Format,
            format!(
                "ignoring the damaged tuning profile {} ({e}); run `edgespec tune` again",
                path.display()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_spec_choices_round_trip_and_are_checked() {
        let mut skip = SkipSet::none();
        skip.insert(3, SubLayer::Attention).unwrap();
        skip.insert(7, SubLayer::Mlp).unwrap();
        let p = SelfSpecParams {
            skip,
            exit_after: Some(9),
            min_confidence_milli: 300,
            head_vocab: Some(4096),
            always_draft: true,
        };
        let c = SelfSpecChoice::of(&p);
        assert_eq!((c.skip_attention.as_slice(), c.skip_mlp.as_slice()), (&[3][..], &[7][..]));
        let json = serde_json::to_string(&c).unwrap();
        let back: SelfSpecChoice = serde_json::from_str(&json).unwrap();
        assert_eq!(back.params(30).unwrap(), p);
        assert!(back.params(8).is_err(), "layer 9 of an 8-layer model");
    }

    #[test]
    fn shipped_profiles_that_pay_for_self_spec_carry_its_parameters() {
        for text in SHIPPED {
            let p: TuneReport = serde_json::from_str(text).unwrap();
            assert_eq!(p.self_spec_pays, p.self_spec_params.is_some(), "{}", p.model);
        }
    }
}
