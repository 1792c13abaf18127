#include <cuda_runtime.h>

#include "gankernels/common.h"

namespace gankernels {
const char* cuda_error_string(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }
}  // namespace gankernels
