"""Shared helpers for tests/generate: tiny networks, NVlabs-format pickles written with stand-ins for NVlabs'
torch_utils.persistence (visible to pickle only while writing), and tiny trained runs (made once per session)."""

import os
import pickle
import sys
import types
from collections import OrderedDict

import pytest
import torch

from gankernels.models import stylegan2 as sg2
from gankernels.training import loop, registry

# The shared fixture's NVlabs config (tests/models/test_nvlabs_pickle.py inlines the same), at 16x16 unless given.
G_KWARGS = dict(z_dim=64, c_dim=0, w_dim=64, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
                channel_base=1024, channel_max=64, architecture="skip", conv_clamp=256)  # fmt: skip


def tiny_generator(seed=0, **overrides):
    torch.manual_seed(seed)
    G = sg2.Generator(**{**G_KWARGS, **overrides}).eval().requires_grad_(False)
    with torch.no_grad():
        G.mapping.w_avg.normal_()  # truncation then moves images visibly
    return G


def _reconstruct_persistent_obj(meta):  # pragma: no cover - never called: the loader uses its own stand-in
    raise AssertionError("the real persistence hook was called")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
_reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"


class _Persistent:
    """What NVlabs' persistent_class.__reduce__ writes: _reconstruct_persistent_obj(meta)."""

    def __init__(self, class_name, state, src):
        self.class_name, self.state, self.src = class_name, state, src

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.src, class_name=self.class_name, state=self.state)
        return _reconstruct_persistent_obj, (meta,)


def _wrap(module, init_kwargs, src):
    state = dict(module.__dict__)
    state["_modules"] = OrderedDict((k, _wrap(m, {}, src)) for k, m in module._modules.items())
    state["_init_args"], state["_init_kwargs"] = (), init_kwargs
    return _Persistent(type(module).__name__, state, src)


def write_nvlabs_pickle(path, G, init_kwargs, marker=None, **extra):
    """Write {"G": G, "G_ema": G, **extra} as NVlabs' training loop pickles it. module_src would touch `marker`
    if anything ever exec()'d it."""
    src = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n" if marker else "pass\n"
    persistence = types.ModuleType("torch_utils.persistence")
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    saved = {name: sys.modules.get(name) for name in ("torch_utils", "torch_utils.persistence")}
    sys.modules["torch_utils"] = types.ModuleType("torch_utils")
    sys.modules["torch_utils.persistence"] = persistence
    try:
        with open(path, "wb") as f:
            pickle.dump({"G": _wrap(G, init_kwargs, src), "G_ema": _wrap(G, init_kwargs, src), **extra}, f)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return path


TINY_RUNS = {
    "stylegan2": dict(resolution=8, batch=4, cbase=128, cmax=16, z_dim=16, w_dim=16),
    "dcgan": dict(resolution=32, batch=4, nz=8, ngf=4, ndf=4),
    "cyclegan": dict(resolution=32, batch=1, ngf=4, ndf=4, n_blocks=1, pool=3),
}


def train_tiny(model, out, steps=1, **overrides):
    task_cls = registry.get(model)
    config = {**task_cls.defaults, "seed": 0, "data": None, **TINY_RUNS[model], **overrides}
    loop.train(task_cls, config, str(out), steps=steps, device="cpu", quiet=True)
    return str(out)


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """Tiny one-step runs, trained on first use: runs("stylegan2"), runs("stylegan2", cond=True), ..."""
    made = {}
    root = tmp_path_factory.mktemp("runs")

    def get(model, **overrides):
        key = (model, tuple(sorted(overrides.items())))
        if key not in made:
            made[key] = train_tiny(model, root / f"{model}-{len(made)}", **overrides)
        return made[key]

    return get


@pytest.fixture
def pillow_path(monkeypatch):
    """Pillow from $GANKERNELS_TEST_PILLOW (a pip --target folder) when set; skips when Pillow is unavailable."""
    extra = os.environ.get("GANKERNELS_TEST_PILLOW")
    if extra:
        monkeypatch.syspath_prepend(extra)
    pytest.importorskip("PIL")
