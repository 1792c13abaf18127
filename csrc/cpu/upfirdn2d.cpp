// upfirdn2d on the CPU: polyphase evaluation (only the taps that land on real input samples), OpenMP across planes
// and bands of output rows, SIMD along x (NCHW) or along channels (channels_last).
//
// NCHW: a thread takes a band of output rows of one plane. It converts the input rows the band reads into a
// zero-padded buffer of the compute type, each row split into S = downx / gcd(upx, downx) sub-rows (sub-row q holds
// columns q, q + S, q + 2S, ...). Output columns fall into P = upx / gcd(upx, downx) phases, ox = ph + P * m; every
// output of one phase uses the same (fh / upy) x (fw / upx) taps, and tap (ky, kx) of output m reads element off + m
// of one sub-row. So one phase of an output row is a sum of weighted contiguous vectors, acc[m] = sum_t w_t src_t[m],
// evaluated up to 8 taps per pass (registers, vectorised over m) and stored with stride P.
// channels_last: a thread takes one output row of one image; an output pixel is the sum of the channel vectors of
// the input pixels under its real taps (clipped at the borders), weighted, vectorised over channels.

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common.h"
#include "gankernels/upfirdn2d.h"
#include "isa.h"

#if GK_ISA_COMPILE
GK_ISA_BEGIN
namespace {

template <typename T>
using compute_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

constexpr int kBlock = 8;                    // taps summed per pass over a vector
constexpr int64_t kGrain = 1 << 17;          // multiply-adds below which one thread does all the work
constexpr int64_t kBandBytes = 128 * 1024;   // input buffer of one band of output rows (NCHW)

// dst[m] = (FIRST ? 0 : dst[m]) + sum_k w[k] * src[k][m], m in [0, len).
template <int K, bool FIRST, typename S, typename C>
void combine_block(C* __restrict dst, const S* const* src, const C* w, int64_t len) {
  const S* s[K];
  C wk[K];
  for (int k = 0; k < K; ++k) {
    s[k] = src[k];
    wk[k] = w[k];
  }
#pragma omp simd
  for (int64_t m = 0; m < len; ++m) {
    C v = FIRST ? C(0) : dst[m];
    for (int k = 0; k < K; ++k) v += wk[k] * C(s[k][m]);
    dst[m] = v;
  }
}

template <bool FIRST, typename S, typename C>
void combine_some(int k, C* dst, const S* const* src, const C* w, int64_t len) {
  switch (k) {
    case 1: combine_block<1, FIRST>(dst, src, w, len); break;
    case 2: combine_block<2, FIRST>(dst, src, w, len); break;
    case 3: combine_block<3, FIRST>(dst, src, w, len); break;
    case 4: combine_block<4, FIRST>(dst, src, w, len); break;
    case 5: combine_block<5, FIRST>(dst, src, w, len); break;
    case 6: combine_block<6, FIRST>(dst, src, w, len); break;
    case 7: combine_block<7, FIRST>(dst, src, w, len); break;
    default: combine_block<8, FIRST>(dst, src, w, len); break;
  }
}

// dst[m] = sum_t w[t] * src[t][m] over `taps` weighted vectors of length len (zero when there are none).
template <typename S, typename C>
void combine(C* dst, const S* const* src, const C* w, int taps, int64_t len) {
  if (taps == 0) {
    std::fill(dst, dst + len, C(0));
    return;
  }
  int done = std::min(taps, kBlock);
  combine_some<true>(done, dst, src, w, len);
  while (done < taps) {
    const int k = std::min(taps - done, kBlock);
    combine_some<false>(k, dst, src + done, w + done, len);
    done += k;
  }
}

// The correlation weights times gain: wf[ky * fw + kx] = gain * f'[ky, kx], f' = f flipped in both axes unless flip.
template <typename C>
std::vector<C> correlation_weights(const Upfirdn2dArgs& p) {
  const C* f = static_cast<const C*>(p.f);
  const int64_t taps = int64_t(p.fh) * p.fw;
  std::vector<C> wf(taps);
  for (int64_t i = 0; i < taps; ++i) wf[i] = C(p.gain) * f[p.flip ? i : taps - 1 - i];
  return wf;
}

// out[ph + P m] = acc[ph m_max + m] for ox = ph + P m < OW: the phases of one output row interleaved.
template <typename T, typename C>
void store_phases(T* __restrict out, const C* __restrict acc, int P, int64_t m_max, int OW) {
  if (P == 1) {
    if constexpr (!std::is_same_v<T, C>) {
#pragma omp simd
      for (int64_t m = 0; m < OW; ++m) cpu::store(out[m], acc[m]);
    }
  } else if (P == 2) {
    const int64_t pairs = OW / 2;
    const C* a0 = acc;
    const C* a1 = acc + m_max;
#pragma omp simd
    for (int64_t m = 0; m < pairs; ++m) {
      cpu::store(out[2 * m], a0[m]);
      cpu::store(out[2 * m + 1], a1[m]);
    }
    if (OW % 2) cpu::store(out[OW - 1], a0[pairs]);
  } else {
    for (int ph = 0; ph < std::min(P, OW); ++ph) {
      for (int64_t m = 0; ph + P * m < OW; ++m) cpu::store(out[ph + P * m], acc[ph * m_max + m]);
    }
  }
}

int threads_for(const Upfirdn2dArgs& p, int num_threads) {
  const int64_t taps = std::max<int64_t>(1, int64_t(p.fh) * p.fw / (int64_t(p.upx) * p.upy));
  const int64_t work = p.n * p.c * p.out_h * p.out_w * taps;
  return work < kGrain ? 1 : std::max(1, num_threads);
}

template <typename T>
void planar(const Upfirdn2dArgs& p, int num_threads) {
  using C = compute_t<T>;
  using namespace detail;
  const T* x = static_cast<const T*>(p.x);
  T* out = static_cast<T*>(p.out);
  const int H = p.in_h, W = p.in_w, OH = p.out_h, OW = p.out_w;
  const int g = gcd_(p.upx, p.downx), P = p.upx / g, S = p.downx / g;
  const std::vector<C> wf = correlation_weights<C>(p);

  // Buffer columns: inputs ix in [bx_lo, bx_hi], every column any tap of any output reads (zero outside [0, W)).
  const int64_t bx_lo = ceil_div64(-p.padx0, p.upx);
  const int64_t bx_hi = floor_div64(int64_t(OW - 1) * p.downx - p.padx0 + p.fw - 1, p.upx);
  const int64_t bw = std::max<int64_t>(0, bx_hi - bx_lo + 1);
  const int64_t ls = (bw + S - 1) / S;  // sub-row length

  // Phase ph (outputs ox = ph + P m, m < count) uses x taps [first, first + n): input ix0 + i + m S reads sub-row
  // (ix0 + i - bx_lo) % S at offset (ix0 + i - bx_lo) / S + m, with filter column kx0 + i upx.
  struct XTap {
    int q, kx;
    int64_t off;
  };
  struct XPhase {
    int64_t count;
    int first, n;
  };
  std::vector<XTap> xtaps;
  std::vector<XPhase> phases;
  for (int ph = 0; ph < std::min(P, OW); ++ph) {
    const AxisTaps t = axis_taps(ph, p.upx, p.downx, p.padx0, p.fw);
    phases.push_back({(OW - ph + P - 1) / P, int(xtaps.size()), t.n});
    for (int i = 0; i < t.n; ++i) {
      const int64_t b = int64_t(t.i0) + i - bx_lo;  // >= 0: t.i0 >= bx_lo
      xtaps.push_back({int(b % S), t.k0 + i * p.upx, b / S});
    }
  }

  // Bands of output rows: the input rows of a band fit in kBandBytes, and there are enough bands to share out.
  const int nt = threads_for(p, num_threads);
  const int64_t planes = p.n * p.c;
  const int64_t row_bytes = std::max<int64_t>(1, S * ls * int64_t(sizeof(C)));
  const int64_t rows_fit = std::max<int64_t>(1, kBandBytes / row_bytes - p.fh / p.upy - 1);
  int64_t band = std::clamp<int64_t>(rows_fit * p.upy / p.downy, 1, OH);
  while (band > 1 && planes * ((OH + band - 1) / band) < 4 * nt) band = (band + 1) / 2;
  const int64_t bands = (OH + band - 1) / band;
  const int ny_max = (p.fh + p.upy - 1) / p.upy;
  const int nx_max = (p.fw + p.upx - 1) / p.upx;

#pragma omp parallel num_threads(nt)
  {
    const int64_t m_max = (OW + P - 1) / P;
    std::vector<C> buf, acc(std::size_t(P * m_max));  // phase ph of the row in acc[ph m_max, ph m_max + count)
    std::vector<const C*> src(std::size_t(ny_max) * nx_max);
    std::vector<C> w(src.size());
#pragma omp for schedule(static)
    for (int64_t item = 0; item < planes * bands; ++item) {
      const int64_t plane = item / bands;
      const int oy0 = int((item % bands) * band), oy1 = int(std::min<int64_t>(OH, oy0 + band));
      const AxisTaps first = axis_taps(oy0, p.upy, p.downy, p.pady0, p.fh);
      const AxisTaps last = axis_taps(oy1 - 1, p.upy, p.downy, p.pady0, p.fh);
      const int iy_lo = std::max(0, first.i0), iy_hi = std::min(H - 1, last.i0 + last.n - 1);
      const int64_t rows = std::max(0, iy_hi - iy_lo + 1);
      buf.resize(std::size_t(rows * S * ls));

      // Fill: buffer row iy, sub-row q, element t holds x[iy, bx_lo + q + S t] (zero outside the image).
      for (int iy = iy_lo; iy <= iy_hi; ++iy) {
        const T* xr = x + (plane * H + iy) * W;
        for (int q = 0; q < S; ++q) {
          C* d = buf.data() + ((iy - iy_lo) * int64_t(S) + q) * ls;
          const int64_t col = bx_lo + q;
          const int64_t t_lo = std::clamp<int64_t>(ceil_div64(-col, S), 0, ls);
          const int64_t t_hi = std::clamp<int64_t>(ceil_div64(W - col, S), t_lo, ls);
          std::fill(d, d + t_lo, C(0));
          if (S == 1) {
#pragma omp simd
            for (int64_t t = t_lo; t < t_hi; ++t) d[t] = C(xr[col + t]);
          } else if (S == 2) {
#pragma omp simd
            for (int64_t t = t_lo; t < t_hi; ++t) d[t] = C(xr[col + 2 * t]);
          } else {
            for (int64_t t = t_lo; t < t_hi; ++t) d[t] = C(xr[col + S * t]);
          }
          std::fill(d + t_hi, d + ls, C(0));
        }
      }

      for (int oy = oy0; oy < oy1; ++oy) {
        T* orow = out + (plane * OH + oy) * OW;
        const AxisTaps ty = axis_taps(oy, p.upy, p.downy, p.pady0, p.fh);
        int j0, j1;
        clip_taps(ty, H, j0, j1);
        for (int ph = 0; ph < int(phases.size()); ++ph) {
          const XPhase& xp = phases[ph];
          int taps = 0;
          for (int j = j0; j < j1; ++j) {
            const int iy = ty.i0 + j, ky = ty.k0 + j * p.upy;  // U row iy * upy meets filter row ky
            const C* rb = buf.data() + int64_t(iy - iy_lo) * S * ls;
            for (int i = xp.first; i < xp.first + xp.n; ++i) {
              src[taps] = rb + xtaps[i].q * ls + xtaps[i].off;
              w[taps++] = wf[std::size_t(ky) * p.fw + xtaps[i].kx];
            }
          }
          if constexpr (std::is_same_v<T, C>) {
            if (P == 1) {  // out[oy, m] = sum_t w_t src_t[m], written in place
              combine(orow, src.data(), w.data(), taps, xp.count);
              continue;
            }
          }
          combine(acc.data() + ph * m_max, src.data(), w.data(), taps, xp.count);
        }
        store_phases(orow, acc.data(), P, m_max, OW);
      }
    }
  }
}

template <typename T>
void channels_last(const Upfirdn2dArgs& p, int num_threads) {
  using C = compute_t<T>;
  const T* x = static_cast<const T*>(p.x);
  T* out = static_cast<T*>(p.out);
  const int H = p.in_h, W = p.in_w, OH = p.out_h, OW = p.out_w;
  const int64_t ch = p.c;
  const std::vector<C> wf = correlation_weights<C>(p);

  // Per output column: the first real in-range input column, its filter column, and how many follow (step upx).
  struct XTaps {
    int ix, kx, n;
  };
  std::vector<XTaps> xt(OW);
  for (int ox = 0; ox < OW; ++ox) {
    const AxisTaps t = axis_taps(ox, p.upx, p.downx, p.padx0, p.fw);
    int j0, j1;
    clip_taps(t, W, j0, j1);
    xt[ox] = {t.i0 + j0, t.k0 + j0 * p.upx, j1 - j0};
  }
  const int nt = threads_for(p, num_threads);
  const int ny_max = (p.fh + p.upy - 1) / p.upy;
  const int nx_max = (p.fw + p.upx - 1) / p.upx;

#pragma omp parallel num_threads(nt)
  {
    std::vector<C> acc(std::is_same_v<T, C> ? 0 : ch);
    std::vector<const T*> src(std::size_t(ny_max) * nx_max);
    std::vector<C> w(src.size());
#pragma omp for schedule(static)
    for (int64_t r = 0; r < p.n * OH; ++r) {
      const int64_t n = r / OH;
      const int oy = int(r % OH);
      const AxisTaps ty = axis_taps(oy, p.upy, p.downy, p.pady0, p.fh);
      int j0, j1;
      clip_taps(ty, H, j0, j1);
      for (int ox = 0; ox < OW; ++ox) {
        const XTaps& tx = xt[ox];
        int taps = 0;
        for (int j = j0; j < j1; ++j) {
          const int iy = ty.i0 + j, ky = ty.k0 + j * p.upy;
          const T* xrow = x + ((n * H + iy) * W) * ch;
          for (int i = 0; i < tx.n; ++i) {  // x[n, iy, tx.ix + i, :] * f'[ky, tx.kx + i upx]
            src[taps] = xrow + int64_t(tx.ix + i) * ch;
            w[taps++] = wf[std::size_t(ky) * p.fw + tx.kx + i * p.upx];
          }
        }
        T* o = out + ((n * OH + oy) * OW + ox) * ch;
        if constexpr (std::is_same_v<T, C>) {
          combine(o, src.data(), w.data(), taps, ch);
        } else {
          combine(acc.data(), src.data(), w.data(), taps, ch);
#pragma omp simd
          for (int64_t c = 0; c < ch; ++c) cpu::store(o[c], acc[c]);
        }
      }
    }
  }
}

template <typename T>
void run(const Upfirdn2dArgs& p, int num_threads) {
  p.channels_last ? channels_last<T>(p, num_threads) : planar<T>(p, num_threads);
}

}  // namespace

void upfirdn2d_run(const Upfirdn2dArgs& p, int num_threads) {
  cpu::dispatch_dtype(p.dtype, [&](auto t) { run<decltype(t)>(p, num_threads); });
}
GK_ISA_END
#endif  // GK_ISA_COMPILE

#if GK_ISA_LEVEL == 0
namespace gankernels {
GK_ISA_ENTRY(upfirdn2d_cpu, upfirdn2d_run, Upfirdn2dArgs)
}  // namespace gankernels
#endif
