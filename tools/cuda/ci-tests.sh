#!/usr/bin/env bash
# The CUDA part of CI on a machine without a GPU (called from .ci/run, from the repo root):
# installs the pinned NVRTC/headers/ptxas wheels into .venv-cuda, then runs
#   cuda_compile         NVRTC compute_80/90 + ptxas sm_80/90, no register spills
#   cuda_emu_*           every kernel in the CPU emulator vs CPU references, two schedules,
#                        and a GPT training step through the emulated backend
#   cuda_device          no-driver error path (and GPU-vs-emulator checks when a GPU exists)
# PRETEXT_REQUIRE_NVRTC=1 turns a missing toolchain into a failure instead of a skip.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tools/cuda/ci-setup.sh
source tools/cuda/ci-setup.sh
export PRETEXT_REQUIRE_NVRTC=1
cargo test --features emu \
    --test cuda_compile --test cuda_device \
    --test cuda_emu_kernels --test cuda_emu_attention --test cuda_emu_runtime --test cuda_emu_gpt_step
