"""Replays tests/ops/test_upfirdn2d_kernels.py::test_refuses_bad_calls on CUDA, one call at a time, printing
before each, so a crash names its call. Exits 1 if a call is not refused; without a CUDA build, says so, exits 0."""

import faulthandler
import sys

import torch

from gankernels import _C

faulthandler.enable()
if not (torch.cuda.is_available() and _C.has_cuda()):
    print("skipped: no CUDA device, or the extension was built without CUDA kernels")
    sys.exit(0)
dev = "cuda"
x = torch.randn(2, 3, 8, 8, device=dev)
f = torch.randn(4, 4, device=dev)
args = (2, 2, 1, 1, 2, 1, 2, 1, False, 1.0)
good = torch.empty(2, 3, 16, 16, device=dev)
_C.upfirdn2d_forward(x, f, good, *args)
calls = {
    "shape": dict(out=torch.empty(2, 3, 16, 15, device=dev)),
    "dtype64": dict(out=torch.empty(2, 3, 16, 16, device=dev, dtype=torch.float64)),
    "layout": dict(out=torch.empty(2, 3, 16, 16, device=dev, memory_format=torch.channels_last)),
    "not dense": dict(out=torch.empty(2, 3, 16, 32, device=dev)[..., ::2]),
    "transposed": dict(out=torch.empty(2, 3, 16, 16, device=dev).transpose(2, 3)),
    "x channels_last": dict(x=x.contiguous(memory_format=torch.channels_last)),
    "f double": dict(f=f.double()),
    "x double": dict(x=x.double(), out=good.double()),
    "f half": dict(f=f.half()),
    "f 3-D": dict(f=f[None]),
    "x 3-D": dict(x=x[0], out=good[0]),
    "f strided": dict(f=torch.empty(4, 8, device=dev)[:, ::2]),
    "up 0": dict(args=(0, 2, 1, 1, 2, 1, 2, 1, False, 1.0)),
    "down -1": dict(args=(2, 2, 1, -1, 2, 1, 2, 1, False, 1.0)),
    "nothing left": dict(args=(1, 1, 1, 1, -4, -4, 0, 0, False, 1.0), out=torch.empty(2, 3, 5, 1, device=dev)),
    "out is x": dict(out=x, args=(1, 1, 1, 1, 2, 1, 2, 1, False, 1.0)),
    "int32": dict(x=x.to(torch.int32)),
}
not_refused = []
for name, kw in calls.items():
    print("calling:", name, flush=True)
    a = dict(x=x, f=f, out=good, args=args)
    a.update(kw)
    try:
        _C.upfirdn2d_forward(a["x"], a["f"], a["out"], *a["args"])
        print("  NOT REFUSED", flush=True)
        not_refused.append(name)
    except Exception as e:
        print("  refused:", type(e).__name__, str(e).splitlines()[0][:100], flush=True)
torch.cuda.synchronize()
print("done;", f"not refused: {', '.join(not_refused)}" if not_refused else "every call refused")
sys.exit(1 if not_refused else 0)
