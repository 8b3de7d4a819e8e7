//! Streaming detokenization: tokens arrive one at a time, text leaves only in whole characters.
//!
//! A byte-level token can end in the middle of a UTF-8 character (an emoji is often two or
//! three tokens), so printing each token's bytes as they come would print broken characters.
//! The decoder keeps the incomplete tail of a character until the tokens that finish it arrive;
//! bytes that can never form a character become U+FFFD, exactly as `String::from_utf8_lossy`
//! would on the whole output. The concatenated output therefore equals
//! [`Tokenizer::decode`](super::Tokenizer::decode) of all the tokens, except that decoding's
//! space clean-up (used by some BPE models, not SmolLM2 or Gemma) is not applied.

use super::{TokenId, Tokenizer};
use crate::error::Result;

/// Turns a stream of tokens into text, never splitting a UTF-8 character.
#[derive(Clone, Debug)]
pub struct StreamDecoder {
    render_special: bool,
    /// Drop one leading space from the first token (SentencePiece's added prefix space).
    lstrip_first: bool,
    first: bool,
    /// Bytes received but not yet emitted: at most the start of one character.
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// A decoder; `render_special` renders control tokens as their text. `lstrip_first` removes
    /// one leading space from the first token, as decoding does for tokenizers that add one.
    pub fn new(render_special: bool, lstrip_first: bool) -> StreamDecoder {
        StreamDecoder { render_special, lstrip_first, first: true, pending: Vec::with_capacity(8) }
    }

    /// Add token `id`, appending to `out` all text that is now complete.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: TokenId, out: &mut String) -> Result<()> {
        let lstrip = self.first && self.lstrip_first;
        tokenizer.append_piece_lstrip(id, self.render_special, lstrip, &mut self.pending)?;
        self.first = false;
        self.drain(out, false);
        Ok(())
    }

    /// Emit whatever is still held (an incomplete character becomes U+FFFD) and reset.
    pub fn finish(&mut self, out: &mut String) {
        self.drain(out, true);
        self.first = true;
    }

    /// Whether bytes of an incomplete character are being held.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Move complete characters from `pending` to `out`; at the end, flush everything.
    fn drain(&mut self, out: &mut String, at_end: bool) {
        let mut done = 0;
        loop {
            match std::str::from_utf8(&self.pending[done..]) {
                Ok(s) => {
                    out.push_str(s);
                    done = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The prefix was just checked to be valid UTF-8.
                    out.push_str(std::str::from_utf8(&self.pending[done..done + valid]).unwrap_or_default());
                    done += valid;
                    match e.error_len() {
                        // Invalid bytes: one replacement character, as lossy decoding does.
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            done += n;
                        }
                        // An incomplete character at the end: wait for more bytes.
                        None if !at_end => break,
                        None => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            done = self.pending.len();
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..done);
    }
}
