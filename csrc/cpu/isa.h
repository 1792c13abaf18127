// The instruction set of the CPU kernels, chosen when they run, not when they are built.
//
// A kernel file (csrc/cpu/<op>.cpp) is compiled once for the baseline instruction set (SSE2 on x86-64: what any
// build runs on) and, on x86-64 with GCC, again for AVX2 + FMA + F16C and for AVX-512 (csrc/cpu/isa/<op>_<level>.cpp
// set GK_ISA_LEVEL and include it). Each copy lives in its own namespace, gankernels::isa_<level>, and the op's entry
// point calls the copy for isa_level(): the level torch itself runs its CPU kernels at
// (torch.backends.cpu.get_cpu_capability(), which honours ATEN_CPU_CAPABILITY). So a portable build (a wheel)
// runs on any CPU and uses AVX-512 where there is one, with no -march=native.
//
// A kernel file includes every header first, then puts its own code between GK_ISA_BEGIN and GK_ISA_END. Only that
// code is compiled for the level: functions defined in headers (std::, c10::, gankernels/*.h) keep the baseline
// target, so they may be inlined into the level's loops, and the out-of-line copies the linker merges across files
// carry no AVX instruction (tools/check_isa.py checks the built library for exactly that).
#pragma once

#ifndef GK_ISA_LEVEL
#define GK_ISA_LEVEL 0
#endif

// Whether the AVX2 and AVX-512 copies are built: x86-64 with GCC (#pragma GCC target; clang spells it otherwise).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GK_ISA_DISPATCH 1
#else
#define GK_ISA_DISPATCH 0
#endif

// Whether this translation unit compiles its kernel at all (a level copy does nothing without dispatch).
#define GK_ISA_COMPILE (GK_ISA_LEVEL == 0 || GK_ISA_DISPATCH)

#if GK_ISA_LEVEL == 0
#define GK_ISA_NS isa_base
#define GK_ISA_PUSH
#define GK_ISA_POP
#elif GK_ISA_LEVEL == 1
#define GK_ISA_NS isa_avx2
#define GK_ISA_PUSH _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma,f16c\")")
#define GK_ISA_POP _Pragma("GCC pop_options")
#elif GK_ISA_LEVEL == 2
#define GK_ISA_NS isa_avx512
#define GK_ISA_PUSH \
  _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c\")")
#define GK_ISA_POP _Pragma("GCC pop_options")
#else
#error "GK_ISA_LEVEL must be 0 (baseline), 1 (AVX2 + FMA) or 2 (AVX-512)"
#endif

#define GK_ISA_BEGIN GK_ISA_PUSH namespace gankernels { namespace GK_ISA_NS {
#define GK_ISA_END } } GK_ISA_POP

namespace gankernels {
namespace cpu {

// 0 baseline, 1 AVX2 + FMA, 2 AVX-512: torch's CPU capability, read once (csrc/cpu/isa.cpp). Always 0 without
// GK_ISA_DISPATCH.
int isa_level();

// The name of isa_level(): "baseline", "avx2" or "avx512".
const char* isa_name();

// Calls base(), avx2() or avx512() by isa_level(); the two copies that were not built are never called.
template <typename Base, typename Avx2, typename Avx512>
void by_isa(Base&& base, Avx2&& avx2, Avx512&& avx512) {
#if GK_ISA_DISPATCH
  switch (isa_level()) {
    case 2: avx512(); return;
    case 1: avx2(); return;
    default: break;
  }
#else
  (void)avx2, (void)avx512;
#endif
  base();
}

}  // namespace cpu
}  // namespace gankernels

// In a kernel file at level 0, inside namespace gankernels: declares the copies of `fn` (void fn(const Args&, int
// num_threads), defined between GK_ISA_BEGIN and GK_ISA_END) and defines the entry point `entry`, same signature,
// which runs the copy for this CPU.
#define GK_ISA_ENTRY(entry, fn, Args)                                                                            \
  namespace isa_base { void fn(const Args&, int); }                                                             \
  namespace isa_avx2 { void fn(const Args&, int); }                                                             \
  namespace isa_avx512 { void fn(const Args&, int); }                                                           \
  void entry(const Args& args, int num_threads) {                                                               \
    cpu::by_isa([&] { isa_base::fn(args, num_threads); }, [&] { isa_avx2::fn(args, num_threads); },            \
                [&] { isa_avx512::fn(args, num_threads); });                                                    \
  }
