// upfirdn2d on CUDA. No torch header: raw pointers, sizes and a stream in, a cudaError_t (as int) out.
//
// Fast path: the calls StyleGAN2 makes (up 2, down 2 or plain filtering with 4-tap filters, as one 2-D 4x4 pass or
// as 1-D [1, 4] / [4, 1] passes), with the factors and the filter size compile-time, in fp32 / fp16 / bf16.
//  - Polyphase with static phases. With up and down coprime, output ox = g * up - s + r (group g, r in [0, up)) reads
//    U column up * (g * down + c) + r * down + kx for tap kx, where the shift s is chosen so that (s * down + padx0)
//    is a multiple of up and c = -(s * down + padx0) / up. So tap kx of output r lands on a real sample exactly when
//    (r * down + kx) % up == 0, on input g * down + c + (r * down + kx) / up: known at compile time for every
//    (r, kx), and the unrolled loops hold only the taps that hit samples, (fh / up) x (fw / up) per output.
//  - One thread computes a block of RX * upx by RY * upy outputs (whole groups, so the same phases in every thread),
//    from the NIN_Y x NIN_X input samples under it, read once into registers row by row, so that outputs sharing
//    an input reuse it from registers; the filter (times gain, flipped unless `flip`) sits in registers too.
//  - No shared-memory staging: a block's reads overlap its neighbours' (the filter's halo) and are served by L1.
//    Threads run along x (NCHW), so a warp reads and writes whole rows, or along channels (channels_last), so a warp
//    reads whole pixels, 4 channels per thread (16-byte fp32, 8-byte fp16 / bf16 accesses) when C % 4 == 0. In NCHW
//    a thread's RX * upx outputs of a row go out as one 8- or 16-byte store when aligned.
//  - Grid-stride loop over blocks of outputs, 32-bit index arithmetic (the launcher checks that it is safe), the
//    block coordinates decoded with multiply-shift division.
// Generic path (any factors and filter size, any dtype including fp64, 64-bit indexing when needed): one thread per
// output, its real taps found with two divisions per axis, the filter read through the read-only cache.
#include "common.cuh"
#include "gankernels/upfirdn2d.h"

namespace gankernels {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kVec = 4;  // channels per thread in the channels_last fast path, when C allows

// One axis of the fast path, compile time: `R` groups of `UP` outputs per thread.
template <int UP, int DOWN, int TAPS, int R>
struct Axis {
  static_assert(detail::gcd_(UP, DOWN) == 1, "the fast path needs coprime up and down");
  static constexpr int Q = R * UP;                                  // outputs per thread
  static constexpr int NIN = ((Q - 1) * DOWN + TAPS - 1) / UP + 1;  // input samples under them
};

// n / d for n < 2^31, d in [1, 2^31]: (umulhi(n, m) + n) >> s with 2^(s-1) < d <= 2^s, m = 2^32 (2^s - d) / d + 1.
struct Divider {
  uint32_t d = 1, m = 1;
  int s = 0;
  Divider() = default;
  explicit Divider(uint32_t divisor) : d(divisor) {
    while ((uint64_t(1) << s) < d) ++s;
    m = uint32_t(((uint64_t(1) << 32) * ((uint64_t(1) << s) - d)) / d + 1);
  }
  __device__ __forceinline__ uint32_t div(uint32_t n) const { return (__umulhi(n, m) + n) >> s; }
};

// The run-time part of the fast path's plan (see the top of the file).
struct FastPlan {
  int sx = 0, sy = 0;  // output shift: group g starts at output g * up - s
  int cx = 0, cy = 0;  // input offset: group g starts at input g * down + c
  Divider gx;          // blocks along x (RX groups each)
  Divider gys;         // blocks along y (RY groups each)
  Divider cv;          // channel vectors (channels_last)
  int chans = 1;       // C (channels_last)
  uint32_t items = 0;  // thread work items: gx * gys * (planes, or images * cv)
  int64_t x_image = 0, out_image = 0;  // elements per plane (NCHW) or per image (channels_last)
};

// Element bits <-> float. Vector accesses below are built from these with explicit uint2 / uint4 words, so that
// the compiler cannot split them back into per-element accesses.
template <typename T> __device__ __forceinline__ float decode(uint32_t b);
template <> __device__ __forceinline__ float decode<float>(uint32_t b) { return __uint_as_float(b); }
template <> __device__ __forceinline__ float decode<__half>(uint32_t b) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(b)));
}
template <> __device__ __forceinline__ float decode<__nv_bfloat16>(uint32_t b) { return __uint_as_float(b << 16); }

template <typename T> __device__ __forceinline__ uint32_t encode(float v);
template <> __device__ __forceinline__ uint32_t encode<float>(float v) { return __float_as_uint(v); }
template <> __device__ __forceinline__ uint32_t encode<__half>(float v) { return __half_as_ushort(__float2half_rn(v)); }
template <> __device__ __forceinline__ uint32_t encode<__nv_bfloat16>(float v) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

// N consecutive elements at p (aligned to their total size, 2 to 16 bytes) read as one access, as floats.
template <typename T, int N>
__device__ __forceinline__ void load_vector(float (&v)[N], const T* p) {
  constexpr int kBytes = N * int(sizeof(T));
  static_assert(kBytes == 2 || kBytes == 4 || kBytes == 8 || kBytes == 16, "unsupported access width");
  uint32_t word[kBytes >= 4 ? kBytes / 4 : 1];
  if constexpr (kBytes == 16) {
    const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
    word[0] = u.x, word[1] = u.y, word[2] = u.z, word[3] = u.w;
  } else if constexpr (kBytes == 8) {
    const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
    word[0] = u.x, word[1] = u.y;
  } else if constexpr (kBytes == 4) {
    word[0] = __ldg(reinterpret_cast<const unsigned int*>(p));
  } else {
    word[0] = __ldg(reinterpret_cast<const unsigned short*>(p));
  }
#pragma unroll
  for (int e = 0; e < N; ++e) {
    if constexpr (sizeof(T) == 4) {
      v[e] = decode<T>(word[e]);
    } else {
      v[e] = decode<T>((word[e / 2] >> (16 * (e % 2))) & 0xffffu);  // element e: low half first (little endian)
    }
  }
}

// N consecutive floats stored at p (aligned to their total size, 2 to 16 bytes) as one access. Inline PTX: written
// as a plain uint4 / uint2 store, NVVM splits the NCHW store into per-element stores (it merges it with the
// unaligned fallback beside it).
template <typename T, int N>
__device__ __forceinline__ void store_vector(T* p, const float* v) {
  constexpr int kBytes = N * int(sizeof(T));
  static_assert(kBytes == 2 || kBytes == 4 || kBytes == 8 || kBytes == 16, "unsupported access width");
  uint32_t word[kBytes >= 4 ? kBytes / 4 : 1];
#pragma unroll
  for (int i = 0; i < (kBytes >= 4 ? kBytes / 4 : 1); ++i) {
    if constexpr (sizeof(T) == 4) {
      word[i] = encode<T>(v[i]);
    } else if constexpr (N == 1) {
      word[i] = encode<T>(v[0]);
    } else {
      word[i] = encode<T>(v[2 * i]) | (encode<T>(v[2 * i + 1]) << 16);
    }
  }
  const size_t g = __cvta_generic_to_global(p);
  if constexpr (kBytes == 16) {
    asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(g), "r"(word[0]), "r"(word[1]), "r"(word[2]),
                 "r"(word[3])
                 : "memory");
  } else if constexpr (kBytes == 8) {
    asm volatile("st.global.v2.u32 [%0], {%1, %2};" ::"l"(g), "r"(word[0]), "r"(word[1]) : "memory");
  } else if constexpr (kBytes == 4) {
    asm volatile("st.global.u32 [%0], %1;" ::"l"(g), "r"(word[0]) : "memory");
  } else {
    asm volatile("st.global.u16 [%0], %1;" ::"l"(g), "h"(static_cast<unsigned short>(word[0])) : "memory");
  }
}

template <typename T, int UPX, int UPY, int DOWNX, int DOWNY, int FW, int FH, int RX, int RY, bool CL, int VEC>
__global__ void __launch_bounds__(kThreads) upfirdn2d_fast_kernel(Upfirdn2dArgs p, FastPlan q) {
  using AX = Axis<UPX, DOWNX, FW, RX>;
  using AY = Axis<UPY, DOWNY, FH, RY>;
  static_assert(CL || VEC == 1, "NCHW runs one channel per thread");
  const T* __restrict__ x = static_cast<const T*>(p.x);
  T* __restrict__ out = static_cast<T*>(p.out);
  const float* __restrict__ f = static_cast<const float*>(p.f);
  const int H = p.in_h, W = p.in_w, OH = p.out_h, OW = p.out_w, ch = q.chans;

  float w[FH * FW];  // w[ky FW + kx] = gain f'[ky, kx], f' = f flipped in both axes unless flip
#pragma unroll
  for (int i = 0; i < FH * FW; ++i) w[i] = float(p.gain) * __ldg(f + (p.flip ? i : FH * FW - 1 - i));

  for (uint32_t item = blockIdx.x * kThreads + threadIdx.x; item < q.items; item += gridDim.x * kThreads) {
    uint32_t t = item, u;
    int cv = 0;
    if (CL) {
      u = q.cv.div(t);
      cv = int(t - u * q.cv.d);
      t = u;
    }
    u = q.gx.div(t);
    const int gx = int(t - u * q.gx.d);
    t = u;
    u = q.gys.div(t);
    const int gy = int(t - u * q.gys.d);
    const uint32_t img = u;  // plane (NCHW) or image (channels_last)
    const int ox0 = gx * AX::Q - q.sx, oy0 = gy * AY::Q - q.sy;         // first output: group (gx RX) up - s
    const int ix0 = gx * RX * DOWNX + q.cx, iy0 = gy * RY * DOWNY + q.cy;  // first input: group (gx RX) down + c
    const T* xi = x + int64_t(img) * q.x_image;
    T* oi = out + int64_t(img) * q.out_image;

    float acc[AY::Q][AX::Q][VEC];
#pragma unroll
    for (int a = 0; a < AY::Q; ++a)
#pragma unroll
      for (int b = 0; b < AX::Q; ++b)
#pragma unroll
        for (int e = 0; e < VEC; ++e) acc[a][b][e] = 0.f;

#pragma unroll
    for (int dy = 0; dy < AY::NIN; ++dy) {
      const int iy = iy0 + dy;
      const bool row_ok = unsigned(iy) < unsigned(H);
      float v[AX::NIN][VEC];
#pragma unroll
      for (int dx = 0; dx < AX::NIN; ++dx) {
        const int ix = ix0 + dx;
        const bool ok = row_ok && unsigned(ix) < unsigned(W);
        if (ok) {
          load_vector<T, VEC>(v[dx], xi + (CL ? (iy * W + ix) * ch + cv * VEC : iy * W + ix));
        } else {
#pragma unroll
          for (int e = 0; e < VEC; ++e) v[dx][e] = 0.f;  // zero padding (zero insertion never reaches here)
        }
      }
      // Input row iy0 + dy is U row UPY (iy0 + dy); it meets output row qy of the block through filter row ky
      // when qy DOWNY + ky == dy UPY, and input column ix0 + d meets output column qx through filter column kx when
      // qx DOWNX + kx == d UPX. All of it folds at compile time.
#pragma unroll
      for (int qy = 0; qy < AY::Q; ++qy) {
#pragma unroll
        for (int ky = 0; ky < FH; ++ky) {
          if (qy * DOWNY + ky != dy * UPY) continue;
#pragma unroll
          for (int qx = 0; qx < AX::Q; ++qx) {
#pragma unroll
            for (int kx = 0; kx < FW; ++kx) {
              if ((qx * DOWNX + kx) % UPX != 0) continue;
              const int d = (qx * DOWNX + kx) / UPX;
#pragma unroll
              for (int e = 0; e < VEC; ++e) acc[qy][qx][e] += w[ky * FW + kx] * v[d][e];  // += f'[ky,kx] x[iy,ix]
            }
          }
        }
      }
    }

#pragma unroll
    for (int qy = 0; qy < AY::Q; ++qy) {
      const int oy = oy0 + qy;
      if (unsigned(oy) >= unsigned(OH)) continue;
      if (CL) {
#pragma unroll
        for (int qx = 0; qx < AX::Q; ++qx) {
          const int ox = ox0 + qx;
          if (unsigned(ox) < unsigned(OW)) store_vector<T, VEC>(oi + (oy * OW + ox) * ch + cv * VEC, acc[qy][qx]);
        }
      } else {
        T* orow = oi + oy * OW;
        constexpr bool kVector = AX::Q == 2 || AX::Q == 4;
        if (kVector && ox0 >= 0 && ox0 + AX::Q <= OW &&
            reinterpret_cast<uintptr_t>(orow + ox0) % (AX::Q * sizeof(T)) == 0) {
          float row[AX::Q];  // the row's outputs of this thread in one access
#pragma unroll
          for (int qx = 0; qx < AX::Q; ++qx) row[qx] = acc[qy][qx][0];
          store_vector<T, kVector ? AX::Q : 1>(orow + ox0, row);
        } else {
#pragma unroll
          for (int qx = 0; qx < AX::Q; ++qx) {
            const int ox = ox0 + qx;
            if (unsigned(ox) < unsigned(OW)) orow[ox] = from_compute<T, float>(acc[qy][qx][0]);
          }
        }
      }
    }
  }
}

// One thread per output element, in the output's memory order; any factors, filter, dtype; I is uint32_t or int64_t.
template <typename T, typename I>
__global__ void __launch_bounds__(kThreads) upfirdn2d_generic_kernel(Upfirdn2dArgs p, I total) {
  using C = compute_t<T>;
  const T* __restrict__ x = static_cast<const T*>(p.x);
  T* __restrict__ out = static_cast<T*>(p.out);
  const C* __restrict__ f = static_cast<const C*>(p.f);
  const C gain = C(p.gain);
  const int taps = p.fh * p.fw;
  const I H = I(p.in_h), W = I(p.in_w), OH = I(p.out_h), OW = I(p.out_w), ch = I(p.c);
  const I sx = p.channels_last ? ch : I(1), sy = W * sx, sc = p.channels_last ? I(1) : H * W, sn = H * W * ch;
  for (I i = I(blockIdx.x) * kThreads + threadIdx.x; i < total; i += I(gridDim.x) * kThreads) {
    I r = i, c;
    int ox, oy;
    if (p.channels_last) {
      c = r % ch;
      r /= ch;
      ox = int(r % OW);
      r /= OW;
      oy = int(r % OH);
      r /= OH;
    } else {
      ox = int(r % OW);
      r /= OW;
      oy = int(r % OH);
      r /= OH;
      c = r % ch;
      r /= ch;
    }
    const T* xb = x + r * sn + c * sc;  // r is the image index now
    const AxisTaps tx = axis_taps(ox, p.upx, p.downx, p.padx0, p.fw);
    const AxisTaps ty = axis_taps(oy, p.upy, p.downy, p.pady0, p.fh);
    int jx0, jx1, jy0, jy1;
    clip_taps(tx, p.in_w, jx0, jx1);
    clip_taps(ty, p.in_h, jy0, jy1);
    C acc = C(0);
    for (int jy = jy0; jy < jy1; ++jy) {
      const int ky = ty.k0 + jy * p.upy;  // U row (ty.i0 + jy) * upy under filter row ky
      const T* xr = xb + I(ty.i0 + jy) * sy;
      for (int jx = jx0; jx < jx1; ++jx) {
        const int fi = ky * p.fw + tx.k0 + jx * p.upx;
        acc += to_compute<C>(__ldg(xr + I(tx.i0 + jx) * sx)) * __ldg(f + (p.flip ? fi : taps - 1 - fi));  // x f'
      }
    }
    out[i] = from_compute<T, C>(acc * gain);
  }
}

int sm_count() {
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) !=
                                                cudaSuccess) {
    return 108;
  }
  return sms > 0 ? sms : 108;
}

// The output shift s of one axis: (s down + pad0) % up == 0, s in [0, up) (exists since up and down are coprime).
int phase_shift(int up, int down, int pad0) {
  for (int s = 0; s < up; ++s) {
    if (detail::pos_mod(s * down + pad0, up) == 0) return s;
  }
  return 0;
}

// Launches the fast kernel when its 32-bit indexing is safe for this call; `launched` says whether it did. NCHW
// threads take RX groups along x (one wider store, fewer loads per output); channels_last threads one.
template <typename T, int UPX, int UPY, int DOWNX, int DOWNY, int FW, int FH, int RX, int RY>
cudaError_t launch_fast(const Upfirdn2dArgs& p, cudaStream_t stream, bool& launched) {
  using AY = Axis<UPY, DOWNY, FH, RY>;
  const int qx = p.channels_last ? UPX : RX * UPX;  // outputs per thread along x
  constexpr int64_t kMax = (int64_t(1) << 31) - 1;
  FastPlan q;
  q.sx = phase_shift(UPX, DOWNX, p.padx0);
  q.sy = phase_shift(UPY, DOWNY, p.pady0);
  q.cx = -(q.sx * DOWNX + p.padx0) / UPX;  // exact
  q.cy = -(q.sy * DOWNY + p.pady0) / UPY;
  const int64_t gx = (p.out_w + q.sx + qx - 1) / qx;
  const int64_t gys = (p.out_h + q.sy + AY::Q - 1) / AY::Q;
  const int64_t plane_in = int64_t(p.in_h) * p.in_w, plane_out = int64_t(p.out_h) * p.out_w;
  int64_t items = gx * gys;
  int vec = 1;
  if (p.channels_last) {
    vec = (p.c % kVec == 0 && aligned_to(p.x, kVec * sizeof(T)) && aligned_to(p.out, kVec * sizeof(T))) ? kVec : 1;
    q.x_image = plane_in * p.c;
    q.out_image = plane_out * p.c;
    items *= p.n * (p.c / vec);
  } else {
    q.x_image = plane_in;
    q.out_image = plane_out;
    items *= p.n * p.c;
  }
  launched = items <= kMax && q.x_image <= kMax && q.out_image <= kMax && p.c <= kMax;
  if (!launched) return cudaSuccess;
  q.gx = Divider(uint32_t(gx));
  q.gys = Divider(uint32_t(gys));
  q.cv = Divider(uint32_t(p.c / vec));
  q.chans = int(p.c);
  q.items = uint32_t(items);
  const int64_t blocks = (items + kThreads - 1) / kThreads;
  const unsigned int grid = unsigned(blocks < int64_t(sm_count()) * 16 ? blocks : int64_t(sm_count()) * 16);
  if (!p.channels_last) {
    upfirdn2d_fast_kernel<T, UPX, UPY, DOWNX, DOWNY, FW, FH, RX, RY, false, 1><<<grid, kThreads, 0, stream>>>(p, q);
  } else if (vec == kVec) {
    upfirdn2d_fast_kernel<T, UPX, UPY, DOWNX, DOWNY, FW, FH, 1, RY, true, kVec><<<grid, kThreads, 0, stream>>>(p, q);
  } else {
    upfirdn2d_fast_kernel<T, UPX, UPY, DOWNX, DOWNY, FW, FH, 1, RY, true, 1><<<grid, kThreads, 0, stream>>>(p, q);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_generic(const Upfirdn2dArgs& p, cudaStream_t stream) {
  const int64_t total = p.n * p.c * p.out_h * p.out_w;
  const int64_t x_numel = p.n * p.c * p.in_h * p.in_w;
  const unsigned int grid = grid_for(total, kThreads);
  if (total < (int64_t(1) << 31) && x_numel < (int64_t(1) << 31)) {
    upfirdn2d_generic_kernel<T, uint32_t><<<grid, kThreads, 0, stream>>>(p, uint32_t(total));
  } else {
    upfirdn2d_generic_kernel<T, int64_t><<<grid, kThreads, 0, stream>>>(p, total);
  }
  return cudaGetLastError();
}

// The fast-path configurations: (upx, upy, downx, downy, fw, fh, RX for NCHW, RY). Blocks are taller (RY) where an
// input row feeds several output rows, wider (RX, NCHW only) where an input column feeds several output columns.
#define GK_UPFIRDN2D_FAST(UX, UY, DX, DY, FW_, FH_, RX_, RY_)                                                    \
  if (!launched && p.upx == UX && p.upy == UY && p.downx == DX && p.downy == DY && p.fw == FW_ && p.fh == FH_) { \
    err = launch_fast<T, UX, UY, DX, DY, FW_, FH_, RX_, RY_>(p, stream, launched);                              \
  }

template <typename T>
cudaError_t run(const Upfirdn2dArgs& p, cudaStream_t stream) {
  bool launched = false;
  cudaError_t err = cudaSuccess;
  if constexpr (!std::is_same_v<T, double>) {
    GK_UPFIRDN2D_FAST(2, 2, 1, 1, 4, 4, 2, 1)  // upsample2d, 4x4 filter
    GK_UPFIRDN2D_FAST(1, 1, 2, 2, 4, 4, 2, 2)  // downsample2d
    GK_UPFIRDN2D_FAST(1, 1, 1, 1, 4, 4, 2, 4)  // filter2d
    GK_UPFIRDN2D_FAST(2, 1, 1, 1, 4, 1, 2, 1)  // separable passes: [1, 4] along x, [4, 1] along y
    GK_UPFIRDN2D_FAST(1, 2, 1, 1, 1, 4, 2, 2)
    GK_UPFIRDN2D_FAST(1, 1, 2, 1, 4, 1, 2, 1)
    GK_UPFIRDN2D_FAST(1, 1, 1, 2, 1, 4, 2, 2)
    GK_UPFIRDN2D_FAST(1, 1, 1, 1, 4, 1, 4, 1)
    GK_UPFIRDN2D_FAST(1, 1, 1, 1, 1, 4, 2, 4)
  }
  if (launched || err != cudaSuccess) return err;
  return launch_generic<T>(p, stream);
}

#undef GK_UPFIRDN2D_FAST

}  // namespace
}  // namespace cuda

int upfirdn2d_cuda(const Upfirdn2dArgs& p, void* stream) {
  return cuda::dispatch_dtype(p.dtype, [&](auto t) {
    return static_cast<int>(cuda::run<decltype(t)>(p, static_cast<cudaStream_t>(stream)));
  });
}

}  // namespace gankernels
