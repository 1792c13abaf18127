// isa_level: the instruction set the CPU kernels run at (see isa.h).
#include "isa.h"

#include <ATen/Version.h>

#include <string>

namespace gankernels {
namespace cpu {

int isa_level() {
#if GK_ISA_DISPATCH
  static const int level = [] {
    const std::string capability = at::get_cpu_capability();  // "DEFAULT", "AVX2" or "AVX512" on x86-64
    const int torch_level = capability == "AVX512" ? 2 : capability == "AVX2" ? 1 : 0;
    // The level copies also use F16C (float16 conversions), which every AVX2 CPU has; refuse them on one without.
    return __builtin_cpu_supports("f16c") ? torch_level : 0;
  }();
  return level;
#else
  return 0;
#endif
}

const char* isa_name() {
  static const char* const names[] = {"baseline", "avx2", "avx512"};
  return names[isa_level()];
}

}  // namespace cpu
}  // namespace gankernels
