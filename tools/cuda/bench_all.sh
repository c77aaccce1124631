#!/usr/bin/env bash
# GPU benchmarks, both sides: PyTorch (tools/cuda/bench_torch.py, needs a CUDA build of torch)
# then pretext's kernels (benches/cuda_kernels.rs), which prints ratios to the PyTorch numbers.
# Without a GPU both say so and exit 0.
#   PYTHON=/path/to/python tools/cuda/bench_all.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
py="${PYTHON:-python3}"
out="$(mktemp -d)/torch.json"
"$py" tools/cuda/bench_torch.py "$out"
if [ -f "$out" ]; then export PRETEXT_TORCH_BENCH="$out"; fi
cargo bench --bench cuda_kernels
