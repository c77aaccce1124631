#!/usr/bin/env python3
"""Greedy decoding with a KV cache: `pretext generate` against Hugging Face `generate` on the
same GPT-2 checkpoint, same prompt, same number of new tokens, 1 and 2 threads.

The checkpoint is a pretext run folder whose checkpoint/model/ holds a Hugging Face GPT-2
(config.json + model.safetensors) and checkpoint/tokenizer/ a char tokenizer (char.json) or a
Hugging Face tokenizer.json. Two such checkpoints of GPT-2 124M's sizes:

- a 65-character vocabulary (a tiny LM head), after one training step on Shakespeare:
    pretext prepare ../shared/data/tinyshakespeare.txt --tokenizer char --out /tmp/corpus_char
    pretext train --data /tmp/corpus_char --preset gpt2-124m --steps 1 --batch-size 1 \\
        --seq-len 64 --eval-iters 1 --sample-tokens 0 --out /tmp/g124
- GPT-2's own vocabulary size, 50257 (the LM head streams 38.6M more weights per token),
  randomly initialised by transformers, with a word-level tokenizer:
    python tools/gpt2_random_checkpoint.py --out /tmp/g124v
    python tools/generate_vs_hf.py --run /tmp/g124v --prompt "t464 t2068 t7586" \\
        --out tools/results/generate_vs_hf_vocab50257.json

pretext is timed as its whole process (model loading included: an upper bound on its decoding
time); Hugging Face as the `model.generate` call alone, after a warm-up generate, under
torch.inference_mode(). The two alternate `--rounds` times per thread count; each side's median
over rounds is reported, with tokens/s and the pretext/HF speed ratio (> 1: pretext faster).
Both sides must produce the same tokens (greedy decoding of the same weights): the script
encodes pretext's printed text again and fails when its ids differ from Hugging Face's. Writes the table as JSON (atomically).

With --weights bf16, pretext decodes with its matrices in bf16 (`generate --weights bf16`:
f32 activations and sums against bf16 weights). Its tokens are checked against transformers
on the same model with those matrices (every 2-D `.weight`: wte, wpe, c_attn, c_proj, c_fc)
rounded to bf16 in f32, the same arithmetic; that model is timed as `hf`. transformers' own
bf16 model (`model.to(torch.bfloat16)`, activations in bf16 too, so other tokens) is timed as
`hf_bf16`, and the ratio against it reported beside.

Usage: /work/refenv/bin/python tools/generate_vs_hf.py --run /tmp/g124
       [--bin target/release/pretext] [--tokens 1000] [--threads 1 2] [--rounds 3]
       [--weights f32|bf16] [--out tools/results/generate_vs_hf.json]
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
            do_sample=False,
            pad_token_id=0,
        )
        return time.perf_counter() - t, out[0, ids.shape[1]:].tolist()


def pretext_generate(binary, run, prompt, tokens, threads, weights):
    """(seconds, text) of one `pretext generate` process."""
    cmd = [binary, "generate", "--checkpoint", run, "--prompt", prompt,
           "--max-tokens", str(tokens), "--temperature", "0", "--threads", str(threads),
           "--weights", weights]
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t, out


def load_tokenizer(folder):
    """text -> ids with the checkpoint's tokenizer: char.json (one id per character) or a
    Hugging Face tokenizer.json."""
    char_file = os.path.join(folder, "char.json")
    if os.path.isfile(char_file):
        with open(char_file) as f:
            chars = json.load(f)["chars"]
        return lambda text: [chars.index(c) for c in text]
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    return lambda text: tok.encode(text, add_special_tokens=False).ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="pretext run folder (see the module doc)")
    ap.add_argument("--bin", default="target/release/pretext")
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompt", default="\n")
    ap.add_argument("--weights", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--out", default="tools/results/generate_vs_hf.json")
    args = ap.parse_args()

    model_dir = os.path.join(args.run, "checkpoint", "model")
    encode = load_tokenizer(os.path.join(args.run, "checkpoint", "tokenizer"))
    model = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    # No end-of-sequence stop: both sides decode exactly --tokens tokens.
    model.generation_config.eos_token_id = None
    hf_bf16 = None
    if args.weights == "bf16":
        hf_bf16 = GPT2LMHeadModel.from_pretrained(model_dir).eval().to(torch.bfloat16)
        hf_bf16.generation_config.eos_token_id = None
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.dim() == 2 and name.endswith("weight"):
                    p.copy_(p.to(torch.bfloat16).to(torch.float32))
    prompt_ids = encode(args.prompt)
    ids = torch.tensor([prompt_ids])

    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        hf_generate(model, ids, 8)  # warm-up
        if hf_bf16 is not None:
            hf_generate(hf_bf16, ids, 8)
        hf_s, hf_bf16_s, px_s = [], [], []
        for r in range(args.rounds):
            secs, new = hf_generate(model, ids, args.tokens)
            hf_s.append(secs)
            if hf_bf16 is not None:
                hf_bf16_s.append(hf_generate(hf_bf16, ids, args.tokens)[0])
            secs, px_text = pretext_generate(args.bin, args.run, args.prompt, args.tokens,
                                             threads, args.weights)
            px_s.append(secs)
            px_ids = encode(px_text.rstrip("\n"))
            if px_ids != prompt_ids + new:
                first = next((i for i, (a, b) in enumerate(zip(px_ids, prompt_ids + new))
                              if a != b), min(len(px_ids), len(prompt_ids) + len(new)))
                sys.exit(f"round {r}, {threads} threads: pretext and Hugging Face decoded "
                         f"different tokens from position {first}: pretext "
                         f"{px_ids[first:first + 8]}, Hugging Face "
                         f"{(prompt_ids + new)[first:first + 8]}")
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
        line = (f"{threads} thread(s): Hugging Face {row['hf_tokens_per_s']:.1f} tok/s, "
                f"pretext {row['pretext_tokens_per_s']:.1f} tok/s (whole process), "
                f"ratio {row['ratio']:.2f}")
        if hf_bf16_s:
            hb = statistics.median(hf_bf16_s)
            row.update({"hf_bf16_s": hb, "hf_bf16_tokens_per_s": args.tokens / hb,
                        "ratio_vs_hf_bf16": hb / px, "hf_bf16_rounds_s": hf_bf16_s})
            line += (f"; Hugging Face bf16 model {row['hf_bf16_tokens_per_s']:.1f} tok/s, "
                     f"ratio {row['ratio_vs_hf_bf16']:.2f}")
        rows.append(row)
        print(line, flush=True)

    result = {
        "what": "greedy decoding with a KV cache, pretext generate vs transformers generate",
        "model": model_dir,
        "config": {k: getattr(model.config, k) for k in ("n_layer", "n_head", "n_embd",
                                                         "n_positions", "vocab_size")},
        "prompt": args.prompt,
        "weights": args.weights,
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
