#!/usr/bin/env python3
"""Attention forward and forward+backward: pretext (`pretext bench attention --json`) against
PyTorch's scaled_dot_product_attention (CPU, f32), alternating in one run, 1 and 2 threads,
median of >= 5 repetitions each. Prints a table of ratios torch_ms / pretext_ms (> 1: pretext is
faster) and writes it as JSON.

usage: tools/bench_attention_vs_torch.py [--bin target/release/pretext] [--reps 7]
       [--threads 1,2] [--shapes 12x4x64x32,8x12x512x64,1x12x2048x64] [--out FILE]
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
import torch.nn.functional as F


def torch_ms(b, h, t, d, causal, backward, threads, reps, min_rep_ms=20.0):
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, h, t, d, generator=g, requires_grad=backward) for _ in range(3))
    dout = torch.randn(b, h, t, d, generator=g)

    def call():
        o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        if backward:
            o.backward(dout)

    for _ in range(2):
        call()
    t0 = time.perf_counter()
    call()
    once = (time.perf_counter() - t0) * 1e3
    inner = max(1, int(min_rep_ms / max(once, 1e-3)))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            call()
        times.append((time.perf_counter() - t0) * 1e3 / inner)
    return statistics.median(times)


def pretext_ms(binary, b, h, t, d, causal, backward, threads, reps):
    cmd = [binary, "bench", "attention", "--batch", str(b), "--heads", str(h), "--seq", str(t),
           "--head-dim", str(d), "--threads", str(threads), "--reps", str(reps), "--json"]
    if causal:
        cmd.append("--causal")
    if backward:
        cmd.append("--backward")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["median_ms"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/pretext")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--shapes", default="12x4x64x32,8x12x512x64,1x12x2048x64")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.reps < 5:
        sys.exit("--reps must be at least 5")
    rows = []
    print(f"{'shape (B,H,T,d)':<18} {'causal':<6} {'pass':<8} {'thr':>3} "
          f"{'pretext ms':>10} {'torch ms':>10} {'ratio':>6}")
    for shape in a.shapes.split(","):
        b, h, t, d = (int(x) for x in shape.split("x"))
        for causal in (False, True):
            for backward in (False, True):
                for threads in (int(x) for x in a.threads.split(",")):
                    p = pretext_ms(a.bin, b, h, t, d, causal, backward, threads, a.reps)
                    tt = torch_ms(b, h, t, d, causal, backward, threads, a.reps)
                    r = {"batch": b, "heads": h, "seq": t, "head_dim": d, "causal": causal,
                         "backward": backward, "threads": threads, "pretext_ms": p,
                         "torch_ms": tt, "ratio": tt / p}
                    rows.append(r)
                    print(f"{shape:<18} {str(causal):<6} {'fwd+bwd' if backward else 'fwd':<8} "
                          f"{threads:>3} {p:>10.3f} {tt:>10.3f} {tt / p:>6.2f}", flush=True)
    if a.out:
        d = os.path.dirname(os.path.abspath(a.out))
        with tempfile.NamedTemporaryFile("w", dir=d, delete=False) as f:
            json.dump({"torch": torch.__version__, "rows": rows}, f, indent=1)
        os.replace(f.name, a.out)


if __name__ == "__main__":
    main()
