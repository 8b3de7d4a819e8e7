//! Greedy equivalence on the real models over the bench's default prompt suite: `lookup` emits
//! exactly the tokens `plain` emits, prompt by prompt, through the chat template.

use edgespec::bench::{PromptKind, Suite};
use edgespec::decode::Strategy;
use edgespec::sampling::SamplingParams;
use edgespec::session::{Flow, GenerateParams, Session, SessionOptions};
use edgespec::tokenizer::TokenId;

fn reply(s: &mut Session, text: &str, strategy: Strategy, n: usize) -> (Vec<TokenId>, usize) {
    s.reset();
    let p = GenerateParams { max_tokens: n, sampling: SamplingParams::greedy(), strategy };
    // Gemma's GGUF carries no chat template: the text goes in as it is.
    let st = if s.chat_template().is_some() {
        s.chat(text, &p, &mut |_| Flow::Continue).unwrap().1
    } else {
        s.generate(text, &p, &mut |_| Flow::Continue).unwrap()
    };
    (s.tokens().collect(), st.accepted_tokens)
}

fn check(model: &str, kinds: &[PromptKind], n: usize) {
    let path = edgespec::catalog::resolve_model(model).unwrap();
    let mut s =
        Session::load(path, &SessionOptions { threads: Some(2), ctx: Some(1024), ..Default::default() })
            .unwrap();
    let suite = Suite::load("default").unwrap();
    let mut accepted = 0;
    for p in suite.prompts.iter().filter(|p| kinds.contains(&p.kind)) {
        let (plain, _) = reply(&mut s, &p.text, Strategy::Plain, n);
        let (look, acc) = reply(&mut s, &p.text, Strategy::Lookup, n);
        assert_eq!(plain, look, "{model}: prompt `{}` differs under lookup", p.name);
        accepted += acc;
    }
    assert!(accepted > 0, "{model}: lookup never had a draft accepted");
}

#[test]
fn smollm2_lookup_is_plain_over_the_suite() {
    check("smollm2-135m", &[PromptKind::Grounded, PromptKind::Open], 48);
}

#[test]
fn gemma3_lookup_is_plain_over_the_grounded_prompts() {
    check("gemma3-270m", &[PromptKind::Grounded], 24);
}
