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
    /// (left id, right id) packed as `left << 32 | right` → (merge rank, id of the merged text
    /// or `NONE`); a lower rank merges first.
    merges: HashMap<u64, (u32, TokenId), FxBuild>,
    /// The token of each byte's one-character spelling, or `NONE`.
    byte_ids: [TokenId; 256],
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
    heap: Heap,
}

/// Candidate merges: (rank, left, right, combined length, merged id), smallest rank then
/// leftmost first.
type Heap = BinaryHeap<Reverse<(u32, u32, u32, u32, TokenId)>>;

impl Bpe {
    /// Build from the merge list (`"left right"` strings in rank order). Merges naming a text
    /// that is not a token can never apply and are skipped; a repeated pair keeps its first rank.
    pub fn new(vocab: &Vocab, merges: &[&str], pre: PreTokenizer, ignore_merges: bool) -> Bpe {
        let mut table = HashMap::with_capacity_and_hasher(merges.len(), FxBuild::default());
        let mut joined = String::new();
        for (rank, m) in merges.iter().enumerate() {
            // Split at the first space after the first byte, so a merge of a space-like
            // token still parses (as llama.cpp does).
            let Some(pos) = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else { continue };
            let (a, b) = (&m[..pos], &m[pos + 1..]);
            if let (Some(ia), Some(ib)) = (vocab.find(a), vocab.find(b)) {
                joined.clear();
                joined.push_str(a);
                joined.push_str(b);
                let merged = vocab.find(&joined).unwrap_or(NONE);
                table.entry(pair_key(ia, ib)).or_insert((rank as u32, merged));
            }
        }
        let byte_level = ByteLevel::new();
        let mut byte_ids = [NONE; 256];
        for (b, id) in byte_ids.iter_mut().enumerate() {
            let mut spelled = String::new();
            byte_level.encode(&[b as u8], &mut spelled);
            *id = vocab.find(&spelled).unwrap_or(NONE);
        }
        Bpe { merges: table, byte_ids, pre, ignore_merges, byte_level }
    }

    /// The byte ↔ character table used to spell words.
    pub fn byte_level(&self) -> &ByteLevel {
        &self.byte_level
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
            s.symbols.clear();
            for &c in &s.chars[range] {
                for &b in c.encode_utf8(&mut utf8).as_bytes() {
                    let start = s.spelled.len() as u32;
                    self.byte_level.encode(&[b], &mut s.spelled);
                    let i = s.symbols.len() as u32;
                    let len = s.spelled.len() as u32 - start;
                    let id = self.byte_ids[b as usize];
                    s.symbols.push(Symbol { start, len, id, prev: i.wrapping_sub(1), next: i + 1 });
                }
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

    /// Merge the symbols of one word (`s.symbols`, spelling `s.spelled`) and append the
    /// resulting tokens.
    fn merge_word(&self, vocab: &Vocab, s: &mut BpeScratch, out: &mut Vec<TokenId>) {
        let BpeScratch { spelled, symbols, heap, .. } = s;
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
        while let Some(Reverse((_, l, r, size, merged_id))) = heap.pop() {
            let (left, right) = (symbols[l as usize], symbols[r as usize]);
            // Stale: one side was merged away, or the right side has grown since.
            if left.len == 0 || right.len == 0 || left.len + right.len != size {
                continue;
            }
            let merged = &mut symbols[l as usize];
            merged.len = size;
            merged.next = right.next;
            merged.id = merged_id;
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
                let text = &spelled.as_bytes()[sym.start as usize..(sym.start + sym.len) as usize];
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
        if a.id == NONE || b.id == NONE {
            return;
        }
        if let Some(&(rank, merged)) = self.merges.get(&pair_key(a.id, b.id)) {
            heap.push(Reverse((rank, l, r, a.len + b.len, merged)));
        }
    }
}

fn pair_key(a: TokenId, b: TokenId) -> u64 {
    (a as u64) << 32 | b as u64
}
