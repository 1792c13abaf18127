// bias_act on CUDA: one pass over memory with 16-byte loads and stores, any dense layout.
//
// Thread t of the grid-stride loop handles VEC consecutive elements (one pack). The channel of element i is
// (i / step) % size; when step is a multiple of VEC the whole pack shares one channel (NCHW), otherwise each lane
// computes its own (channels_last). Index arithmetic is 32-bit unless the tensor has 2^31 elements or more.
#include "common.cuh"
#include "gankernels/bias_act.h"

namespace gankernels {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <typename T, int A, int ORDER, bool CLAMP, int VEC, typename I>
__global__ void __launch_bounds__(kThreads) bias_act_kernel(BiasActArgs p) {
  using C = compute_t<T>;
  constexpr int kind = A == 1 ? 0 : A == 9 ? 1 : 2;  // bias_act_ref(A)
  const T* b = static_cast<const T*>(p.b);
  const C alpha = C(p.alpha), gain = C(p.gain), clamp = C(p.clamp);
  const I step = I(p.step), size = I(p.size), packs = I(p.n / VEC);
  const bool shared_channel = step % VEC == 0;
  for (I v = I(blockIdx.x) * kThreads + threadIdx.x; v < packs; v += I(gridDim.x) * kThreads) {
    const I base = v * VEC;
    C bias[VEC];
    const bool needs_bias = b != nullptr && (ORDER == 0 || kind == 1);
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const I c = ((shared_channel ? base : base + k) / step) % size;  // channel of element base + k
      bias[k] = needs_bias ? to_compute<C>(__ldg(b + c)) : C(0);
    }
    Pack<T, VEC> out;
    if (ORDER == 0) {
      const Pack<T, VEC> x = load_pack<T, VEC>(static_cast<const T*>(p.x), base);
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const C z = to_compute<C>(x.v[k]) + bias[k];
        out.v[k] = from_compute<T, C>(bias_act_forward_element<A, CLAMP>(z, alpha, gain, clamp));
      }
    } else {
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
        out.v[k] = from_compute<T, C>(bias_act_backward_element<A, ORDER, CLAMP>(gv, r, yc, alpha, gain, clamp));
      }
    }
    store_pack<T, VEC>(static_cast<T*>(p.out), base, out);
  }
}

template <typename T, int A, int ORDER, bool CLAMP, int VEC>
cudaError_t launch(const BiasActArgs& p, cudaStream_t stream) {
  const int64_t packs = p.n / VEC;
  const unsigned int grid = grid_for(packs, kThreads);
  if (p.n < (int64_t(1) << 31) - kThreads * VEC) {
    bias_act_kernel<T, A, ORDER, CLAMP, VEC, int32_t><<<grid, kThreads, 0, stream>>>(p);
  } else {
    bias_act_kernel<T, A, ORDER, CLAMP, VEC, int64_t><<<grid, kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

template <typename T, int A, int ORDER, bool CLAMP>
cudaError_t launch_vec(const BiasActArgs& p, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const bool vectorizable = p.n % kVec == 0 && aligned_to(p.x, 16) && aligned_to(p.y, 16) && aligned_to(p.g, 16) &&
                            aligned_to(p.m, 16) && aligned_to(p.out, 16);
  return vectorizable ? launch<T, A, ORDER, CLAMP, kVec>(p, stream) : launch<T, A, ORDER, CLAMP, 1>(p, stream);
}

template <typename T>
cudaError_t run(const BiasActArgs& p, cudaStream_t stream) {
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
  auto s = static_cast<cudaStream_t>(stream);
  switch (p.dtype) {
    case DType::f32: return cuda::run<float>(p, s);
    case DType::f64: return cuda::run<double>(p, s);
    case DType::f16: return cuda::run<__half>(p, s);
    case DType::bf16: return cuda::run<__nv_bfloat16>(p, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace gankernels
