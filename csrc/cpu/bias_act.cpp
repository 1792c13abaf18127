// bias_act on the CPU: one pass over memory, OpenMP across rows, SIMD along them (the bias gradient: a second pass,
// reduce_channels). Compiled for each instruction set of isa.h; bias_act_cpu runs the one for this CPU.
//
// The flat tensor is walked in runs that share one bias value (a row of `step` elements: NCHW, dim=1) or,
// when step == 1 (channels_last, dim=1), in runs of `size` elements whose bias is b[0..size). Either way the
// innermost loop is contiguous and branch-free, so the compiler vectorises it.

#include <algorithm>
#include <type_traits>
#include <vector>

#include "common.h"
#include "gankernels/bias_act.h"
#include "isa.h"

#if GK_ISA_COMPILE
GK_ISA_BEGIN
namespace {

template <typename T>
using compute_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

constexpr int64_t kGrain = 32768;  // elements below which one thread does all the work

// Calls run(begin, length, bias_offset, per_element) for runs covering [0, n): per_element false: every element of
// the run has channel bias_offset; true: element begin + k has channel k.
template <typename Run>
void for_each_run(int64_t n, int64_t step, int64_t size, bool has_bias, int num_threads, Run&& run) {
  const int nt = n < kGrain ? 1 : num_threads;
  if (!has_bias || size == 1) {  // one run per chunk; the channel is irrelevant (or always 0)
    const int64_t chunks = (n + kGrain - 1) / kGrain;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t c = 0; c < chunks; ++c) run(c * kGrain, std::min(kGrain, n - c * kGrain), int64_t(0), false);
  } else if (step == 1) {  // channels innermost
    const int64_t rows = n / size;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t r = 0; r < rows; ++r) run(r * size, size, int64_t(0), true);
  } else {  // `step` consecutive elements share a channel
    const int64_t rows = n / step;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t r = 0; r < rows; ++r) run(r * step, step, r % size, false);
  }
}

template <typename T, int A, bool CLAMP>
void forward(const BiasActArgs& p, int num_threads) {
  using C = compute_t<T>;
  const T* x = static_cast<const T*>(p.x);
  const T* b = static_cast<const T*>(p.b);
  T* y = static_cast<T*>(p.out);
  const C alpha = C(p.alpha), gain = C(p.gain), clamp = C(p.clamp);
  for_each_run(p.n, p.step, p.size, b != nullptr, num_threads, [&](int64_t i0, int64_t len, int64_t c, bool per) {
    if (per) {
#pragma omp simd
      for (int64_t k = 0; k < len; ++k) {
        cpu::store(y[i0 + k], bias_act_forward_element<A, CLAMP>(C(x[i0 + k]) + C(b[k]), alpha, gain, clamp));
      }
    } else {
      const C bias = b ? C(b[c]) : C(0);
#pragma omp simd
      for (int64_t k = 0; k < len; ++k) {
        cpu::store(y[i0 + k], bias_act_forward_element<A, CLAMP>(C(x[i0 + k]) + bias, alpha, gain, clamp));
      }
    }
  });
}

template <typename T, int A, int ORDER, bool CLAMP>
void backward(const BiasActArgs& p, int num_threads) {
  using C = compute_t<T>;
  const int kind = bias_act_ref(A);
  const T* g = static_cast<const T*>(p.g);
  const T* m = static_cast<const T*>(p.m);
  const T* ref = static_cast<const T*>(kind == 1 ? p.x : kind == 2 ? p.y : p.g);
  const T* y = static_cast<const T*>(CLAMP ? p.y : p.g);
  const T* b = kind == 1 ? static_cast<const T*>(p.b) : nullptr;
  T* out = static_cast<T*>(p.out);
  const C alpha = C(p.alpha), gain = C(p.gain), clamp = C(p.clamp);
  // One loop per (m given, bias per element): a load under a runtime condition inside the loop (m[i], b[k]) is
  // control flow the vectoriser gives up on for some types and activations (float16, swish).
  auto loop = [&](auto has_m, auto per_k, int64_t i0, int64_t len, C bias) {
    constexpr bool HAS_M = decltype(has_m)::value, PER = decltype(per_k)::value;
#pragma omp simd
    for (int64_t k = 0; k < len; ++k) {
      const int64_t i = i0 + k;
      C gv = C(g[i]);
      if constexpr (HAS_M) gv *= C(m[i]);
      const C r = C(ref[i]) + (PER ? C(b[k]) : bias);
      cpu::store(out[i], bias_act_backward_element<A, ORDER, CLAMP>(gv, r, C(y[i]), alpha, gain, clamp));
    }
  };
  using yes = std::true_type;
  using no = std::false_type;
  for_each_run(p.n, p.step, p.size, b != nullptr, num_threads, [&](int64_t i0, int64_t len, int64_t c, bool per) {
    const C bias = (b && !per) ? C(b[c]) : C(0);
    if (m) {
      per ? loop(yes{}, yes{}, i0, len, bias) : loop(yes{}, no{}, i0, len, bias);
    } else {
      per ? loop(no{}, yes{}, i0, len, bias) : loop(no{}, no{}, i0, len, bias);
    }
  });
}

// db[c] = the sum of out over channel c, accumulated in double, the same for any number of threads: the flat tensor,
// seen as [outer, size, step], is cut into fixed blocks (of outer indices, and of channels where one outer index
// holds more than kGrain elements), each summed by one thread into its own row of `sums`; the rows are then folded in
// order.
template <typename T>
void reduce_channels(const T* out, int64_t n, int64_t step, int64_t size, T* db, int num_threads) {
  const int64_t per_outer = step * size, outer = n / per_outer;
  const int64_t ob = std::max<int64_t>(1, kGrain / per_outer);  // outer indices per block
  const int64_t cb = ob > 1 ? size : std::clamp<int64_t>(kGrain / step, 1, size);  // channels per block
  const int64_t oblocks = (outer + ob - 1) / ob, cblocks = (size + cb - 1) / cb;
  std::vector<double> sums(oblocks * size, 0.0);
  const int nt = n < kGrain ? 1 : num_threads;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t blk = 0; blk < oblocks * cblocks; ++blk) {
    const int64_t o0 = blk / cblocks * ob, o1 = std::min(outer, o0 + ob);
    const int64_t c0 = blk % cblocks * cb, c1 = std::min(size, c0 + cb);
    double* acc = sums.data() + blk / cblocks * size;
    for (int64_t o = o0; o < o1; ++o) {
      const T* base = out + o * per_outer;
      if (step == 1) {
#pragma omp simd
        for (int64_t c = c0; c < c1; ++c) acc[c] += double(base[c]);
      } else {
        for (int64_t c = c0; c < c1; ++c) {
          const T* row = base + c * step;
          double s = 0;
#pragma omp simd reduction(+ : s)
          for (int64_t j = 0; j < step; ++j) s += double(row[j]);
          acc[c] += s;
        }
      }
    }
  }
  for (int64_t c = 0; c < size; ++c) {
    double s = 0;
    for (int64_t k = 0; k < oblocks; ++k) s += sums[k * size + c];
    cpu::store(db[c], s);
  }
}

template <typename T>
void run(const BiasActArgs& p, int num_threads) {
  const bool clamp = p.clamp >= 0;
  dispatch_activation(p.act, [&](auto a) {
    constexpr int A = decltype(a)::value;
    if (p.order == 0) {
      clamp ? forward<T, A, true>(p, num_threads) : forward<T, A, false>(p, num_threads);
    } else if (p.order == 1) {
      clamp ? backward<T, A, 1, true>(p, num_threads) : backward<T, A, 1, false>(p, num_threads);
      if (p.db) reduce_channels(static_cast<const T*>(p.out), p.n, p.step, p.size, static_cast<T*>(p.db), num_threads);
    } else {
      clamp ? backward<T, A, 2, true>(p, num_threads) : backward<T, A, 2, false>(p, num_threads);
    }
  });
}

}  // namespace

void bias_act_run(const BiasActArgs& p, int num_threads) {
  cpu::dispatch_dtype(p.dtype, [&](auto t) { run<decltype(t)>(p, num_threads); });
}
GK_ISA_END
#endif  // GK_ISA_COMPILE

#if GK_ISA_LEVEL == 0
namespace gankernels {
GK_ISA_ENTRY(bias_act_cpu, bias_act_run, BiasActArgs)
}  // namespace gankernels
#endif
