// instance_norm_act on the CPU: statistics, normalisation, affine, activation and residual in one kernel, and the
// whole gradient (dx and the per-plane partials of dweight and dbias) in another; OpenMP over planes.
//
// NCHW: a task owns one (n, c) plane, contiguous: three walks over it forward (sum, sum of squared deviations from
// that mean: exact two-pass statistics; then y), two backward (the two sums; then dx). A plane of StyleGAN / CycleGAN
// size (64 x 64 floats: 16 KiB) stays in L1/L2 between walks. channels_last: a task owns a block of channels of one
// image and walks its rows of C channels, SIMD along the block, with a running sum per channel.
// Sums are accumulated in double for every dtype (one task per plane, a fixed order: the same bits on any thread
// count); the values are computed in float for fp16/bf16/fp32 and in double for fp64, as the Triton kernels.

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "common.h"
#include "gankernels/instance_norm.h"
#include "isa.h"

#if GK_ISA_COMPILE
GK_ISA_BEGIN
namespace {

template <typename T>
using compute_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

constexpr int64_t kGrain = 1 << 15;  // elements below which one thread does all the work
constexpr int64_t kMaxBlock = 64;    // channels_last: channels per task at most

int threads_for(int64_t work, int num_threads) { return work < kGrain ? 1 : std::max(1, num_threads); }

// act(z): relu keeps NaN (as torch); lrelu(z) = z alpha below 0.
template <typename C>
GK_HD C act_of(C z, int act, C alpha) {
  if (act == 2) return z < C(0) ? C(0) : z;
  if (act == 3) return z < C(0) ? z * alpha : z;
  return z;
}

// g act'(z): act'(0) = 0 for relu and alpha for lrelu, as torch.
template <typename C>
GK_HD C act_grad(C g, C z, int act, C alpha) {
  if (act == 2) return z > C(0) ? g : C(0);
  if (act == 3) return z > C(0) ? g : g * alpha;
  return g;
}

template <typename T>
GK_HD compute_t<T> at_or(const T* p, int64_t i, compute_t<T> otherwise) {
  return p ? compute_t<T>(p[i]) : otherwise;
}

// Channels per channels_last task: enough tasks for the threads (two per thread), at most kMaxBlock, a multiple of 8.
int64_t channel_block(int64_t n, int64_t c, int nt) {
  const int64_t per_image = std::max<int64_t>(1, (2 * int64_t(nt) + n - 1) / n);
  const int64_t block = ((c + per_image - 1) / per_image + 7) / 8 * 8;
  return std::min(std::min(block, kMaxBlock), c);
}

// The arguments' buffers, typed: T for the images and the per-channel vectors, the compute type for the statistics.
template <typename T>
struct Buffers {
  using C = compute_t<T>;
  const T *x, *w, *bias, *r, *g;
  T *y, *dx;
  C *mean, *rstd, *dw, *db;
  explicit Buffers(const InstanceNormArgs& p)
      : x(static_cast<const T*>(p.x)), w(static_cast<const T*>(p.weight)), bias(static_cast<const T*>(p.bias)),
        r(static_cast<const T*>(p.residual)), g(static_cast<const T*>(p.g)), y(static_cast<T*>(p.y)),
        dx(static_cast<T*>(p.dx)), mean(static_cast<C*>(p.mean)), rstd(static_cast<C*>(p.rstd)),
        dw(static_cast<C*>(p.dweight_partial)), db(static_cast<C*>(p.dbias_partial)) {}
};

// The element math both layouts share; forward and backward compute z = (x - mean) k + b the same way, so that the
// backward's act'(z) sees the forward's z. k = rstd w.
template <typename C>
GK_HD C rstd_of(double sum_sq, int64_t hw, double eps) {
  return C(1.0 / std::sqrt(sum_sq / double(hw) + eps));
}

template <typename C>
GK_HD C forward_value(C x, C mean, C k, C shift, int act, C alpha) {
  return act_of((x - mean) * k + shift, act, alpha);
}

// g act'(z) for x - mean = xm
template <typename C>
GK_HD C grad_z(C g, C xm, C k, C shift, int act, C alpha) {
  return act_grad(g, xm * k + shift, act, alpha);
}

// dx = k (gz - mean_hw(gz) - xhat mean_hw(gz xhat)), xhat = xm rstd
template <typename C>
GK_HD C dx_of(C gz, C xm, C rstd, C k, C m_gz, C m_gzx) {
  return k * (gz - m_gz - (xm * rstd) * m_gzx);
}

template <typename T>
void forward_nchw(const InstanceNormArgs& p, int nt) {
  using C = compute_t<T>;
  const Buffers<T> t(p);
  const int64_t HW = p.hw, planes = p.n * p.c;
  const C alpha = C(p.alpha);
  const int act = p.act;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const int64_t c = plane % p.c;
    const T* xp = t.x + plane * HW;
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < HW; ++i) s += double(C(xp[i]));
    const double m = s / double(HW);
    double s2 = 0;
#pragma omp simd reduction(+ : s2)
    for (int64_t i = 0; i < HW; ++i) {
      const double d = double(C(xp[i])) - m;
      s2 += d * d;
    }
    const C mean = C(m), rstd = rstd_of<C>(s2, HW, p.eps);
    t.mean[plane] = mean;
    t.rstd[plane] = rstd;
    const C k = rstd * at_or(t.w, c, C(1)), shift = at_or(t.bias, c, C(0));
    T* yp = t.y + plane * HW;
    if (t.r) {
      const T* rp = t.r + plane * HW;
#pragma omp simd
      for (int64_t i = 0; i < HW; ++i) {
        cpu::store(yp[i], forward_value(C(xp[i]), mean, k, shift, act, alpha) + C(rp[i]));
      }
    } else {
#pragma omp simd
      for (int64_t i = 0; i < HW; ++i) cpu::store(yp[i], forward_value(C(xp[i]), mean, k, shift, act, alpha));
    }
  }
}

template <typename T>
void forward_nhwc(const InstanceNormArgs& p, int nt) {
  using C = compute_t<T>;
  const Buffers<T> t(p);
  const int64_t HW = p.hw, nc = p.c, block = channel_block(p.n, nc, nt), blocks = (nc + block - 1) / block;
  const C alpha = C(p.alpha);
  const int act = p.act;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t task = 0; task < p.n * blocks; ++task) {
    const int64_t n = task / blocks, c0 = (task % blocks) * block, cb = std::min(block, nc - c0);
    const T* xb = t.x + n * HW * nc + c0;
    double s[kMaxBlock] = {}, s2[kMaxBlock] = {}, m[kMaxBlock];
    for (int64_t q = 0; q < HW; ++q) {
      const T* row = xb + q * nc;
#pragma omp simd
      for (int64_t j = 0; j < cb; ++j) s[j] += double(C(row[j]));
    }
    for (int64_t j = 0; j < cb; ++j) m[j] = s[j] / double(HW);
    for (int64_t q = 0; q < HW; ++q) {
      const T* row = xb + q * nc;
#pragma omp simd
      for (int64_t j = 0; j < cb; ++j) {
        const double d = double(C(row[j])) - m[j];
        s2[j] += d * d;
      }
    }
    C mean[kMaxBlock], k[kMaxBlock], shift[kMaxBlock];
    for (int64_t j = 0; j < cb; ++j) {
      const C rstd = rstd_of<C>(s2[j], HW, p.eps);
      mean[j] = C(m[j]);
      t.mean[n * nc + c0 + j] = mean[j];
      t.rstd[n * nc + c0 + j] = rstd;
      k[j] = rstd * at_or(t.w, c0 + j, C(1));
      shift[j] = at_or(t.bias, c0 + j, C(0));
    }
    for (int64_t q = 0; q < HW; ++q) {
      const int64_t at = (n * HW + q) * nc + c0;
      const T* row = t.x + at;
      T* out = t.y + at;
      if (t.r) {
        const T* res = t.r + at;
#pragma omp simd
        for (int64_t j = 0; j < cb; ++j) {
          cpu::store(out[j], forward_value(C(row[j]), mean[j], k[j], shift[j], act, alpha) + C(res[j]));
        }
      } else {
#pragma omp simd
        for (int64_t j = 0; j < cb; ++j) {
          cpu::store(out[j], forward_value(C(row[j]), mean[j], k[j], shift[j], act, alpha));
        }
      }
    }
  }
}

template <typename T>
void backward_nchw(const InstanceNormArgs& p, int nt) {
  using C = compute_t<T>;
  const Buffers<T> t(p);
  const int64_t HW = p.hw, planes = p.n * p.c;
  const C alpha = C(p.alpha);
  const int act = p.act;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const int64_t c = plane % p.c;
    const T* xp = t.x + plane * HW;
    const T* gp = t.g + plane * HW;
    const C mean = t.mean[plane], rstd = t.rstd[plane];
    const C k = rstd * at_or(t.w, c, C(1)), shift = at_or(t.bias, c, C(0));
    double s_gz = 0, s_gzx = 0;
#pragma omp simd reduction(+ : s_gz, s_gzx)
    for (int64_t i = 0; i < HW; ++i) {
      const C xm = C(xp[i]) - mean;
      const C gz = grad_z(C(gp[i]), xm, k, shift, act, alpha);
      s_gz += double(gz);
      s_gzx += double(gz * (xm * rstd));
    }
    t.db[plane] = C(s_gz);
    t.dw[plane] = C(s_gzx);
    const C m_gz = C(s_gz / double(HW)), m_gzx = C(s_gzx / double(HW));
    T* dxp = t.dx + plane * HW;
#pragma omp simd
    for (int64_t i = 0; i < HW; ++i) {
      const C xm = C(xp[i]) - mean;
      const C gz = grad_z(C(gp[i]), xm, k, shift, act, alpha);
      cpu::store(dxp[i], dx_of(gz, xm, rstd, k, m_gz, m_gzx));
    }
  }
}

template <typename T>
void backward_nhwc(const InstanceNormArgs& p, int nt) {
  using C = compute_t<T>;
  const Buffers<T> t(p);
  const int64_t HW = p.hw, nc = p.c, block = channel_block(p.n, nc, nt), blocks = (nc + block - 1) / block;
  const C alpha = C(p.alpha);
  const int act = p.act;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t task = 0; task < p.n * blocks; ++task) {
    const int64_t n = task / blocks, c0 = (task % blocks) * block, cb = std::min(block, nc - c0);
    C mean[kMaxBlock], rstd[kMaxBlock], k[kMaxBlock], shift[kMaxBlock];
    for (int64_t j = 0; j < cb; ++j) {
      mean[j] = t.mean[n * nc + c0 + j];
      rstd[j] = t.rstd[n * nc + c0 + j];
      k[j] = rstd[j] * at_or(t.w, c0 + j, C(1));
      shift[j] = at_or(t.bias, c0 + j, C(0));
    }
    double s_gz[kMaxBlock] = {}, s_gzx[kMaxBlock] = {};
    for (int64_t q = 0; q < HW; ++q) {
      const int64_t at = (n * HW + q) * nc + c0;
      const T *xr = t.x + at, *gr = t.g + at;
#pragma omp simd
      for (int64_t j = 0; j < cb; ++j) {
        const C xm = C(xr[j]) - mean[j];
        const C gz = grad_z(C(gr[j]), xm, k[j], shift[j], act, alpha);
        s_gz[j] += double(gz);
        s_gzx[j] += double(gz * (xm * rstd[j]));
      }
    }
    C m_gz[kMaxBlock], m_gzx[kMaxBlock];
    for (int64_t j = 0; j < cb; ++j) {
      t.db[n * nc + c0 + j] = C(s_gz[j]);
      t.dw[n * nc + c0 + j] = C(s_gzx[j]);
      m_gz[j] = C(s_gz[j] / double(HW));
      m_gzx[j] = C(s_gzx[j] / double(HW));
    }
    for (int64_t q = 0; q < HW; ++q) {
      const int64_t at = (n * HW + q) * nc + c0;
      const T *xr = t.x + at, *gr = t.g + at;
      T* out = t.dx + at;
#pragma omp simd
      for (int64_t j = 0; j < cb; ++j) {
        const C xm = C(xr[j]) - mean[j];
        const C gz = grad_z(C(gr[j]), xm, k[j], shift[j], act, alpha);
        cpu::store(out[j], dx_of(gz, xm, rstd[j], k[j], m_gz[j], m_gzx[j]));
      }
    }
  }
}

}  // namespace

void instance_norm_forward_run(const InstanceNormArgs& args, int num_threads) {
  const int nt = threads_for(args.n * args.c * args.hw, num_threads);
  cpu::dispatch_dtype(args.dtype, [&](auto tag) {
    using T = decltype(tag);
    args.channels_last ? forward_nhwc<T>(args, nt) : forward_nchw<T>(args, nt);
  });
}

void instance_norm_backward_run(const InstanceNormArgs& args, int num_threads) {
  const int nt = threads_for(args.n * args.c * args.hw, num_threads);
  cpu::dispatch_dtype(args.dtype, [&](auto tag) {
    using T = decltype(tag);
    args.channels_last ? backward_nhwc<T>(args, nt) : backward_nchw<T>(args, nt);
  });
}
GK_ISA_END
#endif  // GK_ISA_COMPILE

#if GK_ISA_LEVEL == 0
namespace gankernels {
GK_ISA_ENTRY(instance_norm_forward_cpu, instance_norm_forward_run, InstanceNormArgs)
GK_ISA_ENTRY(instance_norm_backward_cpu, instance_norm_backward_run, InstanceNormArgs)
}  // namespace gankernels
#endif
