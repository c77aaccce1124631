#!/usr/bin/env bash
# Create .venv-cuda with the pinned NVRTC / CUDA headers / ptxas wheels (CUDA 12.9, matching
# cudarc's `cuda-12090` feature) and export the paths the CUDA tests need.
#
# Usage (from the repo root):   source tools/cuda/ci-setup.sh
# Exports:
#   PRETEXT_NVRTC_LIB     full path of libnvrtc.so.12 (the runtime preloads it by path)
#   PRETEXT_CUDA_INCLUDE  CUDA include dir (headers NVRTC may need)
#   PRETEXT_PTXAS         ptxas binary used by the spill check
#   LD_LIBRARY_PATH       prefixed with the NVRTC lib dir: cudarc dlopens "libnvrtc.so.12" by
#                         name and NVRTC dlopens libnvrtc-builtins by name, both via this path.
# Idempotent: an existing venv with the pinned versions is reused.
set -euo pipefail
_pt_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
_pt_venv="${PRETEXT_CUDA_VENV:-$_pt_root/.venv-cuda}"
_pt_req="$_pt_root/tools/cuda/requirements.txt"
_pt_py="${PYTHON:-python3}"
if [ ! -x "$_pt_venv/bin/python" ]; then
    "$_pt_py" -m venv "$_pt_venv"
fi
if ! cmp -s "$_pt_req" "$_pt_venv/.pretext-requirements" 2>/dev/null; then
    "$_pt_venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$_pt_req"
    cp "$_pt_req" "$_pt_venv/.pretext-requirements"
fi
_pt_site="$("$_pt_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
_pt_nv="$_pt_site/nvidia"
export PRETEXT_NVRTC_LIB="$_pt_nv/cuda_nvrtc/lib/libnvrtc.so.12"
export PRETEXT_CUDA_INCLUDE="$_pt_nv/cuda_runtime/include"
export PRETEXT_PTXAS="$_pt_nv/cuda_nvcc/bin/ptxas"
export LD_LIBRARY_PATH="$_pt_nv/cuda_nvrtc/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
for _pt_f in "$PRETEXT_NVRTC_LIB" "$PRETEXT_PTXAS" "$PRETEXT_CUDA_INCLUDE/cuda_runtime_api.h"; do
    if [ ! -e "$_pt_f" ]; then
        echo "tools/cuda/ci-setup.sh: expected $_pt_f after installing $_pt_req, not found" >&2
        return 1 2>/dev/null || exit 1
    fi
done
echo "cuda toolchain: nvrtc=$PRETEXT_NVRTC_LIB ptxas=$PRETEXT_PTXAS include=$PRETEXT_CUDA_INCLUDE"
