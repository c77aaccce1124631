#!/usr/bin/env python3
"""Issue #3's speed targets on this machine, measured in one go, one verdict per line.

Runs `tools/bench_vs_torch.py` (pretext and PyTorch alternating, paired ratios, > 1: pretext
faster) on the issue's listed shapes and `pretext bench gemm --json` for the share of the FMA
peak, then prints each target with its weakest cell:

  f32 GEMM    >= 1.0x torch.matmul   listed shapes, 1 and 2 threads
  FMA peak    >= 90%                 sq1024 and sq2048 (each repetition against the probe run
                                     right after it; median over --share-runs processes)
  bf16 GEMM   >= 0.8x                listed shapes, bf16 C on both sides
  row ops     >= 1.0x forward+backward  softmax, layer_norm, GELU (both forms)
  attention   >= 1.0x forward+backward  SDPA at T = 512 and 2048, plain and causal

The remaining line of the issue, every ISA path tested against the scalar reference, is the
test suite's (`.ci/run`). About 3–5 minutes on 2 cores at the default 9 pairs.

    /work/refenv/bin/python tools/issue3_check.py --bin target/release/pretext \\
        [--pairs 9] [--threads 1 2] [--share-runs 3] [--out tools/results/issue3_check.json]

Build the binary first (`cargo build --release`); run it with a Python that has torch (the
same interpreter runs bench_vs_torch.py). Exits 1 when a target is missed.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
LISTED_GEMM = ["sq256", "sq512", "sq1024", "sq2048", "gpt2_mlp_up", "gpt2_mlp_down",
               "shakespeare_up", "shakespeare_down"]
ATTENTION = ["attn_8x12x512x64", "attn_8x12x512x64_causal",
             "attn_1x12x2048x64", "attn_1x12x2048x64_causal"]
SHARE_SIZES = [1024, 2048]


def bench_vs_torch(a, label, extra):
    """Runs bench_vs_torch.py with `extra` arguments; returns its rows."""
    fd, out = tempfile.mkstemp(prefix=f"issue3_{label}_", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, os.path.join(HERE, "bench_vs_torch.py"), "--bin", a.bin,
           "--pairs", str(a.pairs), "--threads", *map(str, a.threads), "--out", out, *extra]
    print(f"== {label}: {' '.join(cmd[1:])}", flush=True)
    subprocess.run(cmd, check=True)
    with open(out) as f:
        result = json.load(f)
    os.unlink(out)
    return result


def peak_shares(a):
    """{(size, threads): [paired share of the FMA peak, one per process]}."""
    shares = {}
    for run in range(a.share_runs):
        for size in SHARE_SIZES:
            for t in a.threads:
                cmd = [a.bin, "bench", "gemm", "--m", str(size), "--k", str(size),
                       "--n", str(size), "--threads", str(t), "--json"]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                row = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
                share = row["pct_of_peak_paired_median"]
                shares.setdefault((size, t), []).append(share)
                print(f"== peak share sq{size}, {t} thread(s), run {run + 1}: {share:.1f}%",
                      flush=True)
    return shares


def weakest(rows, label):
    """(ratio, description) of the lowest-ratio row."""
    r = min(rows, key=lambda r: r["ratio"])
    return r["ratio"], f"{label(r)}, {r['threads']} thread(s)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="target/release/pretext")
    ap.add_argument("--pairs", type=int, default=9)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--share-runs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "issue3_check.json"))
    a = ap.parse_args()
    if not os.path.exists(a.bin):
        sys.exit(f"{a.bin} not found: run `cargo build --release` first")

    gemm_f32 = bench_vs_torch(a, "f32 GEMM", ["--ops", "gemm", "--dtypes", "f32",
                                              "--shapes", *LISTED_GEMM])
    gemm_bf16 = bench_vs_torch(a, "bf16 GEMM", ["--ops", "gemm", "--dtypes", "bf16",
                                                "--shapes", *LISTED_GEMM])
    rowops = bench_vs_torch(a, "row ops", ["--ops", "softmax", "layernorm", "gelu"])
    attention = bench_vs_torch(a, "attention", ["--ops", "attention", "--shapes", *ATTENTION])
    shares = peak_shares(a)

    shape = lambda r: r["shape"]
    case = lambda r: r["case"]
    fwd_bwd = lambda res: [r for r in res["rows"] if r["mode"] == "fwd+bwd"]
    share_cells = {k: statistics.median(v) for k, v in shares.items()}
    low_share = min(share_cells, key=share_cells.get)
    lines = [
        ("f32 GEMM vs torch.matmul", 1.0, *weakest(gemm_f32["rows"], shape)),
        ("f32 GEMM share of the FMA peak (%)", 90.0, share_cells[low_share],
         f"sq{low_share[0]}, {low_share[1]} thread(s)"),
        ("bf16 GEMM vs torch bf16 matmul", 0.8, *weakest(gemm_bf16["rows"], shape)),
        ("softmax / layer_norm / GELU fwd+bwd", 1.0, *weakest(fwd_bwd(rowops), case)),
        ("attention fwd+bwd, T = 512 and 2048", 1.0, *weakest(fwd_bwd(attention), case)),
    ]
    print(f"\n{gemm_f32['cpu']}, torch {gemm_f32['torch_version']}, {a.pairs} pairs")
    print(f"{'target':<40}{'line':>7}{'weakest':>9}  cell")
    missed = 0
    for name, target, value, where in lines:
        ok = value >= target
        missed += not ok
        print(f"{name:<40}{target:>7.2f}{value:>9.2f}  {where}  {'holds' if ok else 'MISSED'}")
    print("(every ISA path against the scalar reference: the test suite, .ci/run)")
    result = dict(cpu=gemm_f32["cpu"], torch_version=gemm_f32["torch_version"], pairs=a.pairs,
                  lines=[dict(target=n, line=t, weakest=v, cell=w, holds=v >= t)
                         for n, t, v, w in lines],
                  peak_shares={f"sq{s}_t{t}": v for (s, t), v in shares.items()},
                  gemm_f32=gemm_f32, gemm_bf16=gemm_bf16, rowops=rowops, attention=attention)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, a.out)
    print(f"wrote {a.out}")
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
