#!/usr/bin/env python3
"""Two pretext binaries side by side on `pretext bench` workloads: is a change faster or
slower on this machine?

On a shared machine whose speed drifts from one minute to the next, two timings taken at
different moments do not compare; this alternates the binaries process by process (the order
within a pair switches each pair) and reports, per workload and thread count, the median over
pairs of old time / new time (> 1: the new binary is faster) with its range. Each process
runs `bench <workload> --threads T --json --reps R --min-rep-ms M` and gives its median
repetition.

    tools/ab_bins.py --old /tmp/pretext_before --new target/release/pretext \\
        --case "gemm --m 2048 --k 2048 --n 2048" --case "gemm --m 768 --k 128 --n 512 --dtype bf16" \\
        --case "softmax --m 4096 --n 1024 --backward" --threads 1 2 --pairs 9 [--out ab.json]

Build the old binary from a worktree (`git worktree add /tmp/old <commit>`, then
`cargo build --release --bin pretext` there) so that both share nothing but the machine.
"""

import argparse
import json
import platform
import shlex
import statistics
import subprocess
import sys


def run(binary, case, threads, args):
    cmd = [binary, "bench", *shlex.split(case), "--threads", str(threads), "--json",
           "--reps", str(args.reps), "--min-rep-ms", str(args.min_rep_ms)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()[-400:]}")
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not lines:
        sys.exit(f"{' '.join(cmd)} printed no JSON object: {out.stdout.strip()[-400:]}")
    return json.loads(lines[-1])["median_ms"]


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        fields = dict(l.split(":", 1) for l in info.splitlines() if ":" in l)
        get = lambda k: next((v.strip() for f, v in fields.items() if f.strip() == k), "?")
        return f"{get('model name')} (family {get('cpu family')} model {get('model')})"
    except OSError:
        return platform.processor() or "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="the reference binary")
    ap.add_argument("--new", required=True, help="the binary under test")
    ap.add_argument("--case", action="append", required=True,
                    help="a workload and its options, as after `pretext bench` (repeatable)")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--pairs", type=int, default=7, help="alternations per case (at least 3)")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per process")
    ap.add_argument("--min-rep-ms", type=float, default=20.0)
    ap.add_argument("--out", help="write the rows as JSON here")
    args = ap.parse_args()
    if args.pairs < 3:
        ap.error("--pairs must be at least 3")

    rows = []
    print(f"{'case':<48} thr  old ms    new ms   old/new   range")
    for case in args.case:
        for t in args.threads:
            olds, news, ratios = [], [], []
            for i in range(args.pairs):
                if i % 2 == 0:
                    o = run(args.old, case, t, args)
                    n = run(args.new, case, t, args)
                else:
                    n = run(args.new, case, t, args)
                    o = run(args.old, case, t, args)
                olds.append(o)
                news.append(n)
                ratios.append(o / n)
            r = statistics.median(ratios)
            row = {"case": case, "threads": t, "old_ms": statistics.median(olds),
                   "new_ms": statistics.median(news), "ratio": r,
                   "ratio_min": min(ratios), "ratio_max": max(ratios), "pairs": args.pairs}
            rows.append(row)
            print(f"{case:<48} {t:>3} {row['old_ms']:8.3f} {row['new_ms']:8.3f}   {r:6.3f}  "
                  f"{min(ratios):.3f}–{max(ratios):.3f}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"cpu": cpu_name(), "old": args.old, "new": args.new,
                       "reps": args.reps, "min_rep_ms": args.min_rep_ms, "rows": rows}, f,
                      indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
