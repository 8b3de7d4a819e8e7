//! The speculative engine is exact: every strategy emits plain decoding's tokens (greedy, and
//! sampling with the same seed under sample-and-match), the rejection rule keeps the sampling
//! distribution (chi-square against plain sampling), and the KV cache after any sequence of
//! accepted and rejected drafts is the cache plain decoding leaves.

use std::sync::Arc;

use edgespec::decode::{Draft, DraftInput, Drafter, Strategy};
use edgespec::gguf::GgufFile;
use edgespec::model::synthetic::{self, SyntheticSpec};
use edgespec::model::{KvType, Model};
use edgespec::sampling::{Rng, SamplingParams};
use edgespec::session::{Flow, GenerateParams, GenerationStats, Session, SessionOptions};
use edgespec::tokenizer::TokenId;

fn session(spec: &SyntheticSpec, ctx: usize) -> Session {
    session_kv(spec, ctx, KvType::F16)
}

fn session_kv(spec: &SyntheticSpec, ctx: usize, kv_type: KvType) -> Session {
    let model =
        Model::from_file(Arc::new(GgufFile::from_bytes(synthetic::build(spec).unwrap()).unwrap())).unwrap();
    let opts = SessionOptions { threads: Some(2), ctx: Some(ctx), kv_type, ..Default::default() };
    Session::new(model, &opts).unwrap()
}

fn params(n: usize, sampling: SamplingParams, strategy: Strategy) -> GenerateParams {
    GenerateParams { max_tokens: n, sampling, strategy }
}

/// Generate and return (all context tokens afterwards, text, stats).
fn gen(s: &mut Session, prompt: &str, p: &GenerateParams) -> (Vec<TokenId>, String, GenerationStats) {
    let mut text = String::new();
    let st = s
        .generate(prompt, p, &mut |piece| {
            text.push_str(piece);
            Flow::Continue
        })
        .unwrap();
    (s.tokens().collect(), text, st)
}

/// The speculative strategies built so far.
const STRATEGIES: [Strategy; 5] =
    [Strategy::Lookup, Strategy::SelfSpec, Strategy::EarlyExit, Strategy::Lookahead, Strategy::Auto];

const PROMPTS: [&str; 4] = [
    "abc abc abc abc abc",
    "the cat sat on the mat; the cat sat on the",
    "xyzzy",
    "one two three four five six seven eight nine ten one two three",
];

#[test]
fn speculative_greedy_emits_plain_tokens_and_leaves_the_same_cache() {
    let (mut drafted, mut accepted, mut rejections) = (0, 0, 0);
    for spec in [SyntheticSpec::llama(1), SyntheticSpec::llama(2), SyntheticSpec::gemma3(3)] {
        for (prompt, strategy) in PROMPTS.iter().flat_map(|p| STRATEGIES.map(|s| (p, s))) {
            let mut plain = session(&spec, 200);
            let mut look = session(&spec, 200);
            let (pt, ptext, ps) =
                gen(&mut plain, prompt, &params(90, SamplingParams::greedy(), Strategy::Plain));
            let (lt, ltext, ls) = gen(&mut look, prompt, &params(90, SamplingParams::greedy(), strategy));
            assert_eq!(pt, lt, "{strategy} on {} / {prompt:?}: tokens differ", spec.arch);
            assert_eq!(ptext, ltext);
            assert_eq!((ps.generated_tokens, ps.stop), (ls.generated_tokens, ls.stop));
            assert_eq!(ps.drafted_tokens, 0);
            assert!(ls.forward_passes <= ps.forward_passes);
            for st in [&ps, &ls] {
                // The counts are the engine's: every decode pass, by size; the prefill's passes
                // before them; the prefill's last pass gave the first token.
                let by_batch: u32 = st.passes_by_batch.iter().sum();
                assert_eq!(st.decode_passes, by_batch as usize);
                assert!(st.decode_passes < st.forward_passes);
                let per_pass = st.generated_tokens as f64 / (st.decode_passes + 1) as f64;
                assert_eq!(st.mean_accepted_per_pass, per_pass);
            }
            assert_eq!(ps.decode_passes + 1, ps.generated_tokens, "plain: one token per pass");
            drafted += ls.drafted_tokens;
            accepted += ls.accepted_tokens;
            rejections += usize::from(ls.accepted_tokens < ls.drafted_tokens);
            // The caches hold the same rows: one more token gives bitwise the same logits.
            plain.feed_tokens(&[65]).unwrap();
            look.feed_tokens(&[65]).unwrap();
            let (a, b) = (plain.last_logits().unwrap(), look.last_logits().unwrap());
            assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "caches differ");
            // A second generation on the same context (chat-like continuation) agrees too.
            let (pt, ..) = gen(&mut plain, " and", &params(30, SamplingParams::greedy(), Strategy::Plain));
            let (lt, ..) = gen(&mut look, " and", &params(30, SamplingParams::greedy(), strategy));
            assert_eq!(pt, lt, "{strategy}: continuation differs");
        }
    }
    assert!(accepted > 20, "the drafts were exercised: {accepted} of {drafted} accepted");
    assert!(accepted < drafted && rejections > 0, "rejections were exercised too");
}

#[test]
fn speculative_greedy_with_a_q8_0_cache_emits_plain_tokens() {
    // Verification over 8-bit keys and values is as batch-invariant as over f16 ones.
    let mut drafted = 0;
    for spec in [SyntheticSpec { head_dim: 32, ..SyntheticSpec::llama(6) }, SyntheticSpec::gemma3(6)] {
        for (prompt, strategy) in PROMPTS[..2].iter().flat_map(|p| STRATEGIES.map(|s| (p, s))) {
            let greedy = |s| params(60, SamplingParams::greedy(), s);
            let (pt, ..) = gen(&mut session_kv(&spec, 160, KvType::Q8_0), prompt, &greedy(Strategy::Plain));
            let (lt, _, ls) = gen(&mut session_kv(&spec, 160, KvType::Q8_0), prompt, &greedy(strategy));
            assert_eq!(pt, lt, "{strategy} on {} / {prompt:?} with a q8_0 cache", spec.arch);
            drafted += ls.drafted_tokens;
        }
    }
    assert!(drafted > 0);
}

#[test]
fn sample_and_match_with_the_same_seed_is_plain_sampling() {
    // Sample-and-match spends one draw per emitted token, as plain sampling does.
    let spec = SyntheticSpec::llama(4);
    let mut drafted = 0;
    for seed in 0..6 {
        let sp =
            SamplingParams { temperature: 0.7, top_k: 0, top_p: 1.0, min_p: 0.0, seed, ..Default::default() };
        let (pt, ..) = gen(&mut session(&spec, 256), PROMPTS[1], &params(80, sp, Strategy::Plain));
        for strategy in STRATEGIES {
            let (lt, _, ls) = gen(&mut session(&spec, 256), PROMPTS[1], &params(80, sp, strategy));
            assert_eq!(pt, lt, "{strategy}, seed {seed}");
            drafted += ls.drafted_tokens;
        }
    }
    assert!(drafted > 0);
}

#[test]
fn context_limits_and_cancellation_match_plain() {
    let spec = SyntheticSpec::llama(5);
    for ctx in [8, 12, 17, 30] {
        let mut a = session(&spec, ctx);
        let mut b = session(&spec, ctx);
        let (pt, _, ps) = gen(&mut a, "abab", &params(100, SamplingParams::greedy(), Strategy::Plain));
        for strategy in STRATEGIES {
            b.reset();
            let (lt, _, ls) = gen(&mut b, "abab", &params(100, SamplingParams::greedy(), strategy));
            assert_eq!(pt, lt, "{strategy}, ctx {ctx}");
            assert_eq!((ps.stop, ps.context_used), (ls.stop, ls.context_used));
        }
    }
    // Stopping from the callback after n pieces leaves the same context.
    for n in [1, 3, 7] {
        let run = |strategy| {
            let mut s = session(&spec, 128);
            let mut pieces = 0;
            let st = s
                .generate("abcabcabc", &params(60, SamplingParams::greedy(), strategy), &mut |_| {
                    pieces += 1;
                    if pieces == n {
                        Flow::Stop
                    } else {
                        Flow::Continue
                    }
                })
                .unwrap();
            (s.tokens().collect::<Vec<_>>(), st.stop, st.generated_tokens)
        };
        for strategy in STRATEGIES {
            assert_eq!(run(Strategy::Plain), run(strategy), "{strategy}: stop after {n}");
        }
    }
}

/// A drafter that draws its tokens from a fixed distribution q: most of the mass on `favoured`
/// tokens (likely ones, so that drafts are both accepted and rejected and the residual
/// max(0, p − q) differs much from p), the rest spread over the vocabulary.
struct RandomDrafter {
    rng: Rng,
    vocab: u32,
    len: usize,
    favoured: Vec<TokenId>,
}

impl Drafter for RandomDrafter {
    fn name(&self) -> &'static str {
        "random"
    }

    fn draft(&mut self, input: &mut DraftInput<'_>, out: &mut Draft) -> edgespec::Result<()> {
        for _ in 0..self.len.min(input.max) {
            // q: a few tokens with random weights; the drafted token is drawn from q.
            let mut q: Vec<(TokenId, f32)> = (0..self.vocab).map(|t| (t, 1.0)).collect();
            for &t in &self.favoured {
                q[t as usize].1 += self.vocab as f32 / 2.0;
            }
            let z: f32 = q.iter().map(|e| e.1).sum();
            q.iter_mut().for_each(|e| e.1 /= z);
            let u = self.rng.next_f64() as f32;
            let mut acc = 0.0;
            let pick = q.iter().find(|e| {
                acc += e.1;
                u < acc
            });
            out.tokens.push(pick.unwrap_or(&q[0]).0);
            out.probs.push(q);
        }
        Ok(())
    }

    fn reset(&mut self) {}
}

/// Chi-square statistic of two samples over the same categories, and its degrees of freedom.
fn chi_square(a: &[usize], b: &[usize]) -> (f64, usize) {
    let (na, nb) = (a.iter().sum::<usize>() as f64, b.iter().sum::<usize>() as f64);
    let (mut stat, mut cells) = (0.0, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        let tot = (x + y) as f64;
        if tot < 10.0 {
            continue;
        }
        let (ea, eb) = (tot * na / (na + nb), tot * nb / (na + nb));
        stat += (x as f64 - ea).powi(2) / ea + (y as f64 - eb).powi(2) / eb;
        cells += 1;
    }
    (stat, cells.saturating_sub(1))
}

/// The 0.999 quantile of chi-square with `df` degrees of freedom (Wilson–Hilferty).
fn chi2_crit(df: usize) -> f64 {
    let k = df as f64;
    let z = 3.09;
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

#[test]
fn speculative_sampling_keeps_the_distribution() {
    let spec = SyntheticSpec::llama(6);
    let vocab = synthetic::vocab_size();
    let sp = |seed| SamplingParams {
        temperature: 1.3,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        seed,
        ..Default::default()
    };
    let n_seeds = 2500u64;
    // The 2nd and 3rd generated tokens come from verification (the 1st from the prompt's pass).
    let tail = |s: &mut Session, prompt_len: usize| -> (usize, usize) {
        // A generation that ended early (end-of-generation token) counts as category `vocab`.
        let t: Vec<TokenId> = s.tokens().collect();
        let at = |i: usize| t.get(i).map_or(vocab, |&x| x as usize);
        (at(prompt_len + 1), at(prompt_len + 2))
    };
    let mut plain = session(&spec, 64);
    let mut spec_s = session(&spec, 64);
    let mut look = session(&spec, 64);
    let prompt = "the cat sat on the";
    let plen = plain.tokenizer().encode(prompt, true, true).len();
    let cats = vocab + 1;
    let mut counts = [vec![0usize; cats * 2], vec![0usize; cats * 2], vec![0usize; cats * 2]];
    let (mut drafted, mut accepted) = (0, 0);
    for seed in 0..n_seeds {
        plain.reset();
        gen(&mut plain, prompt, &params(4, sp(seed), Strategy::Plain));
        let (a, b) = tail(&mut plain, plen);
        counts[0][a] += 1;
        counts[0][cats + b] += 1;

        look.reset();
        gen(&mut look, prompt, &params(4, sp(seed + 2_000_000), Strategy::Lookup));
        let (a, b) = tail(&mut look, plen);
        counts[2][a] += 1;
        counts[2][cats + b] += 1;
    }
    // The drafter favours the tokens plain sampling emits most.
    let mut by_count: Vec<usize> = (0..vocab).collect();
    by_count.sort_by_key(|&t| std::cmp::Reverse(counts[0][t] + counts[0][cats + t]));
    let favoured = by_count[..4].iter().map(|&t| t as TokenId).collect();
    let mut drafter = RandomDrafter { rng: Rng::new(99), vocab: vocab as u32, len: 3, favoured };
    for seed in 0..n_seeds {
        spec_s.reset();
        let p = params(4, sp(seed + 1_000_000), Strategy::Plain);
        let st = spec_s.generate_with(prompt, &p, &mut drafter, &mut |_| Flow::Continue).unwrap();
        drafted += st.drafted_tokens;
        accepted += st.accepted_tokens;
        let (a, b) = tail(&mut spec_s, plen);
        counts[1][a] += 1;
        counts[1][cats + b] += 1;
    }
    assert!(accepted > 100 && accepted < drafted, "rejection rule exercised: {accepted}/{drafted}");
    for (which, c) in [("rejection rule", &counts[1]), ("lookup (sample-and-match)", &counts[2])] {
        for part in [0..cats, cats..2 * cats] {
            let (stat, df) = chi_square(&counts[0][part.clone()], &c[part]);
            assert!(df >= 3, "{which}: too few categories ({df})");
            assert!(
                stat < chi2_crit(df),
                "{which}: chi-square {stat:.1} over {df} df (crit {:.1})",
                chi2_crit(df)
            );
        }
    }
}

/// A drafter that proposes one token, then fails on its `fail_at`-th call.
struct FailingDrafter {
    calls: usize,
    fail_at: usize,
}

impl Drafter for FailingDrafter {
    fn name(&self) -> &'static str {
        "failing"
    }

    fn draft(&mut self, input: &mut DraftInput<'_>, out: &mut Draft) -> edgespec::Result<()> {
        self.calls += 1;
        if self.calls == self.fail_at {
            return Err(edgespec::Error::internal("drafter failed"));
        }
        out.tokens.push(*input.context.last().unwrap_or(&65));
        Ok(())
    }

    fn reset(&mut self) {}
}

#[test]
fn a_failing_drafter_leaves_a_consistent_context() {
    let spec = SyntheticSpec::llama(7);
    let mut s = session(&spec, 128);
    let mut d = FailingDrafter { calls: 0, fail_at: 4 };
    let p = params(40, SamplingParams::greedy(), Strategy::Plain);
    assert!(s.generate_with("abcabc", &p, &mut d, &mut |_| Flow::Continue).is_err());
    // The context (the pending token included) and the cache agree: feeding one more token gives
    // the logits a fresh session gets from the same tokens.
    let tokens: Vec<TokenId> = s.tokens().collect();
    s.feed_tokens(&[66]).unwrap();
    let mut fresh = session(&spec, 128);
    fresh.feed_tokens(&tokens).unwrap();
    fresh.feed_tokens(&[66]).unwrap();
    let (a, b) = (s.last_logits().unwrap(), fresh.last_logits().unwrap());
    assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
    // And the session goes on generating.
    let (t, ..) = gen(&mut s, " x", &params(10, SamplingParams::greedy(), Strategy::Lookup));
    assert!(t.len() > tokens.len());
}

#[test]
fn a_reply_the_corpus_holds_is_drafted_from_it_and_the_output_stays_plain() {
    use edgespec::decode::corpus::Corpus;
    use edgespec::decode::{AutoDrafter, CostModel};
    // Sampled (sample-and-match keeps plain sampling's tokens for a seed): a tiny random
    // model's greedy reply soon repeats itself, which the context alone drafts.
    let spec = SyntheticSpec::llama(11);
    let sp =
        SamplingParams { temperature: 8.0, top_k: 0, top_p: 1.0, min_p: 0.0, seed: 5, ..Default::default() };
    let p = params(48, sp, Strategy::Plain);
    let mut s = session(&spec, 256);
    let (plain, _, st) = gen(&mut s, "qwerty uiop", &p);
    let prompt_len = st.prompt_tokens;
    assert!(plain.len() >= prompt_len + 40, "the reply should not end early");
    // Another reply and this one's: the corpus `tune` would save had it seen this prompt.
    s.reset();
    let (other, ..) = gen(&mut s, "asdf", &p);
    let identity = edgespec::decode::heads::model_identity(s.model());
    let corpus = Arc::new(Corpus::new(identity, [&other[..], &plain[prompt_len - 1..]]));
    let run = |corpus: Option<Arc<Corpus>>| {
        let mut s = session(&spec, 256);
        s.set_cost_model(CostModel::linear(0.05));
        let mut d = AutoDrafter::tuned(256, corpus, None, None).unwrap();
        let st = s.generate_with("qwerty uiop", &p, &mut d, &mut |_| Flow::Continue).unwrap();
        (s.tokens().collect::<Vec<_>>(), st, d.describe().unwrap_or_default())
    };
    let (with, st_with, said) = run(Some(corpus));
    let (without, st_without, _) = run(None);
    assert!(said.contains("corpus"), "auto's statistics name the corpus's drafts: {said}");
    assert_eq!(with, plain, "drafting from the corpus changed the output");
    assert_eq!(without, plain);
    assert!(
        st_with.accepted_tokens >= 24 && st_with.accepted_tokens > 2 * st_without.accepted_tokens,
        "with the corpus {} of {} drafted tokens accepted in {} passes; without {} of {}",
        st_with.accepted_tokens,
        st_with.drafted_tokens,
        st_with.forward_passes,
        st_without.accepted_tokens,
        st_without.drafted_tokens
    );
}
