"""load_generator: every format it reads gives the network that was saved, and everything else is refused with an
error that says what was tried; no code from a file ever runs."""

import json
import os
import pickle

import numpy as np
import pytest
import torch

from gankernels import generate
from gankernels.models import cyclegan, dcgan, save_model
from gankernels.models.safetensors import save_file
from tests.generate.conftest import G_KWARGS, tiny_generator, write_nvlabs_pickle


def _same_images(a, b, seeds=(0, 1)):
    assert torch.equal(generate.sample(a, list(seeds)), generate.sample(b, list(seeds)))


def test_run_directory_and_checkpoint(runs):
    run = runs("stylegan2")
    net = generate.load_generator(run, device="cpu")
    assert net.kind == "stylegan2" and "G_ema" in net.source and net.class_names == []
    assert not net.G.training and not any(p.requires_grad for p in net.G.parameters())
    from_file = generate.load_generator(os.path.join(run, "checkpoint.pt"), device="cpu")
    _same_images(net, from_file)
    assert "G," in generate.load_generator(run, net="G", device="cpu").source + ","
    with pytest.raises(ValueError, match="net must be one of G, G_ema"):
        generate.load_generator(run, net="D", device="cpu")
    with pytest.raises(ValueError, match="arch applies to plain state-dict files"):
        generate.load_generator(run, arch="dcgan", device="cpu")


def test_safetensors_export(tmp_path):
    G = tiny_generator()
    save_model(G, tmp_path / "G.safetensors")
    net = generate.load_generator(tmp_path / "G.safetensors", device="cpu")
    assert net.kind == "stylegan2" and "save_model" in net.source
    _same_images(net, G)
    D = dcgan.Discriminator(ndf=4, nc=3, resolution=32)
    save_model(D, tmp_path / "D.safetensors")
    with pytest.raises(ValueError, match="net applies to run directories"):
        generate.load_generator(tmp_path / "G.safetensors", net="G_ema", device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            generate.load_generator(tmp_path / "G.safetensors", device="cuda")
    with pytest.raises(ValueError, match="holds a Discriminator, not a generator"):
        generate.load_generator(tmp_path / "D.safetensors", device="cpu")


def test_safetensors_naming_an_unknown_class_is_refused(tmp_path):
    meta = {"gankernels.class": "os.system", "gankernels.init_kwargs": json.dumps({"command": "touch pwned"})}
    save_file({"w": torch.zeros(2)}, tmp_path / "evil.safetensors", metadata=meta)
    with pytest.raises(ValueError, match="unknown model class 'os.system'"):
        generate.load_generator(tmp_path / "evil.safetensors", device="cpu")


def test_nvlabs_pickle(tmp_path):
    G = tiny_generator()
    marker = tmp_path / "module_src_ran"
    path = write_nvlabs_pickle(tmp_path / "network-snapshot-000000.pkl", G, G_KWARGS, marker)
    net = generate.load_generator(path, device="cpu")
    assert net.kind == "stylegan2" and "NVlabs pickle, G_ema" in net.source
    assert not marker.exists()
    _same_images(net, G)
    assert "G)" in generate.load_generator(path, net="G", device="cpu").source


class _Payload:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
def test_malicious_pickle_is_refused(tmp_path, suffix):
    marker = tmp_path / "pwned"
    path = tmp_path / f"network-snapshot{suffix}"
    with open(path, "wb") as f:
        pickle.dump({"G_ema": _Payload(os.system, f"touch {marker}")}, f)
    with pytest.raises(ValueError, match="refused.*(posix|os).system"):
        generate.load_generator(path, device="cpu")
    assert not marker.exists()


def test_malicious_torch_save_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"main.0.weight": _Payload(os.system, f"touch {marker}")}, tmp_path / "netG.pth")
    with pytest.raises(ValueError, match="weights_only"):
        generate.load_generator(tmp_path / "netG.pth", device="cpu")
    assert not marker.exists()


@pytest.mark.parametrize("num_classes", [0, 3])
def test_dcgan_state_dict(tmp_path, num_classes):
    torch.manual_seed(0)
    G = dcgan.Generator(nz=8, ngf=4, nc=3, resolution=64, num_classes=num_classes)
    torch.save(G.state_dict(), tmp_path / "netG.pth")
    net = generate.load_generator(tmp_path / "netG.pth", device="cpu")
    assert net.kind == "dcgan" and f"nz=8,ngf=4,nc=3,resolution=64,num_classes={num_classes}" in net.source
    cls = None if not num_classes else 2
    G.eval()
    assert torch.equal(generate.sample(net, [0, 1], class_idx=cls), generate.sample(G, [0, 1], class_idx=cls))
    # the architecture on the command line, and a DataParallel's "module." prefix
    torch.save({f"module.{k}": v for k, v in G.state_dict().items()}, tmp_path / "dp.pth")
    net = generate.load_generator(tmp_path / "dp.pth", arch=f"dcgan:nz=8,ngf=4,num_classes={num_classes}")
    assert net.G.nz == 8
    with pytest.raises(ValueError, match="do not fit dcgan"):
        generate.load_generator(tmp_path / "netG.pth", arch="dcgan:nz=9", device="cpu")
    with pytest.raises(ValueError, match="do not fit cyclegan|not a cyclegan"):
        generate.load_generator(tmp_path / "netG.pth", arch="cyclegan", device="cpu")


def test_dcgan_discriminator_is_not_a_generator(tmp_path):
    torch.save(dcgan.Discriminator(ndf=4, nc=3, resolution=32).state_dict(), tmp_path / "netD.pth")
    with pytest.raises(ValueError, match=r"discriminator \(netD\), not a generator"):
        generate.load_generator(tmp_path / "netD.pth", device="cpu")


def test_cyclegan_state_dict(tmp_path):
    torch.manual_seed(0)
    G = cyclegan.ResnetGenerator(3, 3, ngf=4, n_blocks=2)
    state = G.state_dict()
    state["model.2.running_mean"] = torch.zeros(4)  # old torch saved InstanceNorm statistics; junyanz drop them
    torch.save(state, tmp_path / "latest_net_G_A.pth")
    net = generate.load_generator(tmp_path / "latest_net_G_A.pth", device="cpu")
    assert net.kind == "cyclegan" and "n_blocks=2" in net.source
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(net.G(x), G.eval()(x))


def test_unknown_formats(tmp_path):
    (tmp_path / "noise.bin").write_bytes(np.random.default_rng(0).integers(0, 256, 256, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="not a network file gankernels reads; tried: ") as info:
        generate.load_generator(tmp_path / "noise.bin", device="cpu")
    for name in ("safetensors", "NVlabs", "run directory", "DCGAN", "CycleGAN"):
        assert name in str(info.value)
    with open(tmp_path / "list.pkl", "wb") as f:
        pickle.dump([1, 2, 3], f)
    with pytest.raises(ValueError, match="tried: .*holds a dict"):
        generate.load_generator(tmp_path / "list.pkl", device="cpu")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(ValueError, match="holds a Tensor, not a dict"):
        generate.load_generator(tmp_path / "tensor.pt", device="cpu")
    torch.save({"layer.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="neither DCGAN's netG"):
        generate.load_generator(tmp_path / "other.pth", device="cpu")
    with pytest.raises(FileNotFoundError, match="no checkpoint or network file"):
        generate.load_generator(tmp_path / "missing.pkl", device="cpu")
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        generate.load_generator(tmp_path, device="cpu")


def test_pickle_without_that_generator(tmp_path):
    path = write_nvlabs_pickle(tmp_path / "g.pkl", tiny_generator(), G_KWARGS)
    with pytest.raises(ValueError, match="no G_x generator"):
        generate.load_generator(path, net="G_x", device="cpu")


@pytest.mark.parametrize(
    "spec, match",
    [("stylegan9", "unknown architecture 'stylegan9'"), ("dcgan:nz=x", "bad dcgan argument 'nz=x'"),
     ("dcgan:depth=3", "bad dcgan argument"), ("cyclegan:ngf", "bad cyclegan argument")],
)  # fmt: skip
def test_bad_arch(spec, match):
    with pytest.raises(ValueError, match=match):
        generate.parse_arch(spec)


def test_parse_arch():
    assert generate.parse_arch("dcgan") == ("dcgan", {})
    assert generate.parse_arch("cyclegan:ngf=32, n_blocks=6") == ("cyclegan", {"ngf": 32, "n_blocks": 6})
