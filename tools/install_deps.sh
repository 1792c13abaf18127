#!/usr/bin/env bash
# Installs what the build and the tests need, and only what is missing. torch is installed only when none is:
# TORCH_SPEC (default torch==2.13.0, a local CPU build on the project's machines) — never a bare `pip install
# torch`, which would download gigabytes of CUDA packages.
set -euo pipefail
PY=${PY:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

have() { "$PY" -c "import $1" >/dev/null 2>&1; }
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

if have torch; then
  echo "torch $("$PY" -c 'import torch; print(torch.__version__)') already installed"
else
  echo "installing $TORCH_SPEC"
  pip_install "$TORCH_SPEC"
fi
missing=()
have pytest || missing+=(pytest)
have pytest_benchmark || missing+=(pytest-benchmark)
have numpy || missing+=(numpy)
have ninja || missing+=(ninja)
have setuptools || missing+=(setuptools)
have triton || missing+=("triton>=3.2")
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  pip_install "${missing[@]}"
fi
