#!/usr/bin/env python3
"""Writes a randomly initialised GPT-2 small with GPT-2's own vocabulary size as a pretext
checkpoint folder, for timing decoding where the LM head is the full 50257 × 768 matrix:

  OUT/checkpoint/model/      config.json + model.safetensors (transformers' GPT2LMHeadModel:
                             12 layers, 12 heads, width 768, 1024 positions, vocab 50257,
                             transformers' own initialisation, tied LM head)
  OUT/checkpoint/tokenizer/  tokenizer.json: a word-level vocabulary "t0" … "t50256", split
                             on whitespace (no network is needed for GPT-2's real BPE files,
                             and decoding cost does not depend on which strings the ids map to)

No end-of-text token is set, so greedy decoding runs for exactly the requested length on both
sides. Then: tools/generate_vs_hf.py --run OUT --prompt "t464 t2068 t7586"

Usage: /work/refenv/bin/python tools/gpt2_random_checkpoint.py --out /tmp/g124v [--seed 0]
"""
import argparse
import os

import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import GPT2Config, GPT2LMHeadModel


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    model_dir = os.path.join(args.out, "checkpoint", "model")
    tok_dir = os.path.join(args.out, "checkpoint", "tokenizer")
    os.makedirs(model_dir, exist_ok=True)
    os.makedirs(tok_dir, exist_ok=True)

    torch.manual_seed(args.seed)
    config = GPT2Config(bos_token_id=None, eos_token_id=None)  # GPT-2 small's sizes
    model = GPT2LMHeadModel(config).eval()
    model.generation_config.bos_token_id = None
    model.generation_config.eos_token_id = None
    model.save_pretrained(model_dir, safe_serialization=True)

    vocab = {f"t{i}": i for i in range(config.vocab_size)}
    tok = Tokenizer(WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = WhitespaceSplit()
    tok.save(os.path.join(tok_dir, "tokenizer.json"))
    print(f"wrote {args.out}: GPT-2 {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
          f"parameters, vocab {config.vocab_size}")


if __name__ == "__main__":
    main()
