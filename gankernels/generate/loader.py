"""One loader for every generator file: `load_generator(path, arch=None, net=None, device=None) -> Network`.

Formats, recognised by their content (not their names):
- a run directory of `gankernels train`, or its checkpoint.pt (G_ema when the model has one, else G, CycleGAN G_A;
  `net` picks another);
- a `gankernels.models.save_model` .safetensors export (a registered generator class; anything else is refused);
- an NVlabs StyleGAN2 pickle (network-snapshot-*.pkl, stylegan2-ada-pytorch / stylegan3), read by
  `models.nvlabs_pickle` without running any of its code (G_ema, or `net="G"`);
- a plain state dict saved with torch.save (read with weights_only=True): pytorch/examples' DCGAN `netG.pth` or
  junyanz's CycleGAN `latest_net_G_A.pth`. The architecture is `arch`, "dcgan" or "cyclegan" with optional
  constructor arguments, e.g. "dcgan:nz=100,ngf=64,nc=3" (see `parse_arch`); without it the layout is recognised
  from the parameter names, and every argument not given is read off the tensor shapes.

Anything else raises ValueError naming each format tried and why it did not fit.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

FORMATS = (
    "a gankernels run directory or checkpoint.pt",
    "a save_model .safetensors export",
    "an NVlabs network pickle (network-snapshot-*.pkl)",
    "a DCGAN netG.pth state dict (pytorch/examples)",
    "a CycleGAN latest_net_G_A.pth state dict (junyanz)",
)
ARCHS = {
    "dcgan": ("nz", "ngf", "nc", "resolution", "num_classes"),
    "cyclegan": ("input_nc", "output_nc", "ngf", "n_blocks"),
}


@dataclass
class Network:
    """A generator ready for generation (eval mode, no gradients, on `device`) and what the commands need to know.

    kind: "stylegan2", "dcgan", "wgan-gp" or "cyclegan". G: the module. class_names: one per class ([] when
    unconditional). source: where it came from, for messages. CycleGAN only: reverse (the generator of the other
    direction, when the file holds it) and inputs (datasets of the input and the output domain, from a run).
    """

    kind: str
    G: nn.Module
    source: str
    class_names: list = field(default_factory=list)
    reverse: nn.Module | None = None
    inputs: tuple | None = None
    resolution_hint: int | None = None

    @property
    def device(self) -> torch.device:
        return next(self.G.parameters()).device

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def z_dim(self) -> int | None:
        """The latent size (None for CycleGAN, which translates images)."""
        attr = {"stylegan2": "z_dim", "dcgan": "nz", "wgan-gp": "z_dim"}.get(self.kind)
        return getattr(self.G, attr) if attr else None

    @property
    def num_ws(self) -> int | None:
        """StyleGAN2: the number of style inputs (layers of --styles); None for networks without W."""
        return self.G.num_ws if self.kind == "stylegan2" else None

    @property
    def resolution(self) -> int:
        if self.kind == "stylegan2":
            return self.G.img_resolution
        if self.kind == "cyclegan":
            return self.resolution_hint or 128
        return self.G.resolution

    def to(self, device) -> Network:
        for module in (self.G, self.reverse):
            if module is not None:
                module.to(device)
        return self


def parse_arch(spec: str) -> tuple[str, dict]:
    """Parse "dcgan" or "dcgan:nz=100,ngf=64,nc=3" -> ("dcgan", {"nz": 100, "ngf": 64, "nc": 3}). Names and keys:
    dcgan (nz, ngf, nc, resolution, num_classes), cyclegan (input_nc, output_nc, ngf, n_blocks); values ints."""
    if not isinstance(spec, str):
        raise TypeError(f"arch must be a str such as 'dcgan:nz=100,ngf=64', got {type(spec).__name__}")
    name, _, rest = spec.strip().partition(":")
    if name not in ARCHS:
        raise ValueError(f"arch: unknown architecture {name!r}; known: {', '.join(ARCHS)} (e.g. dcgan:nz=100,ngf=64)")
    kwargs = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in ARCHS[name] or not re.fullmatch(r"\d+", value.strip()):
            keys = ", ".join(ARCHS[name])
            raise ValueError(f"arch: bad {name} argument {item!r}; expected KEY=INT with KEY in {keys}")
        kwargs[key] = int(value)
    return name, kwargs


def _prepare(module: nn.Module, device) -> nn.Module:
    return module.to(device).eval().requires_grad_(False)


def _generator_kind(module) -> str | None:
    from ..models import cyclegan, dcgan, stylegan2, wgan_gp

    kinds = {stylegan2.Generator: "stylegan2", dcgan.Generator: "dcgan", wgan_gp.ResNetGenerator: "wgan-gp",
             wgan_gp.DCGANGenerator: "wgan-gp", cyclegan.ResnetGenerator: "cyclegan"}  # fmt: skip
    return kinds.get(type(module))


def _class_names_of(module, kind) -> list:
    count = module.c_dim if kind == "stylegan2" else getattr(module, "num_classes", 0) if kind == "dcgan" else 0
    return [str(k) for k in range(count)]


# -- the formats ---------------------------------------------------------------------------------------------------


def _from_run(state: dict, where: str, net, device) -> Network:
    from ..training import loop

    task = loop.restore_task(state, torch.device(device))
    nets = task.networks()
    names = [n for n in nets if n.startswith("G")]
    if net is None:
        net = next(n for n in ("G_ema", "G", "G_A") if n in nets)
    if net not in names:
        raise ValueError(f"net must be one of {', '.join(names)} for a {state['model']} run, got {net!r}")
    kind = state["model"]
    result = Network(kind, _prepare(nets[net], device), f"{where} ({kind} {net}, step {state['step']})",
                     list(getattr(task, "class_names", [])))  # fmt: skip
    if kind == "cyclegan":
        other = "G_B" if net == "G_A" else "G_A"
        result.reverse = _prepare(nets[other], device)
        result.inputs = (task.data_A, task.data_B) if net == "G_A" else (task.data_B, task.data_A)
        result.resolution_hint = state["config"]["resolution"]
    return result


def _from_safetensors(path: str, device) -> Network:
    import json

    from ..models.safetensors import load_metadata
    from ..models.serialization import load_model

    module = load_model(path)
    kind = _generator_kind(module)
    if kind is None:
        raise ValueError(f"{path} holds a {type(module).__name__}, not a generator")
    names = _class_names_of(module, kind)
    recorded = load_metadata(path).get("gankernels.class_names")
    if recorded:
        try:
            parsed = json.loads(recorded)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and len(parsed) == len(names):
            names = [str(n) for n in parsed]
    return Network(kind, _prepare(module, device), f"{path} (save_model export, {type(module).__name__})", names)


def _from_nvlabs(path: str, net, device) -> Network:
    from ..models.nvlabs_pickle import UnsafePickleError, load_nvlabs_pickle
    from ..models.stylegan2 import Generator

    try:
        data = load_nvlabs_pickle(path)
    except UnsafePickleError as e:
        raise ValueError(f"{path}: refused, nothing from it was run: {e}") from None
    names = [k for k, v in data.items() if isinstance(v, Generator)]
    if net is None:
        net = next((n for n in ("G_ema", "G") if n in names), None)
    if net is None or net not in names:
        want = f"no {net}" if net else "no G_ema or G"
        raise ValueError(f"{path}: an NVlabs pickle with {want} generator (it has: {', '.join(map(str, data))})")
    G = data[net]
    return Network("stylegan2", _prepare(G, device), f"{path} (NVlabs pickle, {net})", _class_names_of(G, "stylegan2"))


def _layer_indices(state: dict, prefix: str) -> list[int]:
    return sorted({int(m.group(1)) for k in state if (m := re.match(rf"{prefix}\.(\d+)\.weight$", k))})


def _infer_dcgan(state: dict) -> dict:
    convs = [i for i in _layer_indices(state, "main") if state[f"main.{i}.weight"].dim() == 4]
    first, last = state[f"main.{convs[0]}.weight"], state[f"main.{convs[-1]}.weight"]
    classes = state["embed.weight"].shape[0] if "embed.weight" in state else 0
    return {"nz": first.shape[0] - classes, "ngf": last.shape[0], "nc": last.shape[1],
            "resolution": 4 * 2 ** (len(convs) - 1), "num_classes": classes}  # fmt: skip


def _infer_cyclegan(state: dict) -> dict:
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
    convs = [i for i in _layer_indices(state, "model") if state[f"model.{i}.weight"].dim() == 4]
    first, last = state["model.1.weight"], state[f"model.{convs[-1]}.weight"]
    return {"input_nc": first.shape[1], "output_nc": last.shape[0], "ngf": first.shape[0], "n_blocks": len(blocks)}


def _guess_arch(state: dict) -> str:
    if "model.1.weight" in state and any(".conv_block." in k for k in state):
        return "cyclegan"
    if "main.0.weight" in state and "main.1.running_mean" in state:
        return "dcgan"
    if "main.0.weight" in state:
        raise ValueError("its main.* layout is a DCGAN discriminator (netD), not a generator (netG)")
    raise ValueError("its parameter names are neither DCGAN's netG (main.*) nor CycleGAN's ResnetGenerator (model.*)")


def _from_state_dict(state: dict, path: str, arch, device) -> Network:
    from ..models import cyclegan, dcgan

    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from a DataParallel
    name, given = parse_arch(arch) if arch is not None else (_guess_arch(state), {})
    try:
        kwargs = {**(_infer_dcgan(state) if name == "dcgan" else _infer_cyclegan(state)), **given}
    except (KeyError, IndexError) as e:
        raise ValueError(f"{path}: not a {name} generator state dict (no {e})") from None
    cls = dcgan.Generator if name == "dcgan" else cyclegan.ResnetGenerator
    try:
        module = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: cannot build {name}({kwargs}): {e}") from None
    if name == "cyclegan":  # junyanz drop InstanceNorm's running statistics that old torch versions saved
        stats = ("running_mean", "running_var", "num_batches_tracked")
        state = {k: v for k, v in state.items() if not k.endswith(stats)}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = str(e).split("\n", 1)[-1].strip()[:300]
        raise ValueError(f"{path}: the weights do not fit {name}({kwargs}): {detail}") from None
    args = ",".join(f"{k}={v}" for k, v in kwargs.items())
    net = Network(name, _prepare(module, device), f"{path} ({name} state dict, {args})", _class_names_of(module, name))
    return net


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    n = struct.unpack("<Q", head[:8])[0]
    return 0 < n <= size - 8 and head[8:9] == b"{"


def load_generator(path, *, arch: str | None = None, net: str | None = None, device=None) -> Network:
    """Load the generator in `path` (see the module docstring for the formats) -> a `Network` on `device`
    (default: cuda when present). arch: the architecture of a plain state dict ("dcgan[:k=v,...]" or
    "cyclegan[:k=v,...]"); net: which network of a run / pickle (G_ema, G, G_A, G_B). FileNotFoundError when nothing
    is at `path`; ValueError for a file of no known format (naming each format tried) or one that does not fit."""
    from ..training import loop

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device} asked for, but torch sees no CUDA device (torch {torch.__version__})")
    path = os.fspath(path)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, loop.CHECKPOINT)):
            raise FileNotFoundError(f"no checkpoint at {os.path.join(path, loop.CHECKPOINT)} (not a run directory)")
        if arch is not None:
            raise ValueError("arch applies to plain state-dict files only; a run directory knows its architecture")
        return _from_run(loop.read_run(path), path, net, device)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint or network file at {path}")
    with open(path, "rb") as f:
        head = f.read(16)
    size = os.path.getsize(path)
    tried = []
    single = "net applies to run directories and NVlabs pickles; this file holds one network"
    if _is_safetensors(head, size):
        if net is not None:
            raise ValueError(single)
        return _from_safetensors(path, device)
    tried.append(f"{FORMATS[1]}: no safetensors header")
    if head.startswith(b"\x80") and arch is None:
        try:
            return _from_nvlabs(path, net, device)
        except pickle.UnpicklingError as e:
            tried.append(f"{FORMATS[2]}: {str(e).removeprefix(path + ': ')}")
    else:
        tried.append(f"{FORMATS[2]}: {'arch given' if arch else 'not a pickle'}")
    if head.startswith((b"PK\x03\x04", b"\x80")):
        state = _torch_load(path, tried)
        if state is not None:
            if state.get("format") == loop.FORMAT:
                if arch is not None:
                    raise ValueError("arch applies to plain state-dict files only; a checkpoint knows its architecture")
                return _from_run(loop.read_run(path), path, net, device)
            tried.append(f"{FORMATS[0]}: no gankernels checkpoint format tag")
            if state and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
                if net is not None:
                    raise ValueError(single)
                return _from_state_dict(state, path, arch, device)
            tried.append(f"{FORMATS[3]} / {FORMATS[4]}: not a dict of tensors")
    else:
        tried.append(f"{FORMATS[0]} / {FORMATS[3]} / {FORMATS[4]}: not a torch.save file")
    raise ValueError(f"{path} is not a network file gankernels reads; tried: " + "; ".join(tried))


def _torch_load(path: str, tried: list) -> dict | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "pickle protocol 4": the refusal, if any, is the message
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - weights_only refusals, corrupt archives: all mean "not this format"
        tried.append(f"torch.load(weights_only=True): {type(e).__name__}: {str(e).splitlines()[0][:200]}")
        return None
    if not isinstance(state, dict):
        tried.append(f"torch.save file: holds a {type(state).__name__}, not a dict")
        return None
    return state


def as_network(obj, device=None) -> Network:
    """A Network from a Network (as is), a path (load_generator) or a generator module (wrapped)."""
    if isinstance(obj, Network):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        return load_generator(obj, device=device)
    if isinstance(obj, nn.Module):
        kind = _generator_kind(obj)
        if kind is None:
            raise TypeError(f"net must be a generator (StyleGAN2, DCGAN, WGAN-GP, CycleGAN), got {type(obj).__name__}")
        obj = obj.eval().requires_grad_(False) if device is None else _prepare(obj, device)
        return Network(kind, obj, type(obj).__name__, _class_names_of(obj, kind))
    raise TypeError(f"net must be a Network, a path or a generator module, got {type(obj).__name__}")
