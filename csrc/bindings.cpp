// gankernels._C: the one compiled module. Each op's torch glue is in csrc/ops/<op>.cpp.
#include <torch/extension.h>

#include "cpu/isa.h"
#include "gankernels/common.h"

#include <utility>

#include "ops/glue.h"
#include "ops/ops.h"

namespace {

[[noreturn]] void raise(PyObject* type, const char* message) {
  PyErr_SetString(type, message);
  throw pybind11::error_already_set();
}

// Wraps an entry point so that its errors reach Python with the right type (the glue's CheckTypeError and
// c10::TypeError -> TypeError, c10::ValueError -> ValueError, the rest RuntimeError) without going through
// pybind11's registered translators. The glue's own checks throw CheckError, not c10::Error (see ops/glue.h).
template <typename R, typename... Args>
auto guarded(R (*fn)(Args...)) {
  return [fn](Args... args) -> R {
    try {
      return fn(std::forward<Args>(args)...);
    } catch (const pybind11::error_already_set&) {
      throw;
    } catch (const gankernels::CheckTypeError& e) {
      raise(PyExc_TypeError, e.what());
    } catch (const gankernels::CheckError& e) {
      raise(PyExc_RuntimeError, e.what());
    } catch (const c10::TypeError& e) {
      raise(PyExc_TypeError, e.what_without_backtrace());
    } catch (const c10::ValueError& e) {
      raise(PyExc_ValueError, e.what_without_backtrace());
    } catch (const c10::Error& e) {
      raise(PyExc_RuntimeError, e.what_without_backtrace());
    } catch (const std::exception& e) {
      raise(PyExc_RuntimeError, e.what());
    }
  };
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "gankernels compiled kernels (CPU always; CUDA when built with it)";
  m.def("has_cuda", &gankernels::built_with_cuda, "whether the CUDA kernels were compiled in");
  m.def("cpu_isa", &gankernels::cpu::isa_name,
        "the instruction set the CPU kernels run at: baseline, avx2 or avx512 (torch's CPU capability)");
  m.def("bias_act_forward", guarded(&gankernels::bias_act_forward), "bias_act forward into y");
  m.def("bias_act_backward", guarded(&gankernels::bias_act_backward), "bias_act gradient (order 1 or 2) into out");
  m.def("upfirdn2d_forward", guarded(&gankernels::upfirdn2d_forward),
        "upfirdn2d (upsample, pad, filter, downsample) into out");
  m.def("grid_sample_forward", guarded(&gankernels::grid_sample_forward), "bilinear grid_sample into out (CPU)");
  m.def("grid_sample_backward", guarded(&gankernels::grid_sample_backward),
        "grid_sample gradients into dx and / or dgrid (CPU)");
  m.def("instance_norm_forward", guarded(&gankernels::instance_norm_forward),
        "instance_norm_act forward into y and the statistics mean, rstd (CPU)");
  m.def("instance_norm_backward", guarded(&gankernels::instance_norm_backward),
        "instance_norm_act gradient into dx and the per-plane dweight / dbias partials (CPU)");
  m.def("grid_for", &gankernels::grid_for, "blocks of a grid-stride loop over `work` items (the CUDA launches' rule)");
  m.def("grid_stride_fits_int32", &gankernels::grid_stride_fits_int32,
        "whether that loop's indices fit an int32 (the CUDA kernels' choice of index type)");
}
