#!/usr/bin/env python3
"""GEMM speed of pretext vs PyTorch on this machine, same shapes, alternating per shape.

For every shape, dtype (f32: torch.matmul on f32; bf16: torch.matmul on bf16 tensors,
pretext bgemm with f32 accumulation) and thread count (1, 2), the script times PyTorch
in-process (torch.set_num_threads(T); warm-up, then >= 5 repetitions of >= --min-rep-ms
each, per-call median) and pretext through its release binary
(`pretext bench gemm --json --threads T`, same protocol), alternating the two `--rounds`
times, and reports the median over rounds of each side's median. Prints one table of
pretext/PyTorch ratios (> 1: pretext faster) and writes it as JSON (atomically).

Usage: /work/refenv/bin/python tools/bench_vs_torch.py [--bin target/release/pretext]
       [--out bench_vs_torch.json] [--threads 1 2] [--dtypes f32 bf16] [--quick]
Build the binary first: cargo build --release.
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

# (name, m, k, n, batch, transpose_b): C[m×n] = A[m×k] · B[k×n], `batch` independent
# problems; transpose_b reads B from an n×k row-major buffer (Q·Kᵀ).
SHAPES = [
    ("sq256", 256, 256, 256, 1, False),
    ("sq512", 512, 512, 512, 1, False),
    ("sq1024", 1024, 1024, 1024, 1, False),
    ("sq2048", 2048, 2048, 2048, 1, False),
    ("gpt2_mlp_up", 4096, 768, 3072, 1, False),
    ("gpt2_mlp_down", 4096, 3072, 768, 1, False),
    ("shakespeare_up", 768, 128, 512, 1, False),
    ("shakespeare_down", 768, 512, 128, 1, False),
    ("attn_T64_d32_QKt", 64, 32, 64, 64, True),
    ("attn_T64_d32_PV", 64, 64, 32, 64, False),
    ("attn_T512_d64_QKt", 512, 64, 512, 12, True),
    ("attn_T512_d64_PV", 512, 512, 64, 12, False),
]


def time_torch(m, k, n, batch, tb, dtype, threads, reps, warmup, min_rep_ms):
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    shape_a = (batch, m, k) if batch > 1 else (m, k)
    a = (torch.rand(shape_a, generator=g) * 2 - 1).to(dtype)
    if tb:
        bt = (torch.rand((batch, n, k) if batch > 1 else (n, k), generator=g) * 2 - 1).to(dtype)
        b = bt.transpose(-1, -2)
    else:
        b = (torch.rand((batch, k, n) if batch > 1 else (k, n), generator=g) * 2 - 1).to(dtype)
    out = torch.empty(torch.matmul(a, b).shape, dtype=dtype)
    with torch.inference_mode():
        t0 = time.perf_counter()
        torch.matmul(a, b, out=out)
        first = time.perf_counter() - t0
        for _ in range(max(0, warmup - 1)):
            torch.matmul(a, b, out=out)
        calls = max(1, int(min_rep_ms * 1e-3 / max(first, 1e-7) + 0.999))
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(calls):
                torch.matmul(a, b, out=out)
            times.append((time.perf_counter() - t0) / calls)
    return statistics.median(times)


def time_pretext(binary, m, k, n, batch, tb, dtype, threads, reps, warmup, min_rep_ms):
    cmd = [binary, "bench", "gemm", "--m", str(m), "--k", str(k), "--n", str(n),
           "--batch", str(batch), "--dtype", dtype, "--threads", str(threads),
           "--reps", str(reps), "--warmup", str(warmup), "--min-rep-ms", str(min_rep_ms),
           "--json"]
    if tb:
        cmd.append("--tb")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rec = json.loads(out.strip().splitlines()[-1])
    return rec["median_ms"] * 1e-3, rec["params"]["kernel"]


def write_atomic(path, obj):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".bench_vs_torch.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", default="target/release/pretext")
    p.add_argument("--out", default="bench_vs_torch.json")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--dtypes", nargs="+", default=["f32", "bf16"], choices=["f32", "bf16"])
    p.add_argument("--shapes", nargs="*", help="subset of shape names")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--min-rep-ms", type=float, default=20.0)
    p.add_argument("--quick", action="store_true", help="1 round, 10 ms repetitions")
    args = p.parse_args()
    if args.reps < 5:
        sys.exit("--reps must be at least 5")
    if not os.path.exists(args.bin):
        sys.exit(f"{args.bin} not found: run `cargo build --release` first")
    if args.quick:
        args.rounds, args.min_rep_ms = 1, 10.0
    shapes = [s for s in SHAPES if not args.shapes or s[0] in args.shapes]
    rows = []
    hdr = f"{'shape':<20}{'m×k×n':>16}{'batch':>6}{'dtype':>6}{'thr':>4}{'pretext GF/s':>14}{'torch GF/s':>12}{'ratio':>8}  kernel"
    print(hdr)
    print("-" * len(hdr))
    for name, m, k, n, batch, tb in shapes:
        flops = 2.0 * m * k * n * batch
        for dtype in args.dtypes:
            tdt = torch.float32 if dtype == "f32" else torch.bfloat16
            for threads in args.threads:
                tp, tt, kernel = [], [], ""
                for _ in range(args.rounds):
                    tt.append(time_torch(m, k, n, batch, tb, tdt, threads, args.reps,
                                         args.warmup, args.min_rep_ms))
                    t, kernel = time_pretext(args.bin, m, k, n, batch, tb, dtype, threads,
                                             args.reps, args.warmup, args.min_rep_ms)
                    tp.append(t)
                p_s, t_s = statistics.median(tp), statistics.median(tt)
                row = dict(shape=name, m=m, k=k, n=n, batch=batch, transpose_b=tb,
                           dtype=dtype, threads=threads, pretext_ms=p_s * 1e3,
                           torch_ms=t_s * 1e3, pretext_gflops=flops / p_s * 1e-9,
                           torch_gflops=flops / t_s * 1e-9, ratio=t_s / p_s,
                           pretext_kernel=kernel)
                rows.append(row)
                print(f"{name:<20}{f'{m}×{k}×{n}':>16}{batch:>6}{dtype:>6}{threads:>4}"
                      f"{row['pretext_gflops']:>14.1f}{row['torch_gflops']:>12.1f}"
                      f"{row['ratio']:>8.2f}  {kernel}", flush=True)
    result = dict(torch_version=torch.__version__,
                  torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
                  rounds=args.rounds, reps=args.reps, min_rep_ms=args.min_rep_ms,
                  rows=rows)
    write_atomic(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
