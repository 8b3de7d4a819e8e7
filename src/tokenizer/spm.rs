//! SentencePiece-style BPE (`tokenizer.ggml.model = "llama"`: Llama 2, Gemma): spaces become
//! U+2581 `▁`, then adjacent symbols merge greedily by the score of the piece they would form,
//! and characters that no piece covers fall back to byte tokens `<0xNN>`.
//!
//! Like llama.cpp, a pair may merge when its text is any token of the vocabulary, the highest
//! score merges first and ties go to the leftmost pair; a priority queue over a linked list of
//! symbols keeps this O(n log n) in the length of the text.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::vocab::{TokenId, Vocab};

/// The whitespace marker SentencePiece writes in place of a space.
pub const SPACE_MARKER: char = '\u{2581}';

/// Per-model state of the SentencePiece tokenizer.
pub(crate) struct Spm {
    /// For each byte value, its fallback token (`<0xNN>`, else the one-byte text), if any.
    byte_tokens: [Option<TokenId>; 256],
}

#[derive(Clone, Copy)]
struct Symbol {
    start: u32,
    /// 0 once merged into the left neighbour.
    len: u32,
    prev: u32,
    next: u32,
}

const NONE: u32 = u32::MAX;

/// A candidate merge; the heap pops the highest score, then the leftmost pair.
struct Bigram {
    score: f32,
    left: u32,
    right: u32,
    size: u32,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    fn cmp(&self, o: &Self) -> Ordering {
        self.score.total_cmp(&o.score).then(Reverse(self.left).cmp(&Reverse(o.left)))
    }
}

/// Buffers reused across the fragments of one `encode` call.
#[derive(Default)]
pub(crate) struct SpmScratch {
    text: String,
    symbols: Vec<Symbol>,
    heap: BinaryHeap<Bigram>,
}

impl Spm {
    pub fn new(vocab: &Vocab) -> Spm {
        let mut byte_tokens = [None; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            let hex = format!("<0x{b:02X}>");
            *slot = vocab.find(&hex).or_else(|| {
                let byte = [b as u8];
                std::str::from_utf8(&byte).ok().and_then(|s| vocab.find(s))
            });
        }
        Spm { byte_tokens }
    }

    /// The fallback token of byte `b`, if the vocabulary has one.
    pub fn byte_token(&self, b: u8) -> Option<TokenId> {
        self.byte_tokens[b as usize]
    }

    /// Tokenize `text` (plain text, no special tokens; `prefix_space` prepends one space first),
    /// appending ids to `out`.
    pub fn encode(
        &self,
        vocab: &Vocab,
        text: &str,
        prefix_space: bool,
        out: &mut Vec<TokenId>,
        s: &mut SpmScratch,
    ) {
        s.text.clear();
        if prefix_space {
            s.text.push(SPACE_MARKER);
        }
        for c in text.chars() {
            s.text.push(if c == ' ' { SPACE_MARKER } else { c });
        }
        let text = s.text.as_str();
        s.symbols.clear();
        for (start, c) in text.char_indices() {
            let i = s.symbols.len() as u32;
            s.symbols.push(Symbol {
                start: start as u32,
                len: c.len_utf8() as u32,
                prev: i.wrapping_sub(1),
                next: i + 1,
            });
        }
        let n = s.symbols.len();
        if n == 0 {
            return;
        }
        if let Some(last) = s.symbols.last_mut() {
            last.next = NONE;
        }
        s.heap.clear();
        for i in 1..n as u32 {
            push_pair(vocab, text, &s.symbols, &mut s.heap, i - 1, i);
        }
        while let Some(Bigram { left, right, size, .. }) = s.heap.pop() {
            let (l, r) = (s.symbols[left as usize], s.symbols[right as usize]);
            if l.len == 0 || r.len == 0 || l.len + r.len != size {
                continue;
            }
            s.symbols[left as usize].len = size;
            s.symbols[left as usize].next = r.next;
            s.symbols[right as usize].len = 0;
            if r.next != NONE {
                s.symbols[r.next as usize].prev = left;
            }
            if l.prev != NONE {
                push_pair(vocab, text, &s.symbols, &mut s.heap, l.prev, left);
            }
            if r.next != NONE {
                push_pair(vocab, text, &s.symbols, &mut s.heap, left, r.next);
            }
        }
        let mut i = 0u32;
        while i != NONE {
            let sym = s.symbols[i as usize];
            let piece = &text[sym.start as usize..(sym.start + sym.len) as usize];
            match vocab.find(piece) {
                Some(id) => out.push(id),
                // Only single characters can be left without a token (every merge formed one):
                // spell them in byte tokens.
                None => out.extend(piece.bytes().filter_map(|b| self.byte_token(b))),
            }
            i = sym.next;
        }
    }
}

fn push_pair(vocab: &Vocab, text: &str, symbols: &[Symbol], heap: &mut BinaryHeap<Bigram>, l: u32, r: u32) {
    let (a, b) = (symbols[l as usize], symbols[r as usize]);
    let size = a.len + b.len;
    let Some(piece) = text.get(a.start as usize..(a.start + size) as usize) else { return };
    if let Some(id) = vocab.find(piece) {
        let score = vocab.scores.get(id as usize).copied().unwrap_or(0.0);
        heap.push(Bigram { score, left: l, right: r, size });
    }
}
