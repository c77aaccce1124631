#!/usr/bin/env bash
# Prebuild what tools/cuda/device_check.sh runs on a lent GPU machine (which has no Rust
# toolchain) into .devbin/, git-ignored and small enough to carry (about 34 MiB):
#   bin.tar.xz        pretext, tests cuda_device + gemm_bf16 (feature emu), bench cuda_kernels
#   libnvrtc*.xz      the pinned NVRTC 12.9 from .venv-cuda (tools/cuda/ci-setup.sh)
#   include.tar.xz    the CUDA headers NVRTC may include
# Usage (repo root): bash tools/cuda/device_pack.sh   then carry [".devbin"].
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/cuda/ci-setup.sh >/dev/null
grep -qx '/.devbin/' .git/info/exclude 2>/dev/null || echo '/.devbin/' >>.git/info/exclude
rm -rf .devbin && mkdir -p .devbin/bin
cargo build --release
cp target/release/pretext .devbin/bin/
# The test or bench executable named $1 among what `cargo $2...` built.
exe() {
    local name="$1"
    shift
    cargo "$@" --message-format=json 2>/dev/null | grep -o '"executable":"[^"]*"' |
        cut -d'"' -f4 | grep "/deps/$name-"
}
for t in cuda_device gemm_bf16; do
    cp "$(exe "$t" test --release --features emu --no-run --test "$t")" ".devbin/bin/$t"
done
cp "$(exe cuda_kernels bench --no-run --bench cuda_kernels)" .devbin/bin/cuda_kernels
tar -cJf .devbin/bin.tar.xz -C .devbin bin && rm -rf .devbin/bin
nv="$(dirname "$PRETEXT_NVRTC_LIB")"
xz -T2 -c "$PRETEXT_NVRTC_LIB" >.devbin/libnvrtc.so.12.xz
xz -T2 -c "$nv/libnvrtc-builtins.so.12.9" >.devbin/libnvrtc-builtins.so.12.9.xz
tar -cJf .devbin/include.tar.xz -C "$(dirname "$PRETEXT_CUDA_INCLUDE")" include
du -sh .devbin
