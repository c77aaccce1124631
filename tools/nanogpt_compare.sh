#!/usr/bin/env bash
# Side-by-side wall time of nanoGPT's CPU recipe in pretext and in PyTorch, alternating the two
# in one run so both see the same machine load: ROUNDS rounds of ITERS training iterations each
# (eval reduced to 1 batch), THREADS threads. Prints seconds per iteration for each and the ratio.
#   tools/nanogpt_compare.sh [ITERS=200] [ROUNDS=3] [THREADS=2]
# Needs a release build (cargo build --release) and a Python with torch (PYTHON, default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-200}; rounds=${2:-3}; threads=${3:-2}
py=${PYTHON:-python3}
data=${PRETEXT_SHAKESPEARE:-../shared/data/tinyshakespeare.txt}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
target/release/pretext prepare "$data" --tokenizer char --out "$tmp/corpus" >/dev/null
for r in $(seq "$rounds"); do
  t0=$(date +%s.%N)
  target/release/pretext train --data "$tmp/corpus" --preset nanogpt-shakespeare-cpu --steps "$iters" \
    --warmup 100 --eval-iters 1 --eval-interval 100000 --threads "$threads" --quiet --sample-tokens 0 \
    --out "$tmp/run$r" >/dev/null
  t1=$(date +%s.%N)
  OMP_WAIT_POLICY=PASSIVE "$py" tools/nanogpt_shakespeare_char.py --data "$data" --iters "$iters" --eval-iters 1 \
    --threads "$threads" --log-every 100000 >/dev/null
  t2=$(date +%s.%N)
  echo "round $r: pretext $(echo "($t1-$t0)/$iters" | bc -l | cut -c1-6) s/iter, pytorch $(echo "($t2-$t1)/$iters" | bc -l | cut -c1-6) s/iter, pytorch/pretext time ratio $(echo "($t2-$t1)/($t1-$t0)" | bc -l | cut -c1-5)"
done
