//! Byte-level BPE (GPT-2 style, `tokenizer.ggml.model = "gpt2"`): split the text into words,
//! spell each word's bytes as printable characters, then merge adjacent symbols by rank.
//!
//! Merging uses a priority queue of candidate pairs over a linked list of symbols, so a word of
//! n characters costs O(n log n), not O(n²): the lowest-ranked pair is merged first, ties going
//! to the leftmost; entries made stale by an earlier merge are skipped when popped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::pretokenize::{ByteLevel, PreTokenizer};
use super::vocab::{FxBuild, TokenId, Vocab};

/// The merge table and word splitter of a byte-level BPE model.
pub(crate) struct Bpe {
    /// (left id, right id) packed as `left << 32 | right` → merge rank (lower merges first).
    ranks: HashMap<u64, u32, FxBuild>,
    pub pre: PreTokenizer,
    /// Emit a word that is itself a token without merging (Llama 3's tokenizer does this).
    ignore_merges: bool,
    byte_level: ByteLevel,
}

/// One symbol of a word being merged: a byte range of the byte-level spelling, linked to its
/// neighbours; `len == 0` marks a symbol merged into its left neighbour.
#[derive(Clone, Copy)]
struct Symbol {
    start: u32,
    len: u32,
    /// The token whose text the symbol spells, or `NONE`.
    id: TokenId,
    prev: u32,
    next: u32,
}

const NONE: u32 = u32::MAX;

/// Buffers reused across the words of one `encode` call.
#[derive(Default)]
pub(crate) struct BpeScratch {
    chars: Vec<char>,
    words: Vec<std::ops::Range<usize>>,
    spelled: String,
    symbols: Vec<Symbol>,
    /// Candidate merges: (rank, left, right, combined length), smallest rank then leftmost first.
    heap: Heap,
}

type Heap = BinaryHeap<Reverse<(u32, u32, u32, u32)>>;

impl Bpe {
    /// Build from the merge list (`"left right"` strings in rank order). Merges naming a text
    /// that is not a token can never apply and are skipped; a repeated pair keeps its first rank.
    pub fn new(vocab: &Vocab, merges: &[&str], pre: PreTokenizer, ignore_merges: bool) -> Bpe {
        let mut ranks = HashMap::with_capacity_and_hasher(merges.len(), FxBuild::default());
        for (rank, m) in merges.iter().enumerate() {
            // Split at the first space after the first byte, so a merge of a space-like
            // token still parses (as llama.cpp does).
            let Some(pos) = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else { continue };
            let (a, b) = (&m[..pos], &m[pos + 1..]);
            if let (Some(a), Some(b)) = (vocab.find(a), vocab.find(b)) {
                ranks.entry(pair_key(a, b)).or_insert(rank as u32);
            }
        }
        Bpe { ranks, pre, ignore_merges, byte_level: ByteLevel::new() }
    }

    /// The byte ↔ character table used to spell words.
    pub fn byte_level(&self) -> &ByteLevel {
        &self.byte_level
    }

    fn rank(&self, a: TokenId, b: TokenId) -> Option<u32> {
        if a == NONE || b == NONE {
            return None;
        }
        self.ranks.get(&pair_key(a, b)).copied()
    }

    /// Tokenize plain text (no special tokens inside), appending ids to `out`.
    pub fn encode(&self, vocab: &Vocab, text: &str, out: &mut Vec<TokenId>, s: &mut BpeScratch) {
        s.chars.clear();
        s.chars.extend(text.chars());
        s.words.clear();
        self.pre.split(&s.chars, &mut s.words);
        let mut utf8 = [0u8; 4];
        for w in 0..s.words.len() {
            let range = s.words[w].clone();
            s.spelled.clear();
            for &c in &s.chars[range] {
                self.byte_level.encode(c.encode_utf8(&mut utf8).as_bytes(), &mut s.spelled);
            }
            if self.ignore_merges {
                if let Some(id) = vocab.find(&s.spelled) {
                    out.push(id);
                    continue;
                }
            }
            self.merge_word(vocab, s, out);
        }
    }

    /// Merge the symbols of `s.spelled` and append the resulting tokens.
    fn merge_word(&self, vocab: &Vocab, s: &mut BpeScratch, out: &mut Vec<TokenId>) {
        let BpeScratch { spelled, symbols, heap, .. } = s;
        let word = spelled.as_str();
        symbols.clear();
        for (start, c) in word.char_indices() {
            let len = c.len_utf8();
            let id = vocab.find(&word[start..start + len]).unwrap_or(NONE);
            let i = symbols.len() as u32;
            symbols.push(Symbol {
                start: start as u32,
                len: len as u32,
                id,
                prev: i.wrapping_sub(1),
                next: i + 1,
            });
        }
        let n = symbols.len();
        if n == 0 {
            return;
        }
        if let Some(last) = symbols.last_mut() {
            last.next = NONE;
        }
        heap.clear();
        for i in 1..n {
            self.push_pair(symbols, heap, i as u32 - 1, i as u32);
        }
        while let Some(Reverse((_, l, r, size))) = heap.pop() {
            let (left, right) = (symbols[l as usize], symbols[r as usize]);
            // Stale: one side was merged away, or the right side has grown since.
            if left.len == 0 || right.len == 0 || left.len + right.len != size {
                continue;
            }
            let (start, end) = (left.start as usize, (left.start + size) as usize);
            let merged = &mut symbols[l as usize];
            merged.len = size;
            merged.next = right.next;
            merged.id = word.get(start..end).and_then(|t| vocab.find(t)).unwrap_or(NONE);
            symbols[r as usize].len = 0;
            if right.next != NONE {
                symbols[right.next as usize].prev = l;
            }
            if left.prev != NONE {
                self.push_pair(symbols, heap, left.prev, l);
            }
            if right.next != NONE {
                self.push_pair(symbols, heap, l, right.next);
            }
        }
        let mut i = 0u32;
        while i != NONE {
            let sym = symbols[i as usize];
            if sym.id != NONE {
                out.push(sym.id);
            } else {
                // A symbol that is not a token: llama.cpp looks each byte of its spelling up as
                // a one-byte token; only ASCII bytes can match.
                let text = &word.as_bytes()[sym.start as usize..(sym.start + sym.len) as usize];
                for &b in text {
                    if b.is_ascii() {
                        if let Some(id) = vocab.find(char::from(b).encode_utf8(&mut [0u8; 4])) {
                            out.push(id);
                        }
                    }
                }
            }
            i = sym.next;
        }
    }

    fn push_pair(&self, symbols: &[Symbol], heap: &mut Heap, l: u32, r: u32) {
        let (a, b) = (symbols[l as usize], symbols[r as usize]);
        if let Some(rank) = self.rank(a.id, b.id) {
            heap.push(Reverse((rank, l, r, a.len + b.len)));
        }
    }
}

fn pair_key(a: TokenId, b: TokenId) -> u64 {
    (a as u64) << 32 | b as u64
}
