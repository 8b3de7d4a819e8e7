//! The session: generation, streaming, chat turns kept in the KV cache, context limits and
//! cancellation, on tiny synthetic models (and one golden check on SmolLM2).

mod common;

use std::sync::Arc;

use common::*;
use edgespec::decode::Strategy;
use edgespec::gguf::GgufFile;
use edgespec::model::synthetic::{self, SyntheticSpec};
use edgespec::model::{KvType, Model};
use edgespec::sampling::SamplingParams;
use edgespec::session::{Flow, GenerateParams, Session, SessionOptions, StopReason};
use edgespec::ErrorKind;

fn session(spec: &SyntheticSpec, ctx: usize) -> Session {
    let model =
        Model::from_file(Arc::new(GgufFile::from_bytes(synthetic::build(spec).unwrap()).unwrap())).unwrap();
    Session::new(model, &SessionOptions { threads: Some(2), ctx: Some(ctx), ..Default::default() }).unwrap()
}

/// Greedy plain decoding (the default strategy is `auto`, which drafts).
fn greedy(n: usize) -> GenerateParams {
    GenerateParams { max_tokens: n, sampling: SamplingParams::greedy(), strategy: Strategy::Plain }
}

fn collect(
    s: &mut Session,
    prompt: &str,
    p: &GenerateParams,
) -> (String, edgespec::session::GenerationStats) {
    let mut text = String::new();
    let stats = s
        .generate(prompt, p, &mut |piece| {
            text.push_str(piece);
            Flow::Continue
        })
        .unwrap();
    (text, stats)
}

#[test]
fn greedy_generation_is_reproducible_and_streams_its_tokens() {
    let spec = SyntheticSpec::llama(1);
    let (a, sa) = collect(&mut session(&spec, 128), "hello world", &greedy(20));
    let (b, _) = collect(&mut session(&spec, 128), "hello world", &greedy(20));
    assert_eq!(a, b);
    assert_eq!(sa.prompt_tokens, "hello world".len(), "byte-level vocabulary, no merges");
    assert!(sa.generated_tokens >= 1 && sa.generated_tokens <= 20);
    assert_eq!(sa.strategy, "plain");
    assert_eq!(sa.drafted_tokens, 0);
    // `auto` is the default, and it emits plain decoding's text.
    assert_eq!(GenerateParams::default().strategy, Strategy::Auto);
    let auto = GenerateParams { strategy: Strategy::Auto, ..greedy(20) };
    let (c, sc) = collect(&mut session(&spec, 128), "hello world", &auto);
    assert_eq!((c.as_str(), sc.strategy), (a.as_str(), "auto"));
    // The streamed text is the decoding of the generated tokens.
    let mut s = session(&spec, 128);
    let (text, stats) = collect(&mut s, "hello world", &greedy(20));
    let toks: Vec<u32> = s.tokens().skip(stats.prompt_tokens).collect();
    assert_eq!(toks.len(), stats.generated_tokens);
    let eog = toks.last().is_some_and(|&t| s.tokenizer().is_eog(t));
    let shown = if eog { &toks[..toks.len() - 1] } else { &toks[..] };
    assert_eq!(text, s.tokenizer().decode(shown, false).unwrap());
}

#[test]
fn generation_continues_the_context_without_refeeding_it() {
    let spec = SyntheticSpec::gemma3(2);
    let mut s = session(&spec, 200);
    let (_, first) = collect(&mut s, "abc", &greedy(6));
    let (_, second) = collect(&mut s, "de", &greedy(6));
    assert_eq!(second.prompt_tokens, 2, "only the new text is fed");
    // The same tokens fed at once into a fresh session give the same continuation.
    let history: Vec<u32> = s.tokens().collect();
    let (a, _) = collect(&mut s, "f", &greedy(8));
    let mut fresh = session(&spec, 200);
    fresh.feed_tokens(&history).unwrap();
    let (b, _) = collect(&mut fresh, "f", &greedy(8));
    assert_eq!(a, b);
    assert!(first.generated_tokens > 0);
}

#[test]
fn sampling_is_seeded() {
    let spec = SyntheticSpec::llama(3);
    let p = |seed| GenerateParams {
        max_tokens: 24,
        sampling: SamplingParams {
            temperature: 1.5,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed,
            ..Default::default()
        },
        ..Default::default()
    };
    let (a, _) = collect(&mut session(&spec, 128), "xy", &p(1));
    let (b, _) = collect(&mut session(&spec, 128), "xy", &p(1));
    let (c, _) = collect(&mut session(&spec, 128), "xy", &p(2));
    assert_eq!(a, b);
    assert_ne!(a, c, "a flat random model samples differently under another seed");
}

#[test]
fn a_full_context_stops_generation_and_refuses_prompts() {
    let spec = SyntheticSpec::llama(4);
    let mut s = session(&spec, 16);
    let (_, st) = collect(&mut s, "0123456789", &greedy(100));
    // (This seed does not produce an end-of-generation token within the context.)
    assert_eq!(st.stop, StopReason::ContextFull);
    assert_eq!(s.context_used(), 16);
    assert_eq!(st.generated_tokens, 6);
    let e = s.generate("more text", &greedy(4), &mut |_| Flow::Continue).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ContextOverflow);
    assert!(e.message().contains("context full"), "{e}");
    s.reset();
    assert_eq!(s.context_used(), 0);
    let e = s.generate(&"x".repeat(17), &greedy(4), &mut |_| Flow::Continue).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ContextOverflow);
    assert_eq!(s.context_used(), 0, "a refused prompt leaves nothing behind");
}

#[test]
fn the_callback_can_stop_a_reply() {
    let spec = SyntheticSpec::llama(5);
    let mut s = session(&spec, 128);
    let mut seen = 0;
    let st = s
        .generate(
            "abc",
            &GenerateParams {
                max_tokens: 50,
                sampling: SamplingParams { seed: 3, ..Default::default() },
                ..Default::default()
            },
            &mut |_| {
                seen += 1;
                if seen == 3 {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            },
        )
        .unwrap();
    assert_eq!(st.stop, StopReason::Cancelled);
    // The third piece stopped it; at most one more call flushes a split UTF-8 character.
    assert!((3..=4).contains(&seen), "{seen}");
    assert!(st.generated_tokens < 50);
}

#[test]
fn a_long_chat_drops_its_oldest_exchanges_instead_of_filling_the_context() {
    let spec = SyntheticSpec::llama(6);
    let mut s = session(&spec, 160);
    s.set_system(Some("Be brief."));
    let p = greedy(24);
    let mut dropped = 0;
    for i in 0..12 {
        let (_, st) =
            s.chat(&format!("Question number {i}: tell me more"), &p, &mut |_| Flow::Continue).unwrap();
        assert_ne!(st.stop, StopReason::ContextFull, "turn {i}");
        assert!(s.context_used() <= s.context_size());
        dropped += s.dropped_messages();
    }
    assert!(dropped >= 2 && dropped % 2 == 0, "whole exchanges were dropped: {dropped}");
    let msgs = s.conversation().messages();
    assert_eq!(msgs[0].role, "system", "the system message stays");
    assert_eq!(msgs[1].role, "user");
    assert!(!msgs.iter().any(|m| m.content.contains("number 0:")), "the oldest exchange is gone");
    assert!(msgs.iter().any(|m| m.content.contains("number 11:")));
    assert_eq!(msgs.len(), 1 + 2 * (12 - dropped / 2));
    // The cache holds the kept conversation from its start, nothing of what was dropped.
    let template = s.chat_template().unwrap();
    let kept = template.render(&msgs[..msgs.len() - 1], true).unwrap();
    let history: Vec<u32> = s.tokens().collect();
    let text = s.tokenizer().decode(&history, true).unwrap();
    assert!(text.starts_with(&kept[..kept.len() - "<|im_start|>assistant\n".len()]), "{text:?}\n{kept:?}");
    assert!(!text.contains("number 0:"));
}

#[test]
fn chat_turns_stay_in_the_cache() {
    let spec = SyntheticSpec::llama(6);
    let mut s = session(&spec, 512);
    let p = greedy(12);
    let (r1, st1) = s.chat("Hi there", &p, &mut |_| Flow::Continue).unwrap();
    let used_after_first = s.context_used();
    let fed_after_first = s.conversation().fed_text().to_string();
    let (_, st2) = s.chat("And again", &p, &mut |_| Flow::Continue).unwrap();
    // The second turn fed exactly the text the template adds after what was already fed.
    let template = s.chat_template().unwrap();
    let msgs = s.conversation().messages();
    assert_eq!(msgs.len(), 4);
    assert_eq!(msgs[1].content, r1);
    let second_turn = template.render_after(&fed_after_first, &msgs[..3], true).unwrap();
    assert!(second_turn.contains("And again") && !second_turn.contains("Hi there"), "{second_turn:?}");
    assert_eq!(st2.prompt_tokens, s.tokenizer().encode(&second_turn, false, true).len());
    assert!(st2.prompt_tokens < used_after_first, "earlier turns are not fed again");
    assert!(st1.prompt_tokens > 0);
    // What the cache holds is the rendered conversation.
    let full = template.render(&msgs[..3], true).unwrap();
    let history: Vec<u32> = s.tokens().collect();
    let fed_text = s.tokenizer().decode(&history, true).unwrap();
    assert!(
        fed_text.starts_with(&full[..full.len() - "<|im_start|>assistant\n".len()]),
        "{fed_text:?}\n{full:?}"
    );
    s.reset();
    assert_eq!(s.context_used(), 0);
    assert!(s.conversation().messages().is_empty());
}

#[test]
fn f32_cache_sessions_work() {
    let spec = SyntheticSpec::gemma3(7);
    let model =
        Model::from_file(Arc::new(GgufFile::from_bytes(synthetic::build(&spec).unwrap()).unwrap())).unwrap();
    let opts = SessionOptions {
        threads: Some(1),
        ctx: Some(64),
        kv_type: KvType::F32,
        prefill_chunk: 3,
        ..Default::default()
    };
    let mut s = Session::new(model, &opts).unwrap();
    let (_, st) = collect(&mut s, "hello", &greedy(5));
    assert!(st.generated_tokens >= 1);
    assert_eq!(s.cache().kv_type(), KvType::F32);
}

#[test]
fn smollm2_knows_the_capital_of_france() {
    let mut s =
        Session::new(smollm2(), &SessionOptions { threads: Some(2), ctx: Some(256), ..Default::default() })
            .unwrap();
    let (text, st) = collect(&mut s, "The capital of France is", &greedy(4));
    assert!(text.trim_start().starts_with("Paris"), "{text:?}");
    assert_eq!(st.prompt_tokens, 5);
    assert!(st.peak_rss_bytes.is_some());
}
