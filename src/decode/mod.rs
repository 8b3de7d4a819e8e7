//! Decoding strategies: how the next tokens are found. Every speculative strategy is a
//! [`Drafter`] that proposes tokens and one engine ([`engine`]) that verifies them with the full
//! model in a single batched pass, accepts the verified prefix and rolls the KV cache back.
//!
//! The engine is exact: with greedy settings every strategy emits the tokens plain decoding
//! emits (this rests on the batch invariance of the forward pass), and with sampling the output
//! follows the same distribution (sample-and-match for drafters without probabilities, the
//! Leviathan/Chen rejection rule for drafters with them).

pub mod adaptive;
pub mod auto;
pub mod corpus;
pub mod decoder;
pub mod eagle;
pub mod engine;
pub mod heads;
pub mod lookahead;
pub mod lookup;
pub mod ngram;
pub mod profile;
pub mod self_spec;
pub mod self_spec_candidates;
pub mod tree;
pub mod verify;

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::model::{KvCache, Model, Workspace};
use crate::tokenizer::TokenId;

pub use adaptive::{CostModel, DraftLength};
pub use auto::AutoDrafter;
pub use decoder::{Built, Decoder, Drafting, Setup};
pub use eagle::{EagleDrafter, EagleNet};
pub use engine::DecodeStats;
pub use heads::{DraftHeads, HeadsDrafter};
pub use lookahead::LookaheadDrafter;
pub use lookup::{LookupDrafter, LookupParams};
pub use self_spec::{SelfSpecDrafter, SelfSpecParams};

/// The strategy list, the one place strategies are defined: each entry is a doc comment, the
/// variant, its name (for the CLI, the statistics and the C ABI) and the builder of its drafter
/// (a `fn(&mut Setup) -> Built` in the drafter's own file). An entry's position is its C id
/// (`EdgespecStrategy`), so entries are only ever appended. Adding a strategy is a drafter file
/// and one entry here; [`Strategy`], its names, [`Strategy::ALL`], the CLI's `--strategy` values
/// and the drafter it prepares all follow, and the C enum in `src/ffi/` is checked against this
/// list when compiling.
///
/// `strategy_list!(m)` calls the macro `m` with the list (so the C ABI can check its enum).
macro_rules! strategy_list {
    ($then:ident) => {
        $then! {
            /// One token per forward pass.
            Plain "plain" => decoder::plain;
            /// Prompt-lookup drafting: propose what followed the last matching n-gram of the context.
            Lookup "lookup" => lookup::build;
            /// Self-speculative drafting: the model itself with sub-layers skipped.
            SelfSpec "self-spec" => self_spec::build_layer_skip;
            /// Early-exit drafting: the model's first layers with the head applied there.
            EarlyExit "early-exit" => self_spec::build_early_exit;
            /// Lookahead (Jacobi) decoding: a window of guesses refined in parallel harvests n-grams,
            /// which are verified in the same pass (a token tree).
            Lookahead "lookahead" => lookahead::build;
            /// Choose per step: prompt lookup when it has a reliable match, else the self-derived
            /// drafter when its measured acceptance and cost say it pays, else a plain pass.
            Auto "auto" => auto::build;
            /// Self-distilled draft heads (Medusa-style, trained by `edgespec tune`) on the model's
            /// final hidden state propose the next tokens.
            Heads "heads" => heads::build;
            /// Feature-level drafting (EAGLE-style): a small network distilled by `edgespec tune`
            /// drafts the model's next hidden states autoregressively, scored by its own output matrix.
            Eagle "eagle" => eagle::build;
        }
    };
}
pub(crate) use strategy_list;

/// Defines [`Strategy`] and what follows from the list of [`strategy_list`]: the enum, the names,
/// [`Strategy::ALL`], the descriptions and the drafter builders.
macro_rules! define_strategies {
    ($( $(#[doc = $doc:literal])+ $variant:ident $name:literal => $build:path; )+) => {
        /// How tokens are decoded (the `--strategy` names of the CLI contract), as listed in the
        /// strategy list (`strategy_list!` in `src/decode/mod.rs`); the default is the first,
        /// `plain`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Strategy {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl Strategy {
            /// Every strategy, in the order of the list (an index is a C id).
            pub const ALL: [Strategy; [$(stringify!($variant)),+].len()] = [$(Strategy::$variant),+];

            /// The name used on the command line, in statistics and in the C ABI.
            pub fn name(self) -> &'static str {
                match self {
                    $( Strategy::$variant => $name, )+
                }
            }

            /// What the strategy does, in one paragraph (its documentation; the CLI's help).
            pub fn description(self) -> &'static str {
                match self {
                    $( Strategy::$variant => concat!($($doc),+).trim_ascii(), )+
                }
            }

            /// Build the strategy's drafter (`None` for plain decoding).
            pub fn drafter(self, setup: &mut Setup<'_>) -> Built {
                match self {
                    $( Strategy::$variant => $build(setup), )+
                }
            }
        }
    };
}
strategy_list!(define_strategies);

// An index in `ALL` is the variant's discriminant (the C id).
const _: () = {
    let mut i = 0;
    while i < Strategy::ALL.len() {
        assert!(Strategy::ALL[i] as usize == i);
        i += 1;
    }
};

impl Default for Strategy {
    /// The first of the list: plain decoding.
    fn default() -> Self {
        Strategy::ALL[0]
    }
}

impl Strategy {
    /// The strategy's position in [`Strategy::ALL`] (its C id).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Whether this build can decode with the strategy.
    pub fn is_implemented(self) -> bool {
        true
    }

    /// The strategies this build can decode with.
    pub fn implemented() -> impl Iterator<Item = Strategy> {
        Strategy::ALL.into_iter().filter(|s| s.is_implemented())
    }

    /// `Ok` when implemented, else an `Unsupported` error that names the ones that are.
    pub fn check(self) -> Result<()> {
        if self.is_implemented() {
            return Ok(());
        }
        let names: Vec<&str> = Strategy::implemented().map(Strategy::name).collect();
        Err(Error::unsupported(format!(
            "strategy `{}` is not implemented yet; available: {}",
            self.name(),
            names.join(", ")
        )))
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Strategy> {
        Strategy::ALL.into_iter().find(|st| st.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Strategy::ALL.iter().map(|s| s.name()).collect();
            Error::invalid(format!("unknown strategy `{s}`; expected one of {}", names.join(", ")))
        })
    }
}

/// A drafter's proposal: tokens, and optionally the drafter's distribution at each of them
/// (sparse, `(token, probability)` pairs summing to at most 1; tokens not listed have q = 0).
///
/// A chain by default: each token continues the previous one. With `parents`, a token tree
/// ([`tree`]): token `i` continues `parents[i]` (an earlier token, or with `None` the pending
/// token), so several alternatives are verified in one pass. Trees are verified by
/// sample-and-match (their `probs` are not used).
#[derive(Clone, Debug, Default)]
pub struct Draft {
    /// Proposed continuation of the context (a tree's tokens in topological order).
    pub tokens: Vec<TokenId>,
    /// `q` at each proposed position (empty, or one list per token).
    pub probs: Vec<Vec<(TokenId, f32)>>,
    /// Empty for a chain; else the parent of each token.
    pub parents: Vec<Option<usize>>,
}

impl Draft {
    /// An empty draft with room for `n` tokens.
    pub fn with_capacity(n: usize) -> Draft {
        Draft { tokens: Vec::with_capacity(n), probs: Vec::new(), parents: Vec::with_capacity(n) }
    }

    /// Whether the draft is a tree (`parents` given for every token).
    pub fn is_tree(&self) -> bool {
        !self.parents.is_empty()
    }

    /// Add `tokens` as a branch under the pending token, sharing the prefix it has in common
    /// with the branches already there, as long as the draft holds fewer than `max` tokens.
    /// Turns a chain draft into a tree. Returns how many tokens were added.
    pub fn add_branch(&mut self, tokens: &[TokenId], max: usize) -> usize {
        self.make_tree();
        self.probs.clear();
        tree::insert_branch(&mut self.tokens, &mut self.parents, tokens, max)
    }

    /// Give a chain draft its parents (each token under the one before it), so that rows with
    /// other parents can follow.
    pub fn make_tree(&mut self) {
        if !self.is_tree() {
            self.parents.extend((0..self.tokens.len()).map(|i| i.checked_sub(1)));
        }
    }

    /// Forget the proposal (keeps the buffers).
    pub fn clear(&mut self) {
        self.tokens.clear();
        self.probs.iter_mut().for_each(Vec::clear);
        self.probs.clear();
        self.parents.clear();
    }

    /// Whether the drafter gave its distributions (then the rejection rule applies).
    pub fn has_probs(&self) -> bool {
        !self.probs.is_empty() && self.probs.len() == self.tokens.len()
    }
}

/// What a drafter is given at each step.
pub struct DraftInput<'a> {
    /// Every token of the context: the prompt, the accepted tokens, and last the pending token
    /// (emitted, not yet in the KV cache).
    pub context: &'a [TokenId],
    /// Most tokens to propose as a chain (the adaptive draft length, bounded by what a pass can
    /// take); longer chains are cut to it.
    pub max: usize,
    /// Most tokens a pass can take here (context and batch limits): a tree draft, whose drafter
    /// weighs its rows against their cost itself, may hold up to this many.
    pub room: usize,
    /// What verifying `b` tokens costs on this machine now (to weigh a longer draft against its
    /// chance of being accepted).
    pub cost: &'a CostModel,
    /// The target model, for drafters derived from it (self-speculation, early exit).
    pub model: &'a Model,
    /// Its buffers (free while drafting).
    pub ws: &'a mut Workspace,
    /// Its KV cache, holding the context except the pending token. A drafter that runs the
    /// model writes its own rows for the positions it drafts; verification overwrites them.
    pub cache: &'a mut KvCache,
    /// The model's final hidden state (after the final norm: the head's input), `(dim)`, at the
    /// row that predicted the pending token (after a verify pass the row of the last accepted
    /// token, after a prefill the prompt's last row); `None` when the engine does not have it.
    pub hidden: Option<&'a [f32]>,
}

/// A source of drafted tokens, driven by the engine: asked for up to `max` tokens continuing
/// `context` (every token the model has accepted, prompt included), then told how many were
/// accepted. A drafter never runs the verifier; it keeps whatever index it needs and must cope
/// with a context that was reset or rewritten (compare with what it saw last).
pub trait Drafter: Send {
    /// The strategy's name (for statistics).
    fn name(&self) -> &'static str;

    /// Propose up to `input.max` tokens continuing `input.context` into `out` (cleared by the
    /// caller). An empty proposal makes the step a plain one-token pass.
    fn draft(&mut self, input: &mut DraftInput<'_>, out: &mut Draft) -> Result<()>;

    /// After verification: `accepted` of the `drafted` tokens were taken.
    fn feedback(&mut self, drafted: usize, accepted: usize) {
        let _ = (drafted, accepted);
    }

    /// Whether the fate of the last draft moves the engine's draft-length bound (asked after
    /// verification, before [`feedback`](Drafter::feedback)). `false` for drafts from a source
    /// whose acceptance the drafter tracks apart and sizes itself (auto's corpus drafts), so that
    /// its misses do not cut the length of the drafts that copy the context.
    fn steers_length(&self) -> bool {
        true
    }

    /// Right after the pass over `[pending, draft..]`: its logits, `(1 + draft.tokens.len(),
    /// vocab)` (row 0 after the pending token, row `i + 1` after drafted token `i`, in the tree
    /// context of a tree draft). Lookahead reads its Jacobi window's next guesses here.
    fn observe(&mut self, draft: &Draft, logits: &[f32], vocab: usize) {
        let _ = (draft, logits, vocab);
    }

    /// Forget everything (the context was cleared).
    fn reset(&mut self);

    /// What the drafter chose so far, for statistics (lookahead: its W/N/G configurations and
    /// how many passes used each); `None` when there is nothing to say.
    fn describe(&self) -> Option<String> {
        None
    }
}
