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

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use super::vocab::{Attr, FxBuild, TokenId, Vocab};

/// Texts of end-of-turn tokens, in the order we pick the EOT token from (llama.cpp's list).
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Fill-in-the-middle token texts (prefix, suffix, middle, pad, repository, file separator);
/// llama.cpp treats them as control tokens, and stops generation on the last three kinds.
const FIM_TEXTS: [&[&str]; 6] = [
    &[
        "<|fim_prefix|>",
        "<fim-prefix>",
        "<fim_prefix>",
        "<｜fim▁begin｜>",
        "<PRE>",
        "▁<PRE>",
        "<|code_prefix|>",
        "<|prefix|>",
    ],
    &[
        "<|fim_suffix|>",
        "<fim-suffix>",
        "<fim_suffix>",
        "<｜fim▁hole｜>",
        "<SUF>",
        "▁<SUF>",
        "<|code_suffix|>",
        "<|suffix|>",
    ],
    &[
        "<|fim_middle|>",
        "<fim-middle>",
        "<fim_middle>",
        "<｜fim▁end｜>",
        "<MID>",
        "▁<MID>",
        "<|code_middle|>",
        "<|middle|>",
    ],
    &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"],
    &["<|file_sep|>"],
];

/// Texts llama.cpp ends generation on, whatever the metadata says. Note `</s>`: in Gemma 3 it
/// is a user-defined HTML tag token, yet llama.cpp stops on it and treats it as control.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Work out the end-of-turn token and the end-of-generation set as llama.cpp does, marking the
/// tokens it recognises by text as control tokens. `eot`/`eom` are the metadata's ids, if any.
/// Returns the EOT token and the sorted EOG ids.
pub(crate) fn end_of_generation(
    vocab: &mut Vocab,
    eos: Option<TokenId>,
    eot: Option<TokenId>,
    eom: Option<TokenId>,
) -> (Option<TokenId>, Vec<TokenId>) {
    let mut control = Vec::new();
    let eot = eot.or_else(|| {
        let found = EOT_TEXTS.iter().find_map(|t| vocab.find(t));
        control.extend(found);
        found
    });
    let eom = eom.or_else(|| {
        let found = vocab.find("<|eom_id|>");
        control.extend(found);
        found
    });
    let mut eog: Vec<TokenId> = [eos, eot, eom].into_iter().flatten().collect();
    for (kind, texts) in FIM_TEXTS.iter().enumerate() {
        let found: Vec<TokenId> = texts.iter().filter_map(|t| vocab.find(t)).collect();
        if kind >= 3 {
            eog.extend(&found);
        }
        control.extend(found);
    }
    let by_text: Vec<TokenId> = EOG_TEXTS.iter().filter_map(|t| vocab.find(t)).collect();
    eog.extend(&by_text);
    control.extend(by_text);
    for id in control {
        if let Some(a) = vocab.attrs.get_mut(id as usize) {
            a.add(Attr::CONTROL);
        }
    }
    // llama.cpp's model-specific exceptions: gpt-oss/Solar's "<|end|>" is not an end of
    // generation when the vocabulary also has their call/return markers, and Gemma 4's "</s>"
    // is not one when "<|tool_response>" exists.
    let has = |vocab: &Vocab, eog: &[TokenId], t: &str| vocab.find(t).is_some_and(|id| eog.contains(&id));
    let harmony = (has(vocab, &eog, "<|return|>") && has(vocab, &eog, "<|call|>"))
        || (has(vocab, &eog, "<|calls|>") && has(vocab, &eog, "<|flush|>"));
    let exceptions = [
        (harmony, "<|end|>", Attr::USER_DEFINED),
        (has(vocab, &eog, "<|tool_response>"), "</s>", Attr::NORMAL),
    ];
    for (applies, text, attr) in exceptions {
        if let (true, Some(id)) = (applies, vocab.find(text)) {
            eog.retain(|&e| e != id);
            if let Some(a) = vocab.attrs.get_mut(id as usize) {
                *a = Attr(attr);
            }
        }
    }
    eog.sort_unstable();
    eog.dedup();
    (eot, eog)
}

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
        let mut taken: BTreeMap<usize, (usize, TokenId)> = BTreeMap::new(); // start → (end, id)
        for (_, start, end, id) in found {
            let clashes_left = taken.range(..=start).next_back().is_some_and(|(_, &(e, _))| e > start);
            let clashes_right = taken.range(start..end).next().is_some();
            if !clashes_left && !clashes_right {
                taken.insert(start, (end, id));
            }
        }
        let mut pos = 0;
        for (start, (end, id)) in taken {
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
