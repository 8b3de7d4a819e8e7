//! The vocabulary: token texts, scores and types as read from GGUF, and a text → id index.
//!
//! A 262k-entry vocabulary (Gemma 3) is held as one contiguous text buffer plus offsets, and the
//! text → id lookup is an open-addressing table of ids hashed by their text, so the vocabulary
//! costs one copy of the texts and no per-token allocation.

use std::hash::{BuildHasherDefault, Hasher};

use crate::error::{Error, Result};

/// A token id: an index into the vocabulary.
pub type TokenId = u32;

/// The type GGUF gives each token (`tokenizer.ggml.token_type`, the SentencePiece piece types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenType {
    /// A type id this reader does not know (or 0).
    Undefined,
    /// Ordinary text.
    Normal,
    /// The unknown token.
    Unknown,
    /// A control token (BOS, EOS, turn markers): not text; rendered only on request.
    Control,
    /// A user-defined token: text that is always matched whole, before the model's algorithm runs.
    UserDefined,
    /// A reserved, unused slot.
    Unused,
    /// A byte-fallback token `<0xNN>`.
    Byte,
}

impl TokenType {
    /// The type for GGUF's integer code.
    pub fn from_code(code: i64) -> TokenType {
        match code {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }
}

/// Attribute bits that drive tokenization and decoding. They start from the GGUF type, and the
/// loader may add `CONTROL` to end-of-turn tokens a converter mislabelled (as llama.cpp does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Attr(pub u8);

impl Attr {
    pub const NORMAL: u8 = 1;
    pub const UNKNOWN: u8 = 2;
    pub const CONTROL: u8 = 4;
    pub const USER_DEFINED: u8 = 8;
    pub const UNUSED: u8 = 16;
    pub const BYTE: u8 = 32;

    pub fn from_type(t: TokenType) -> Attr {
        Attr(match t {
            TokenType::Undefined => 0,
            TokenType::Normal => Self::NORMAL,
            TokenType::Unknown => Self::UNKNOWN,
            TokenType::Control => Self::CONTROL,
            TokenType::UserDefined => Self::USER_DEFINED,
            TokenType::Unused => Self::UNUSED,
            TokenType::Byte => Self::BYTE,
        })
    }

    pub fn has(self, bits: u8) -> bool {
        self.0 & bits != 0
    }

    pub fn add(&mut self, bits: u8) {
        self.0 |= bits;
    }
}

/// All token texts, scores and attributes, and the text → id index.
pub(crate) struct Vocab {
    /// Every token's text, concatenated in id order.
    text: String,
    /// (n_vocab + 1) byte offsets into `text`; token i is `text[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<u32>,
    /// (n_vocab) SentencePiece scores (0 when the file has none).
    pub scores: Vec<f32>,
    /// (n_vocab) types as stored in the file.
    pub types: Vec<TokenType>,
    /// (n_vocab) behaviour bits.
    pub attrs: Vec<Attr>,
    /// Open-addressing table of ids (`EMPTY` marks a free slot); length a power of two.
    slots: Vec<u32>,
}

const EMPTY: u32 = u32::MAX;

impl Vocab {
    /// Build from the token texts, scores and types (`scores`/`types` may be empty: 0 and Normal).
    ///
    /// An empty text is replaced by `[EMPTY_<id>]` and a duplicate text is an error, both as
    /// llama.cpp does, so that every text maps to exactly one id.
    pub fn new(texts: &[&str], scores: &[f32], types: &[TokenType]) -> Result<Vocab> {
        let n = texts.len();
        if n == 0 {
            return Err(Error::format("the vocabulary is empty"));
        }
        if n >= EMPTY as usize {
            return Err(Error::format(format!("vocabulary of {n} tokens is too large")));
        }
        if !scores.is_empty() && scores.len() < n {
            return Err(Error::format(format!("{} token scores for {n} tokens", scores.len())));
        }
        if !types.is_empty() && types.len() < n {
            return Err(Error::format(format!("{} token types for {n} tokens", types.len())));
        }
        let total: usize = texts.iter().map(|t| t.len().max(16)).sum();
        let mut text = String::with_capacity(total);
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0u32);
        for (i, t) in texts.iter().enumerate() {
            if t.is_empty() {
                text.push_str(&format!("[EMPTY_{i}]"));
            } else {
                text.push_str(t);
            }
            let end = u32::try_from(text.len())
                .map_err(|_| Error::format("the vocabulary's texts exceed 4 GiB"))?;
            offsets.push(end);
        }
        let scores = if scores.is_empty() { vec![0.0; n] } else { scores[..n].to_vec() };
        let types = if types.is_empty() { vec![TokenType::Normal; n] } else { types[..n].to_vec() };
        let attrs = types.iter().map(|&t| Attr::from_type(t)).collect();
        let mut vocab = Vocab { text, offsets, scores, types, attrs, slots: Vec::new() };
        vocab.build_index()?;
        Ok(vocab)
    }

    fn build_index(&mut self) -> Result<()> {
        let n = self.len();
        let cap = (n * 2).next_power_of_two().max(16);
        self.slots = vec![EMPTY; cap];
        let mask = cap - 1;
        for id in 0..n as u32 {
            let t = self.text(id);
            let mut i = hash_str(t) as usize & mask;
            loop {
                let slot = self.slots[i];
                if slot == EMPTY {
                    self.slots[i] = id;
                    break;
                }
                if self.text(slot) == t {
                    return Err(Error::format(format!(
                        "duplicate token in vocabulary: {t:?} has ids {slot} and {id}"
                    )));
                }
                i = (i + 1) & mask;
            }
        }
        Ok(())
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// The text of token `id` (the caller checks `id < len()`; out of range gives "").
    pub fn text(&self, id: TokenId) -> &str {
        let i = id as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => self.text.get(a as usize..b as usize).unwrap_or_default(),
            _ => "",
        }
    }

    /// The id whose text is exactly `s`.
    pub fn find(&self, s: &str) -> Option<TokenId> {
        let mask = self.slots.len() - 1;
        let mut i = hash_str(s) as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot == EMPTY {
                return None;
            }
            if self.text(slot) == s {
                return Some(slot);
            }
            i = (i + 1) & mask;
        }
    }

    /// The attribute bits of `id` (empty when out of range).
    pub fn attr(&self, id: TokenId) -> Attr {
        self.attrs.get(id as usize).copied().unwrap_or_default()
    }

    /// The length in bytes of the longest token text.
    pub fn max_token_len(&self) -> usize {
        self.offsets.windows(2).map(|w| (w[1] - w[0]) as usize).max().unwrap_or(0)
    }
}

/// FxHash-style string hash: fast for the short keys of a vocabulary; not DoS-resistant, which
/// does not matter for tables built from a model file.
pub(crate) fn hash_str(s: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(s.as_bytes());
    h.finish()
}

/// A small, fast, non-cryptographic hasher (the rustc FxHash recipe) for integer-keyed maps.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
        self.add(bytes.len() as u64);
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }

    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.add(v as u64);
    }

    /// The multiply-rotate steps leave the low bits weak (they depend only on the low bits of
    /// the input), and tables index by the low bits: finish with a full avalanche (MurmurHash3's
    /// 64-bit finalizer) so that keys sharing a prefix, like every `▁`-word, spread out.
    #[inline]
    fn finish(&self) -> u64 {
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// `HashMap` builder using [`FxHasher`].
pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;
