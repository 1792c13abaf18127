"""gankernels.models.load_nvlabs_pickle: NVlabs-format pickles (torch_utils.persistence objects, built here with
stand-ins for torch_utils.persistence / dnnlib registered in sys.modules only inside the tests) load into
gankernels G / D / G_ema with identical outputs, without running code from the pickle; malicious, truncated and
corrupt pickles are refused with clear errors, and their payloads do not run."""

import builtins
import copy
import importlib
import json
import os
import pickle
import subprocess
import sys
import types
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from gankernels.models import load_nvlabs_pickle
from gankernels.models import stylegan2 as sg2
from gankernels.models.nvlabs_pickle import ALLOWED_GLOBALS, PersistentObject, UnsafePickleError
from tests.conftest import STYLEGAN2_FIXTURE

# The tiny NVlabs config of shared/fixtures (inlined so the tests do not need the file), at 16x16.
G_KWARGS = dict(z_dim=64, c_dim=0, w_dim=64, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
                channel_base=1024, channel_max=64, architecture="skip", conv_clamp=256)  # fmt: skip
D_KWARGS = dict(c_dim=0, img_resolution=16, img_channels=3, architecture="resnet", channel_base=1024, channel_max=64,
                conv_clamp=256, epilogue_kwargs=dict(mbstd_group_size=2))  # fmt: skip


@pytest.fixture
def nvlabs(monkeypatch, tmp_path):
    """Stand-ins for NVlabs' torch_utils.persistence and dnnlib, visible to pickle only during the test."""
    ran = tmp_path / "module_src_ran"
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # never called by load_nvlabs_pickle
        raise AssertionError("the real persistence hook was called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    torch_utils = types.ModuleType("torch_utils")
    torch_utils.persistence = persistence

    class EasyDict(dict):
        __module__, __qualname__ = "dnnlib.util", "EasyDict"

    dnnlib_util = types.ModuleType("dnnlib.util")
    dnnlib_util.EasyDict = EasyDict
    for name, module in [("torch_utils", torch_utils), ("torch_utils.persistence", persistence),
                         ("dnnlib", types.ModuleType("dnnlib")), ("dnnlib.util", dnnlib_util)]:  # fmt: skip
        monkeypatch.setitem(sys.modules, name, module)
    # NVlabs' loader exec()s module_src; this one would leave a file behind if it ever ran.
    src = f"import pathlib\npathlib.Path({str(ran)!r}).touch()\n"

    class Persistent:
        """What persistence.persistent_class's __reduce__ writes: _reconstruct_persistent_obj(meta)."""

        def __init__(self, class_name, state):
            self.class_name, self.state = class_name, state

        def __reduce__(self):
            meta = dict(type="class", version=6, module_src=src, class_name=self.class_name, state=self.state)
            return _reconstruct_persistent_obj, (meta,)

    def wrap(module, init_kwargs=None, class_name=None):
        """A torch module as NVlabs pickles it: its __dict__ with submodules wrapped, plus the init arguments."""
        state = dict(module.__dict__)
        state["_modules"] = OrderedDict((k, wrap(m)) for k, m in module._modules.items())
        state["_init_args"], state["_init_kwargs"] = (), init_kwargs if init_kwargs is not None else {}
        return Persistent(class_name or type(module).__name__, state)

    return types.SimpleNamespace(wrap=wrap, Persistent=Persistent, EasyDict=EasyDict, ran=ran)


def _networks(seed=0):
    torch.manual_seed(seed)
    G = sg2.Generator(**G_KWARGS)
    D = sg2.Discriminator(**D_KWARGS)
    G_ema = copy.deepcopy(G)
    with torch.no_grad():
        G.mapping.w_avg.normal_()  # a buffer that matters for truncation
        G_ema.mapping.w_avg.normal_()
        for p in G_ema.parameters():
            p.add_(0.01 * torch.randn_like(p))
    # As NVlabs' training loop snapshots them: deep copies in eval mode without grad.
    return [net.eval().requires_grad_(False) for net in (G, D, G_ema)]


def _outputs(G, D, G_ema):
    torch.manual_seed(1)
    z, c = torch.randn(4, G.z_dim), torch.zeros(4, 0)
    img = torch.randn(4, 3, D.img_resolution, D.img_resolution)
    with torch.no_grad():
        return [G(z, c, truncation_psi=0.7, noise_mode="const"), G_ema(z, c, noise_mode="const"), D(img, c)]


def _write(path, obj, protocol=None):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


def test_fixture_config_matches():
    """The inlined config is the shared fixture's, at a smaller resolution."""
    if STYLEGAN2_FIXTURE is None:
        pytest.skip("shared/fixtures/nvlabs_stylegan2_tiny.json not found")
    meta = json.loads(STYLEGAN2_FIXTURE.with_suffix(".json").read_text())
    assert {**meta["generator_kwargs"], "img_resolution": 16} == G_KWARGS
    assert {**meta["discriminator_kwargs"], "img_resolution": 16} == D_KWARGS


@pytest.mark.parametrize("ada", [False, True], ids=["stylegan3", "stylegan2-ada"])
def test_snapshot_roundtrip(nvlabs, tmp_path, ada):
    G, D, G_ema = _networks()
    E = nvlabs.EasyDict
    synthesis = {k: v for k, v in G_KWARGS.items() if k not in ("z_dim", "c_dim", "w_dim", "img_resolution",
                                                                  "img_channels", "mapping_kwargs")}  # fmt: skip
    g_kwargs = {k: v for k, v in G_KWARGS.items() if k not in synthesis} | {"mapping_kwargs": E(num_layers=2)}
    if ada:  # stylegan2-ada-pytorch: Generator(z_dim, ..., mapping_kwargs={}, synthesis_kwargs={})
        g_kwargs["synthesis_kwargs"] = E(synthesis)
    else:  # stylegan3's networks_stylegan2: Generator(z_dim, ..., mapping_kwargs={}, **synthesis_kwargs)
        g_kwargs.update(synthesis, fused_modconv_default="inference_only")
    d_kwargs = dict(D_KWARGS, block_kwargs=E(freeze_layers=0), mapping_kwargs=E())
    d_kwargs["epilogue_kwargs"] = E(mbstd_group_size=2)
    augment = torch.nn.Module()
    augment.register_buffer("p", torch.tensor(0.25))
    augment.xflip = np.float64(1.0)
    augment.imgfilter_bands = np.array([1.0, 1.0, 1.0, 1.0])
    snapshot = dict(
        training_set_kwargs=dict(E(class_name="training.dataset.ImageFolderDataset", path="data.zip", xflip=False)),
        G=nvlabs.wrap(G, g_kwargs),
        D=nvlabs.wrap(D, d_kwargs),
        G_ema=nvlabs.wrap(G_ema, g_kwargs),
        augment_pipe=nvlabs.wrap(augment, E(xflip=1, rotate90=1), class_name="AugmentPipe"),
    )
    path = _write(tmp_path / "network-snapshot-000000.pkl", snapshot)

    got = load_nvlabs_pickle(path)
    assert not nvlabs.ran.exists()  # module_src was not executed
    assert set(got) == {"training_set_kwargs", "G", "D", "G_ema", "augment_pipe"}
    assert type(got["G"]) is sg2.Generator and type(got["G_ema"]) is sg2.Generator
    assert type(got["D"]) is sg2.Discriminator
    for key, want in [("G", G), ("D", D), ("G_ema", G_ema)]:
        net = got[key]
        assert not net.training and not any(p.requires_grad for p in net.parameters())
        assert net.state_dict().keys() == want.state_dict().keys()
        for name, tensor in want.state_dict().items():
            assert torch.equal(net.state_dict()[name], tensor), f"{key}.{name}"
    assert got["G"].synthesis.b16.fused_modconv_default == (True if ada else "inference_only")
    for a, b in zip(_outputs(got["G"], got["D"], got["G_ema"]), _outputs(G, D, G_ema), strict=True):
        assert torch.equal(a, b)
    assert got["training_set_kwargs"] == {"class_name": "training.dataset.ImageFolderDataset", "path": "data.zip",
                                          "xflip": False}  # fmt: skip
    pipe = got["augment_pipe"]
    assert isinstance(pipe, PersistentObject) and pipe.class_name == "AugmentPipe"
    assert type(pipe.init_kwargs) is dict and pipe.init_kwargs == {"xflip": 1, "rotate90": 1}
    assert torch.equal(pipe.state["_buffers"]["p"], torch.tensor(0.25)) and pipe.state["xflip"] == 1.0
    np.testing.assert_array_equal(pipe.state["imgfilter_bands"], np.ones(4))
    assert "pathlib" in pipe.module_src  # kept as text only


@pytest.mark.parametrize("protocol", [2, 3, 5])
def test_trainable_snapshot_and_missing_keys(nvlabs, tmp_path, protocol):
    """Train mode and requires_grad are kept; a pickle with only G_ema gives only G_ema (nothing made up); other
    pickle protocols than the default (4) load too."""
    G = sg2.Generator(**G_KWARGS).train()
    g_kwargs = dict(G_KWARGS, mapping_kwargs=nvlabs.EasyDict(num_layers=2))
    path = _write(tmp_path / "g.pkl", {"G_ema": nvlabs.wrap(G, g_kwargs), "augment_pipe": None}, protocol)
    got = load_nvlabs_pickle(str(path))
    assert set(got) == {"G_ema", "augment_pipe"} and got["augment_pipe"] is None
    assert got["G_ema"].training and all(p.requires_grad for p in got["G_ema"].parameters())
    for name, tensor in G.state_dict().items():
        assert torch.equal(got["G_ema"].state_dict()[name], tensor), name


class _Payload:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker):
    touch = f"open({str(marker)!r}, 'w').close()"
    return {
        "posix.system": _Payload(os.system, f"touch {marker}"),
        "builtins.eval": _Payload(builtins.eval, touch),
        "builtins.exec": _Payload(builtins.exec, touch),
        "subprocess.run": _Payload(subprocess.run, ["touch", str(marker)]),
        "builtins.__import__": _Payload(builtins.__import__, "os"),
        "importlib.import_module": _Payload(importlib.import_module, "os"),
        # An importable but unexpected class: gankernels' own Generator is not on the allow-list either.
        "gankernels.models.stylegan2.Generator": _Payload(sg2.Generator, 1, 0, 1, 4, 3),
    }


@pytest.mark.parametrize("name", list(_payloads(Path("x"))))
@pytest.mark.parametrize("where", ["top", "in_state"])
def test_malicious_pickle_refused(nvlabs, tmp_path, name, where):
    marker = tmp_path / "pwned"
    payload = _payloads(marker)[name]
    if where == "top":
        obj = {"G": payload}
    else:  # hidden inside a persistent module's state, next to real tensors
        G = sg2.Generator(**G_KWARGS)
        state = nvlabs.wrap(G, G_KWARGS)
        state.state["evil"] = payload
        obj = {"G": state, "D": None}
    path = _write(tmp_path / "evil.pkl", obj)
    with pytest.raises(UnsafePickleError, match=f"refused global {name}") as info:
        load_nvlabs_pickle(path)
    assert isinstance(info.value, pickle.UnpicklingError) and "allow-list" in str(info.value)
    assert not marker.exists() and not nvlabs.ran.exists()


def test_payload_is_live(tmp_path):
    """The payloads above really run under plain pickle.load, so their markers' absence means something."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_payloads(marker)["builtins.exec"]))
    assert marker.exists()


def test_allow_list_has_no_dangerous_entries():
    for module, name in ALLOWED_GLOBALS:
        assert module.split(".")[0] in {"torch_utils", "dnnlib", "collections", "builtins", "__builtin__", "_codecs",
                                        "torch", "numpy"}, (module, name)  # fmt: skip
        assert name not in {"eval", "exec", "compile", "getattr", "__import__", "open", "system", "load", "loads"}


def _good_pickle(nvlabs, tmp_path):
    return _write(tmp_path / "good.pkl", {"G": nvlabs.wrap(sg2.Generator(**G_KWARGS), G_KWARGS)}).read_bytes()


@pytest.mark.parametrize("cut", [0.0, 0.1, 0.5, 0.99])
def test_truncated_pickle(nvlabs, tmp_path, cut):
    data = _good_pickle(nvlabs, tmp_path)
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(pickle.UnpicklingError, match="truncated or corrupt"):
        load_nvlabs_pickle(path)


def test_corrupt_pickles(nvlabs, tmp_path):
    data = bytearray(_good_pickle(nvlabs, tmp_path))
    rng = np.random.default_rng(0)
    for i in range(20):  # flipped bytes: an error (any kind but a crash), never a payload
        bad = bytearray(data)
        for j in rng.integers(2, len(bad), 8):
            bad[j] = int(rng.integers(0, 256))
        path = tmp_path / f"bad{i}.pkl"
        path.write_bytes(bytes(bad))
        try:
            load_nvlabs_pickle(path)
        except (pickle.UnpicklingError, ValueError):
            pass
    (tmp_path / "noise.pkl").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(pickle.UnpicklingError):
        load_nvlabs_pickle(tmp_path / "noise.pkl")
    with pytest.raises(pickle.UnpicklingError, match="holds a dict"):
        load_nvlabs_pickle(_write(tmp_path / "list.pkl", [1, 2]))
    with zipfile.ZipFile(tmp_path / "ckpt.pt", "w") as z:
        z.writestr("archive/data.pkl", b"")
    with pytest.raises(pickle.UnpicklingError, match="weights_only=True"):
        load_nvlabs_pickle(tmp_path / "ckpt.pt")
    with pytest.raises(FileNotFoundError):
        load_nvlabs_pickle(tmp_path / "missing.pkl")


def test_networks_that_do_not_fit(nvlabs, tmp_path):
    G = sg2.Generator(**G_KWARGS)
    wrapped = nvlabs.wrap(G, G_KWARGS)
    wrapped.state["_modules"]["synthesis"].state["_modules"]["input"] = nvlabs.Persistent("SynthesisInput", {})
    with pytest.raises(ValueError, match="SynthesisInput"):
        load_nvlabs_pickle(_write(tmp_path / "sg3.pkl", {"G": wrapped}))
    with pytest.raises(ValueError, match="does not match"):  # init kwargs disagree with the weights
        load_nvlabs_pickle(_write(tmp_path / "wrong.pkl", {"G": nvlabs.wrap(G, dict(G_KWARGS, channel_max=32))}))
    with pytest.raises(ValueError, match="cannot build"):
        load_nvlabs_pickle(_write(tmp_path / "kw.pkl", {"G": nvlabs.wrap(G, dict(G_KWARGS, magnitude_ema_beta=0.9))}))
