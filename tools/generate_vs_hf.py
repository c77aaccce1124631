#!/usr/bin/env python3
"""Greedy decoding with a KV cache: `pretext generate` against Hugging Face `generate` on the
same GPT-2 checkpoint, same prompt, same number of new tokens, 1 and 2 threads.

The checkpoint is a pretext run folder whose checkpoint/model/ holds a Hugging Face GPT-2
(config.json + model.safetensors) and checkpoint/tokenizer/ a char tokenizer, e.g. GPT-2 124M
after one training step on the Shakespeare characters:

  pretext prepare ../shared/data/tinyshakespeare.txt --tokenizer char --out /tmp/corpus_char
  pretext train --data /tmp/corpus_char --preset gpt2-124m --steps 1 --batch-size 1 \\
      --seq-len 64 --eval-iters 1 --sample-tokens 0 --out /tmp/g124

pretext is timed as its whole process (model loading included: an upper bound on its decoding
time); Hugging Face as the `model.generate` call alone, after a warm-up generate, under
torch.inference_mode(). The two alternate `--rounds` times per thread count; each side's median
over rounds is reported, with tokens/s and the pretext/HF speed ratio (> 1: pretext faster).
Both sides must produce the same tokens (greedy decoding of the same weights): the script
checks the decoded text and fails when they differ. Writes the table as JSON (atomically).

Usage: /work/refenv/bin/python tools/generate_vs_hf.py --run /tmp/g124
       [--bin target/release/pretext] [--tokens 1000] [--threads 1 2] [--rounds 3]
       [--out tools/results/generate_vs_hf.json]
Needs torch and transformers (pip install transformers); build the binary first.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from transformers import GPT2LMHeadModel


def hf_generate(model, ids, tokens):
    """(seconds, new token ids) of one greedy generate of exactly `tokens` tokens."""
    with torch.inference_mode():
        t = time.perf_counter()
        out = model.generate(
            ids,
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
            pad_token_id=0,
        )
        return time.perf_counter() - t, out[0, ids.shape[1]:].tolist()


def pretext_generate(binary, run, prompt, tokens, threads):
    """(seconds, text) of one `pretext generate` process."""
    cmd = [binary, "generate", "--checkpoint", run, "--prompt", prompt,
           "--max-tokens", str(tokens), "--temperature", "0", "--threads", str(threads)]
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="pretext run folder (see the module doc)")
    ap.add_argument("--bin", default="target/release/pretext")
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompt", default="\n")
    ap.add_argument("--out", default="tools/results/generate_vs_hf.json")
    args = ap.parse_args()

    model_dir = os.path.join(args.run, "checkpoint", "model")
    with open(os.path.join(args.run, "checkpoint", "tokenizer", "char.json")) as f:
        chars = json.load(f)["chars"]
    model = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    ids = torch.tensor([[chars.index(c) for c in args.prompt]])

    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        hf_generate(model, ids, 8)  # warm-up
        hf_s, px_s = [], []
        for r in range(args.rounds):
            secs, new = hf_generate(model, ids, args.tokens)
            hf_s.append(secs)
            hf_text = args.prompt + "".join(chars[i] for i in new)
            secs, px_text = pretext_generate(args.bin, args.run, args.prompt, args.tokens, threads)
            px_s.append(secs)
            if px_text.rstrip("\n") != hf_text.rstrip("\n"):
                sys.exit(f"round {r}, {threads} threads: pretext and Hugging Face decoded "
                         f"different tokens:\n{px_text[:200]!r}\n{hf_text[:200]!r}")
        hf, px = statistics.median(hf_s), statistics.median(px_s)
        row = {
            "threads": threads,
            "new_tokens": args.tokens,
            "hf_s": hf,
            "pretext_s": px,
            "hf_tokens_per_s": args.tokens / hf,
            "pretext_tokens_per_s": args.tokens / px,
            "ratio": hf / px,
            "hf_rounds_s": hf_s,
            "pretext_rounds_s": px_s,
        }
        rows.append(row)
        print(f"{threads} thread(s): Hugging Face {row['hf_tokens_per_s']:.1f} tok/s, "
              f"pretext {row['pretext_tokens_per_s']:.1f} tok/s (whole process), "
              f"ratio {row['ratio']:.2f}", flush=True)

    result = {
        "what": "greedy decoding with a KV cache, pretext generate vs transformers generate",
        "model": model_dir,
        "config": {k: getattr(model.config, k) for k in ("n_layer", "n_head", "n_embd",
                                                         "n_positions", "vocab_size")},
        "prompt": args.prompt,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "rows": rows,
    }
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out_dir, delete=False, suffix=".tmp") as f:
        json.dump(result, f, indent=2)
        tmp = f.name
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
