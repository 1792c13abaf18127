#!/usr/bin/env bash
# Builds gankernels._C in place (no pip install: the tree itself is imported) for TORCH_CUDA_ARCH_LIST, checks that
# the CUDA kernels are in it when a GPU is present, and prints `gankernels info`. Used by make gpu-check-1/-2.
#   tools/gpu_build.sh [--if-needed]   # --if-needed: nothing to do when _C is already built (with CUDA on a GPU)
set -euo pipefail
PY=${PY:-python3}
built() {
  "$PY" -c "import torch; from gankernels import _C; assert _C.has_cuda() or not torch.cuda.is_available()" 2>/dev/null
}
if [ "${1:-}" = "--if-needed" ] && built; then
  echo "gankernels._C already built (with its CUDA kernels where a GPU is present): not rebuilt"
  exit 0
fi
echo "building: TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-} MAX_JOBS=${MAX_JOBS:-}"
"$PY" setup.py -q build_ext --inplace
if ! built; then
  echo "gpu_build: gankernels._C does not import, or was built without its CUDA kernels on a machine with a GPU" >&2
  exit 1
fi
"$PY" -m gankernels info
