//! Pre-tokenization for byte-level BPE: splitting text into words the way the model's regex
//! does, and GPT-2's byte ↔ character mapping.
//!
//! The regexes use Unicode classes (`\p{L}`, `\p{N}`, `\s`) and a lookahead (`\s+(?!\S)`), so
//! instead of a regex engine each pattern is a small hand-written scanner over the text's
//! characters. They follow llama.cpp's reading of the patterns, which matters at the edges:
//! each scanner runs separately over each fragment a previous pattern produced (SmolLM2 first
//! isolates every digit), and the end of a fragment counts as "not followed by non-space".
//!
//! Patterns (as written in the models' `tokenizer.json`):
//! - GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! - Llama 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//!   ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+` (Qwen 2 is the same with `\p{N}`).

use std::ops::Range;

use unicode_general_category::{get_general_category, GeneralCategory as Gc};

/// How a byte-level BPE model splits text into words before merging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// The GPT-2 pattern; with `split_digits`, every number character is first cut out on its own
    /// (SmolLM, StarCoder).
    Gpt2 { split_digits: bool },
    /// The Llama 3 pattern, numbers in groups of at most `max_digits` (3 for Llama 3, 1 for Qwen 2).
    Llama3 { max_digits: usize },
}

/// The character classes the patterns test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Letter,
    Number,
    Space,
    Other,
}

fn class(c: char) -> Class {
    if c.is_ascii() {
        return match c {
            'a'..='z' | 'A'..='Z' => Class::Letter,
            '0'..='9' => Class::Number,
            '\t' | '\n' | '\x0b' | '\x0c' | '\r' | ' ' => Class::Space,
            _ => Class::Other,
        };
    }
    // `char::is_whitespace` is exactly Unicode's White_Space property, which is what `\s` means
    // in these patterns; it is tested first as llama.cpp does.
    if c.is_whitespace() {
        return Class::Space;
    }
    match get_general_category(c) {
        Gc::UppercaseLetter
        | Gc::LowercaseLetter
        | Gc::TitlecaseLetter
        | Gc::ModifierLetter
        | Gc::OtherLetter => Class::Letter,
        Gc::DecimalNumber | Gc::LetterNumber | Gc::OtherNumber => Class::Number,
        _ => Class::Other,
    }
}

/// Whether `c` is a number character (`\p{N}`).
fn is_number(c: char) -> bool {
    class(c) == Class::Number
}

/// A window over one fragment's characters that answers "out of range" past its ends.
struct Frag<'a> {
    chars: &'a [char],
    end: usize,
}

impl Frag<'_> {
    fn at(&self, i: usize) -> Option<char> {
        if i < self.end {
            self.chars.get(i).copied()
        } else {
            None
        }
    }

    fn class_at(&self, i: usize) -> Option<Class> {
        self.at(i).map(class)
    }

    fn is(&self, i: usize, k: Class) -> bool {
        self.class_at(i) == Some(k)
    }
}

impl PreTokenizer {
    /// Split `chars` (the text's characters) into words, appending each word's character range
    /// to `words`. Together the words cover the text exactly, in order.
    pub fn split(&self, chars: &[char], words: &mut Vec<Range<usize>>) {
        match *self {
            PreTokenizer::Gpt2 { split_digits: false } => gpt2(chars, 0, chars.len(), words),
            PreTokenizer::Gpt2 { split_digits: true } => {
                // First pattern `\p{N}`: each number character is a fragment, and so is each run
                // of other characters between them; the GPT-2 pattern then runs on each fragment.
                let mut start = 0;
                for (i, &c) in chars.iter().enumerate() {
                    if is_number(c) {
                        gpt2(chars, start, i, words);
                        words.push(i..i + 1);
                        start = i + 1;
                    }
                }
                gpt2(chars, start, chars.len(), words);
            }
            PreTokenizer::Llama3 { max_digits } => llama3(chars, 0, chars.len(), max_digits.max(1), words),
        }
    }
}

/// Matches `'s|'t|'re|'ve|'m|'ll|'d` at `pos` (case-insensitive if `fold`): the end of the match.
fn contraction(f: &Frag, pos: usize, fold: bool) -> Option<usize> {
    if f.at(pos) != Some('\'') {
        return None;
    }
    let low = |c: Option<char>| c.map(|c| if fold { c.to_ascii_lowercase() } else { c });
    let (a, b) = (low(f.at(pos + 1))?, low(f.at(pos + 2)));
    match (a, b) {
        ('s' | 't' | 'm' | 'd', _) => Some(pos + 2),
        ('r', Some('e')) | ('v', Some('e')) | ('l', Some('l')) => Some(pos + 3),
        _ => None,
    }
}

/// The GPT-2 pattern over `chars[start..end]`.
fn gpt2(chars: &[char], start: usize, end: usize, words: &mut Vec<Range<usize>>) {
    let f = Frag { chars, end };
    let mut pos = start;
    while pos < end {
        let c = chars[pos];
        let next_end = if let Some(e) = contraction(&f, pos, false) {
            e
        } else {
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
            let run_start = if c == ' ' { pos + 1 } else { pos };
            match f.class_at(run_start) {
                Some(k @ (Class::Letter | Class::Number | Class::Other)) => {
                    let mut p = run_start;
                    while f.is(p, k) {
                        p += 1;
                    }
                    p
                }
                _ => whitespace_run(&f, pos),
            }
        };
        words.push(pos..next_end);
        pos = next_end;
    }
}

/// `\s+(?!\S)|\s+` at `pos`: a whitespace run, less its last character when a non-space follows
/// inside the fragment (that character then starts the next word).
fn whitespace_run(f: &Frag, pos: usize) -> usize {
    let mut n = 0;
    while f.is(pos + n, Class::Space) {
        n += 1;
    }
    if n > 1 && f.at(pos + n).is_some() {
        pos + n - 1
    } else {
        // `n == 0` cannot happen for callers (they only get here on a space), but a word must
        // always advance.
        pos + n.max(1)
    }
}

/// The Llama 3 pattern over `chars[start..end]`.
fn llama3(chars: &[char], start: usize, end: usize, max_digits: usize, words: &mut Vec<Range<usize>>) {
    let f = Frag { chars, end };
    let mut pos = start;
    while pos < end {
        let c = chars[pos];
        let k = class(c);
        if let Some(e) = contraction(&f, pos, true) {
            words.push(pos..e);
            pos = e;
            continue;
        }
        // `[^\r\n\p{L}\p{N}]?\p{L}+`
        if !(c == '\r' || c == '\n' || k == Class::Number)
            && (k == Class::Letter || f.is(pos + 1, Class::Letter))
        {
            let mut p = pos + 1;
            while f.is(p, Class::Letter) {
                p += 1;
            }
            words.push(pos..p);
            pos = p;
            continue;
        }
        // `\p{N}{1,max}`
        if k == Class::Number {
            let mut p = pos;
            while f.is(p, Class::Number) && p - pos < max_digits {
                p += 1;
            }
            words.push(pos..p);
            pos = p;
            continue;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        let run_start = if c == ' ' { pos + 1 } else { pos };
        if f.is(run_start, Class::Other) {
            let mut p = run_start;
            while f.is(p, Class::Other) {
                p += 1;
            }
            while matches!(f.at(p), Some('\r' | '\n')) {
                p += 1;
            }
            words.push(pos..p);
            pos = p;
            continue;
        }
        // `\s*[\r\n]+`: through the last line break of the whitespace run, if it has one.
        let mut n = 0;
        let mut last_break = None;
        while f.is(pos + n, Class::Space) {
            if matches!(f.at(pos + n), Some('\r' | '\n')) {
                last_break = Some(pos + n + 1);
            }
            n += 1;
        }
        let e = match last_break {
            Some(e) => e,
            None => whitespace_run(&f, pos),
        };
        words.push(pos..e);
        pos = e;
    }
}

/// GPT-2's reversible byte → printable character table: bytes that are printable Latin-1 map
/// to themselves, the other 68 to U+0100 onwards in byte order.
pub struct ByteLevel {
    to_char: [char; 256],
    /// Indexed by code point (< 0x144): the byte it stands for, or -1.
    to_byte: [i16; 0x144],
}

impl ByteLevel {
    /// Build the tables.
    pub fn new() -> ByteLevel {
        let mut to_char = ['\0'; 256];
        let mut to_byte = [-1i16; 0x144];
        let mut next = 0x100u32;
        for b in 0..=255u8 {
            let printable = matches!(b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff);
            let cp = if printable {
                b as u32
            } else {
                next += 1;
                next - 1
            };
            let c = char::from_u32(cp).unwrap_or('\0');
            to_char[b as usize] = c;
            to_byte[cp as usize] = b as i16;
        }
        ByteLevel { to_char, to_byte }
    }

    /// Append the byte-level spelling of `bytes` to `out`.
    pub fn encode(&self, bytes: &[u8], out: &mut String) {
        for &b in bytes {
            out.push(self.to_char[b as usize]);
        }
    }

    /// The byte that `c` stands for, if it is one of the 256 byte characters.
    pub fn byte_of(&self, c: char) -> Option<u8> {
        match self.to_byte.get(c as usize) {
            Some(&b) if b >= 0 => Some(b as u8),
            _ => None,
        }
    }
}

impl Default for ByteLevel {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(p: PreTokenizer, s: &str) -> Vec<String> {
        let chars: Vec<char> = s.chars().collect();
        let mut w = Vec::new();
        p.split(&chars, &mut w);
        w.into_iter().map(|r| chars[r].iter().collect()).collect()
    }

    const GPT2: PreTokenizer = PreTokenizer::Gpt2 { split_digits: false };
    const SMOL: PreTokenizer = PreTokenizer::Gpt2 { split_digits: true };
    const LLAMA3: PreTokenizer = PreTokenizer::Llama3 { max_digits: 3 };

    #[test]
    fn gpt2_words() {
        assert_eq!(words(GPT2, "Hello world"), ["Hello", " world"]);
        assert_eq!(words(GPT2, "I'm fine, don't"), ["I", "'m", " fine", ",", " don", "'t"]);
        // A run of spaces gives its last space to the next word; at the end it stays whole.
        assert_eq!(words(GPT2, "a   b  "), ["a", "  ", " b", "  "]);
        assert_eq!(words(GPT2, "x\n\ny"), ["x", "\n", "\n", "y"]);
        assert_eq!(words(GPT2, "v2.0 π≈3"), ["v", "2", ".", "0", " π", "≈", "3"]);
        assert_eq!(words(GPT2, "123 4567"), ["123", " 4567"]);
        assert_eq!(words(GPT2, "日本語 テキスト"), ["日本語", " テキスト"]);
        assert_eq!(words(GPT2, "''s"), ["''", "s"]);
        assert_eq!(words(GPT2, ""), Vec::<String>::new());
    }

    #[test]
    fn smollm_isolates_digits_first() {
        assert_eq!(words(SMOL, "123 4567"), ["1", "2", "3", " ", "4", "5", "6", "7"]);
        // The space before the digit ends its fragment, so it is not merged into " 4".
        assert_eq!(words(SMOL, "a  1"), ["a", "  ", "1"]);
        assert_eq!(words(SMOL, "x²+½"), ["x", "²", "+", "½"]);
    }

    #[test]
    fn llama3_words() {
        assert_eq!(words(LLAMA3, "Hello world"), ["Hello", " world"]);
        assert_eq!(words(LLAMA3, "I'M 12345"), ["I", "'M", " ", "123", "45"]);
        assert_eq!(words(LLAMA3, "a,\n\n  b"), ["a", ",\n\n", " ", " b"]);
        assert_eq!(words(LLAMA3, "x  \n y"), ["x", "  \n", " y"]);
        assert_eq!(words(PreTokenizer::Llama3 { max_digits: 1 }, "42"), ["4", "2"]);
    }

    #[test]
    fn byte_level_is_a_bijection() {
        let bl = ByteLevel::new();
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let mut s = String::new();
            bl.encode(&[b], &mut s);
            let c = s.chars().next().unwrap();
            assert!(seen.insert(c));
            assert_eq!(bl.byte_of(c), Some(b));
        }
        let mut s = String::new();
        bl.encode(b" a\n", &mut s);
        assert_eq!(s, "\u{120}a\u{10a}");
        assert_eq!(bl.byte_of('\u{144}'), None);
    }
}
