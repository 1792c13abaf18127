# make demo: install, build, show what runs where, train a small StyleGAN2 (~2 min), benchmark.
# make test: install, build, test everything.
# Recipes run in bash with pipefail: `cmd | tee log` fails when cmd does.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PY ?= python3
OUT ?= gpu-out
NVCC ?= nvcc
CUDA_ARCHS ?= 80 90
export MAX_JOBS ?= $(shell nproc)

.PHONY: deps build test demo cuda-compile-check triton-compile-check gpu-check gpu-check-1 gpu-check-2 gpu-build \
	gpu-tests gpu-bench gpu-bench-steps lint bench clean

deps:
	PY=$(PY) tools/install_deps.sh

# `make build` builds the portable extension a wheel gets: the CPU kernels choose AVX2 / AVX-512 when they run
# (csrc/cpu/isa.h), as fast as -march=native (benchmarks/NOTES.md), and `make test` checks that no other code carries
# AVX (tests/test_cpu_isa.py, tools/check_isa.py). NATIVE=1 adds -march=native (GANKERNELS_NATIVE=1): only for a build that runs where it
# is built.
NATIVE ?= 0
build: deps
	GANKERNELS_NATIVE=$(NATIVE) $(PY) -m pip install --disable-pip-version-check -q -e . --no-build-isolation --no-deps

# nvcc -c on every csrc/cuda/*.cu for each arch in CUDA_ARCHS: CUDA code that does not compile does not land.
cuda-compile-check:
	@command -v $(NVCC) >/dev/null || { echo "cuda-compile-check: nvcc not found"; exit 1; }
	@mkdir -p build/cuda-check
	@set -e; for f in csrc/cuda/*.cu; do \
	  echo "nvcc $$f (sm_$(subst $() $(),$(comma)sm_,$(CUDA_ARCHS)))"; \
	  $(NVCC) -std=c++17 -O3 --expt-relaxed-constexpr -Werror all-warnings -Icsrc/include \
	    $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
	    -c $$f -o build/cuda-check/$$(basename $$f .cu).o; \
	done

# Every Triton kernel, as the ops launch it, compiled for each arch in CUDA_ARCHS (no GPU needed; nothing runs):
# kernels that would not compile, need more shared memory or registers than the chip has do not land.
triton-compile-check:
	env -u TRITON_INTERPRET TRITON_DEFAULT_FP_FUSION=1 $(PY) tools/triton_compile_check.py \
	  --arch $(subst $() $(),$(comma),$(CUDA_ARCHS)) --json build/triton-compile-check.json

test: build
	@if command -v $(NVCC) >/dev/null; then $(MAKE) --no-print-directory cuda-compile-check; \
	  else echo "nvcc not found: skipping cuda-compile-check"; fi
	@if $(PY) -c "import triton" 2>/dev/null; then $(MAKE) --no-print-directory triton-compile-check; \
	  else echo "triton not installed: skipping triton-compile-check"; fi
	$(PY) -m pytest tests -q
	$(PY) -m pytest benchmarks -q --benchmark-disable

demo: build
	$(PY) -m gankernels info
	PY=$(PY) tools/demo.sh
	$(PY) -m gankernels bench

bench: build
	$(PY) -m gankernels bench

# ---------------------------------------------------------------------------------------------------------------
# On the GPU machine (../shared/GPU.md: one H200, 15 minutes in all, 10 per command): two commands, back to back.
# The tree copy there has no .git, so pass the commit for the record:
#
#   make gpu-check-1 OUT=$OUT GANKERNELS_GIT_COMMIT=<sha>  # build for sm_90, refusals, every CUDA test    (< 8 min)
#   make gpu-check-2 OUT=$OUT GANKERNELS_GIT_COMMIT=<sha>  # profile, op table, whole-step benchmarks      (< 5 min)
#
# Each piece of a command writes $(OUT)/<piece>.txt as it goes (tee), runs under `timeout` (its limit below), and
# appends "<piece> rc=<status> <seconds>s" to $(OUT)/status-<target>.txt; a failing piece does not stop the next
# one, but the target fails at the end if any piece did. So a command cut anywhere returns what it measured.
# The limits add up to 7.6 min (gpu-check-1) and 4.8 min (gpu-check-2, when the build is still there from
# gpu-check-1: run it right after; on a fresh machine it first rebuilds, within GPU_BUILD_LIMIT).
# Rehearsed on CPU (CUDA_VISIBLE_DEVICES=, 2 loaded cores, CUDA parts skipped; benchmarks/NOTES.md "The GPU check"):
# gpu-check-1 335 s (build cut at its limit, 691 gpu tests collected and skipped in 107 s), gpu-check-2 285 s (both
# --quick bench pieces cut at their limits, the JSON of the finished cases kept).
#
# Tests: the `gpu`-marked ones only (every test that puts tensors on CUDA is marked, per DESIGN.md; CPU-only and
# Triton-interpreter cases are not), on GPU_TEST_WORKERS pytest-xdist workers; those also marked `gpu_serial`
# (GPU-memory-heavy or timing-sensitive) alone afterwards. Failures go to $(OUT)/failures.txt as they happen.
# Benchmarks: GPU_BENCH_OPS in that order (never-measured kernels first), GPU_BENCH_SKIP cases left out (fp16:
# bf16 stands for half precision), GPU_BENCH_REPS medians; then GPU_BENCH_STEPS (StyleGAN2's iteration first);
# results JSON rewritten after every case. Without a GPU (the CPU rehearsal) both run --quick: the same plumbing.
GPU_ARCH ?= 9.0
GPU_MAX_JOBS ?= 16
GPU_TEST_WORKERS ?= 8
GPU_BENCH_OPS ?= stylegan2_ops,fused_conv2d,grid_sample,augment,instance_norm,bias_act,upfirdn2d
GPU_BENCH_SKIP ?= fp16
GPU_BENCH_REPS ?= 10
GPU_BENCH_STEPS ?= models,penalties
GPU_BUILD_LIMIT ?= 180
GPU_REFUSALS_LIMIT ?= 20
GPU_TESTS_LIMIT ?= 210
GPU_TESTS_SERIAL_LIMIT ?= 45
GPU_PROFILE_LIMIT ?= 30
GPU_BENCH_LIMIT ?= 140
GPU_BENCH_STEPS_LIMIT ?= 110

GPU_TARGETS := gpu-check gpu-check-1 gpu-check-2 gpu-build gpu-tests gpu-bench gpu-bench-steps
# the tree itself is imported (python -m, tools/*.py, pytest): nothing is pip-installed, nothing repointed
$(GPU_TARGETS): export PYTHONPATH := $(CURDIR)
XDIST = $(shell $(PY) -c "import xdist" 2>/dev/null && echo "-n $(GPU_TEST_WORKERS)")
GPU_REFUSALS = $(PY) -X faulthandler tools/diag/refusals.py
PYTEST_GPU = $(PY) -m pytest tests -q -p no:cacheprovider -rfE --durations=15

# $(call piece,NAME,SECONDS,COMMAND): COMMAND cut at SECONDS (its whole process group), output to the terminal and
# $(OUT)/NAME.txt as it goes, exit status (pipefail: COMMAND's, or 124 when cut) recorded; never fails itself.
piece = start=$$(date +%s); timeout -k 10 $(2) $(3) 2>&1 | tee $(OUT)/$(1).txt; rc=$$?; \
	echo "$(1) rc=$$rc $$(( $$(date +%s) - start ))s" | tee -a $(OUT)/status-$@.txt

define gpu_start
	@mkdir -p $(OUT) && rm -f $(OUT)/status-$@.txt
	@echo "$@: commit $${GANKERNELS_GIT_COMMIT:-unknown (pass GANKERNELS_GIT_COMMIT=<sha>)}" | tee $(OUT)/commit-$@.txt
endef
# the target's verdict, last: every piece's status, and failure if any piece failed or was cut
define gpu_verdict
	@echo "== $@: $(OUT)/status-$@.txt"; cat $(OUT)/status-$@.txt
	@! grep -qv ' rc=0 ' $(OUT)/status-$@.txt
endef
# tools/gpu_build.sh: build in place for GPU_ARCH only, check the CUDA kernels are in, print `gankernels info`
GPU_BUILD = env TORCH_CUDA_ARCH_LIST="$(GPU_ARCH)" MAX_JOBS=$(GPU_MAX_JOBS) PY=$(PY) tools/gpu_build.sh
define gpu_build_piece
	@$(call piece,build,$(GPU_BUILD_LIMIT),$(GPU_BUILD))
endef
# the same, unless gankernels._C is already built with its CUDA kernels (gpu-check-2 right after gpu-check-1)
define gpu_build_if_needed
	@$(call piece,build-if-needed,$(GPU_BUILD_LIMIT),$(GPU_BUILD) --if-needed)
endef
define gpu_test_pieces
	@rm -f $(OUT)/failures.txt && touch $(OUT)/failures.txt
	@$(call piece,refusals,$(GPU_REFUSALS_LIMIT),$(GPU_REFUSALS))
	@$(call piece,tests,$(GPU_TESTS_LIMIT),env GANKERNELS_FAILURES_FILE=$(OUT)/failures.txt \
	  $(PYTEST_GPU) -m "gpu and not gpu_serial" $(XDIST))
	@$(call piece,tests-serial,$(GPU_TESTS_SERIAL_LIMIT),env GANKERNELS_FAILURES_FILE=$(OUT)/failures.txt \
	  $(PYTEST_GPU) -m gpu_serial)
	@echo "failures ($(OUT)/failures.txt):"; cat $(OUT)/failures.txt
endef
NO_GPU_QUICK = $(shell $(PY) -c "import torch; print('' if torch.cuda.is_available() else '--quick')" 2>/dev/null)
define gpu_bench_piece
	@$(call piece,bench,$(GPU_BENCH_LIMIT),$(PY) -m gankernels bench --op $(GPU_BENCH_OPS) $(NO_GPU_QUICK) \
	  --skip '$(GPU_BENCH_SKIP)' --reps $(GPU_BENCH_REPS) --json $(OUT)/results.json)
endef
define gpu_bench_steps_piece
	@$(call piece,bench-steps,$(GPU_BENCH_STEPS_LIMIT),$(PY) -m gankernels bench --op $(GPU_BENCH_STEPS) \
	  $(NO_GPU_QUICK) --json $(OUT)/results-steps.json)
endef

# Command 1: build for sm_90, the glue's refusals (they once crashed there), every CUDA test.
gpu-check-1:
	$(gpu_start)
	$(gpu_build_piece)
	$(gpu_test_pieces)
	$(gpu_verdict)

# Command 2: the host vs device profile, the op table, then the whole-step benchmarks (model iterations with
# torch.compile, critic steps), each results JSON rewritten after every case.
gpu-check-2:
	$(gpu_start)
	$(gpu_build_if_needed)
	@$(call piece,profile,$(GPU_PROFILE_LIMIT),$(PY) tools/profile_op.py)
	$(gpu_bench_piece)
	$(gpu_bench_steps_piece)
	$(gpu_verdict)

# Both, for a machine without the 10-minute limit per command.
gpu-check: gpu-check-1 gpu-check-2

# The pieces alone (each fails if what it ran failed).
gpu-build:
	$(gpu_start)
	$(gpu_build_piece)
	$(gpu_verdict)

gpu-tests:
	$(gpu_start)
	$(gpu_test_pieces)
	$(gpu_verdict)

gpu-bench:
	$(gpu_start)
	$(gpu_bench_piece)
	$(gpu_verdict)

gpu-bench-steps:
	$(gpu_start)
	$(gpu_build_if_needed)
	$(gpu_bench_steps_piece)
	$(gpu_verdict)

lint:
	ruff check . && ruff format --check .

clean:
	rm -rf build *.egg-info gankernels/*.so .pytest_cache .benchmarks

comma := ,
