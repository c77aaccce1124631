#!/usr/bin/env python3
"""Plain-PyTorch reproduction of nanoGPT's shakespeare_char CPU recipe (reference for issue 6).

It follows nanoGPT @3adf61e (model.py, train.py, data/shakespeare_char/prepare.py) with the README's CPU
flags: --device=cpu --compile=False --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
--max_iters=2000 --lr_decay_iters=2000 --dropout=0.0, and train_shakespeare_char.py's learning_rate=1e-3,
min_lr=1e-4, beta2=0.99, warmup_iters=100 (train.py defaults: weight_decay=0.1, beta1=0.9, grad_clip=1.0,
bias=False).

  data    characters of tinyshakespeare.txt; vocab = sorted set of characters (65); the first 90% is
          train, the rest val; a batch is 12 random windows x = d[i:i+64], y = d[i+1:i+65],
          i ~ torch.randint(len(d) - 64) (global torch RNG, seeded by --seed)
  model   GPT: wte (65,128) tied to lm_head, wpe (64,128); 4 pre-LN blocks
          x += c_proj(attn(ln_1 x)); x += mlp(ln_2 x); mlp = c_proj(GELU_erf(c_fc x)) with width 512;
          ln_f; LayerNorm eps 1e-5 with weight only and every Linear without bias; causal attention
          softmax(q k^T / sqrt(32)) v over 4 heads
  init    every Linear and Embedding weight N(0, 0.02); then the c_proj weights N(0, 0.02/sqrt(2*4));
          LayerNorm weights 1 (wte is initialised as lm_head, the Linear; both draw N(0, 0.02))
  optim   AdamW(betas=(0.9, 0.99), eps=1e-8); weight decay 0.1 on params with dim >= 2, 0 otherwise
  lr(it)  it < 100: 1e-3 (it+1)/101; it > 2000: 1e-4; else 1e-4 + 0.5 (1 + cos(pi (it-100)/1900)) 9e-4
  step    loss = mean CE(logits, y); backward; clip_grad_norm_(1.0); step; 2000 updates (it = 0..1999)
  eval    mean loss over --eval-iters (200) random batches of each split, after the last update (this is
          the value nanoGPT prints at iter 2000, before its extra update at iter_num == max_iters)
  --all-windows  also the val loss over every window (no sampling noise; pretext eval --all-windows)
  differs from nanoGPT only in the random stream: nanoGPT also evaluates every 250 iterations and
          prefetches the next batch, which draws extra random numbers; the maths of each step is the same

Usage: nice /work/refenv/bin/python tools/nanogpt_shakespeare_char.py --threads 2 --seed 1337 [--json]
Only on a shared, oversubscribed machine set OMP_WAIT_POLICY=PASSIVE (spinning OpenMP threads then
slow torch's 2-thread run down by an order of magnitude); on an otherwise idle machine the default
(spinning) policy is faster: 0.035-0.037 s/iteration against 0.052 with PASSIVE (Zen 4, 2 threads).
The data path defaults to ../shared/data/tinyshakespeare.txt from the repository root
(or $PRETEXT_SHAKESPEARE).
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
from torch.nn import functional as F


def drop(p):
    """nanoGPT's dropout module; none at all at p = 0, so that the random stream (and so the
    recorded reference runs) is exactly the one without dropout."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, dropout):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=False)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=False)
        self.n_head = n_head
        self.dropout = dropout
        self.resid_dropout = drop(dropout)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q = q.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        k = k.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        v = v.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=p, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        return self.resid_dropout(self.c_proj(y))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, dropout):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, eps=1e-5, bias=False)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.mlp_dropout = drop(dropout)
        self.ln_2 = nn.LayerNorm(n_embd, eps=1e-5, bias=False)
        self.mlp = nn.ModuleDict(
            dict(c_fc=nn.Linear(n_embd, 4 * n_embd, bias=False), c_proj=nn.Linear(4 * n_embd, n_embd, bias=False))
        )

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        h = self.mlp["c_proj"](F.gelu(self.mlp["c_fc"](self.ln_2(x))))  # exact erf GELU
        return x + self.mlp_dropout(h)


class GPT(nn.Module):
    def __init__(self, vocab, block, n_layer, n_head, n_embd, dropout=0.0):
        super().__init__()
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(vocab, n_embd),
                wpe=nn.Embedding(block, n_embd),
                drop=drop(dropout),
                h=nn.ModuleList([Block(n_embd, n_head, dropout) for _ in range(n_layer)]),
                ln_f=nn.LayerNorm(n_embd, eps=1e-5, bias=False),
            )
        )
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying, as nanoGPT
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets):
        t = idx.shape[1]
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(t, device=idx.device))
        x = self.transformer.drop(x)
        for blk in self.transformer.h:
            x = blk(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)


def get_lr(it, lr, min_lr, warmup, decay_iters):
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay_iters:
        return min_lr
    ratio = (it - warmup) / (decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_data = os.environ.get("PRETEXT_SHAKESPEARE", "../shared/data/tinyshakespeare.txt")
    ap.add_argument("--data", default=default_data)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--eval-iters", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--dropout", type=float, default=0.0,
                    help="nanoGPT's dropout (embeddings, attention probabilities, both residual "
                         "branches); its GPU shakespeare_char config uses 0.2")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--log-every", type=int, default=250)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    ap.add_argument("--all-windows", action="store_true",
                    help="also report the val loss over every window d[i:i+64], i < len(val) - 64 (the exact "
                         "mean that random-batch evaluation estimates; pretext eval --all-windows computes the same)")
    args = ap.parse_args()

    if not os.path.exists(args.data):
        sys.exit(f"{args.data}: not found (pass --data or set PRETEXT_SHAKESPEARE)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    text = open(args.data, encoding="utf-8").read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    n = int(len(data) * 0.9)
    splits = {"train": data[:n], "val": data[n:]}
    bs, block = args.batch_size, args.block_size

    def get_batch(split):
        d = splits[split]
        ix = torch.randint(len(d) - block, (bs,))
        x = torch.stack([d[i : i + block] for i in ix])
        y = torch.stack([d[i + 1 : i + 1 + block] for i in ix])
        return x, y

    model = GPT(len(chars), block, args.n_layer, args.n_head, args.n_embd, args.dropout)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.99), eps=1e-8)
    n_params = sum(p.numel() for p in params)

    log = []
    t0 = time.time()
    model.train()
    for it in range(args.iters):
        lr = get_lr(it, args.lr, args.min_lr, args.warmup, args.iters)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = get_batch("train")
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if it % args.log_every == 0 or it == args.iters - 1:
            log.append({"iter": it, "loss": loss.item(), "lr": lr, "elapsed_s": time.time() - t0})
            # Progress goes to stderr so that --json keeps stdout machine-readable.
            print(f"iter {it}: loss {loss.item():.4f} lr {lr:.2e} ({time.time() - t0:.1f}s)", file=sys.stderr, flush=True)
    train_s = time.time() - t0

    model.eval()
    est = {}
    with torch.no_grad():
        for split in ("train", "val"):
            est[split] = sum(model(*get_batch(split)).item() for _ in range(args.eval_iters)) / args.eval_iters
        if args.all_windows:
            d = splits["val"]
            starts = torch.arange(len(d) - block)
            offs = torch.arange(block)
            total = 0.0
            for c in starts.split(256):
                x = d[c[:, None] + offs]
                y = d[c[:, None] + offs + 1]
                total += model(x, y).item() * len(c)
            est["val_all_windows"] = total / len(starts)
    total_s = time.time() - t0
    result = {
        "recipe": "nanoGPT shakespeare_char CPU (block 64, batch 12, 4 layers, 4 heads, width 128, dropout 0)",
        "iters": args.iters,
        "seed": args.seed,
        "threads": args.threads,
        "dropout": args.dropout,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "params": n_params,
        "vocab": len(chars),
        "train_tokens": n,
        "val_tokens": len(data) - n,
        "train_loss": est["train"],
        "val_loss": est["val"],
        "eval_iters": args.eval_iters,
        "val_loss_all_windows": est.get("val_all_windows"),
        "train_time_s": train_s,
        "total_time_s": total_s,
        "torch": torch.__version__,
        "log": log,
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(
            f"params {n_params}, vocab {len(chars)}; after {args.iters} iters: train loss {est['train']:.4f}, "
            f"val loss {est['val']:.4f}; training {train_s:.1f}s, total {total_s:.1f}s ({args.threads} threads)"
        )


if __name__ == "__main__":
    main()
