//! n-gram keys and the index that maps them to positions: what prompt lookup (over the context)
//! and the corpus of the model's own replies (over its saved tokens) both search, kept apart from
//! either so neither depends on the other.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::tokenizer::TokenId;

/// A hasher for keys that are already well mixed u64 values.
#[derive(Default)]
pub(crate) struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// n-gram key → a position (of what followed the n-gram).
pub(crate) type Index = HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>;

/// The key of an n-gram: its tokens and its length, mixed (collisions are checked against the
/// tokens themselves before a match is used).
pub(crate) fn gram_key(gram: &[TokenId]) -> u64 {
    let mut h = 0x9E37_79B9_7F4A_7C15u64 ^ gram.len() as u64;
    for &t in gram {
        h = (h ^ u64::from(t)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 29;
    }
    h
}
