//! Text ↔ tokens for a GGUF model, matching llama.cpp token for token.
//!
//! The vocabulary comes from the file's `tokenizer.ggml.*` metadata. Two algorithms cover the
//! models we run: byte-level BPE (`model = "gpt2"`: SmolLM2, with the pre-tokenizer named by
//! `tokenizer.ggml.pre`) and SentencePiece-style BPE with byte fallback (`model = "llama"`:
//! Gemma 3, Llama 2). Both first cut special tokens out of the text (see `special.rs`), then
//! tokenize each plain-text fragment on its own.
//!
//! Decoding works on bytes, because one token may hold part of a UTF-8 character; the
//! [`StreamDecoder`] turns tokens arriving one by one into text without ever splitting a
//! character. Control tokens are not rendered unless asked for.
//!
//! Where llama.cpp's behaviour is a choice rather than a format (which tokens end generation,
//! the default special ids, the order special tokens are matched in), we follow llama.cpp, so
//! that prompts and outputs compare byte for byte.

mod bpe;
mod pretokenize;
mod special;
mod spm;
mod stream;
mod vocab;

#[cfg(test)]
mod tests;

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, ValueType};
use bpe::{Bpe, BpeScratch};
use special::{Fragment, SpecialMatcher};
use spm::{Spm, SpmScratch, SPACE_MARKER};
use vocab::{Attr, Vocab};

pub use pretokenize::PreTokenizer;
pub use stream::StreamDecoder;
pub use vocab::{TokenId, TokenType};

/// The tokenization algorithm of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// Byte-level BPE with merges (`tokenizer.ggml.model = "gpt2"`).
    Bpe,
    /// SentencePiece-style BPE over scores with byte fallback (`tokenizer.ggml.model = "llama"`).
    Spm,
}

enum Model {
    Bpe(Box<Bpe>),
    Spm(Box<Spm>),
}

/// A model's tokenizer: vocabulary, algorithm, special tokens and flags.
pub struct Tokenizer {
    vocab: Vocab,
    model: Model,
    special: SpecialMatcher,
    bos: Option<TokenId>,
    eos: Option<TokenId>,
    eot: Option<TokenId>,
    unk: Option<TokenId>,
    pad: Option<TokenId>,
    /// Tokens that end generation, sorted.
    eog: Vec<TokenId>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    /// Undo "word ." spacing when decoding (BPE models whose tokenizer asks for it).
    clean_spaces: bool,
    pre_name: String,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind())
            .field("pre", &self.pre_name)
            .field("n_vocab", &self.n_vocab())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .finish()
    }
}

/// How a BPE pre-tokenizer name configures the tokenizer: (splitter, clean spaces on decode,
/// emit whole-word tokens without merging, add BOS by default).
fn bpe_pre(name: &str) -> Option<(PreTokenizer, bool, bool, bool)> {
    let gpt2 = PreTokenizer::Gpt2 { split_digits: false };
    let digits = PreTokenizer::Gpt2 { split_digits: true };
    let llama3 = PreTokenizer::Llama3 { max_digits: 3 };
    let qwen2 = PreTokenizer::Llama3 { max_digits: 1 };
    Some(match name {
        "smollm" | "command-r" => (digits, false, false, false),
        "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
            (digits, true, false, false)
        }
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0"
        | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais" | "exaone4" => (gpt2, true, false, false),
        "trillion" | "granite-docling" => (gpt2, false, false, false),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" => {
            (llama3, true, true, true)
        }
        "dbrx" | "smaug-bpe" => (llama3, true, false, false),
        "qwen2" | "deepseek-r1-qwen" => (qwen2, false, false, false),
        "stablelm2" | "megrez" => (qwen2, true, false, false),
        _ => return None,
    })
}

impl Tokenizer {
    /// Read the tokenizer from a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer> {
        let model_name = file.get_str("tokenizer.ggml.model")?.ok_or_else(|| {
            Error::not_found("the model has no tokenizer (tokenizer.ggml.model is missing)")
        })?;
        let texts = file
            .get_array("tokenizer.ggml.tokens")?
            .ok_or_else(|| {
                Error::not_found("the model has no vocabulary (tokenizer.ggml.tokens is missing)")
            })?
            .strings()?;
        let scores = match file.get_array("tokenizer.ggml.scores")? {
            None => Vec::new(),
            Some(a) if matches!(a.elem_type(), ValueType::F32 | ValueType::F64) => a.f32s()?,
            Some(a) => a.ints()?.into_iter().map(|v| v as f32).collect(),
        };
        let types: Vec<TokenType> = match file.get_array("tokenizer.ggml.token_type")? {
            None => Vec::new(),
            Some(a) => a.ints()?.into_iter().map(TokenType::from_code).collect(),
        };
        let mut vocab =
            Vocab::new(&texts, &scores, &types).map_err(|e| e.context("tokenizer.ggml.tokens"))?;
        let pre_name = file.get_str("tokenizer.ggml.pre")?.unwrap_or("default").to_string();

        // Defaults per algorithm, as llama.cpp sets them before reading the metadata.
        let (model, mut bos, mut eos, mut unk, mut add_bos, mut add_space_prefix, clean_spaces) =
            match model_name {
                "gpt2" => {
                    let merges = file
                        .get_array("tokenizer.ggml.merges")?
                        .ok_or_else(|| Error::not_found("a BPE tokenizer without tokenizer.ggml.merges"))?
                        .strings()?;
                    let (pre, clean, ignore_merges, add_bos) = bpe_pre(&pre_name).ok_or_else(|| {
                        Error::unsupported(format!("BPE pre-tokenizer {pre_name:?} (tokenizer.ggml.pre)"))
                    })?;
                    let bpe = Bpe::new(&vocab, &merges, pre, ignore_merges);
                    (Model::Bpe(Box::new(bpe)), Some(11), Some(11), None, add_bos, false, clean)
                }
                "llama" => {
                    (Model::Spm(Box::new(Spm::new(&vocab))), Some(1), Some(2), Some(0), true, true, false)
                }
                other => {
                    return Err(Error::unsupported(format!(
                        "tokenizer model {other:?} (tokenizer.ggml.model)"
                    )))
                }
            };
        let n = vocab.len();
        let in_range = |id: Option<TokenId>| id.filter(|&i| (i as usize) < n);
        let read_id = |key: &str, default: Option<TokenId>| -> Result<Option<TokenId>> {
            Ok(match file.get_u64(key)? {
                Some(v) if (v as usize) < n => Some(v as TokenId),
                _ => in_range(default),
            })
        };
        bos = read_id("tokenizer.ggml.bos_token_id", bos)?;
        eos = read_id("tokenizer.ggml.eos_token_id", eos)?;
        unk = read_id("tokenizer.ggml.unknown_token_id", unk)?;
        let pad = read_id("tokenizer.ggml.padding_token_id", None)?;
        let eot = read_id("tokenizer.ggml.eot_token_id", None)?;
        let eom = read_id("tokenizer.ggml.eom_token_id", None)?;
        if let Some(v) = file.get_bool("tokenizer.ggml.add_space_prefix")? {
            add_space_prefix = v;
        }
        if let Some(v) = file.get_bool("tokenizer.ggml.add_bos_token")? {
            add_bos = v;
        }
        let add_eos = file.get_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false);
        if add_bos && bos.is_none() {
            return Err(Error::format("tokenizer.ggml.add_bos_token is true, but there is no BOS token"));
        }
        if add_eos && eos.is_none() {
            return Err(Error::format("tokenizer.ggml.add_eos_token is true, but there is no EOS token"));
        }

        let (eot, eog) = special::end_of_generation(&mut vocab, eos, eot, eom);
        let special = SpecialMatcher::new(&vocab);
        Ok(Tokenizer {
            vocab,
            model,
            special,
            bos,
            eos,
            eot,
            unk,
            pad,
            eog,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
            pre_name,
        })
    }

    /// Tokenize `text`. With `add_special`, the BOS/EOS tokens the model asks for
    /// (`add_bos_token`/`add_eos_token`) are added; with `parse_special`, control tokens written
    /// in the text (`<|im_start|>`) become those tokens instead of being spelled out.
    /// User-defined tokens are always matched.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<TokenId> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        self.encode_into(text, add_special, parse_special, &mut out);
        out
    }

    /// [`Tokenizer::encode`], appending to `out`.
    pub fn encode_into(&self, text: &str, add_special: bool, parse_special: bool, out: &mut Vec<TokenId>) {
        let mut fragments = Vec::new();
        self.special.partition(&self.vocab, text, parse_special, &mut fragments);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        match &self.model {
            Model::Bpe(bpe) => {
                let mut scratch = BpeScratch::default();
                for f in fragments {
                    match f {
                        Fragment::Text(r) => bpe.encode(&self.vocab, &text[r], out, &mut scratch),
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
            Model::Spm(spm) => {
                let mut scratch = SpmScratch::default();
                // A space is prefixed to text that starts the input or follows a special token.
                let mut after_special = true;
                for f in fragments {
                    match f {
                        Fragment::Text(r) => {
                            let prefix = self.add_space_prefix && after_special;
                            spm.encode(&self.vocab, &text[r], prefix, out, &mut scratch);
                            after_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            after_special = true;
                        }
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
    }

    /// Append the bytes of token `id` to `out`. Control and unknown tokens give nothing unless
    /// `render_special`; unused tokens always give nothing. An error if `id` is out of range.
    pub fn append_piece(&self, id: TokenId, render_special: bool, out: &mut Vec<u8>) -> Result<()> {
        self.append_piece_lstrip(id, render_special, false, out)
    }

    /// The bytes of token `id` (see [`Tokenizer::append_piece`]).
    pub fn token_to_piece(&self, id: TokenId, render_special: bool) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.append_piece(id, render_special, &mut out)?;
        Ok(out)
    }

    /// `append_piece`, dropping one leading space when `lstrip` (the space SentencePiece adds).
    fn append_piece_lstrip(
        &self,
        id: TokenId,
        render_special: bool,
        lstrip: bool,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        if id as usize >= self.vocab.len() {
            return Err(Error::invalid(format!(
                "token id {id} is outside the vocabulary of {}",
                self.vocab.len()
            )));
        }
        let start = out.len();
        let attr = self.vocab.attr(id);
        let text = self.vocab.text(id);
        if attr.has(Attr::CONTROL | Attr::UNKNOWN) {
            if render_special {
                out.extend_from_slice(text.as_bytes());
            }
        } else if attr.has(Attr::USER_DEFINED) {
            out.extend_from_slice(text.as_bytes());
        } else if attr.has(Attr::NORMAL) {
            match &self.model {
                Model::Spm(_) => {
                    for c in text.chars() {
                        let c = if c == SPACE_MARKER { ' ' } else { c };
                        out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes());
                    }
                }
                Model::Bpe(bpe) => {
                    for c in text.chars() {
                        match bpe.byte_level().byte_of(c) {
                            Some(b) => out.push(b),
                            None => {
                                // Not a byte character: llama.cpp writes a marker with its bytes.
                                out.extend_from_slice(b"[UNK_BYTE_0x");
                                for b in c.encode_utf8(&mut [0u8; 4]).bytes() {
                                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                                }
                                out.extend_from_slice(text.as_bytes());
                                out.push(b']');
                            }
                        }
                    }
                }
            }
        } else if attr.has(Attr::BYTE) {
            if let Some(b) = parse_byte_token(text) {
                out.push(b);
            }
        }
        if lstrip && out.get(start) == Some(&b' ') {
            out.remove(start);
        }
        Ok(())
    }

    /// Decode `ids` to bytes (which need not be valid UTF-8 if the ids end inside a character).
    pub fn decode_bytes(&self, ids: &[TokenId], render_special: bool) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for (i, &id) in ids.iter().enumerate() {
            self.append_piece_lstrip(id, render_special, i == 0 && self.add_space_prefix, &mut out)?;
        }
        if self.clean_spaces {
            clean_up_spaces(&mut out);
        }
        Ok(out)
    }

    /// Decode `ids` to text; bytes that are not valid UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[TokenId], render_special: bool) -> Result<String> {
        let bytes = self.decode_bytes(ids, render_special)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// A streaming decoder for this tokenizer's output (see [`StreamDecoder`]).
    pub fn stream_decoder(&self, render_special: bool) -> StreamDecoder {
        StreamDecoder::new(render_special, self.add_space_prefix)
    }

    /// The algorithm.
    pub fn kind(&self) -> TokenizerKind {
        match self.model {
            Model::Bpe(_) => TokenizerKind::Bpe,
            Model::Spm(_) => TokenizerKind::Spm,
        }
    }

    /// The pre-tokenizer name from the file (`tokenizer.ggml.pre`; "default" when absent).
    pub fn pre_tokenizer_name(&self) -> &str {
        &self.pre_name
    }

    /// Number of tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        self.vocab.len()
    }

    /// The beginning-of-sequence token.
    pub fn bos(&self) -> Option<TokenId> {
        self.bos
    }

    /// The end-of-sequence token.
    pub fn eos(&self) -> Option<TokenId> {
        self.eos
    }

    /// The end-of-turn token (from metadata, else found by its text, e.g. `<|im_end|>`; the
    /// first of llama.cpp's list of such texts that the vocabulary has).
    pub fn eot(&self) -> Option<TokenId> {
        self.eot
    }

    /// The unknown token.
    pub fn unk(&self) -> Option<TokenId> {
        self.unk
    }

    /// The padding token.
    pub fn pad(&self) -> Option<TokenId> {
        self.pad
    }

    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Whether generation stops at `id`: EOS, end of turn, and the texts llama.cpp stops on
    /// (see `special::end_of_generation`).
    pub fn is_eog(&self, id: TokenId) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// All end-of-generation tokens, sorted.
    pub fn eog_ids(&self) -> &[TokenId] {
        &self.eog
    }

    /// The text of token `id` as stored in the vocabulary (byte-level or `▁` spelling).
    pub fn token_text(&self, id: TokenId) -> Option<&str> {
        ((id as usize) < self.vocab.len()).then(|| self.vocab.text(id))
    }

    /// The id of the token whose stored text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<TokenId> {
        self.vocab.find(text)
    }

    /// The type the file gives token `id`.
    pub fn token_type(&self, id: TokenId) -> Option<TokenType> {
        self.vocab.types.get(id as usize).copied()
    }

    /// The SentencePiece score of token `id` (0 for BPE vocabularies).
    pub fn token_score(&self, id: TokenId) -> Option<f32> {
        self.vocab.scores.get(id as usize).copied()
    }

    /// Whether token `id` is a control token (not rendered as text by default).
    pub fn is_control(&self, id: TokenId) -> bool {
        self.vocab.attr(id).has(Attr::CONTROL)
    }

    /// The length in bytes of the longest token text.
    pub fn max_token_len(&self) -> usize {
        self.vocab.max_token_len()
    }
}

/// The byte of a `<0xNN>` token.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

/// llama.cpp's `clean_up_tokenization_spaces`: drop the space in " ?", " !", " .", " ,", in
/// " ' " (both), and before "'s", "'m", "'re", "'ve".
fn clean_up_spaces(text: &mut Vec<u8>) {
    fn pass(text: &mut Vec<u8>, f: impl Fn(&[u8], usize) -> bool) {
        // `f(text, i)` says whether the space just before position i goes.
        let mut out = Vec::with_capacity(text.len());
        for i in 0..text.len() {
            if i > 0 && text[i - 1] == b' ' && f(text, i) {
                out.pop();
            }
            out.push(text[i]);
        }
        *text = out;
    }
    pass(text, |t, i| matches!(t[i], b'?' | b'!' | b'.' | b','));
    // " ' " → "'": drop both spaces around a lone apostrophe. A space consumed this way no
    // longer counts as the space before the next character.
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    let mut consumed = usize::MAX;
    while i < text.len() {
        let x = text[i];
        let space_before = i > 0 && text[i - 1] == b' ' && consumed != i - 1;
        if x == b'\'' && space_before && text.get(i + 1) == Some(&b' ') {
            out.pop();
            out.push(x);
            consumed = i + 1;
            i += 2;
            continue;
        }
        out.push(x);
        i += 1;
    }
    *text = out;
    pass(text, |t, i| {
        t[i] == b'\''
            && matches!(
                (t.get(i + 1), t.get(i + 2)),
                (Some(b's' | b'm'), _) | (Some(b'r' | b'v'), Some(b'e'))
            )
    });
}
