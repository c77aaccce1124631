#!/usr/bin/env python3
"""Build the tokenizer fixtures of tests/data_tokenizer_hf.rs.

Trains two small tokenizers on tinyshakespeare with the Hugging Face `tokenizers`
library, the same pipelines as the real ones:
  * bert-wordpiece/tokenizer.json: BERT uncased (BertNormalizer lowercase + strip accents,
    BertPreTokenizer, WordPiece "##" continuation, [CLS] A [SEP] template, WordPiece decoder);
  * gpt2-bpe/tokenizer.json: GPT-2 byte-level BPE (ByteLevel pre-tokenizer without prefix
    space, ByteLevel decoder, <|endoftext|>).
and writes expected.json: for each of a few dozen strings, the ids of
encode(s, add_special_tokens=False) and of add_special_tokens=True, and decode(ids).

Run: /work/refenv/bin/python tools/tokenizer_fixtures.py [path/to/tinyshakespeare.txt]
"""
import json
import os
import sys

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizers")

STRINGS = [
    "",
    "Hello, world!",
    "First Citizen:\nBefore we proceed any further, hear me speak.",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\n\nand\r\nCRLF",
    "multiple     spaces    between",
    "ROMEO: O, she doth teach the torches to burn bright!",
    "What's he that wishes so? My cousin Westmoreland? No, my fair cousin.",
    "numbers 12345 and 3.14159 and 1,000,000",
    "punctuation!!! ??? ... --- ;;; ''' \"quoted\"",
    "café naïve résumé Ångström",
    "Straße and ﬁ ligature",
    "emoji 😀🎉 and ❤️ hearts",
    "中文字符测试",
    "日本語のテキスト",
    "Ελληνικά και русский текст",
    "عربى نص",
    "mixed 中文 and English words",
    "zero\u200bwidth space and\u00a0nbsp",
    "combining e\u0301 accent",
    "unseenwordsthatarelongerthananyvocabularyentry",
    "ALL CAPS SHOUTING",
    "x",
    " ",
    "\n",
    "a\nb\nc",
    "<|endoftext|> special in text",
    "[CLS] [SEP] [MASK] brackets in text",
    "URL https://example.com/path?q=1&r=2",
    "email someone@example.org",
    "C++ and C# and F#",
    "the the the the the",
    "Thou art a villain; I'll have thy head.",
    "O Romeo, Romeo! wherefore art thou Romeo?",
    "KING HENRY VI:\nAh, what a life were this!",
    "tab\tseparated\tvalues",
    "trailing newline\n",
    "\u3000ideographic space",
]


def corpus_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n")


def bert(lines):
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(
        vocab_size=600, min_frequency=2, special_tokens=specials, show_progress=False
    )
    tok.train_from_iterator(lines, trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return tok


def gpt2(lines):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        min_frequency=2,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer=trainer)
    return tok


def expected(tok):
    cases = []
    for s in STRINGS:
        plain = tok.encode(s, add_special_tokens=False).ids
        special = tok.encode(s, add_special_tokens=True).ids
        cases.append(
            {
                "text": s,
                "ids": plain,
                "ids_with_special": special,
                "decoded": tok.decode(plain, skip_special_tokens=False),
            }
        )
    return {"vocab_size": tok.get_vocab_size(with_added_tokens=True), "cases": cases}


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt")
    lines = corpus_lines(src)
    for name, build in (("bert-wordpiece", bert), ("gpt2-bpe", gpt2)):
        tok = build(lines)
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        tok.save(os.path.join(d, "tokenizer.json"), pretty=False)
        with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
            json.dump(expected(tok), f, ensure_ascii=False, indent=1)
        print(name, tok.get_vocab_size(), "tokens ->", d)


if __name__ == "__main__":
    main()
