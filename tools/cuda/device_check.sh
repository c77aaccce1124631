#!/usr/bin/env bash
# The checks to run when a GPU machine is lent (it has no Rust toolchain and no network):
#   1. machine facts (CPU model, AMX / avx512_bf16 flags, GPU);
#   2. `pretext cuda-check` (every kernel compiled by NVRTC for the device and loaded, a GEMM
#      checked against the CPU);
#   3. tests/cuda_device.rs with PRETEXT_REQUIRE_GPU=1 (GPU kernels vs the emulator);
#   4. the GPU benchmarks: tools/cuda/bench_torch.py then benches/cuda_kernels.rs (ratios);
#   5. the CPU bf16 GEMM tests and, where the CPU has AMX, the bf16 GEMM comparison with
#      PyTorch on that CPU (tools/bench_vs_torch.py).
# Everything is prebuilt here by tools/cuda/device_pack.sh into .devbin (git-ignored), which
# the device call carries. Run there from the repo root:  bash tools/cuda/device_check.sh
# Output goes to stdout and to $OUT/device_log.txt (and $OUT/*.json).
set -u
D=.devbin
O="${OUT:-/tmp/device_out}"
mkdir -p "$O" /tmp/pt/nv
exec > >(tee "$O/device_log.txt") 2>&1
step() { echo; echo "== $* ($(date +%T))"; }

step machine
nproc
grep -m1 "model name" /proc/cpuinfo
grep -o -w 'amx_bf16\|amx_tile\|avx512_bf16\|avx512f' /proc/cpuinfo | sort | uniq -c
uname -r
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

tar -xJf "$D/bin.tar.xz" -C /tmp/pt
if [ -f "$D/libnvrtc.so.12.xz" ]; then # (a `cpu`-only run need not carry NVRTC)
    xz -dc "$D/libnvrtc.so.12.xz" >/tmp/pt/nv/libnvrtc.so.12
    xz -dc "$D/libnvrtc-builtins.so.12.9.xz" >/tmp/pt/nv/libnvrtc-builtins.so.12.9
    tar -xJf "$D/include.tar.xz" -C /tmp/pt/nv
fi
B=/tmp/pt/bin
export PRETEXT_NVRTC_LIB=/tmp/pt/nv/libnvrtc.so.12
export PRETEXT_CUDA_INCLUDE=/tmp/pt/nv/include
export LD_LIBRARY_PATH="/tmp/pt/nv${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PRETEXT_KERNEL_CACHE=/tmp/pt/ptx

want() { [ -z "$SECTIONS" ] || [[ " $SECTIONS " == *" $1 "* ]]; }
SECTIONS="$*"

if want gpu; then
step "pretext cuda-check"
timeout 90 "$B/pretext" cuda-check
echo "rc=$?"

step "tests/cuda_device.rs (PRETEXT_REQUIRE_GPU=1)"
PRETEXT_REQUIRE_GPU=1 timeout 150 "$B/cuda_device" --test-threads 1 --nocapture
echo "rc=$?"

step "GPU benchmarks: PyTorch side"
timeout 90 python3 tools/cuda/bench_torch.py "$O/torch_gpu.json"
echo "rc=$?"
step "GPU benchmarks: pretext side (ratio = torch ms / pretext ms)"
PRETEXT_TORCH_BENCH="$O/torch_gpu.json" timeout 90 "$B/cuda_kernels"
echo "rc=$?"

fi

if want cpu; then
step "CPU bf16 GEMM tests (every path this CPU offers, AMX included when usable)"
timeout 90 "$B/gemm_bf16" --test-threads 4
echo "rc=$?"

if grep -q -w amx_bf16 /proc/cpuinfo; then
    step "bf16 GEMM vs PyTorch on this CPU"
    PYTHONUNBUFFERED=1 timeout 150 python3 tools/bench_vs_torch.py --bin "$B/pretext" \
        --ops gemm --dtypes bf16 --threads 1 2 --rounds 2 --out "$O/amx_gemm.json"
    echo "rc=$?"
    step "bf16 kernels side by side, 1 thread: AMX tiles against vdpbf16ps (PRETEXT_BF16=dot), and against the previous build (bin/pretext_prev) where carried"
    "$B/pretext" bench peak
    bins="pretext"
    [ -x "$B/pretext_prev" ] && bins="pretext pretext_prev"
    for s in "256 256 256 1" "1024 1024 1024 1" "2048 2048 2048 1" "768 128 512 1" "768 512 128 1" \
        "64 32 64 64 --tb" "64 64 32 64" "512 64 512 12 --tb" "512 512 64 12"; do
        set -- $s
        for round in 1 2; do
            for bin in $bins dot; do
                p=amx
                [ "$bin" = dot ] && { p=dot; bin=pretext; [ $round = 2 ] && continue; }
                printf '%-4s %-13s %-22s ' "$p" "$bin" "$1x$2x$3 x$4 ${5:-}"
                PRETEXT_BF16=$p "$B/$bin" bench gemm --m "$1" --k "$2" --n "$3" --batch "$4" \
                    --dtype bf16 --threads 1 --json --reps 7 ${5:-} | grep -o '"gflops_median":[0-9.]*'
            done
        done
    done
fi
fi

if [[ " $SECTIONS " == *" compare "* ]]; then
    step "every CPU op against PyTorch on this CPU (tools/bench_vs_torch.py, 2 rounds)"
    "$B/pretext" bench peak
    PYTHONUNBUFFERED=1 timeout 240 python3 tools/bench_vs_torch.py --bin "$B/pretext" \
        --ops gemm --rounds 2 --out "$O/cpu_gemm.json"
    PYTHONUNBUFFERED=1 timeout 240 python3 tools/bench_vs_torch.py --bin "$B/pretext" \
        --ops softmax layernorm gelu attention --rounds 2 --out "$O/cpu_ops.json"
fi
step done
