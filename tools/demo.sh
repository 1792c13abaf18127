#!/usr/bin/env bash
# `make demo`'s training part: a small StyleGAN2 on the built-in data, about two minutes on 2 CPU cores (a larger
# one on a GPU), into a new directory demo-run/stylegan2-<time> (earlier demo runs are kept), then a sample grid.
set -euo pipefail
PY=${PY:-python3}
run="demo-run/stylegan2-$(date +%Y%m%d-%H%M%S)"
if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  args=(--resolution 64 --batch 32 --cbase 8192 --cmax 256 --zdim 256 --wdim 256 --kimg 100)
else  # measured: ~12 sec/kimg on 2 cores
  args=(--resolution 32 --batch 16 --cbase 2048 --cmax 64 --zdim 64 --wdim 64 --kimg 10)
fi
"$PY" -m gankernels train stylegan2 --out "$run" "${args[@]}"
"$PY" -m gankernels sample "$run" --seeds 0-31 --out "$run/samples.png"
echo "demo: samples in $run/samples.png, grids during training in $run/fakes*.png"
