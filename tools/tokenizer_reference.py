#!/usr/bin/env python3
"""Independent reference tokenizations for the tokenizer tests.

Builds each model's tokenizer from its GGUF vocabulary with other people's code, tokenizes
tests/data/tokenizer_corpus.json, and writes tests/data/tokenizer_expected_<name>.json, which the
Rust real-model tests compare against:

- byte-level BPE (SmolLM2): Hugging Face `tokenizers` (models.BPE with the GGUF vocab and merges,
  pre-tokenizer Digits(individual) + ByteLevel, as in SmolLM2's tokenizer.json);
- SentencePiece BPE (Gemma 3): Google's `sentencepiece` with a ModelProto built from the GGUF
  pieces, scores and types (BPE, byte fallback, no dummy prefix). Tokens the GGUF marks control
  or user-defined are cut out of the text first, longest first, as Hugging Face's added-token
  matching (and llama.cpp) does.

Usage: pip install tokenizers sentencepiece protobuf gguf numpy
       python3 tools/tokenizer_reference.py smollm2 PATH.gguf
       python3 tools/tokenizer_reference.py gemma3 PATH.gguf
"""
import json
import os
import sys

import gguf

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data")


def read_vocab(path):
    r = gguf.GGUFReader(path)
    f = r.fields

    def arr(key):
        if key not in f:
            return None
        field = f[key]
        return [field.contents(i) for i in range(len(field.data))]

    meta = {k: f[k].contents() for k in f if k.startswith("tokenizer.ggml.") and not isinstance(f[k].contents(), list)}
    return arr("tokenizer.ggml.tokens"), arr("tokenizer.ggml.token_type"), arr("tokenizer.ggml.scores"), arr("tokenizer.ggml.merges"), meta


def partition(text, specials):
    """Cut special-token texts out of `text`, longest first (each claims its occurrences left to
    right where they do not overlap a longer one). Returns a list of str | int."""
    claimed = []  # (start, end, id)
    for tok_text, tok_id in sorted(specials.items(), key=lambda kv: (-len(kv[0]), kv[1])):
        start = 0
        while True:
            i = text.find(tok_text, start)
            if i < 0:
                break
            j = i + len(tok_text)
            if all(j <= a or i >= b for a, b, _ in claimed):
                claimed.append((i, j, tok_id))
                start = j
            else:
                start = i + 1
    claimed.sort()
    out, pos = [], 0
    for a, b, tid in claimed:
        if a > pos:
            out.append(text[pos:a])
        out.append(tid)
        pos = b
    if pos < len(text):
        out.append(text[pos:])
    return out


def smollm2(path, corpus):
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    tokens, types, _, merges, _ = read_vocab(path)
    vocab = {t: i for i, t in enumerate(tokens)}
    merge_pairs = [tuple(m.split(" ", 1)) for m in merges]

    def build(with_specials):
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merge_pairs, ignore_merges=False))
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
        )
        if with_specials:
            tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3])
        return tok

    parse, plain = build(True), build(False)
    cases = []
    for text in corpus:
        cases.append({"text": text, "parse_special": True, "ids": parse.encode(text, add_special_tokens=False).ids})
        cases.append({"text": text, "parse_special": False, "ids": plain.encode(text, add_special_tokens=False).ids})
    return cases


def gemma3(path, corpus):
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    tokens, types, scores, _, meta = read_vocab(path)
    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.vocab_size = len(tokens)
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.unk_id = meta.get("tokenizer.ggml.unknown_token_id", 3)
    m.trainer_spec.bos_id = meta.get("tokenizer.ggml.bos_token_id", 2)
    m.trainer_spec.eos_id = meta.get("tokenizer.ggml.eos_token_id", 1)
    m.trainer_spec.pad_id = meta.get("tokenizer.ggml.padding_token_id", 0)
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", False))
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    for t, ty, s in zip(tokens, types, scores):
        p = m.pieces.add()
        p.piece = t
        p.score = s
        p.type = ty
    sp = spm.SentencePieceProcessor(model_proto=m.SerializeToString())
    control = {t: i for i, (t, ty) in enumerate(zip(tokens, types)) if ty in (2, 3)}
    user = {t: i for i, (t, ty) in enumerate(zip(tokens, types)) if ty == 4}

    def encode(text, parse_special):
        specials = dict(user)
        if parse_special:
            specials.update(control)
        ids = []
        for frag in partition(text, specials):
            ids.extend([frag] if isinstance(frag, int) else sp.encode(frag))
        return ids

    cases = []
    for text in corpus:
        for parse in (True, False):
            cases.append({"text": text, "parse_special": parse, "ids": encode(text, parse)})
    return cases


def main():
    name, path = sys.argv[1], sys.argv[2]
    with open(os.path.join(DATA, "tokenizer_corpus.json"), encoding="utf-8") as f:
        corpus = json.load(f)
    cases = {"smollm2": smollm2, "gemma3": gemma3}[name](path, corpus)
    out = os.path.join(DATA, f"tokenizer_expected_{name}.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"model": os.path.basename(path), "add_special": False, "cases": cases}, f, ensure_ascii=False)
        f.write("\n")
    print(f"{len(cases)} cases -> {os.path.normpath(out)}")


if __name__ == "__main__":
    main()
