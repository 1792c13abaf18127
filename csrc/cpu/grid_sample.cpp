// grid_sample (bilinear) on the CPU: OpenMP over (sample, chunk of output points), the corner table of a chunk
// computed once and reused for every channel.
//
// Forward: NCHW walks one channel plane at a time over the chunk's points (two image rows in cache per plane);
// channels_last walks the points, each a contiguous run of C channels per corner (SIMD along C).
// Backward, deterministic (no atomics, a fixed order of additions): dx by tasks that each own a block of channels of
// one sample, scattering every point of that sample in order; dgrid by tasks over (sample, chunk of points), each
// point's sum over channels in registers. fp16/bf16 are computed (and dx accumulated) in float, fp64 in double.

#include <algorithm>
#include <type_traits>
#include <vector>

#include "common.h"
#include "gankernels/grid_sample.h"
#include "isa.h"

#if GK_ISA_LEVEL >= 1
#include <immintrin.h>  // _cvtsh_ss (F16C), in the AVX2 / AVX-512 copies only
#endif

#if GK_ISA_COMPILE
GK_ISA_BEGIN
namespace {

template <typename T>
using compute_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

constexpr int64_t kChunk = 128;       // output points per corner table
constexpr int64_t kGrain = 1 << 15;   // point-channel products below which one thread does all the work

int threads_for(int64_t work, int num_threads) { return work < kGrain ? 1 : std::max(1, num_threads); }

// A gathered (scalar) load: float16 through F16C's one-instruction conversion at the AVX2 / AVX-512 levels; half.h's
// branch-free conversion is made for vectorised loops, and a scalar gather pays its every operation (float16 NCHW
// forward [8, 64, 32, 32]: 1.71 ms with it, 1.02 with F16C).
template <typename C, typename T>
GK_HD C gather(const T& v) {
#if GK_ISA_LEVEL >= 1
  if constexpr (std::is_same_v<T, cpu::Half>) return C(_cvtsh_ss(v.bits));
#endif
  return C(v);
}

template <typename T>
void chunk_taps(const GridSampleArgs& p, const T* grid, int64_t len, GridTaps<compute_t<T>>* taps,
                compute_t<T>* mult_x, compute_t<T>* mult_y) {
  using C = compute_t<T>;
  const GridAxis<C> ax{p.w, p.padding, p.align_corners}, ay{p.h, p.padding, p.align_corners};
  for (int64_t i = 0; i < len; ++i) {
    C mx, my;
    const C ix = ax.coordinate(C(grid[2 * i]), mx);
    const C iy = ay.coordinate(C(grid[2 * i + 1]), my);
    taps[i] = grid_taps<C>(ix, iy, p.h, p.w);
    if (mult_x) {
      mult_x[i] = mx;
      mult_y[i] = my;
    }
  }
}

// The four corner values of a point at pixel stride `step` (NCHW: 1 within a plane; NHWC: C), 0 outside.
template <typename T, typename C>
inline void corners(const T* xc, const GridTaps<C>& t, int64_t step, C v[4]) {
  for (int k = 0; k < 4; ++k) {
    const C value = gather<C>(xc[t.index[k] * step]);  // index 0 when outside: always a safe read
    v[k] = (t.mask >> k) & 1 ? value : C(0);
  }
}

constexpr int kPlanes = 4;  // NCHW channels per walk over a chunk's corner table (each table entry read once per 4)

// y[b, c .. c + K, chunk] from planes c .. c + K of x[b]: per point, the corner table read once for K planes.
template <typename T, int K, typename C = compute_t<T>>
inline void planes(const T* x, T* y, int64_t b, int64_t c, int64_t nc, int64_t HW, int64_t P, int64_t p0,
                   int64_t len, const GridTaps<C>* taps) {
  const T* xc = x + (b * nc + c) * HW;
  T* yc = y + (b * nc + c) * P + p0;
  for (int64_t i = 0; i < len; ++i) {
    const GridTaps<C>& t = taps[i];
    const int64_t i0 = t.index[0], i1 = t.index[1], i2 = t.index[2], i3 = t.index[3];
    const C w0 = t.weight[0], w1 = t.weight[1], w2 = t.weight[2], w3 = t.weight[3];
    if (t.mask == 15) {  // all four corners inside: the common case
      for (int k = 0; k < K; ++k) {
        const T* xk = xc + k * HW;
        cpu::store(yc[k * P + i], gather<C>(xk[i0]) * w0 + gather<C>(xk[i1]) * w1 + gather<C>(xk[i2]) * w2 +
                                      gather<C>(xk[i3]) * w3);  // torch's order
      }
    } else {
      for (int k = 0; k < K; ++k) {
        C v[4];
        corners(xc + k * HW, t, 1, v);
        cpu::store(yc[k * P + i], v[0] * w0 + v[1] * w1 + v[2] * w2 + v[3] * w3);
      }
    }
  }
}

template <typename T>
void forward(const GridSampleArgs& p, int num_threads) {
  using C = compute_t<T>;
  const T* x = static_cast<const T*>(p.x);
  const T* grid = static_cast<const T*>(p.grid);
  T* y = static_cast<T*>(p.y);
  const int64_t P = p.ho * p.wo, HW = p.h * p.w, nc = p.c;
  const int64_t chunks = (P + kChunk - 1) / kChunk, tasks = p.n * chunks;
  const int nt = threads_for(P * p.n * nc, num_threads);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t b = task / chunks, p0 = (task % chunks) * kChunk, len = std::min(kChunk, P - p0);
    GridTaps<C> taps[kChunk];
    chunk_taps<T>(p, grid + (b * P + p0) * 2, len, taps, nullptr, nullptr);
    if (!p.channels_last) {
      int64_t c = 0;
      for (; c + kPlanes <= nc; c += kPlanes) planes<T, kPlanes>(x, y, b, c, nc, HW, P, p0, len, taps);
      for (; c < nc; ++c) planes<T, 1>(x, y, b, c, nc, HW, P, p0, len, taps);
    } else {
      const T* xb = x + b * HW * nc;
      for (int64_t i = 0; i < len; ++i) {
        const GridTaps<C>& t = taps[i];
        T* yp = y + (b * P + p0 + i) * nc;
        const T *x0 = xb + t.index[0] * nc, *x1 = xb + t.index[1] * nc;
        const T *x2 = xb + t.index[2] * nc, *x3 = xb + t.index[3] * nc;
        const C w0 = t.weight[0], w1 = t.weight[1], w2 = t.weight[2], w3 = t.weight[3];
        if (t.mask == 15) {
#pragma omp simd
          for (int64_t c = 0; c < nc; ++c) {
            cpu::store(yp[c], C(x0[c]) * w0 + C(x1[c]) * w1 + C(x2[c]) * w2 + C(x3[c]) * w3);
          }
        } else {
          const bool m0 = t.mask & 1, m1 = t.mask & 2, m2 = t.mask & 4, m3 = t.mask & 8;
          for (int64_t c = 0; c < nc; ++c) {
            const C v0 = m0 ? C(x0[c]) : C(0), v1 = m1 ? C(x1[c]) : C(0);
            const C v2 = m2 ? C(x2[c]) : C(0), v3 = m3 ? C(x3[c]) : C(0);
            cpu::store(yp[c], v0 * w0 + v1 * w1 + v2 * w2 + v3 * w3);
          }
        }
      }
    }
  }
}

// dx: task (sample b, channels [c0, c1)) scatters every point of b, in order, into its own channels.
template <typename T>
void backward_x(const GridSampleArgs& p, int num_threads) {
  using C = compute_t<T>;
  constexpr bool kDirect = std::is_same_v<T, C>;  // accumulate in dx itself; else in a float scratch
  const T* dy = static_cast<const T*>(p.dy);
  const T* grid = static_cast<const T*>(p.grid);
  T* dx = static_cast<T*>(p.dx);
  const int64_t P = p.ho * p.wo, HW = p.h * p.w, nc = p.c;
  const int nt = threads_for(P * p.n * nc, num_threads);
  const int64_t per_sample = std::min<int64_t>(nc, std::max<int64_t>(1, (2 * nt + p.n - 1) / p.n));
  const int64_t block = (nc + per_sample - 1) / per_sample, blocks = (nc + block - 1) / block;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t task = 0; task < p.n * blocks; ++task) {
    const int64_t b = task / blocks, c0 = (task % blocks) * block, c1 = std::min(nc, c0 + block), cb = c1 - c0;
    std::vector<C> scratch(kDirect ? 0 : std::size_t(HW * cb), C(0));
    // NCHW: acc plane c at acc + c * HW; NHWC: pixel q's channel c at acc + q * step + c
    C* acc;
    int64_t step;
    if constexpr (kDirect) {
      acc = reinterpret_cast<C*>(dx) + (p.channels_last ? b * HW * nc + c0 : (b * nc + c0) * HW);
      step = p.channels_last ? nc : 1;
      if (p.channels_last) {
        for (int64_t q = 0; q < HW; ++q) std::fill(acc + q * nc, acc + q * nc + cb, C(0));
      } else {
        std::fill(acc, acc + cb * HW, C(0));
      }
    } else {
      acc = scratch.data();
      step = p.channels_last ? cb : 1;
    }
    GridTaps<C> taps[kChunk];
    for (int64_t p0 = 0; p0 < P; p0 += kChunk) {
      const int64_t len = std::min(kChunk, P - p0);
      chunk_taps<T>(p, grid + (b * P + p0) * 2, len, taps, nullptr, nullptr);
      if (!p.channels_last) {
        for (int64_t c = 0; c < cb; ++c) {
          const T* g = dy + (b * nc + c0 + c) * P + p0;
          C* a = acc + c * HW;
          for (int64_t i = 0; i < len; ++i) {
            const GridTaps<C>& t = taps[i];
            const C gi = gather<C>(g[i]);
            for (int k = 0; k < 4; ++k) {
              if ((t.mask >> k) & 1) a[t.index[k]] += gi * t.weight[k];
            }
          }
        }
      } else {
        for (int64_t i = 0; i < len; ++i) {
          const GridTaps<C>& t = taps[i];
          const T* g = dy + (b * P + p0 + i) * nc + c0;
          for (int k = 0; k < 4; ++k) {
            if (!((t.mask >> k) & 1)) continue;
            C* a = acc + t.index[k] * step;
            const C wk = t.weight[k];
#pragma omp simd
            for (int64_t c = 0; c < cb; ++c) a[c] += C(g[c]) * wk;
          }
        }
      }
    }
    if constexpr (!kDirect) {
      for (int64_t c = 0; c < cb; ++c) {
        for (int64_t q = 0; q < HW; ++q) {
          const C v = p.channels_last ? acc[q * cb + c] : acc[c * HW + q];
          const int64_t at = p.channels_last ? (b * HW + q) * nc + c0 + c : (b * nc + c0 + c) * HW + q;
          cpu::store(dx[at], v);
        }
      }
    }
  }
}

// dgrid: task (sample b, chunk of points); each point's sums over the channels in order.
template <typename T>
void backward_grid(const GridSampleArgs& p, int num_threads) {
  using C = compute_t<T>;
  const T* x = static_cast<const T*>(p.x);
  const T* dy = static_cast<const T*>(p.dy);
  const T* grid = static_cast<const T*>(p.grid);
  T* dgrid = static_cast<T*>(p.dgrid);
  const int64_t P = p.ho * p.wo, HW = p.h * p.w, nc = p.c;
  const int64_t chunks = (P + kChunk - 1) / kChunk, tasks = p.n * chunks;
  const int nt = threads_for(P * p.n * nc, num_threads);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t b = task / chunks, p0 = (task % chunks) * kChunk, len = std::min(kChunk, P - p0);
    GridTaps<C> taps[kChunk];
    C mult_x[kChunk], mult_y[kChunk], gx[kChunk], gy[kChunk];
    chunk_taps<T>(p, grid + (b * P + p0) * 2, len, taps, mult_x, mult_y);
    std::fill(gx, gx + len, C(0));
    std::fill(gy, gy + len, C(0));
    if (!p.channels_last) {
      for (int64_t c = 0; c < nc; ++c) {
        const T* xc = x + (b * nc + c) * HW;
        const T* g = dy + (b * nc + c) * P + p0;
        for (int64_t i = 0; i < len; ++i) {
          const GridTaps<C>& t = taps[i];
          C v[4];
          corners(xc, t, 1, v);
          const C gi = C(g[i]);
          gx[i] += gi * ((v[1] - v[0]) * t.ds + (v[3] - v[2]) * t.dn);
          gy[i] += gi * ((v[2] - v[0]) * t.de + (v[3] - v[1]) * t.dw);
        }
      }
    } else {
      const T* xb = x + b * HW * nc;
      for (int64_t i = 0; i < len; ++i) {
        const GridTaps<C>& t = taps[i];
        const T* g = dy + (b * P + p0 + i) * nc;
        C sx = 0, sy = 0;
        for (int64_t c = 0; c < nc; ++c) {
          C v[4];
          corners(xb + c, t, nc, v);
          const C gi = C(g[c]);
          sx += gi * ((v[1] - v[0]) * t.ds + (v[3] - v[2]) * t.dn);
          sy += gi * ((v[2] - v[0]) * t.de + (v[3] - v[1]) * t.dw);
        }
        gx[i] = sx;
        gy[i] = sy;
      }
    }
    T* out = dgrid + (b * P + p0) * 2;
    for (int64_t i = 0; i < len; ++i) {
      cpu::store(out[2 * i], gx[i] * mult_x[i]);
      cpu::store(out[2 * i + 1], gy[i] * mult_y[i]);
    }
  }
}

}  // namespace

void grid_sample_forward_run(const GridSampleArgs& args, int num_threads) {
  cpu::dispatch_dtype(args.dtype, [&](auto tag) { forward<decltype(tag)>(args, num_threads); });
}

void grid_sample_backward_run(const GridSampleArgs& args, int num_threads) {
  cpu::dispatch_dtype(args.dtype, [&](auto tag) {
    using T = decltype(tag);
    if (args.dx) backward_x<T>(args, num_threads);
    if (args.dgrid) backward_grid<T>(args, num_threads);
  });
}
GK_ISA_END
#endif  // GK_ISA_COMPILE

#if GK_ISA_LEVEL == 0
namespace gankernels {
GK_ISA_ENTRY(grid_sample_forward_cpu, grid_sample_forward_run, GridSampleArgs)
GK_ISA_ENTRY(grid_sample_backward_cpu, grid_sample_backward_run, GridSampleArgs)
}  // namespace gankernels
#endif
