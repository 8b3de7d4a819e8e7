//! Cutting special tokens out of the input text before the model's algorithm runs.
//!
//! Control, unknown and user-defined tokens (`<|im_start|>`, `<start_of_turn>`, Gemma's runs of
//! spaces and HTML tags) are matched as whole tokens. llama.cpp's rule, which we reproduce:
//! special tokens are tried longest first; each one claims, left to right, every occurrence that
//! does not overlap text already claimed by a longer one. Control and unknown tokens take part
//! only when the caller asks to parse special tokens; user-defined ones always do.
//!
//! Instead of scanning the text once per special token (Gemma has 6,400 of them), a byte trie
//! finds every occurrence of every special token in one pass; the claims are then settled in
//! priority order.

use std::collections::HashMap;
use std::ops::Range;

use super::vocab::{Attr, FxBuild, TokenId, Vocab};

/// A piece of input after special tokens are cut out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// A byte range of the input to run through the model's tokenizer.
    Text(Range<usize>),
    /// A special token matched in the input.
    Token(TokenId),
}

/// A trie over the texts of the special tokens.
pub(crate) struct SpecialMatcher {
    /// (node, next byte) → child node; node 0 is the root.
    edges: HashMap<(u32, u8), u32, FxBuild>,
    /// Per node: the token whose text ends here, with its priority (lower is tried first).
    ends: Vec<Option<(u32, TokenId)>>,
    /// Bytes that start some special token (a quick filter for positions).
    first: [bool; 256],
}

impl SpecialMatcher {
    /// Index every token with the control, unknown or user-defined attribute.
    pub fn new(vocab: &Vocab) -> SpecialMatcher {
        let mut specials: Vec<TokenId> = (0..vocab.len() as TokenId)
            .filter(|&id| vocab.attr(id).has(Attr::CONTROL | Attr::UNKNOWN | Attr::USER_DEFINED))
            .collect();
        // Longest first; equal lengths by id (llama.cpp leaves their order unspecified).
        specials.sort_by_key(|&id| (std::cmp::Reverse(vocab.text(id).len()), id));
        let mut m = SpecialMatcher { edges: HashMap::default(), ends: vec![None], first: [false; 256] };
        for (priority, &id) in specials.iter().enumerate() {
            let text = vocab.text(id).as_bytes();
            let Some(&b0) = text.first() else { continue };
            m.first[b0 as usize] = true;
            let mut node = 0u32;
            for &b in text {
                node = match m.edges.get(&(node, b)) {
                    Some(&child) => child,
                    None => {
                        let child = m.ends.len() as u32;
                        m.ends.push(None);
                        m.edges.insert((node, b), child);
                        child
                    }
                };
            }
            let slot = &mut m.ends[node as usize];
            if slot.is_none() {
                *slot = Some((priority as u32, id));
            }
        }
        m
    }

    /// Split `text` into plain-text fragments and special tokens, in order, appending to `out`.
    pub fn partition(&self, vocab: &Vocab, text: &str, parse_special: bool, out: &mut Vec<Fragment>) {
        let bytes = text.as_bytes();
        // Every occurrence of an eligible special token: (priority, start, end, id).
        let mut found: Vec<(u32, usize, usize, TokenId)> = Vec::new();
        for start in 0..bytes.len() {
            if !self.first[bytes[start] as usize] {
                continue;
            }
            let mut node = 0u32;
            for (end, &b) in bytes.iter().enumerate().skip(start) {
                match self.edges.get(&(node, b)) {
                    Some(&child) => node = child,
                    None => break,
                }
                if let Some(Some((priority, id))) = self.ends.get(node as usize) {
                    let control = vocab.attr(*id).has(Attr::CONTROL | Attr::UNKNOWN);
                    if parse_special || !control {
                        found.push((*priority, start, end + 1, *id));
                    }
                }
            }
        }
        if found.is_empty() {
            if !text.is_empty() {
                out.push(Fragment::Text(0..text.len()));
            }
            return;
        }
        // Settle claims in priority order, each token's occurrences left to right: an
        // occurrence is taken unless it overlaps one taken before.
        found.sort_unstable();
        let mut taken: Vec<(usize, usize, TokenId)> = Vec::new(); // sorted by start, disjoint
        for (_, start, end, id) in found {
            let i = taken.partition_point(|t| t.0 < start);
            let clashes_left = i > 0 && taken[i - 1].1 > start;
            let clashes_right = i < taken.len() && taken[i].0 < end;
            if !clashes_left && !clashes_right {
                taken.insert(i, (start, end, id));
            }
        }
        let mut pos = 0;
        for (start, end, id) in taken {
            if start > pos {
                out.push(Fragment::Text(pos..start));
            }
            out.push(Fragment::Token(id));
            pos = end;
        }
        if pos < text.len() {
            out.push(Fragment::Text(pos..text.len()));
        }
    }
}
