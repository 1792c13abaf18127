"""Load NVlabs StyleGAN2 network pickles (stylegan2-ada-pytorch / stylegan3 `network-snapshot-*.pkl`) without
running any code from them.

NVlabs pickles are plain `pickle` files holding a dict (G, D, G_ema, augment_pipe, training_set_kwargs, ...). Every
network object in them is saved through `torch_utils.persistence`: as a call to
`torch_utils.persistence._reconstruct_persistent_obj(meta)` whose meta dict carries the source code of the module that
defined the class (`module_src`, which NVlabs' own loader exec()s), `class_name`, and the object's `__dict__` as
`state` (`_parameters`, `_buffers`, `_modules`, `_init_args`, `_init_kwargs`, ...). Tensors are pickled by torch
(`torch._utils._rebuild_tensor_v2` / `_rebuild_parameter` over a storage from `torch.storage._load_from_bytes`).

`load_nvlabs_pickle` unpickles with an allow-list (`ALLOWED_GLOBALS`): the persistence hook is replaced by a stand-in
that only records the meta dict (`PersistentObject`; module_src is kept as text, never executed), the torch rebuild
functions by checked stand-ins (storages are read with `torch.load(weights_only=True)`), `dnnlib.EasyDict` by a dict,
plus `collections.OrderedDict`, `set` / `frozenset`, torch dtypes and numpy array / scalar reconstruction. Any
other global (os.system, builtins.eval, subprocess.*, an unexpected module, ...) is refused with
`UnsafePickleError` naming it, before anything is called. The recorded Generator / Discriminator are then rebuilt as
gankernels.models.stylegan2 networks from their init args / kwargs and loaded with `load_state_dict(strict=True)`.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

__all__ = ["ALLOWED_GLOBALS", "PersistentObject", "UnsafePickleError", "load_nvlabs_pickle"]


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle refers to a global (callable, class or module) outside the allow-list; nothing of it was run."""


@dataclass
class PersistentObject:
    """What `torch_utils.persistence._reconstruct_persistent_obj(meta)` would have rebuilt, recorded as data.

    module_src is the pickled source code as text (never executed); state is the object's __dict__ as pickled.
    """

    class_name: str
    state: dict
    module_src: str = field(default="", repr=False)
    version: Any = None

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args") or ())

    @property
    def init_kwargs(self) -> dict:
        return _plain(self.state.get("_init_kwargs") or {})


def _reconstruct_persistent_obj(meta):
    if not isinstance(meta, dict):
        raise pickle.UnpicklingError(f"persistent object meta must be a dict, got {type(meta).__name__}")
    if meta.get("type", "class") != "class":
        raise pickle.UnpicklingError(f"unsupported persistent object type {meta.get('type')!r}")
    class_name, state, src = meta.get("class_name"), meta.get("state"), meta.get("module_src", "")
    if not isinstance(class_name, str) or not isinstance(state, dict) or not isinstance(src, str):
        raise pickle.UnpicklingError("persistent object meta needs a str class_name, a dict state and str module_src")
    return PersistentObject(class_name=class_name, state=dict(state), module_src=src, version=meta.get("version"))


class _EasyDict(dict):
    """Stand-in for dnnlib.EasyDict (a dict subclass whose attributes are its items)."""

    def __setstate__(self, state):
        if state:
            raise pickle.UnpicklingError("dnnlib.EasyDict with object state is not supported")


def _load_storage_from_bytes(data):
    """torch.storage._load_from_bytes (a legacy torch.save of one storage), read with torch's weights-only loader."""
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError(f"storage data must be bytes, got {type(data).__name__}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    if not isinstance(storage, torch.TypedStorage):
        raise pickle.UnpicklingError(f"storage bytes hold a {type(storage).__name__}, not a storage")
    return storage


def _int_tuple(value, what):
    if not isinstance(value, (tuple, list, torch.Size)) or not all(type(v) is int for v in value):
        raise pickle.UnpicklingError(f"tensor {what} must be a tuple of ints, got {value!r}")
    return tuple(value)


def _no_hooks(hooks):
    if hooks:
        raise pickle.UnpicklingError("tensors with backward hooks are not supported")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    if not isinstance(storage, torch.TypedStorage):
        raise pickle.UnpicklingError(f"tensor storage must be a torch storage, got {type(storage).__name__}")
    if type(storage_offset) is not int or storage_offset < 0:
        raise pickle.UnpicklingError(f"bad tensor storage offset {storage_offset!r}")
    _no_hooks(backward_hooks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tensor = torch._utils._rebuild_tensor(storage, storage_offset, _int_tuple(size, "size"),
                                              _int_tuple(stride, "stride"))  # fmt: skip
    if requires_grad and (tensor.is_floating_point() or tensor.is_complex()):
        tensor.requires_grad_(True)
    return tensor


def _rebuild_parameter(data, requires_grad, backward_hooks=None, state=None):
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError(f"parameter data must be a tensor, got {type(data).__name__}")
    _no_hooks(backward_hooks)
    if state:
        raise pickle.UnpicklingError("parameters with extra object state are not supported")
    return torch.nn.Parameter(data.detach(), requires_grad=bool(requires_grad))


def _numpy_multiarray():
    try:
        return importlib.import_module("numpy._core.multiarray")  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        return importlib.import_module("numpy.core.multiarray")


def _np_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"numpy _reconstruct of {subtype!r} refused (only numpy.ndarray is allowed)")
    return _numpy_multiarray()._reconstruct(subtype, shape, dtype)


def _np_scalar(dtype, *args):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError(f"numpy scalar of dtype {dtype!r} refused")
    return _numpy_multiarray().scalar(dtype, *args)


def _codecs_encode(text, encoding="latin1"):
    """Protocol-2 pickles save bytes as _codecs.encode(str, 'latin1')."""
    if not isinstance(text, str) or encoding != "latin1":
        raise UnsafePickleError("_codecs.encode is allowed only as encode(str, 'latin1')")
    return text.encode("latin1")


_TORCH_DTYPES = {name for name in dir(torch) if isinstance(getattr(torch, name, None), torch.dtype)}

# (module, name) -> the object the unpickler gets instead of the real global. Nothing else is ever imported.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("_codecs", "encode"): _codecs_encode,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
    **{("torch", name): getattr(torch, name) for name in sorted(_TORCH_DTYPES)},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        obj = ALLOWED_GLOBALS.get((module, name))
        if obj is None:
            raise UnsafePickleError(
                f"refused global {module}.{name}: not on the NVlabs pickle allow-list "
                f"(gankernels.models.nvlabs_pickle.ALLOWED_GLOBALS); nothing from the pickle was run"
            )
        return obj

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(f"persistent id {pid!r} refused: NVlabs pickles have none")


def _plain(value):
    """EasyDict / OrderedDict -> dict, recursively (lists and tuples kept)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


# Classes of NVlabs' networks_stylegan2.py (both repositories) that make up a Generator / Discriminator.
_STYLEGAN2_CLASSES = {
    "Generator": {"Generator", "MappingNetwork", "SynthesisNetwork", "SynthesisBlock", "SynthesisLayer",
                  "ToRGBLayer", "FullyConnectedLayer", "Conv2dLayer"},
    "Discriminator": {"Discriminator", "DiscriminatorBlock", "DiscriminatorEpilogue", "MinibatchStdLayer",
                      "MappingNetwork", "FullyConnectedLayer", "Conv2dLayer"},
}  # fmt: skip


def _state_dict(obj, key, prefix="", out=None, requires_grad=None, classes=None):
    """Flatten a recorded module tree to (state dict with NVlabs names, requires_grad per parameter, class names)."""
    out, requires_grad, classes = ({}, {}, set()) if out is None else (out, requires_grad, classes)
    if not isinstance(obj, PersistentObject):
        raise ValueError(f"{key}: submodule {prefix[:-1]!r} is a {type(obj).__name__}, not a persistent NVlabs module")
    classes.add(obj.class_name)
    state = obj.state
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for kind in ("_parameters", "_buffers"):
        entries = state.get(kind) or {}
        if not isinstance(entries, dict):
            raise ValueError(f"{key}: {prefix}{kind} is a {type(entries).__name__}, not a dict")
        for name, tensor in entries.items():
            if tensor is None or (kind == "_buffers" and name in non_persistent):
                continue
            if not isinstance(tensor, torch.Tensor):
                raise ValueError(f"{key}: {prefix}{name} is a {type(tensor).__name__}, not a tensor")
            out[prefix + name] = tensor.detach()
            if kind == "_parameters":
                requires_grad[prefix + name] = tensor.requires_grad
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            _state_dict(child, key, f"{prefix}{name}.", out, requires_grad, classes)
    return out, requires_grad, classes


class _RandomInitOnMeta(TorchFunctionMode):
    """torch.randn / torch.rand make meta tensors (a shape, no memory, no work) while a network whose weights are all
    about to be replaced is built; everything else (filters, zeros, ...) is made as usual."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in (torch.randn, torch.rand):
            kwargs.pop("generator", None)
            return torch.empty(*args, **{**kwargs, "device": "meta"})
        return func(*args, **kwargs)


def _has_meta_tensors(net: torch.nn.Module) -> bool:
    return any(isinstance(v, torch.Tensor) and v.is_meta for m in net.modules()
               for v in [*vars(m).values(), *m._parameters.values(), *m._buffers.values()])  # fmt: skip


def _build(obj: PersistentObject, key: str):
    from .stylegan2 import Discriminator, Generator

    cls = {"Generator": Generator, "Discriminator": Discriminator}[obj.class_name]
    state_dict, requires_grad, classes = _state_dict(obj, key)
    unknown = sorted(classes - _STYLEGAN2_CLASSES[obj.class_name])
    if unknown:
        raise ValueError(
            f"{key}: not an NVlabs StyleGAN2 {obj.class_name} (networks_stylegan2.py): it contains {unknown} "
            "(StyleGAN3 and other networks are not supported)"
        )
    args, kwargs = obj.init_args, obj.init_kwargs
    if cls is Generator and isinstance(kwargs.get("synthesis_kwargs"), dict):
        kwargs.update(kwargs.pop("synthesis_kwargs"))  # stylegan2-ada-pytorch: Generator(..., synthesis_kwargs={})
    try:
        with _RandomInitOnMeta():  # the random init is thrown away: every weight comes from the pickle
            net = cls(*args, **kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{key}: cannot build gankernels {cls.__name__}(*{args!r}, **{kwargs!r}): {e}") from e
    expected = net.state_dict()
    state_dict = {k: v.to(expected[k].dtype) if k in expected else v for k, v in state_dict.items()}
    try:
        # assign=True adopts the unpickled tensors (shapes checked) instead of copying them into fresh ones: loading
        # a 256x256 snapshot took 6 s on 2 CPU cores, most of it random init and copies of weights then replaced
        net.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as e:
        raise ValueError(f"{key}: the pickled state does not match gankernels {cls.__name__}: {e}") from e
    if _has_meta_tensors(net):  # a tensor the state dict does not hold (none in StyleGAN2): build it for real
        net = cls(*args, **kwargs)
        net.load_state_dict(state_dict, strict=True)
    for name, param in net.named_parameters():
        param.requires_grad_(requires_grad.get(name, True))
    return net.train(bool(obj.state.get("training", False)))


def load_nvlabs_pickle(path) -> dict:
    """Read an NVlabs StyleGAN2 pickle (e.g. network-snapshot-*.pkl) without executing code from it.

    Returns the pickle's dict with each persistent Generator / Discriminator (G, D, G_ema) rebuilt as a
    gankernels.models.stylegan2 Generator / Discriminator (loaded with strict=True, in the pickled train / eval
    mode and requires_grad), other persistent objects (e.g. augment_pipe) as `PersistentObject` records (class name,
    init kwargs, state; not built), and plain data (training_set_kwargs, ...) as plain dicts / values.
    Raises UnsafePickleError (a pickle.UnpicklingError) naming a refused global, pickle.UnpicklingError for a
    truncated or corrupt file, and ValueError when a network cannot be rebuilt.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        if head.startswith(b"PK\x03\x04"):
            raise pickle.UnpicklingError(
                f"{path}: a torch.save zip archive, not an NVlabs pickle; use torch.load(path, weights_only=True)"
            )
        try:
            data = _RestrictedUnpickler(f).load()
        except UnsafePickleError:
            raise
        except Exception as e:  # truncated / corrupt: EOFError, UnpicklingError, ValueError, struct errors, ...
            raise pickle.UnpicklingError(
                f"{path}: not a readable NVlabs pickle (truncated or corrupt?): {type(e).__name__}: {e}"
            ) from e
    if not isinstance(data, dict):
        raise pickle.UnpicklingError(f"{path}: an NVlabs pickle holds a dict, this one a {type(data).__name__}")
    result = {}
    for key, value in data.items():
        if isinstance(value, PersistentObject) and value.class_name in _STYLEGAN2_CLASSES:
            result[key] = _build(value, str(key))
        elif isinstance(value, PersistentObject):
            result[key] = value
        else:
            result[key] = _plain(value)
    return result
