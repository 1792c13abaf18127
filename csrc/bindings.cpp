// gankernels._C: the one compiled module. Each op's torch glue is in csrc/ops/<op>.cpp.
#include <torch/extension.h>

#include "ops/glue.h"
#include "ops/ops.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "gankernels compiled kernels (CPU always; CUDA when built with it)";
  m.def("has_cuda", &gankernels::built_with_cuda, "whether the CUDA kernels were compiled in");
  m.def("bias_act_forward", &gankernels::bias_act_forward, "bias_act forward into y");
  m.def("bias_act_backward", &gankernels::bias_act_backward, "bias_act gradient (order 1 or 2) into out");
  m.def("upfirdn2d_forward", &gankernels::upfirdn2d_forward, "upfirdn2d (upsample, pad, filter, downsample) into out");
}
