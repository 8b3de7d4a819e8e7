//! Token-tree verification is exact: drafts shaped as trees (random ones around the true
//! continuation, and lookahead decoding's window and pool at every configuration) give plain
//! decoding's tokens with greedy settings and with sampling under the same seed, and leave the
//! KV cache plain decoding leaves — on llama- and gemma3-shaped tiny models (the latter with
//! sliding-window rings shorter than a tree).

use std::sync::Arc;

use edgespec::decode::lookahead::LookaheadConfig;
use edgespec::decode::{Draft, DraftInput, Drafter, LookaheadDrafter, Strategy};
use edgespec::gguf::GgufFile;
use edgespec::model::synthetic::{self, SyntheticSpec};
use edgespec::model::Model;
use edgespec::sampling::{Rng, SamplingParams};
use edgespec::session::{Flow, GenerateParams, GenerationStats, Session, SessionOptions};
use edgespec::tokenizer::TokenId;

fn session(spec: &SyntheticSpec, ctx: usize) -> Session {
    let model =
        Model::from_file(Arc::new(GgufFile::from_bytes(synthetic::build(spec).unwrap()).unwrap())).unwrap();
    Session::new(model, &SessionOptions { threads: Some(2), ctx: Some(ctx), ..Default::default() }).unwrap()
}

fn params(n: usize, sampling: SamplingParams) -> GenerateParams {
    GenerateParams { max_tokens: n, sampling, strategy: Strategy::Plain }
}

fn sampled(seed: u64) -> SamplingParams {
    SamplingParams { temperature: 0.8, top_k: 0, top_p: 1.0, min_p: 0.0, seed, ..Default::default() }
}

fn plain(spec: &SyntheticSpec, ctx: usize, prompt: &str, p: &GenerateParams) -> (Session, Vec<TokenId>) {
    let mut s = session(spec, ctx);
    s.generate(prompt, p, &mut |_| Flow::Continue).unwrap();
    let t = s.tokens().collect();
    (s, t)
}

fn with(
    spec: &SyntheticSpec,
    ctx: usize,
    prompt: &str,
    p: &GenerateParams,
    d: &mut dyn Drafter,
) -> (Session, Vec<TokenId>, GenerationStats) {
    let mut s = session(spec, ctx);
    let st = s.generate_with(prompt, p, d, &mut |_| Flow::Continue).unwrap();
    let t = s.tokens().collect();
    (s, t, st)
}

/// Feeding one more token into both sessions gives bitwise the same logits: same caches.
fn assert_same_cache(a: &mut Session, b: &mut Session, what: &str) {
    a.feed_tokens(&[66]).unwrap();
    b.feed_tokens(&[66]).unwrap();
    let (x, y) = (a.last_logits().unwrap(), b.last_logits().unwrap());
    assert!(x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()), "{what}: caches differ");
}

/// Drafts random trees around the output plain decoding gave: the true continuation on one
/// branch (cut at a random depth, sometimes followed by a wrong token), duplicates of its
/// tokens on shallower branches, and random decoys.
struct OracleTrees {
    truth: Vec<TokenId>,
    rng: Rng,
    vocab: u64,
}

impl OracleTrees {
    fn pick(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n.max(1) as u64) as usize
    }
}

impl Drafter for OracleTrees {
    fn name(&self) -> &'static str {
        "oracle-trees"
    }

    fn draft(&mut self, input: &mut DraftInput<'_>, out: &mut Draft) -> edgespec::Result<()> {
        let at = input.context.len();
        let budget = input.room;
        let push = |out: &mut Draft, t: TokenId, p: Option<usize>| {
            if out.tokens.len() < budget {
                out.tokens.push(t);
                out.parents.push(p);
            }
            out.tokens.len() - 1
        };
        let branches = 1 + self.pick(4);
        let true_at = self.pick(branches);
        for b in 0..branches {
            // The true branch starts at the pending token; others under it or under a random
            // earlier token.
            let mut parent = if b == true_at || out.tokens.is_empty() || self.pick(3) == 0 {
                None
            } else {
                Some(self.pick(out.tokens.len()))
            };
            let len = 1 + self.pick(5);
            for i in 0..len {
                let random = self.pick(self.vocab as usize) as TokenId;
                let tok = if b == true_at {
                    let keep = self.pick(6) != 0;
                    match self.truth.get(at + i) {
                        Some(&t) if keep => t,
                        _ => random,
                    }
                } else if i == 0 && parent.is_none() && self.pick(2) == 0 {
                    // A shallower duplicate of the true next token.
                    self.truth.get(at).copied().unwrap_or(0)
                } else {
                    random
                };
                parent = Some(push(out, tok, parent));
            }
        }
        out.tokens.truncate(budget);
        out.parents.truncate(budget);
        Ok(())
    }

    fn reset(&mut self) {}
}

const PROMPTS: [&str; 3] = ["abc abc abc abc abc", "the cat sat on the mat; the cat sat on the", "xyzzy"];

#[test]
fn random_trees_around_the_truth_give_plain_output() {
    let mut accepted = 0;
    for spec in [SyntheticSpec::llama(31), SyntheticSpec::gemma3(32)] {
        for (i, prompt) in PROMPTS.iter().enumerate() {
            for sp in [SamplingParams::greedy(), sampled(i as u64)] {
                let p = params(70, sp);
                let (mut a, truth) = plain(&spec, 200, prompt, &p);
                let mut d = OracleTrees { truth: truth.clone(), rng: Rng::new(i as u64 + 5), vocab: 200 };
                let (mut b, t, st) = with(&spec, 200, prompt, &p, &mut d);
                assert_eq!(truth, t, "{} / {prompt:?} / {sp:?}", spec.arch);
                assert!(st.accepted_tokens < st.drafted_tokens);
                accepted += st.accepted_tokens;
                assert_same_cache(&mut a, &mut b, spec.arch);
            }
        }
    }
    assert!(accepted > 100, "the trees were walked: {accepted} accepted");
}

#[test]
fn lookahead_at_every_configuration_gives_plain_output() {
    let mut accepted = 0;
    for spec in [SyntheticSpec::llama(33), SyntheticSpec::gemma3(34)] {
        for &cfg in LookaheadDrafter::configs() {
            for (i, prompt) in PROMPTS.iter().enumerate() {
                for sp in [SamplingParams::greedy(), sampled(7 + i as u64)] {
                    let p = params(60, sp);
                    let (mut a, truth) = plain(&spec, 160, prompt, &p);
                    let mut d = LookaheadDrafter::fixed(160, cfg).unwrap();
                    let (mut b, t, st) = with(&spec, 160, prompt, &p, &mut d);
                    assert_eq!(truth, t, "{} {cfg:?} / {prompt:?} / {sp:?}", spec.arch);
                    accepted += st.accepted_tokens;
                    assert_same_cache(&mut a, &mut b, spec.arch);
                }
            }
        }
    }
    assert!(accepted > 50, "lookahead drafts were accepted: {accepted}");
}

#[test]
fn lookahead_near_the_context_end_and_on_continuations_matches_plain() {
    let spec = SyntheticSpec::gemma3(35);
    let cfg = LookaheadConfig { w: 5, n: 3, g: 3 };
    for ctx in [9, 14, 23, 40] {
        let p = params(100, SamplingParams::greedy());
        let (mut a, truth) = plain(&spec, ctx, "abab", &p);
        let mut d = LookaheadDrafter::fixed(ctx, cfg).unwrap();
        let (mut b, t, _) = with(&spec, ctx, "abab", &p, &mut d);
        assert_eq!(truth, t, "ctx {ctx}");
        if a.context_used() + 2 < ctx {
            assert_same_cache(&mut a, &mut b, "near the end");
        }
    }
    // A second generation on the same session continues the same context.
    let p = params(40, SamplingParams::greedy());
    let (mut a, _) = plain(&spec, 200, PROMPTS[1], &p);
    let mut d = LookaheadDrafter::fixed(200, cfg).unwrap();
    let (mut b, ..) = with(&spec, 200, PROMPTS[1], &p, &mut d);
    a.generate(" and", &p, &mut |_| Flow::Continue).unwrap();
    b.generate_with(" and", &p, &mut d, &mut |_| Flow::Continue).unwrap();
    assert_eq!(a.tokens().collect::<Vec<_>>(), b.tokens().collect::<Vec<_>>());
}

/// Drafts the true continuation twice under the pending token: first a copy of its next token
/// leading into a deeper wrong subtree, then the true branch. Both copies of the first token
/// stand for the same context, so the walk must accept along the true branch.
struct DuplicateFirst {
    truth: Vec<TokenId>,
}

impl Drafter for DuplicateFirst {
    fn name(&self) -> &'static str {
        "duplicate-first"
    }

    fn draft(&mut self, input: &mut DraftInput<'_>, out: &mut Draft) -> edgespec::Result<()> {
        let at = input.context.len();
        let Some(truth) = self.truth.get(at..at + 3) else { return Ok(()) };
        if input.room < 7 {
            return Ok(());
        }
        // Decoy: truth[0] then three tokens that are not the truth.
        for (i, off) in [0usize, 1, 2, 3].into_iter().enumerate() {
            let tok = if i == 0 { truth[0] } else { truth[off.min(2)] + 1 };
            out.tokens.push(tok);
            out.parents.push(i.checked_sub(1));
        }
        // The true branch, a second copy of truth[0] first.
        for (i, &t) in truth.iter().enumerate() {
            out.tokens.push(t);
            out.parents.push(if i == 0 { None } else { Some(out.tokens.len() - 2) });
        }
        Ok(())
    }

    fn reset(&mut self) {}
}

#[test]
fn a_copy_of_a_drafted_token_does_not_hide_the_branch_that_is_right() {
    let spec = SyntheticSpec::llama(36);
    let p = params(40, SamplingParams::greedy());
    let (_, truth) = plain(&spec, 160, PROMPTS[1], &p);
    let mut d = DuplicateFirst { truth: truth.clone() };
    let (_, t, st) = with(&spec, 160, PROMPTS[1], &p, &mut d);
    assert_eq!(t, truth);
    // Every draft (seven rows) is accepted three tokens deep (the decoy's depth would give one).
    assert!(st.drafted_tokens >= 7 * 4, "drafts were made: {st:?}");
    assert_eq!(st.accepted_tokens * 7, st.drafted_tokens * 3, "{st:?}");
}
