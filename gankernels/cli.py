"""`gankernels info | bench` (also `python -m gankernels ...`)."""

from __future__ import annotations

import argparse
import platform
import sys

import torch

from . import __version__
from . import backend as _backend


def info(args) -> int:
    print(f"gankernels {__version__}")
    print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda})")
    try:
        import triton

        print(f"triton {triton.__version__}")
    except ImportError:
        print("triton: not installed")
    ext = _backend.extension()
    if ext is None:
        print(f"extension: {_backend._C_ERROR}")
    else:
        print(f"extension: gankernels._C built, CUDA kernels: {'yes' if ext.has_cuda() else 'no'}")
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        print(f"device: {props.name} (sm_{props.major}{props.minor}, {props.multi_processor_count} SMs)")
    else:
        print("device: no CUDA device; CPU only")
    forced = _backend.get_backend()
    print(f"backend override: {forced or 'none (automatic)'}")
    device_types = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for op in _backend.OPS:
        print(f"\n{op}:")
        for dt in device_types:
            chosen, why = _backend.automatic(op, dt)
            if forced:
                chosen, why = forced, "forced by set_backend / GANKERNELS_BACKEND"
            print(f"  on {dt} tensors: {chosen} ({why})")
            for name in _backend.BACKENDS:
                missing = _backend.why_unavailable(name, op, dt)
                print(f"    {name:<7} {'available' if missing is None else 'unavailable: ' + missing}")
    return 0


def bench(args) -> int:
    from . import bench as harness

    ops = [args.op] if args.op else None
    if args.op and args.op not in harness.OPS:
        print(f"unknown op {args.op!r}; benchmarked ops: {', '.join(harness.OPS)}", file=sys.stderr)
        return 2
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    env = harness.environment(device)
    print(f"device {env.get('gpu') or 'cpu'}; torch {env['torch']}; triton {env['triton']}; "
          f"copy bandwidth {env['copy_bandwidth_gb_s']:.0f} GB/s (read + write)")  # fmt: skip
    print(harness.format_table([]).rstrip("-\n"))
    harness.run(ops, device, quick=args.quick, reps=args.reps, json_path=args.json)
    if args.json:
        print(f"wrote {args.json}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gankernels", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, device, and which backend runs each op").set_defaults(func=info)
    p = sub.add_parser("bench", help="time every backend against eager PyTorch and torch.compile")
    p.add_argument("--op", help="one op (default: all)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--quick", action="store_true", help="tiny shapes: a smoke test, not a measurement")
    p.add_argument("--reps", type=int, default=20, help="timed repetitions per implementation (median)")
    p.set_defaults(func=bench)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
