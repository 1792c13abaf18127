"""Export and import gankernels models as safetensors files: the weights, plus what rebuilds the module.

    save_model(G, "G.safetensors")          # any model class decorated with @exportable
    G = load_model("G.safetensors")          # rebuilt from the recorded class and constructor arguments

The file is a standard safetensors file (readable by the `safetensors` package: the state dict's tensors under
their names). Its metadata holds "gankernels.class" (e.g. "stylegan2.Generator") and "gankernels.init_kwargs" (the
constructor's arguments, JSON). Loading never executes code from the file: the class must be one of the registered
gankernels models and the arguments are plain JSON values.
"""

from __future__ import annotations

import functools
import inspect
import json

import torch

_REGISTRY: dict[str, type] = {}
CLASS_KEY = "gankernels.class"
KWARGS_KEY = "gankernels.init_kwargs"


def exportable(cls):
    """Class decorator: record the constructor's arguments (self.init_kwargs) and register the class for
    load_model under "<module basename>.<ClassName>". The arguments must be JSON values (numbers, strings, lists,
    dicts, None) for save_model to accept the module."""
    key = f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__qualname__}"
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        recorded = dict(bound.arguments)
        recorded.pop("self")
        for name, param in signature.parameters.items():  # flatten **kwargs into the dict
            if param.kind is inspect.Parameter.VAR_KEYWORD and name in recorded:
                recorded.update(recorded.pop(name))
            elif param.kind is inspect.Parameter.VAR_POSITIONAL and name in recorded:
                raise TypeError(f"{cls.__name__}: *{name} arguments cannot be recorded for export")
        init(self, *args, **kwargs)
        if type(self) is cls:  # the outermost decorated class records
            self.init_kwargs = recorded
            self.export_name = key

    cls.__init__ = __init__
    _REGISTRY[key] = cls
    return cls


def _registered():
    from . import stylegan2  # noqa: F401  (registers the StyleGAN2 networks)

    for name in ("dcgan", "wgan_gp", "cyclegan"):
        try:
            __import__(f"{__package__}.{name}")
        except ImportError:
            pass
    return _REGISTRY


def save_model(model: torch.nn.Module, path, metadata: dict | None = None) -> None:
    """Write model's state dict and its class + constructor arguments to a safetensors file (atomically)."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not hasattr(model, "init_kwargs"):
        raise TypeError(f"{type(model).__name__} is not an exportable gankernels model (see models.serialization)")
    try:
        kwargs = json.dumps(model.init_kwargs)
    except TypeError as e:
        raise TypeError(f"{type(model).__name__}'s constructor arguments are not JSON values: {e}") from e
    meta = {CLASS_KEY: model.export_name, KWARGS_KEY: kwargs}
    for k, v in (metadata or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"metadata must map str to str, got {k!r}: {type(v).__name__}")
        meta.setdefault(k, v)
    from .safetensors import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, path, metadata=meta)


def load_model(path, device="cpu") -> torch.nn.Module:
    """Rebuild a model saved by save_model and load its weights (strict). ValueError for a file that is not one."""
    from .safetensors import load_file, load_metadata

    meta = load_metadata(path)
    if CLASS_KEY not in meta or KWARGS_KEY not in meta:
        raise ValueError(f"{path} was not written by gankernels' save_model (no {CLASS_KEY} metadata)")
    registry = _registered()
    name = meta[CLASS_KEY]
    if name not in registry:
        raise ValueError(f"{path}: unknown model class {name!r}; known: {', '.join(sorted(registry))}")
    try:
        kwargs = json.loads(meta[KWARGS_KEY])
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: {KWARGS_KEY} is not valid JSON: {e}") from e
    if not isinstance(kwargs, dict):
        raise ValueError(f"{path}: {KWARGS_KEY} must be a JSON object")
    model = registry[name](**kwargs)
    model.load_state_dict(load_file(path), strict=True)
    return model.to(device)
