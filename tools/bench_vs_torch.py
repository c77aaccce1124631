#!/usr/bin/env python3
"""pretext vs PyTorch on this machine, same shapes, alternating repetition by repetition.

Ops (`--ops`, default all): gemm (f32: torch.matmul on f32; bf16: torch.matmul on bf16
tensors, which rounds its f32 sums to a bf16 C, vs pretext's bgemm with f32 accumulation and
the same bf16 C; `--bf16-c f32` gives pretext an f32 C instead, as before; f32-high and
f32-medium: f32 tensors with both sides at that torch.set_float32_matmul_precision, pretext's
`--dtype f32-high` and `bf16-mixed`), softmax, layernorm, gelu (erf and tanh
forms) and attention (torch.nn.functional.scaled_dot_product_attention), the last four
forward only ("fwd") and forward + backward ("fwd+bwd"). PyTorch's backward is its own
backward kernel called directly (aten._softmax_backward_data, native_layer_norm_backward,
gelu_backward) so neither side pays for an autograd graph; attention's goes through
autograd (its cost is negligible at these sizes).

For every case and thread count (1, 2) the script prepares the case once on each side:
PyTorch in-process (torch.set_num_threads(T)) and pretext as a release binary serving
repetitions on request (`pretext bench OP --serve --threads T`: prepared and warmed up once,
then one timed repetition per line on its stdin). It then alternates single repetitions of
>= --min-rep-ms each, `--pairs` times (which side goes first alternates too, with a short
idle gap between sides so that neither side's spinning worker threads run into the other's
repetition; on one thread both sides of a pair are pinned to the same CPU, the CPUs taken in
turn every two pairs). Each pair is two repetitions timed back to back, so both meet the same state of a
noisy machine; the reported ratio is the median over pairs of each pair's ratio, with its
interquartile range (and the ratio of the two sides' medians beside it in the JSON). Prints
one table of pretext/PyTorch speed ratios (> 1: pretext faster) and writes it as JSON
(atomically).

Usage: /work/refenv/bin/python tools/bench_vs_torch.py [--bin target/release/pretext]
       [--out tools/results/bench_vs_torch.json] [--ops softmax layernorm gelu]
       [--threads 1 2] [--dtypes f32 bf16 f32-high f32-medium] [--bf16-c bf16|f32]
       [--shapes NAME ...]
       [--pairs 15] [--min-rep-ms 20] [--quick] [--isa avx2|avx512]
Build the binary first: cargo build --release.

`--isa avx2` holds both sides to their AVX2 code, as on a CPU without AVX-512: PyTorch through
ATEN_CPU_CAPABILITY=avx2, MKL_ENABLE_INSTRUCTIONS=AVX2 and ONEDNN_MAX_CPU_ISA=AVX2 (read when
torch loads, so the script runs itself again with them set), pretext through PRETEXT_ISA.
"""
import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

# `--isa`: what holds PyTorch (ATen's kernels, MKL, oneDNN) to one instruction set; pretext
# gets PRETEXT_ISA.
ISA_ENV = {
    "avx2": dict(ATEN_CPU_CAPABILITY="avx2", MKL_ENABLE_INSTRUCTIONS="AVX2",
                 ONEDNN_MAX_CPU_ISA="AVX2"),
    "avx512": dict(ATEN_CPU_CAPABILITY="avx512", MKL_ENABLE_INSTRUCTIONS="AVX512",
                   ONEDNN_MAX_CPU_ISA="AVX512_CORE"),
}
ISA_VARS = ["PRETEXT_ISA", "PRETEXT_F32_BROADCAST", "ATEN_CPU_CAPABILITY",
            "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA"]

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
    # Attention's backward dV = Pᵀ·dO (A transposed: a 7th field).
    ("attn_T512_d64_dV", 512, 512, 64, 12, False, True),
    # The training step's backward products of the MLP layers above, for y = x·W with W
    # stored k × n (GPT-2's Conv1D): dX = dY·Wᵀ (B transposed) and dW = Xᵀ·dY (A transposed,
    # k = the tokens).
    ("gpt2_mlp_up_dX", 4096, 3072, 768, 1, True),
    ("gpt2_mlp_up_dW", 768, 4096, 3072, 1, False, True),
    ("gpt2_mlp_down_dX", 4096, 768, 3072, 1, True),
    ("gpt2_mlp_down_dW", 3072, 4096, 768, 1, False, True),
    ("shakespeare_up_dX", 768, 512, 128, 1, True),
    ("shakespeare_up_dW", 128, 768, 512, 1, False, True),
    ("shakespeare_down_dX", 768, 128, 512, 1, True),
    ("shakespeare_down_dW", 512, 768, 128, 1, False, True),
    # Decoding one token (and 8 sequences) with GPT-2 small: x·Wᵀ of the Linear layers and
    # the tied LM head (50257 × 768).
    ("decode_qkv", 1, 768, 2304, 1, True),
    ("decode_mlp_up", 1, 768, 3072, 1, True),
    ("decode_mlp_down", 1, 3072, 768, 1, True),
    ("decode_lm_head", 1, 768, 50257, 1, True),
    ("decode_b8_mlp_up", 8, 768, 3072, 1, True),
    # x·W with W stored k × n, as GPT-2's Conv1D keeps its weights.
    ("decode_conv1d_mlp_up", 1, 768, 3072, 1, False),
    # A matrix times one vector (C has a single column).
    ("matvec_4096", 4096, 4096, 1, 1, False),
]


# Row ops: (name, rows, cols).
SOFTMAX_SHAPES = [("sm_4096x1024", 4096, 1024), ("sm_768x128", 768, 128),
                  ("sm_3072x64", 3072, 64)]
LAYERNORM_SHAPES = [("ln_4096x768", 4096, 768), ("ln_768x128", 768, 128),
                    ("ln_1024x1024", 1024, 1024)]
GELU_SHAPES = [("gelu_4096x3072", 4096, 3072), ("gelu_768x512", 768, 512)]
# Attention: (name, batch, heads, T, d).
ATTENTION_DROPOUT = 0.1
ATTENTION_SHAPES = [("attn_12x4x64x32", 12, 4, 64, 32), ("attn_8x12x512x64", 8, 12, 512, 64),
                    ("attn_1x12x2048x64", 1, 12, 2048, 64)]
OPS = ["gemm", "softmax", "layernorm", "gelu", "attention"]


def calls_for(per_call_s, min_rep_ms):
    """Calls that make one repetition of >= min_rep_ms, from one call's seconds."""
    return max(1, int(min_rep_ms * 1e-3 / max(per_call_s, 1e-7) + 0.999))


# Calibration repetitions: calls doubling from one until a repetition lasts --min-rep-ms, or
# at least this share of it with at least CALIBRATE_MIN_CALLS calls (as `pretext bench`).
CALIBRATE_SHARE = 0.1
CALIBRATE_MIN_CALLS = 8


def calibrate(side, min_rep_ms):
    """Calls per repetition of >= min_rep_ms for `side`, from its fastest per-call time over
    repetitions of 1, 2, 4, … calls (until one lasts min_rep_ms, or CALIBRATE_SHARE of it
    with at least CALIBRATE_MIN_CALLS calls). A single call is no measure: the first one after a
    side has idled pays for waking its threads and caches. Calibrated from one call,
    pretext's softmax 768 × 128 on 2 threads (17 µs a call warm) took 3.6 ms for it, so its
    repetitions came out 6 calls (0.4 ms) long instead of 20 ms, every call then paying part
    of a wake-up: 38–73 µs a call, and the ratio read 0.92 where it is 2 (Intel host,
    session 39)."""
    calls, best = 1, float("inf")
    while True:
        s = side.rep(calls)
        best = min(best, s)
        total, target = s * calls, min_rep_ms * 1e-3
        if (total >= target or total >= CALIBRATE_SHARE * target and calls >= CALIBRATE_MIN_CALLS
                or calls >= 1 << 24):
            return calls_for(best, min_rep_ms)
        calls *= 2


class TorchSide:
    """One prepared PyTorch case: `fn` runs one call (inside inference mode when asked)."""

    def __init__(self, fn, inference):
        self.fn, self.inference = fn, inference

    def rep(self, calls):
        """Seconds per call over `calls` calls."""
        ctx = torch.inference_mode() if self.inference else contextlib.nullcontext()
        with ctx:
            t0 = time.perf_counter()
            for _ in range(calls):
                self.fn()
            return (time.perf_counter() - t0) / calls


class PretextSide:
    """A `pretext bench ... --serve` process: prepared and warmed up once, then one timed
    repetition per request."""

    def __init__(self, cmd):
        self.cmd = cmd + ["--serve"]
        self.p = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.hello = json.loads(self._line())

    def _line(self):
        line = self.p.stdout.readline()
        if not line:
            self.p.wait()
            raise RuntimeError(f"{' '.join(self.cmd)} exited ({self.p.returncode}): "
                               f"{self.p.stderr.read().strip()}")
        return line

    def rep(self, calls):
        """Seconds per call over `calls` calls."""
        self.p.stdin.write(f"{calls}\n")
        self.p.stdin.flush()
        return json.loads(self._line())["s_per_call"]

    def pin(self, cpus):
        """Restricts every thread of the process to `cpus`."""
        for tid in os.listdir(f"/proc/{self.p.pid}/task"):
            os.sched_setaffinity(int(tid), cpus)

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def wait_busy(seconds):
    """Spins for `seconds`: the machine stays busy, as during a repetition (a vCPU that
    sleeps even 20 ms can come back slow: pretext's next repetition read 30% low after
    sleeps on the Intel host, not after spins)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        pass


def paired(torch_side, pretext_side, a, threads):
    """Per-call seconds of `a.pairs` repetitions of each side, alternated one by one. On one
    thread both sides of a pair run on the same CPU, the CPUs taken in turn every two pairs
    (so that each CPU sees both orders): the vCPUs of a shared host are not alike (one may
    share its core with another guest), and the scheduler would otherwise place each process
    where it likes."""
    # PyTorch's warm-up calls (pretext's binary makes its own, --warmup).
    for _ in range(max(1, a.warmup)):
        torch_side.rep(1)
    # Both sides calibrated alike, from warm repetitions (`calibrate`).
    ct = calibrate(torch_side, a.min_rep_ms)
    cp = calibrate(pretext_side, a.min_rep_ms)
    tt, tp = [], []
    everywhere = os.sched_getaffinity(0)
    cpus = sorted(everywhere)
    try:
        for i in range(a.pairs):
            if threads == 1:
                cpu = {cpus[(i // 2) % len(cpus)]}
                os.sched_setaffinity(0, cpu)
                pretext_side.pin(cpu)
            order = ("torch", "pretext") if i % 2 == 0 else ("pretext", "torch")
            for side in order:
                wait_busy(a.gap_ms * 1e-3)
                if side == "torch":
                    tt.append(torch_side.rep(ct))
                else:
                    tp.append(pretext_side.rep(cp))
    finally:
        os.sched_setaffinity(0, everywhere)
        pretext_side.close()
    return tt, tp


def torch_case(op, shape, backward, form, threads):
    """PyTorch's `op` on `shape`, prepared (see the module doc)."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    rnd = lambda *s: torch.rand(s, generator=g) * 2 - 1
    aten = torch.ops.aten
    if op == "softmax":
        x, dy = rnd(*shape), rnd(*shape)
        def fn():
            y = torch.softmax(x, -1)
            if backward:
                aten._softmax_backward_data(dy, y, -1, torch.float32)
    elif op == "layernorm":
        x, dy = rnd(*shape), rnd(*shape)
        w, b = torch.ones(shape[1]), torch.zeros(shape[1])
        def fn():
            y, mean, rstd = aten.native_layer_norm(x, [shape[1]], w, b, 1e-5)
            if backward:
                aten.native_layer_norm_backward(dy, x, [shape[1]], mean, rstd, w, b,
                                                [True, True, True])
    elif op == "gelu":
        x, dy = rnd(*shape) * 3, rnd(*shape)
        approx = "tanh" if form == "tanh" else "none"
        def fn():
            torch.nn.functional.gelu(x, approximate=approx)
            if backward:
                aten.gelu_backward(dy, x, approximate=approx)
    elif op == "attention":
        b, h, t, d, causal, drop = shape
        q, k, v, do = (rnd(b, h, t, d) for _ in range(4))
        if backward:
            for z in (q, k, v):
                z.requires_grad_(True)
        def fn():
            out = torch.nn.functional.scaled_dot_product_attention(
                q, k, v, is_causal=causal, dropout_p=drop)
            if backward:
                out.backward(do)
        # The forward alone without autograd's bookkeeping; with backward it needs autograd.
        return TorchSide(fn, inference=not backward)
    else:
        raise ValueError(op)
    return TorchSide(fn, inference=True)


def pretext_case(binary, op, shape, backward, form, threads, a):
    """`pretext bench OP --serve` on `shape`."""
    cmd = [binary, "bench", op, "--threads", str(threads), "--warmup", str(a.warmup)]
    if op == "attention":
        b, h, t, d, causal, drop = shape
        cmd += ["--batch", str(b), "--heads", str(h), "--seq", str(t), "--head-dim", str(d)]
        if causal:
            cmd.append("--causal")
        if drop:
            cmd += ["--dropout", str(drop)]
    else:
        cmd += ["--m", str(shape[0]), "--n", str(shape[1])]
    if backward:
        cmd.append("--backward")
    if form == "tanh":
        cmd.append("--tanh")
    return PretextSide(cmd)


def op_cases(op, names):
    """(name, op, shape, backward, form) of one non-GEMM op."""
    if op == "attention":
        # Plain, causal, and causal with dropout of the probabilities (training).
        base = [(f"{n}{'_causal' if c else ''}{f'_drop{p}' if p else ''}", (b, h, t, d, c, p))
                for n, b, h, t, d in ATTENTION_SHAPES
                for c, p in ((False, 0.0), (True, 0.0), (True, ATTENTION_DROPOUT))]
    else:
        table = {"softmax": SOFTMAX_SHAPES, "layernorm": LAYERNORM_SHAPES,
                 "gelu": GELU_SHAPES}[op]
        base = [(n, (r, c)) for n, r, c in table]
    forms = ["erf", "tanh"] if op == "gelu" else [""]
    cases = []
    for name, shape in base:
        if names and name not in names:
            continue
        for form in forms:
            for backward in (False, True):
                cases.append((name + (f"_{form}" if form else ""), op, shape, backward, form))
    return cases


def quartiles(xs):
    """(p25, median, p75) of xs."""
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


def pair_stats(tp, tt):
    """Row fields from the per-call seconds of each side's repetitions (pair i: tp[i], tt[i]):
    the medians, the median and quartiles of the pairs' ratios (torch / pretext), every
    repetition."""
    ratios = [t / p for p, t in zip(tp, tt)]
    lo, mid, hi = quartiles(ratios)
    p_s, t_s = statistics.median(tp), statistics.median(tt)
    return dict(pretext_ms=p_s * 1e3, torch_ms=t_s * 1e3, ratio=mid, ratio_p25=lo,
                ratio_p75=hi, ratio_of_medians=t_s / p_s,
                pretext_ms_reps=[x * 1e3 for x in tp], torch_ms_reps=[x * 1e3 for x in tt],
                pair_ratios=ratios)


def spread(row):
    """The interquartile range of a row's pair ratios, as printed beside its ratio."""
    return f"{row['ratio_p25']:.2f}–{row['ratio_p75']:.2f}"


def run_ops(a, ops, rows):
    hdr = f"{'case':<26}{'mode':>8}{'thr':>4}{'pretext ms':>12}{'torch ms':>11}{'ratio':>8}{'pairs IQR':>12}  isa"
    print(hdr)
    print("-" * len(hdr))
    for op in ops:
        for name, op_, shape, backward, form in op_cases(op, a.shapes):
            for threads in a.threads:
                side = pretext_case(a.bin, op_, shape, backward, form, threads, a)
                level = side.hello["isa"]
                tt, tp = paired(torch_case(op_, shape, backward, form, threads), side, a, threads)
                mode = "fwd+bwd" if backward else "fwd"
                row = dict(op=op_, case=name, shape=list(shape), mode=mode, form=form or None,
                           threads=threads, pretext_isa=level, **pair_stats(tp, tt))
                rows.append(row)
                print(f"{name:<26}{mode:>8}{threads:>4}{row['pretext_ms']:>12.3f}"
                      f"{row['torch_ms']:>11.3f}{row['ratio']:>8.2f}{spread(row):>12}  {level}",
                      flush=True)


def torch_gemm(m, k, n, batch, tb, dtype, threads, ta=False, precision="highest"):
    """torch.matmul of the shape into a preallocated C, prepared, at the f32 matmul
    `precision` (set before each call: the setting is process-wide)."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    if ta:
        at = (torch.rand((batch, k, m) if batch > 1 else (k, m), generator=g) * 2 - 1).to(dtype)
        a = at.transpose(-1, -2)
    else:
        a = (torch.rand((batch, m, k) if batch > 1 else (m, k), generator=g) * 2 - 1).to(dtype)
    if tb:
        bt = (torch.rand((batch, n, k) if batch > 1 else (n, k), generator=g) * 2 - 1).to(dtype)
        b = bt.transpose(-1, -2)
    else:
        b = (torch.rand((batch, k, n) if batch > 1 else (k, n), generator=g) * 2 - 1).to(dtype)
    out = torch.empty(torch.matmul(a, b).shape, dtype=dtype)

    def call():
        torch.set_float32_matmul_precision(precision)
        torch.matmul(a, b, out=out)
        torch.set_float32_matmul_precision("highest")
    return TorchSide(call, inference=True)


# The pretext `bench gemm --dtype` of each row's dtype, and PyTorch's element type and f32
# matmul precision for it.
PRETEXT_DTYPE = {"f32": "f32", "bf16": "bf16", "f32-high": "f32-high", "f32-medium": "bf16-mixed"}
TORCH_DTYPE = {"f32": ("float32", "highest"), "bf16": ("bfloat16", "highest"),
               "f32-high": ("float32", "high"), "f32-medium": ("float32", "medium")}


def pretext_gemm(binary, m, k, n, batch, tb, dtype, threads, warmup, c_dtype, ta=False):
    """`pretext bench gemm --serve` of the shape."""
    cmd = [binary, "bench", "gemm", "--m", str(m), "--k", str(k), "--n", str(n),
           "--batch", str(batch), "--dtype", PRETEXT_DTYPE[dtype], "--threads", str(threads),
           "--warmup", str(warmup)]
    if ta:
        cmd.append("--ta")
    if tb:
        cmd.append("--tb")
    if dtype == "bf16" and c_dtype == "bf16":
        cmd += ["--c-dtype", "bf16"]
    return PretextSide(cmd)


def write_atomic(path, obj):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".bench_vs_torch.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", default="target/release/pretext")
    p.add_argument("--out", default="tools/results/bench_vs_torch.json")
    p.add_argument("--ops", nargs="+", default=OPS, choices=OPS)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--dtypes", nargs="+", default=["f32", "bf16"], choices=list(PRETEXT_DTYPE))
    p.add_argument("--bf16-c", default="bf16", choices=["bf16", "f32"],
                   help="element type of pretext's C in the bf16 GEMM rows (torch's is bf16)")
    p.add_argument("--shapes", nargs="*", help="subset of shape / case names (e.g. sm_4096x1024)")
    p.add_argument("--pairs", type=int, default=15,
                   help="repetitions of each side, alternated one by one (at least 5)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--min-rep-ms", type=float, default=20.0)
    p.add_argument("--gap-ms", type=float, default=20.0,
                   help="idle time before each repetition (the other side's threads settle)")
    p.add_argument("--quick", action="store_true", help="5 pairs of 10 ms repetitions")
    p.add_argument("--isa", choices=sorted(ISA_ENV),
                   help="hold both sides to this instruction set (default: each side's best)")
    args = p.parse_args()
    if args.isa:
        want = dict(PRETEXT_ISA=args.isa, **ISA_ENV[args.isa])
        if any(os.environ.get(k) != v for k, v in want.items()):
            # The variables must be set before torch (MKL, oneDNN) loads: run again with them.
            os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, **want))
    if args.pairs < 5:
        sys.exit("--pairs must be at least 5")
    if not os.path.exists(args.bin):
        sys.exit(f"{args.bin} not found: run `cargo build --release` first")
    if args.quick:
        args.pairs, args.min_rep_ms = 5, 10.0
    rows = []
    if "gemm" in args.ops:
        run_gemm(args, rows)
    run_ops(args, [o for o in args.ops if o != "gemm"], rows)
    result = dict(cpu=cpu_model(), cpu_threads=os.cpu_count(),
                  torch_version=torch.__version__,
                  torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
                  isa=args.isa, isa_env={k: os.environ.get(k) for k in ISA_VARS},
                  ops=args.ops, protocol="paired", pairs=args.pairs,
                  min_rep_ms=args.min_rep_ms, gap_ms=args.gap_ms, rows=rows)
    write_atomic(args.out, result)
    print(f"wrote {args.out}")


def cpu_model():
    """The CPU's model name and family/model numbers (from /proc/cpuinfo), so a result file
    says which machine it was measured on: ratios differ a lot between CPUs (MKL on AMD, AMX
    on Intel)."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    k, v = (x.strip() for x in line.split(":", 1))
                    info.setdefault(k, v)
    except OSError:
        return "unknown"
    flags = set(info.get("flags", "").split())
    extras = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return (f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} model "
            f"{info.get('model', '?')}; {' '.join(extras)})")


def run_gemm(args, rows):
    shapes = [s for s in SHAPES if not args.shapes or s[0] in args.shapes]
    hdr = f"{'shape':<20}{'m×k×n':>16}{'batch':>6}{'dtype':>11}{'thr':>4}{'pretext GF/s':>14}{'torch GF/s':>12}{'ratio':>8}{'pairs IQR':>12}  kernel"
    print(hdr)
    print("-" * len(hdr))
    for name, m, k, n, batch, tb, *rest in shapes:
        ta = bool(rest and rest[0])
        flops = 2.0 * m * k * n * batch
        for dtype in args.dtypes:
            tdt, precision = TORCH_DTYPE[dtype]
            tdt = getattr(torch, tdt)
            for threads in args.threads:
                side = pretext_gemm(args.bin, m, k, n, batch, tb, dtype, threads, args.warmup,
                                    args.bf16_c, ta)
                kernel = side.hello["params"]["kernel"]
                tt, tp = paired(torch_gemm(m, k, n, batch, tb, tdt, threads, ta, precision),
                                side, args, threads)
                stats = pair_stats(tp, tt)
                row = dict(shape=name, m=m, k=k, n=n, batch=batch, transpose_a=ta, transpose_b=tb,
                           dtype=dtype, torch_precision=precision, threads=threads,
                           pretext_gflops=flops / stats["pretext_ms"] * 1e-6,
                           torch_gflops=flops / stats["torch_ms"] * 1e-6,
                           pretext_kernel=kernel,
                           pretext_c=args.bf16_c if dtype == "bf16" else "f32", **stats)
                rows.append(dict(op="gemm", **row))
                print(f"{name:<20}{f'{m}×{k}×{n}':>16}{batch:>6}{dtype:>11}{threads:>4}"
                      f"{row['pretext_gflops']:>14.1f}{row['torch_gflops']:>12.1f}"
                      f"{row['ratio']:>8.2f}{spread(row):>12}  {kernel}", flush=True)
    print()


if __name__ == "__main__":
    main()
