#!/usr/bin/env bash
# Side-by-side wall time of a nanoGPT recipe in pretext and in PyTorch, alternating the two in
# one run so both see the same machine load: ROUNDS rounds of ITERS training iterations each
# (eval reduced to 1 batch), THREADS threads. Prints seconds per iteration for each and the ratio,
# twice: over the whole process (start-up, data loading and the one eval batch included) and inside
# the training loop (pretext: median of tokens per iteration / tokens_per_s over its log records;
# PyTorch: the loop's elapsed time / ITERS, both without start-up).
# PRESET: nanogpt-shakespeare-cpu (nanoGPT's CPU flags: batch 12 x block 64, 4 layers, width 128,
# no dropout) or nanogpt-shakespeare (train_shakespeare_char.py: batch 64 x block 256, 6 layers,
# 6 heads, width 384, dropout 0.2; about 6 s per iteration here, so use few ITERS).
#   tools/nanogpt_compare.sh [ITERS=200] [ROUNDS=3] [THREADS=2] [PRESET=nanogpt-shakespeare-cpu]
# Needs a release build (cargo build --release) and a Python with torch (PYTHON, default python3).
# PyTorch runs with its default OpenMP wait policy (its worker threads spin between parallel
# regions, which on an otherwise idle machine makes this small model's steps about 1.45x faster
# than OMP_WAIT_POLICY=PASSIVE); an OMP_WAIT_POLICY set in the environment is passed through.
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-200}; rounds=${2:-3}; threads=${3:-2}; preset=${4:-nanogpt-shakespeare-cpu}
case "$preset" in
  nanogpt-shakespeare-cpu) tokens=768; torch_args=() ;;
  nanogpt-shakespeare) tokens=16384
    torch_args=(--batch-size 64 --block-size 256 --n-layer 6 --n-head 6 --n-embd 384 --dropout 0.2) ;;
  *) echo "unknown preset $preset (nanogpt-shakespeare-cpu or nanogpt-shakespeare)" >&2; exit 2 ;;
esac
py=${PYTHON:-python3}
data=${PRETEXT_SHAKESPEARE:-../shared/data/tinyshakespeare.txt}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
target/release/pretext prepare "$data" --tokenizer char --out "$tmp/corpus" >/dev/null
for r in $(seq "$rounds"); do
  t0=$(date +%s.%N)
  target/release/pretext train --data "$tmp/corpus" --preset "$preset" --steps "$iters" \
    --warmup 100 --eval-iters 1 --eval-interval 100000 --threads "$threads" --quiet --sample-tokens 0 \
    --out "$tmp/run$r" >/dev/null
  t1=$(date +%s.%N)
  "$py" tools/nanogpt_shakespeare_char.py --data "$data" --iters "$iters" --eval-iters 1 \
    --threads "$threads" --log-every 100000 ${torch_args[@]+"${torch_args[@]}"} --json >"$tmp/torch$r.json" 2>/dev/null
  t2=$(date +%s.%N)
  loop=$("$py" - "$tmp/run$r/metrics.jsonl" "$tmp/torch$r.json" "$iters" "$tokens" <<'PY'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
p = statistics.median(int(sys.argv[4]) / r["tokens_per_s"] for r in recs if r.get("split") == "train" and r.get("tokens_per_s"))
t = json.load(open(sys.argv[2]))["log"][-1]["elapsed_s"] / int(sys.argv[3])
print(f"in loop: pretext {p:.4f} s/iter, pytorch {t:.4f} s/iter, pytorch/pretext {t / p:.3f}")
PY
)
  echo "round $r (OMP_WAIT_POLICY ${OMP_WAIT_POLICY:-default}): whole process: pretext $(echo "($t1-$t0)/$iters" | bc -l | cut -c1-6) s/iter, pytorch $(echo "($t2-$t1)/$iters" | bc -l | cut -c1-6) s/iter, pytorch/pretext $(echo "($t2-$t1)/($t1-$t0)" | bc -l | cut -c1-5); $loop"
done
