//! Hermetic tests on tiny vocabularies written with the project's own GGUF writer.

use super::*;
use crate::error::ErrorKind;
use crate::gguf::{GgufFile, GgufWriter, MetaValue};
use pretokenize::ByteLevel;

const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER: i32 = 4;
const BYTE: i32 = 6;

/// The 256 byte-level characters, in byte order.
fn byte_chars() -> Vec<String> {
    let bl = ByteLevel::new();
    (0..=255u8)
        .map(|b| {
            let mut s = String::new();
            bl.encode(&[b], &mut s);
            s
        })
        .collect()
}

/// A byte-level BPE tokenizer: the 256 byte characters, then `extra` (text, type), with
/// `merges` in rank order.
fn bpe(extra: &[(&str, i32)], merges: &[&str], pre: &str, kv: &[(&str, MetaValue)]) -> Tokenizer {
    let mut tokens = byte_chars();
    let mut types = vec![NORMAL; 256];
    for (t, ty) in extra {
        tokens.push(t.to_string());
        types.push(*ty);
    }
    let mut w = GgufWriter::new();
    w.kv("tokenizer.ggml.model", "gpt2")
        .kv("tokenizer.ggml.pre", pre)
        .kv("tokenizer.ggml.tokens", MetaValue::strings(tokens))
        .kv("tokenizer.ggml.token_type", MetaValue::i32s(types))
        .kv("tokenizer.ggml.merges", MetaValue::strings(merges.iter().copied()));
    for (k, v) in kv {
        w.kv(k, v.clone());
    }
    Tokenizer::from_gguf(&GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap()).unwrap()
}

fn ids_to_texts(t: &Tokenizer, ids: &[TokenId]) -> Vec<String> {
    ids.iter().map(|&i| t.token_text(i).unwrap().to_string()).collect()
}

#[test]
fn bpe_merges_by_rank_not_by_position() {
    let extra = [("ab", NORMAL), ("bc", NORMAL), ("abc", NORMAL)];
    let t = bpe(&extra, &["b c", "a b", "ab c"], "gpt-2", &[]);
    assert_eq!(ids_to_texts(&t, &t.encode("abc", false, false)), ["a", "bc"]);
    let t = bpe(&extra, &["a b", "b c", "ab c"], "gpt-2", &[]);
    assert_eq!(ids_to_texts(&t, &t.encode("abc", false, false)), ["abc"]);
}

#[test]
fn bpe_equal_ranks_merge_leftmost_first() {
    let t = bpe(&[("aa", NORMAL)], &["a a"], "gpt-2", &[]);
    assert_eq!(ids_to_texts(&t, &t.encode("aaa", false, false)), ["aa", "a"]);
    assert_eq!(ids_to_texts(&t, &t.encode("aaaa", false, false)), ["aa", "aa"]);
}

#[test]
fn bpe_spells_bytes_as_printable_characters() {
    // " é\n" is the bytes 20 C3 A9 0A: Ġ Ã © Ċ in GPT-2's byte alphabet.
    let t = bpe(&[("Ġa", NORMAL)], &["Ġ a"], "gpt-2", &[]);
    let ids = t.encode(" é\n a", false, false);
    assert_eq!(ids_to_texts(&t, &ids), ["Ġ", "Ã", "©", "Ċ", "Ġa"]);
    assert_eq!(t.decode(&ids, false).unwrap(), " é\n a");
    // One token can hold half a character: its piece is those raw bytes.
    assert_eq!(t.token_to_piece(t.token_id("Ã").unwrap(), false).unwrap(), vec![0xC3]);
}

#[test]
fn words_are_merged_separately() {
    // "a b" must not merge across the word boundary even though "a Ġ" is a merge.
    let extra = [("aĠ", NORMAL), ("Ġb", NORMAL)];
    let t = bpe(&extra, &["a Ġ", "Ġ b"], "gpt-2", &[]);
    assert_eq!(ids_to_texts(&t, &t.encode("a b", false, false)), ["a", "Ġb"]);
}

#[test]
fn smollm_splits_digits_before_merging() {
    let extra = [("12", NORMAL)];
    let gpt2 = bpe(&extra, &["1 2"], "gpt-2", &[]);
    let smol = bpe(&extra, &["1 2"], "smollm", &[]);
    assert_eq!(ids_to_texts(&gpt2, &gpt2.encode("12", false, false)), ["12"]);
    assert_eq!(ids_to_texts(&smol, &smol.encode("12", false, false)), ["1", "2"]);
}

#[test]
fn control_tokens_are_matched_only_when_parsing_special() {
    let extra = [("<|im_start|>", CONTROL), ("<|im_end|>", CONTROL)];
    let t = bpe(&extra, &[], "smollm", &[]);
    let start = t.token_id("<|im_start|>").unwrap();
    let end = t.token_id("<|im_end|>").unwrap();
    let ids = t.encode("<|im_start|>hi<|im_end|>", false, true);
    assert_eq!(ids[0], start);
    assert_eq!(ids_to_texts(&t, &ids[1..3]), ["h", "i"]);
    assert_eq!(ids[3], end);
    let plain = t.encode("<|im_start|>", false, false);
    assert!(plain.len() > 1 && !plain.contains(&start));
    // Control tokens are dropped on decode unless rendered; <|im_end|> ends generation.
    assert_eq!(t.decode(&ids, false).unwrap(), "hi");
    assert_eq!(t.decode(&ids, true).unwrap(), "<|im_start|>hi<|im_end|>");
    assert!(t.is_eog(end) && !t.is_eog(start));
    assert_eq!(t.eot(), Some(end));
}

#[test]
fn user_defined_tokens_are_always_matched_longest_first() {
    // Longest first, not leftmost first: in "xyzw", "yzw" wins over the earlier "xy".
    let extra = [("xy", USER), ("yzw", USER)];
    let t = bpe(&extra, &[], "gpt-2", &[]);
    assert_eq!(ids_to_texts(&t, &t.encode("xyzw", false, false)), ["x", "yzw"]);
    assert_eq!(ids_to_texts(&t, &t.encode("xyxy", false, false)), ["xy", "xy"]);
    // User-defined tokens decode to their text even without rendering special tokens.
    assert_eq!(t.decode(&t.encode("xyzw", false, false), false).unwrap(), "xyzw");
}

#[test]
fn add_special_adds_bos_and_eos_as_configured() {
    let extra = [("<s>", CONTROL), ("</s>", CONTROL)];
    let kv = [
        ("tokenizer.ggml.bos_token_id", MetaValue::U32(256)),
        ("tokenizer.ggml.eos_token_id", MetaValue::U32(257)),
        ("tokenizer.ggml.add_bos_token", MetaValue::Bool(true)),
        ("tokenizer.ggml.add_eos_token", MetaValue::Bool(true)),
    ];
    let t = bpe(&extra, &[], "gpt-2", &kv);
    assert_eq!(t.encode("a", true, false), vec![256, t.token_id("a").unwrap(), 257]);
    assert_eq!(t.encode("a", false, false), vec![t.token_id("a").unwrap()]);
    assert_eq!(t.encode("", true, false), vec![256, 257]);
    assert!(t.is_eog(257));
}

#[test]
fn stream_decoder_never_splits_a_character() {
    let t = bpe(&[], &[], "gpt-2", &[]);
    let text = "a😀é中\n";
    let ids = t.encode(text, false, false);
    assert_eq!(ids.len(), text.len(), "no merges: one token per byte");
    let mut dec = t.stream_decoder(false);
    let mut chunks = Vec::new();
    for &id in &ids {
        let mut s = String::new();
        dec.push(&t, id, &mut s).unwrap();
        chunks.push(s);
    }
    let mut tail = String::new();
    dec.finish(&mut tail);
    assert!(tail.is_empty() && !dec.has_pending());
    // Text appears only when a character is complete: after the 1st, 5th, 7th, 10th, 11th byte.
    let emitted: Vec<usize> =
        chunks.iter().enumerate().filter(|(_, c)| !c.is_empty()).map(|(i, _)| i).collect();
    assert_eq!(emitted, [0, 4, 6, 9, 10]);
    assert_eq!(chunks.concat(), text);
}

#[test]
fn stream_decoder_replaces_invalid_bytes_like_lossy_decoding() {
    let t = bpe(&[], &[], "gpt-2", &[]);
    let byte = |b: u8| t.token_id(&byte_chars()[b as usize]).unwrap();
    // A lone continuation byte, a truncated 3-byte character followed by 'A', and a truncated
    // character at the very end.
    let ids = [byte(b'x'), byte(0x80), byte(0xE2), byte(0x82), byte(b'A'), byte(0xF0), byte(0x9F)];
    let mut dec = t.stream_decoder(false);
    let mut out = String::new();
    for id in ids {
        dec.push(&t, id, &mut out).unwrap();
    }
    assert!(dec.has_pending());
    dec.finish(&mut out);
    assert_eq!(out, "x\u{FFFD}\u{FFFD}A\u{FFFD}");
    assert_eq!(out, t.decode(&ids, false).unwrap());
}

/// A SentencePiece vocabulary: specials, the 256 byte tokens, then `pieces` (text, score).
fn spm(pieces: &[(&str, f32)], kv: &[(&str, MetaValue)]) -> Tokenizer {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, CONTROL, CONTROL];
    let mut scores = vec![0.0f32; 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(BYTE);
        scores.push(0.0);
    }
    for (p, s) in pieces {
        tokens.push(p.to_string());
        types.push(if p.starts_with('<') && p.len() > 2 { USER } else { NORMAL });
        scores.push(*s);
    }
    let mut w = GgufWriter::new();
    w.kv("tokenizer.ggml.model", "llama")
        .kv("tokenizer.ggml.pre", "default")
        .kv("tokenizer.ggml.tokens", MetaValue::strings(tokens))
        .kv("tokenizer.ggml.scores", MetaValue::f32s(scores))
        .kv("tokenizer.ggml.token_type", MetaValue::i32s(types));
    for (k, v) in kv {
        w.kv(k, v.clone());
    }
    Tokenizer::from_gguf(&GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap()).unwrap()
}

fn no_prefix() -> [(&'static str, MetaValue); 1] {
    [("tokenizer.ggml.add_space_prefix", MetaValue::Bool(false))]
}

#[test]
fn spm_merges_highest_score_first() {
    let pieces = [("a", -1.0), ("b", -1.0), ("c", -1.0), ("ab", -3.0), ("bc", -2.0)];
    let t = spm(&pieces, &no_prefix());
    assert_eq!(ids_to_texts(&t, &t.encode("abc", false, false)), ["a", "bc"]);
    let pieces = [("a", -1.0), ("b", -1.0), ("c", -1.0), ("ab", -1.5), ("bc", -2.0)];
    let t = spm(&pieces, &no_prefix());
    assert_eq!(ids_to_texts(&t, &t.encode("abc", false, false)), ["ab", "c"]);
    // Any pair that forms a piece merges, whatever its score: "a" + "bc" → "abc".
    let pieces = [("a", -1.0), ("b", -1.0), ("c", -1.0), ("ab", -3.0), ("bc", -2.0), ("abc", -9.0)];
    let t = spm(&pieces, &no_prefix());
    assert_eq!(ids_to_texts(&t, &t.encode("abc", false, false)), ["abc"]);
}

#[test]
fn spm_marks_spaces_and_falls_back_to_bytes() {
    let pieces = [("▁", -1.0), ("h", -1.0), ("i", -1.0), ("▁h", -2.0), ("▁hi", -3.0)];
    let t = spm(&pieces, &no_prefix());
    // "é" has no piece: its two bytes become byte tokens.
    let ids = t.encode("hi hi é", false, false);
    assert_eq!(ids_to_texts(&t, &ids), ["h", "i", "▁hi", "▁", "<0xC3>", "<0xA9>"]);
    assert_eq!(t.decode(&ids, false).unwrap(), "hi hi é");
    // With the prefix space (SentencePiece's default) the first word gets "▁", which decoding
    // removes again; BOS is added because the model asks for it by default.
    let t = spm(&pieces, &[]);
    let ids = t.encode("hi", true, false);
    assert_eq!(ids_to_texts(&t, &ids), ["<s>", "▁hi"]);
    assert_eq!(t.decode(&ids[1..], false).unwrap(), "hi");
}

#[test]
fn spm_prefixes_a_space_after_special_tokens() {
    let pieces = [("▁", -3.0), ("h", -2.0), ("i", -2.0), ("▁h", -1.5), ("▁hi", -1.0), ("<tag>", 0.0)];
    let t = spm(&pieces, &[]);
    let ids = t.encode("hi<tag>hi", false, false);
    assert_eq!(ids_to_texts(&t, &ids), ["▁hi", "<tag>", "▁hi"]);
}

#[test]
fn unknown_algorithms_and_bad_ids_are_errors() {
    let mut w = GgufWriter::new();
    w.kv("tokenizer.ggml.model", "bert").kv("tokenizer.ggml.tokens", MetaValue::strings(["a"]));
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(Tokenizer::from_gguf(&f).unwrap_err().kind(), ErrorKind::Unsupported);
    let mut w = GgufWriter::new();
    w.kv("tokenizer.ggml.model", "gpt2")
        .kv("tokenizer.ggml.pre", "no-such-pre")
        .kv("tokenizer.ggml.tokens", MetaValue::strings(["a"]))
        .kv("tokenizer.ggml.merges", MetaValue::strings(Vec::<String>::new()));
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(Tokenizer::from_gguf(&f).unwrap_err().kind(), ErrorKind::Unsupported);
    let mut w = GgufWriter::new();
    w.kv("tokenizer.ggml.model", "gpt2").kv("tokenizer.ggml.tokens", MetaValue::strings(["a", "a"]));
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(Tokenizer::from_gguf(&f).unwrap_err().kind(), ErrorKind::Format);
    let t = bpe(&[], &[], "gpt-2", &[]);
    assert_eq!(t.token_to_piece(256, true).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert!(t.decode(&[1, 999], false).is_err());
}

#[test]
fn clean_up_spaces_follows_llama_cpp() {
    let clean = |s: &str| {
        let mut v = s.as_bytes().to_vec();
        clean_up_spaces(&mut v);
        String::from_utf8(v).unwrap()
    };
    assert_eq!(clean("Hello , world !"), "Hello, world!");
    assert_eq!(clean("it 's a ' b"), "it's a'b");
    assert_eq!(clean("we 're , they 'll"), "we're, they 'll");
    assert_eq!(clean(" ' ' "), "'' ");
}

/// xorshift64*: a tiny deterministic generator for randomized tests.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random text from a small alphabet of letters, digits, spaces, punctuation and multi-byte
/// characters, so that merges, word splits and byte spelling all get exercised.
fn random_text(rng: &mut Rng, len: usize) -> String {
    const ALPHABET: &[&str] =
        &["a", "b", "c", "ab", " ", "  ", "\n", "1", "7", ".", "'s", "é", "中", "😀", "\t", "A", "!"];
    (0..len).map(|_| ALPHABET[rng.below(ALPHABET.len())]).collect()
}

/// Textbook BPE on one word: repeatedly merge the lowest-ranked adjacent pair, leftmost first.
fn naive_bpe(symbols: &mut Vec<String>, ranks: &std::collections::HashMap<(String, String), usize>) {
    loop {
        let best = (0..symbols.len().saturating_sub(1))
            .filter_map(|i| ranks.get(&(symbols[i].clone(), symbols[i + 1].clone())).map(|&r| (r, i)))
            .min();
        let Some((_, i)) = best else { return };
        let right = symbols.remove(i + 1);
        symbols[i].push_str(&right);
    }
}

#[test]
fn bpe_matches_textbook_merging_on_random_vocabularies() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let letters = ["a", "b", "c", "Ġ"];
    for round in 0..20 {
        // Random merges over a small alphabet, each creating a new token.
        let mut extra: Vec<String> = Vec::new();
        let mut merges: Vec<String> = Vec::new();
        let mut symbols: Vec<String> = letters.iter().map(|s| s.to_string()).collect();
        for _ in 0..12 {
            let a = symbols[rng.below(symbols.len())].clone();
            let b = symbols[rng.below(symbols.len())].clone();
            let m = format!("{a} {b}");
            if merges.contains(&m) {
                continue;
            }
            let ab = format!("{a}{b}");
            if !extra.contains(&ab) && !letters.contains(&ab.as_str()) {
                extra.push(ab.clone());
                symbols.push(ab);
            }
            merges.push(m);
        }
        let extra_ref: Vec<(&str, i32)> = extra.iter().map(|s| (s.as_str(), NORMAL)).collect();
        let merge_ref: Vec<&str> = merges.iter().map(|s| s.as_str()).collect();
        let t = bpe(&extra_ref, &merge_ref, "gpt-2", &[]);
        let mut ranks = std::collections::HashMap::new();
        for (r, m) in merges.iter().enumerate() {
            let (a, b) = m.split_once(' ').unwrap();
            ranks.entry((a.to_string(), b.to_string())).or_insert(r);
        }
        for _ in 0..20 {
            let word: String = (0..1 + rng.below(12)).map(|_| ["a", "b", "c"][rng.below(3)]).collect();
            let word = if rng.below(2) == 0 { format!(" {word}") } else { word };
            let mut expect: Vec<String> = word.replace(' ', "Ġ").chars().map(String::from).collect();
            naive_bpe(&mut expect, &ranks);
            let got = ids_to_texts(&t, &t.encode(&word, false, false));
            assert_eq!(got, expect, "round {round}, word {word:?}, merges {merges:?}");
        }
    }
}

#[test]
fn random_text_round_trips_through_both_algorithms() {
    let mut rng = Rng(42);
    let b = bpe(&[("ab", NORMAL), ("Ġa", NORMAL), ("ĠĠ", NORMAL)], &["a b", "Ġ a", "Ġ Ġ"], "smollm", &[]);
    let s = spm(&[("▁", -1.0), ("a", -1.0), ("b", -1.0), ("ab", -1.5), ("▁a", -1.2)], &no_prefix());
    for _ in 0..200 {
        let len = rng.below(30);
        let text = random_text(&mut rng, len);
        for t in [&b, &s] {
            let ids = t.encode(&text, false, false);
            assert_eq!(t.decode(&ids, false).unwrap(), text, "{:?}", t.kind());
            let mut dec = t.stream_decoder(false);
            let mut streamed = String::new();
            for &id in &ids {
                dec.push(t, id, &mut streamed).unwrap();
            }
            dec.finish(&mut streamed);
            assert_eq!(streamed, text);
        }
    }
}

#[test]
fn end_of_generation_follows_llama_cpp_texts_and_exceptions() {
    // "</s>" ends generation and becomes a control token, even when user-defined...
    let t = bpe(&[("</s>", USER), ("<|im_end|>", NORMAL)], &[], "gpt-2", &[]);
    let close = t.token_id("</s>").unwrap();
    let im_end = t.token_id("<|im_end|>").unwrap();
    assert!(t.is_eog(close) && t.is_control(close));
    assert!(!t.encode("</s>", false, false).contains(&close));
    assert_eq!(t.encode("</s>", false, true), vec![close]);
    // ... and a mislabelled end-of-turn token is treated as control.
    assert!(t.is_eog(im_end) && t.is_control(im_end));
    assert_eq!(t.eot(), Some(im_end));
    // Unless the vocabulary is Gemma 4's, which has "<|tool_response>".
    let t = bpe(&[("</s>", USER), ("<|tool_response>", CONTROL)], &[], "gpt-2", &[]);
    let close = t.token_id("</s>").unwrap();
    assert!(!t.is_eog(close) && !t.is_control(close));
    assert!(t.is_eog(t.token_id("<|tool_response>").unwrap()));
}
