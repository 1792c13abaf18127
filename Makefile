# make demo: install, build, show what runs where, train a small StyleGAN2 (~2 min), benchmark.
# make test: install, build, test everything.
PY ?= python3
OUT ?= gpu-out
NVCC ?= nvcc
CUDA_ARCHS ?= 80 90
GPU_BENCH_OPS ?= bias_act,upfirdn2d,instance_norm,fused_conv2d,stylegan2_ops
export MAX_JOBS ?= $(shell nproc)

.PHONY: deps build test demo cuda-compile-check triton-compile-check gpu-check gpu-build gpu-tests gpu-bench \
	gpu-bench-steps lint bench clean

deps:
	PY=$(PY) tools/install_deps.sh

build: deps
	$(PY) -m pip install --disable-pip-version-check -q -e . --no-build-isolation --no-deps

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

# On a GPU machine (see ../shared/GPU.md): build with CUDA, the glue's refusals (they once crashed there), the host vs
# device profile, every test, the benchmark table -> $(OUT). The results JSON is rewritten after every case, so a
# call cut short keeps what it measured; a copied tree has no .git: pass GANKERNELS_GIT_COMMIT=<sha> for the record.
# The parts run alone too (gpu-build, gpu-tests, gpu-bench), for calls that would not fit all of it in 10 minutes.
gpu-check: gpu-build gpu-tests gpu-bench

gpu-build:
	mkdir -p $(OUT)
	$(PY) -m pip install --disable-pip-version-check -q -e . --no-build-isolation --no-deps
	$(PY) -m gankernels info | tee $(OUT)/info.txt

gpu-tests:
	mkdir -p $(OUT)
	-$(PY) tools/diag/refusals.py 2>&1 | tee $(OUT)/refusals.txt
	-$(PY) tools/profile_op.py 2>&1 | tee $(OUT)/profile.txt
	-$(PY) -m pytest tests -q -p no:cacheprovider --durations=15 2>&1 | tee $(OUT)/tests.txt

gpu-bench:
	mkdir -p $(OUT)
	$(PY) -m gankernels bench --op $(GPU_BENCH_OPS) --json $(OUT)/results.json 2>&1 | tee $(OUT)/bench.txt

# The whole-step benchmarks (model iterations with torch.compile, critic steps) in a call of their own: with the
# tests and the op table they would not fit one 10-minute device call.
gpu-bench-steps:
	mkdir -p $(OUT)
	$(PY) -m pip install --disable-pip-version-check -q -e . --no-build-isolation --no-deps
	$(PY) -m gankernels bench --op penalties,models --json $(OUT)/results-steps.json 2>&1 | tee $(OUT)/bench-steps.txt

lint:
	ruff check . && ruff format --check .

clean:
	rm -rf build *.egg-info gankernels/*.so .pytest_cache .benchmarks

comma := ,
