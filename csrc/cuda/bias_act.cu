// bias_act on CUDA: one pass over memory with 16-byte loads and stores, any dense layout.
//
// Elementwise kernel: thread t of a grid-stride loop handles VEC consecutive elements (one pack). The channel of
// element i is (i / step) % size; when step is a multiple of VEC the whole pack shares one channel (NCHW), otherwise
// each lane computes its own (channels_last). Index arithmetic is 32-bit where no index of the grid-stride loop
// can reach 2^31 (grid_stride_fits_int32), else 64-bit.
//
// Row kernel (gradient with the bias gradient fused): when rows of `step` elements share a channel and are long
// (NCHW, dim=1), block (row, chunk) computes its slice of dx and also the sum of that slice, written to
// db_partial[row * chunks + chunk]; the caller sums the partials per channel (deterministic, no atomics).
#include "common.cuh"
#include "gankernels/bias_act.h"

namespace gankernels {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRowItems = 4;         // packs per thread in the row kernel
constexpr int64_t kMinRowStep = 256;  // shorter rows: unfused gradient, then a separate reduction

template <int A>
constexpr int ref_kind() {
  return A == 1 ? 0 : A == 9 ? 1 : 2;  // bias_act_ref(A)
}

// The gradient of one pack starting at flat index `base`; bias[k] is the bias of lane k (used for swish only).
template <typename T, int A, int ORDER, bool CLAMP, int VEC, typename C, typename I>
__device__ __forceinline__ void backward_pack(const BiasActArgs& p, I base, const C (&bias)[VEC], C (&res)[VEC]) {
  constexpr int kind = ref_kind<A>();
  const C alpha = C(p.alpha), gain = C(p.gain), clamp = C(p.clamp);
  const Pack<T, VEC> g = load_pack<T, VEC>(static_cast<const T*>(p.g), base);
  Pack<T, VEC> m, ref, y;
  if (p.m) m = load_pack<T, VEC>(static_cast<const T*>(p.m), base);
  if (kind == 1) ref = load_pack<T, VEC>(static_cast<const T*>(p.x), base);
  if (kind == 2 || CLAMP) y = load_pack<T, VEC>(static_cast<const T*>(p.y), base);
  if (kind == 2) ref = y;
#pragma unroll
  for (int k = 0; k < VEC; ++k) {
    C gv = to_compute<C>(g.v[k]);
    if (p.m) gv *= to_compute<C>(m.v[k]);
    const C r = kind == 0 ? C(0) : to_compute<C>(ref.v[k]) + bias[k];
    const C yc = CLAMP ? to_compute<C>(y.v[k]) : C(0);
    res[k] = bias_act_backward_element<A, ORDER, CLAMP>(gv, r, yc, alpha, gain, clamp);
  }
}

template <typename T, int A, int ORDER, bool CLAMP, int VEC, typename I>
__global__ void __launch_bounds__(kThreads) bias_act_kernel(BiasActArgs p) {
  using C = compute_t<T>;
  const T* b = static_cast<const T*>(p.b);
  const C alpha = C(p.alpha), gain = C(p.gain), clamp = C(p.clamp);
  const I step = I(p.step), size = I(p.size), packs = I(p.n / VEC);
  const bool shared_channel = step % VEC == 0;
  const bool needs_bias = b != nullptr && (ORDER == 0 || ref_kind<A>() == 1);
  for (I v = I(blockIdx.x) * kThreads + threadIdx.x; v < packs; v += I(gridDim.x) * kThreads) {
    const I base = v * VEC;
    C bias[VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const I c = ((shared_channel ? base : base + k) / step) % size;  // channel of element base + k
      bias[k] = needs_bias ? to_compute<C>(__ldg(b + c)) : C(0);
    }
    C res[VEC];
    if (ORDER == 0) {
      const Pack<T, VEC> x = load_pack<T, VEC>(static_cast<const T*>(p.x), base);
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        res[k] = bias_act_forward_element<A, CLAMP>(to_compute<C>(x.v[k]) + bias[k], alpha, gain, clamp);
      }
    } else {
      backward_pack<T, A, ORDER, CLAMP, VEC>(p, base, bias, res);
    }
    Pack<T, VEC> out;
#pragma unroll
    for (int k = 0; k < VEC; ++k) out.v[k] = from_compute<T, C>(res[k]);
    store_pack<T, VEC>(static_cast<T*>(p.out), base, out);
  }
}

template <typename C>
__device__ __forceinline__ C block_sum(C v) {
  __shared__ C warp_sums[kThreads / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = v;
  __syncthreads();
  v = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : C(0);
  if (threadIdx.x < 32) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  }
  return v;  // valid in thread 0
}

// Order-1 gradient of one (row, chunk) slice plus the slice's sum (the bias gradient's partial).
template <typename T, int A, bool CLAMP, int VEC>
__global__ void __launch_bounds__(kThreads) bias_act_backward_rows_kernel(BiasActArgs p) {
  using C = compute_t<T>;
  const int64_t chunk_elems = int64_t(kThreads) * VEC * kRowItems;
  const int64_t row = blockIdx.x / p.db_chunks, chunk = blockIdx.x % p.db_chunks;
  const T* b = static_cast<const T*>(p.b);
  const C bias0 = (ref_kind<A>() == 1 && b) ? to_compute<C>(b[row % p.size]) : C(0);
  C bias[VEC];
#pragma unroll
  for (int k = 0; k < VEC; ++k) bias[k] = bias0;
  C acc = C(0);
#pragma unroll
  for (int it = 0; it < kRowItems; ++it) {
    const int64_t j = chunk * chunk_elems + (int64_t(it) * kThreads + threadIdx.x) * VEC;  // offset in the row
    if (j < p.step) {
      const int64_t base = row * p.step + j;
      C res[VEC];
      backward_pack<T, A, 1, CLAMP, VEC>(p, base, bias, res);
      Pack<T, VEC> out;
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        out.v[k] = from_compute<T, C>(res[k]);
        acc += res[k];
      }
      store_pack<T, VEC>(static_cast<T*>(p.out), base, out);
    }
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) static_cast<C*>(p.db_partial)[blockIdx.x] = acc;  // db[c] = sum of partials of rows of c
}

template <typename T>
constexpr int vec_of() {
  return 16 / sizeof(T);
}

template <typename T>
bool vectorizable(const BiasActArgs& p, int vec) {
  return p.n % vec == 0 && aligned_to(p.x, 16) && aligned_to(p.y, 16) && aligned_to(p.g, 16) &&
         aligned_to(p.m, 16) && aligned_to(p.out, 16);
}

template <typename T>
int row_vec(const BiasActArgs& p) {
  return (vectorizable<T>(p, vec_of<T>()) && p.step % vec_of<T>() == 0) ? vec_of<T>() : 1;
}

template <typename T>
int64_t db_chunks(const BiasActArgs& p) {
  if (p.order != 1 || p.step < kMinRowStep) return 0;
  const int64_t chunk = int64_t(kThreads) * row_vec<T>(p) * kRowItems;
  const int64_t chunks = (p.step + chunk - 1) / chunk;
  return (p.n / p.step) * chunks < (int64_t(1) << 31) ? chunks : 0;
}

template <typename T, int A, int ORDER, bool CLAMP, int VEC>
cudaError_t launch(const BiasActArgs& p, cudaStream_t stream) {
  if (ORDER == 1 && p.db_partial != nullptr) {
    const auto blocks = static_cast<unsigned int>((p.n / p.step) * p.db_chunks);
    bias_act_backward_rows_kernel<T, A, CLAMP, VEC><<<blocks, kThreads, 0, stream>>>(p);
    return cudaGetLastError();
  }
  // int32 only when no index the loop forms can wrap (v runs past the pack count by up to one grid stride, 2^28;
  // the old bound, n < 2^31 - kThreads * VEC, let v wrap for 1.88e9-2.1e9 elements at VEC 1)
  const unsigned int grid = grid_for(p.n / VEC, kThreads);
  if (p.n <= int64_t(INT32_MAX) && grid_stride_fits_int32(p.n / VEC, kThreads)) {
    bias_act_kernel<T, A, ORDER, CLAMP, VEC, int32_t><<<grid, kThreads, 0, stream>>>(p);
  } else {
    bias_act_kernel<T, A, ORDER, CLAMP, VEC, int64_t><<<grid, kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

template <typename T, int A, int ORDER, bool CLAMP>
cudaError_t launch_vec(const BiasActArgs& p, cudaStream_t stream) {
  constexpr int kVec = vec_of<T>();
  const bool vec = p.db_partial != nullptr ? row_vec<T>(p) == kVec : vectorizable<T>(p, kVec);
  return vec ? launch<T, A, ORDER, CLAMP, kVec>(p, stream) : launch<T, A, ORDER, CLAMP, 1>(p, stream);
}

template <typename T>
cudaError_t run(const BiasActArgs& p, cudaStream_t stream) {
  if (p.db_partial != nullptr && (p.order != 1 || p.db_chunks != db_chunks<T>(p))) return cudaErrorInvalidValue;
  cudaError_t err = cudaSuccess;
  const bool clamp = p.clamp >= 0;
  dispatch_activation(p.act, [&](auto a) {
    constexpr int A = decltype(a)::value;
    if (p.order == 0) {
      err = clamp ? launch_vec<T, A, 0, true>(p, stream) : launch_vec<T, A, 0, false>(p, stream);
    } else if (p.order == 1) {
      err = clamp ? launch_vec<T, A, 1, true>(p, stream) : launch_vec<T, A, 1, false>(p, stream);
    } else {
      err = clamp ? launch_vec<T, A, 2, true>(p, stream) : launch_vec<T, A, 2, false>(p, stream);
    }
  });
  return err;
}

}  // namespace
}  // namespace cuda

int bias_act_cuda(const BiasActArgs& p, void* stream) {
  return cuda::dispatch_dtype(p.dtype, [&](auto t) {
    return static_cast<int>(cuda::run<decltype(t)>(p, static_cast<cudaStream_t>(stream)));
  });
}

int64_t bias_act_cuda_db_chunks(const BiasActArgs& p) {
  return cuda::dispatch_dtype(p.dtype, [&](auto t) { return cuda::db_chunks<decltype(t)>(p); });
}

}  // namespace gankernels
