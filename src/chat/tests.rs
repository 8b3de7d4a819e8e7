//! Chat template tests on the templates SmolLM2 and Gemma 3 publish (copied here as data so the
//! tests need no model file), with expected prompts written out by hand from each format.

use super::*;
use crate::gguf::{GgufWriter, MetaValue};

/// SmolLM2-Instruct's `tokenizer.chat_template` (ChatML with a default system prompt).
const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Gemma 3 instruction-tuned models' template (the 270M base model ships none).
const GEMMA3: &str = r#"{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '

' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '

' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '
' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>
' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model
'}}
{%- endif -%}
"#;

const SMOL_SYSTEM: &str =
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n";

#[test]
fn smollm2_renders_chatml_with_default_system_prompt() {
    let t = ChatTemplate::new(SMOLLM2, "<|im_start|>", "<|im_end|>").unwrap();
    let out = t.render(&[Message::user("Hi")], true).unwrap();
    assert_eq!(out, format!("{SMOL_SYSTEM}<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    let out = t.render(&[Message::system("Be brief."), Message::user("Hi")], false).unwrap();
    assert_eq!(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

#[test]
fn gemma3_template_features() {
    let t = ChatTemplate::new(GEMMA3, "<bos>", "<eos>").unwrap();
    let msgs = [
        Message::system("Answer in French."),
        Message::user("  Hello!\n"),
        Message::assistant("Bonjour !"),
        Message::user("Thanks"),
    ];
    let out = t.render(&msgs, true).unwrap();
    let expect = "<bos><start_of_turn>user\nAnswer in French.\n\nHello!<end_of_turn>\n\
                  <start_of_turn>model\nBonjour !<end_of_turn>\n\
                  <start_of_turn>user\nThanks<end_of_turn>\n<start_of_turn>model\n";
    assert_eq!(out, expect);
    // raise_exception surfaces as an error carrying the template's message.
    let err = t.render(&[Message::assistant("first")], true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().contains("must alternate"), "{err}");
}

#[test]
fn python_methods_and_loop_controls() {
    let src = "{% for m in messages %}{% if m.content.startswith('#') %}{% continue %}{% endif %}\
               [{{ m.role.upper() }}:{{ m.content.strip() }}]{% if loop.index >= 2 %}{% break %}{% endif %}\
               {% endfor %}";
    let t = ChatTemplate::new(src, "", "").unwrap();
    let msgs = [Message::user(" a "), Message::user("#skip"), Message::user("b"), Message::user("c")];
    assert_eq!(t.render(&msgs, false).unwrap(), "[USER:a][USER:b]");
}

#[test]
fn syntax_errors_are_format_errors() {
    let err = ChatTemplate::new("{% for m in messages %}", "", "").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Format);
}

#[test]
fn template_and_special_texts_come_from_gguf() {
    let mut w = GgufWriter::new();
    w.kv("tokenizer.ggml.tokens", MetaValue::strings(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "a"]))
        .kv("tokenizer.ggml.bos_token_id", 1u32)
        .kv("tokenizer.ggml.eos_token_id", 2u32)
        .kv("tokenizer.chat_template", "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}");
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    let t = ChatTemplate::from_gguf(&f).unwrap().unwrap();
    assert_eq!(t.render(&[Message::user("x")], false).unwrap(), "<|im_start|>x<|im_end|>");
    let mut w = GgufWriter::new();
    w.kv("tokenizer.ggml.tokens", MetaValue::strings(["a"]));
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert!(ChatTemplate::from_gguf(&f).unwrap().is_none());
}

#[test]
fn conversation_feeds_only_the_new_turn() {
    let t = ChatTemplate::new(SMOLLM2, "<|im_start|>", "<|im_end|>").unwrap();
    let mut c = Conversation::new(None);
    let first = c.user_turn(&t, "Hi").unwrap();
    assert_eq!(first, format!("{SMOL_SYSTEM}<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    // The model answered "Hello!" and its <|im_end|> was fed back.
    c.assistant_turn("Hello!", "Hello!<|im_end|>");
    let second = c.user_turn(&t, "How are you?").unwrap();
    assert_eq!(second, "\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n");
    // What was fed, piece by piece, is exactly the full render.
    assert_eq!(c.fed_text(), t.render(c.messages(), true).unwrap());
    assert_eq!(c.messages().len(), 3);
}

#[test]
fn render_after_refuses_a_changed_prefix() {
    let t = ChatTemplate::new(GEMMA3, "<bos>", "<eos>").unwrap();
    let mut c = Conversation::new(None);
    c.user_turn(&t, "Hi").unwrap();
    // The template trims replies, so a reply fed with a trailing space no longer matches.
    c.assistant_turn("Hello ", "Hello <end_of_turn>");
    let err = c.user_turn(&t, "Again").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(c.messages().len(), 2, "the failed turn is not kept");
    c.reset_fed();
    let all = c.user_turn(&t, "Again").unwrap();
    assert!(all
        .starts_with("<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>"));
}
