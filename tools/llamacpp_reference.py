#!/usr/bin/env python3
"""Run llama.cpp's tokenizer on the corpus; write tests/data/tokenizer_llamacpp_<name>.json.

Usage: python3 tools/llamacpp_reference.py NAME MODEL.gguf ./llamacpp_tokenize "llama.cpp version"
(build llamacpp_tokenize from tools/llamacpp_tokenize.cpp first).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data")


def main():
    name, model, harness, version = sys.argv[1:5]
    with open(os.path.join(DATA, "tokenizer_corpus.json"), encoding="utf-8") as f:
        corpus = json.load(f)
    with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as tmp:
        for s in corpus:
            b = s.encode("utf-8")
            tmp.write(struct.pack("<I", len(b)) + b)
    try:
        out = subprocess.run([harness, model, tmp.name], capture_output=True, check=True).stdout.decode()
    finally:
        os.unlink(tmp.name)
    lines = out.splitlines()
    assert len(lines) == 3 * len(corpus), (len(lines), len(corpus))
    cases = []
    for i, text in enumerate(corpus):
        for line in lines[3 * i : 3 * i + 3]:
            add, parse, *ids = line.split()
            cases.append({"text": text, "add_special": add == "1", "parse_special": parse == "1", "ids": [int(x) for x in ids]})
    path = os.path.join(DATA, f"tokenizer_llamacpp_{name}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"model": os.path.basename(model), "reference": version, "cases": cases}, f, ensure_ascii=False)
        f.write("\n")
    print(f"{len(cases)} cases -> {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
