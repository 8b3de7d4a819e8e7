#!/usr/bin/env python3
"""Write tests/data/tokenizer_corpus.json: the strings every tokenizer parity check runs on.

Kept as a script so the corpus can be regenerated or extended; the JSON file is what the tests
read. Each category aims at a different edge of pre-tokenization, merging or special tokens.
"""
import json
import os

corpus = [
    # empty and whitespace-only
    "", " ", "  ", "   ", "\n", "\n\n", "\n\n\n", "\t", " \t \n", "\r\n", "\r\n\r\n", "    \n    ",
    # plain English
    "Hello world",
    "Hello, world! How are you today?",
    " Hello world",
    "hello  world   with    runs     of      spaces",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they're fine, we've seen it, he'll come, she'd go, it's done. DON'T SHOUT, IT'S LOUD.",
    "rock 'n' roll, 'quoted', ''double'', ' lone apostrophe",
    "Trailing space ",
    "Trailing spaces   ",
    "line one\nline two\n\nline four\n",
    "   leading spaces",
    "mixed\twhite \t space\n \n\t\tend",
    "Once upon a time, in a land far, far away, there lived a small robot who loved to read books. Every night it would open a new story and learn a few more words.",
    # digits and numbers
    "1", "12", "123", "1234567890", "3.14159", "1,000,000", "2024-06-01", "v1.2.3", "0x1F", "abc123def", "x = 42 + 7 * (3 - 1)",
    " 7 8 9 ", "x²+y³=z⁴, ½ + ¼ = ¾, Ⅻ", "٣ + ٤ = ٧ and ३ + ४",
    # code
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n",
    "{\"name\": \"edgespec\", \"version\": \"0.1.0\", \"tags\": [\"llm\", \"edge\"], \"ok\": true}",
    "<html><body><table><tr><td>cell</td></tr></table><b>bold</b> <i>it</i></body></html>",
    "if (a && b || !c) { x += 1; } // comment\n\t/* block */",
    "    indented    code\n\t\ttabs",
    "SELECT * FROM users WHERE id = 7 AND name LIKE '%bob%';",
    "https://example.com/path?query=1&b=two#frag",
    "$ cargo build --release 2>&1 | tee log.txt",
    "#include <stdio.h>\nint main(void) { return 0; }",
    "**bold** _italic_ `code` ## Heading\n- item\n- item 2\n> quote",
    # unicode text
    "café naïve résumé façade Zürich",
    "Ελληνικά κείμενο και αριθμοί",
    "Русский текст с пунктуацией — да!",
    "العربية نص مع أرقام ١٢٣",
    "हिन्दी पाठ में मात्राएँ",
    "ภาษาไทยไม่มีช่องว่าง",
    "עברית מימין לשמאל",
    "Ünïcödé wïth dïäcrïtïcs and ß and Æ ø å",
    "non\u00a0breaking\u00a0space and\u3000ideographic space and\u2009thin",
    "zero\u200bwidth\u200cjoiner\u200d",
    "e\u0301 combining acute vs é precomposed",
    "\u00ad soft hyphen and \ufeff BOM",
    # emoji
    "😀", "😀😃😄", "I ❤️ Rust 🦀!", "👨‍👩‍👧‍👦 family", "🇫🇷🇯🇵 flags", "👍🏽 thumbs", "emoji at end 🎉",
    # CJK
    "中文文本没有空格。",
    "日本語のテキストとカタカナ、ひらがな。",
    "한국어 텍스트입니다.",
    "混合 English 和 中文 text 123",
    "全角ＡＢＣ１２３",
    # special-token texts (SmolLM2's and Gemma's)
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "text<|endoftext|>more text",
    "<|im_start|><|im_end|>",
    "<|im_start|> spaced <|im_end|> ",
    "<file_sep><filename>a.py<gh_stars>10",
    "<bos><start_of_turn>user\nHello!<end_of_turn>\n<start_of_turn>model\n",
    "<start_of_turn>user\nWrite a poem.<end_of_turn>\n",
    "<eos><pad><unk>",
    "<unused0> and <unused99>",
    "<start_of_image> image",
    "[multimodal]",
    "strike <s>this</s> out, and </s> alone",
    "not a token: <|im_sta rt|> <start of turn>",
    "<0x41> looks like a byte token",
    # repetition and long runs
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "                                                  x",
    "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n",
    "\t\t\t\t\t\t\t\t\t\t",
    "!!!???...,,,;;;:::",
    "----------------------------------------",
    "=================== heading ===================",
    # control characters
    "bell\x07 and escape\x1b[0m and nul\x00 and del\x7f",
    "form\x0cfeed and vertical\x0btab and \x1c\x1d\x1e\x1f separators",
    "\x85 next line",
    # private use, unassigned, high planes
    "\ue000\uf8ff private use",
    "\U0001d400\U0001d401 math bold, \U00020000 CJK ext B",
    "\U000e0001 tag char",
]

# A longer passage for performance and multi-sentence context.
corpus.append(
    "The history of computing is a story of abstraction layered on abstraction. Early machines were "
    "programmed by rewiring; then came stored programs, assemblers, compilers, operating systems, and "
    "networks. Each layer hid the details of the one beneath it, letting people think about larger "
    "problems. Today a language model running on a phone rests on all of them at once: transistors, "
    "instruction sets, memory hierarchies, file formats, numerical kernels, and finally the statistics "
    "of human language. In 2024, models with 135M parameters could already hold a conversation; by 2025, "
    "sub-billion models ran at dozens of tokens per second on a $35 board.\n\n"
    "```python\nfor i in range(10):\n    print(f\"{i:>3} {i*i:>5}\")\n```\n"
)

out = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tokenizer_corpus.json")
with open(out, "w", encoding="utf-8") as f:
    json.dump(corpus, f, ensure_ascii=False, indent=1)
    f.write("\n")
print(f"{len(corpus)} strings -> {os.path.normpath(out)}")
