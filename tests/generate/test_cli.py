"""gankernels sample | mix | interpolate | arithmetic at tiny sizes: the files written, their sizes, determinism, and
bad input (a one-line error, exit status 2)."""

import os
import sys

import pytest
import torch

from gankernels import cli, generate
from gankernels.models import cyclegan, dcgan
from gankernels.training.images import read_png
from tests.generate.conftest import G_KWARGS, tiny_generator, write_nvlabs_pickle

RES = 8  # the tiny StyleGAN2 runs' resolution


def _run(capsys, *args):
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_sample_grid_outdir_and_determinism(runs, tmp_path, capsys):
    run = runs("stylegan2")
    grid = tmp_path / "grid.png"
    code, out, err = _run(capsys, "sample", run, "--seeds", "0-5", "--trunc", "0.7", "--out", grid)
    assert code == 0 and "wrote" in out and "stylegan2 G_ema" in err
    assert read_png(grid).shape == (3 * RES, 2 * RES, 3)  # round(sqrt(6)) = 2 columns
    first = grid.read_bytes()
    assert _run(capsys, "sample", run, "--seeds", "0-5", "--trunc", "0.7", "--out", grid, "--device", "cpu")[0] == 0
    assert grid.read_bytes() == first
    code, _, _ = _run(capsys, "sample", run, "--seeds", "3,1", "--trunc-cutoff", "2", "--trunc", "0.5",
                      "--noise-mode", "random", "--outdir", tmp_path / "each")  # fmt: skip
    assert code == 0 and sorted(os.listdir(tmp_path / "each")) == ["seed0001.png", "seed0003.png"]
    pixels = read_png(tmp_path / "each" / "seed0003.png")
    assert pixels.shape == (RES, RES, 3)
    img = generate.sample(run, [3], truncation_psi=0.5, truncation_cutoff=2, noise_mode="random")
    nvlabs = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)  # gen_images.py's PNG pixels
    assert (pixels == nvlabs[0].numpy()).all()


def test_sample_conditional_rows_and_export(runs, tmp_path, capsys):
    run = runs("stylegan2", cond=True)
    assert _run(capsys, "sample", run, "--seeds", "0-2", "--out", tmp_path / "g.png")[0] == 0
    assert read_png(tmp_path / "g.png").shape == (5 * RES, 3 * RES, 3)  # a row per class
    assert _run(capsys, "sample", run, "--seeds", "0-2", "--class", "4", "--out", tmp_path / "k.png")[0] == 0
    assert read_png(tmp_path / "k.png").shape == (2 * RES, 2 * RES, 3)
    assert _run(capsys, "export", run, "--out", tmp_path / "G.safetensors")[0] == 0
    net = generate.load_generator(tmp_path / "G.safetensors", device="cpu")
    assert net.class_names == ["shapes", "circles", "squares", "warm", "cool"]
    a = generate.sample(net, [0], class_idx=4)
    assert torch.equal(a, generate.sample(generate.load_generator(run, device="cpu"), [0], class_idx=4))
    code, _, err = _run(capsys, "sample", tmp_path / "G.safetensors", "--seeds", "0-2", "--outdir", tmp_path / "d")
    assert code == 0 and "seed0002-class4.png" in os.listdir(tmp_path / "d") and len(os.listdir(tmp_path / "d")) == 15


def test_sample_other_formats(tmp_path, capsys):
    pkl = write_nvlabs_pickle(tmp_path / "network-snapshot-000010.pkl", tiny_generator(), G_KWARGS)
    code, _, err = _run(capsys, "sample", pkl, "--seeds", "0-3", "--out", tmp_path / "p.png")
    assert code == 0 and "NVlabs pickle" in err and read_png(tmp_path / "p.png").shape == (32, 32, 3)
    torch.save(dcgan.Generator(nz=8, ngf=4, nc=1, resolution=32).state_dict(), tmp_path / "netG.pth")
    code, _, err = _run(capsys, "sample", tmp_path / "netG.pth", "--arch", "dcgan:nz=8,nc=1", "--seeds", "0-8",
                        "--out", tmp_path / "d.png")  # fmt: skip
    assert code == 0 and read_png(tmp_path / "d.png").shape == (96, 96, 1)
    torch.save(cyclegan.ResnetGenerator(3, 3, ngf=4, n_blocks=1).state_dict(), tmp_path / "latest_net_G_A.pth")
    code, _, _ = _run(capsys, "sample", tmp_path / "latest_net_G_A.pth", "--seeds", "0-2", "--out", tmp_path / "c.png")
    assert code == 0 and read_png(tmp_path / "c.png").shape == (2 * 128, 3 * 128, 3)  # inputs, translations


def test_sample_cyclegan_run(runs, tmp_path, capsys):
    run = runs("cyclegan")
    assert _run(capsys, "sample", run, "--seeds", "0-3", "--out", tmp_path / "c.png")[0] == 0
    assert read_png(tmp_path / "c.png").shape == (6 * 32, 4 * 32, 3)  # A, G_A(A), G_B(G_A(A)), B, G_B(B), ...
    assert _run(capsys, "sample", run, "--seeds", "0-1", "--outdir", tmp_path / "t")[0] == 0
    assert sorted(os.listdir(tmp_path / "t")) == ["seed0000.png", "seed0001.png"]
    code, _, err = _run(capsys, "mix", run, "--rows", "1", "--cols", "2", "--out", tmp_path / "m.png")
    assert code == 2 and "needs a StyleGAN2" in err


def test_mix(runs, tmp_path, capsys):
    run = runs("stylegan2")
    code, _, _ = _run(capsys, "mix", run, "--rows", "85,100", "--cols", "55,821,3", "--styles", "0-1",
                      "--out", tmp_path / "m.png")  # fmt: skip
    assert code == 0
    grid = read_png(tmp_path / "m.png")
    assert grid.shape == (3 * RES, 4 * RES, 3) and grid[:RES, :RES].max() == 0  # the blank top-left cell
    assert _run(capsys, "mix", run, "--rows", "85", "--cols", "55", "--out", tmp_path / "d.png")[0] == 0  # 0-2


def test_interpolate_gif(runs, tmp_path, capsys, pillow_path):
    from PIL import Image

    run = runs("stylegan2")
    code, _, err = _run(capsys, "interpolate", run, "--seeds", "0,5,9", "--frames", "6", "--space", "w", "--slerp",
                        "--out", tmp_path / "walk.gif")  # fmt: skip
    assert code == 0, err
    with Image.open(tmp_path / "walk.gif") as gif:
        assert gif.n_frames == 6 and gif.size == (RES, RES) and gif.info.get("loop") == 0
    first = (tmp_path / "walk.gif").read_bytes()
    _run(capsys, "interpolate", run, "--seeds", "0,5,9", "--frames", "6", "--space", "w", "--slerp",
         "--out", tmp_path / "walk.gif")  # fmt: skip
    assert (tmp_path / "walk.gif").read_bytes() == first


def test_interpolate_without_the_optional_writers(runs, tmp_path, capsys, monkeypatch):
    run = runs("stylegan2")
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "imageio", None)
    code, _, err = _run(capsys, "interpolate", run, "--seeds", "0,1", "--out", tmp_path / "w.gif")
    assert code == 2 and "needs Pillow: pip install pillow" in err
    code, _, err = _run(capsys, "interpolate", run, "--seeds", "0,1", "--out", tmp_path / "w.mp4")
    assert code == 2 and "imageio[ffmpeg]" in err and "gankernels[video]" in err
    assert not os.listdir(tmp_path)


def test_interpolate_mp4_through_imageio(runs, tmp_path, capsys, monkeypatch):
    """The MP4 path with a stand-in for imageio (the real one is optional): the frames, fps and codec it gets."""
    import types

    calls = []

    def mimwrite(path, frames, fps, codec, macro_block_size):
        calls.append((len(frames), frames[0].shape, frames[0].dtype, fps, codec))
        with open(path, "wb") as f:
            f.write(b"mp4")

    v2 = types.SimpleNamespace(mimwrite=mimwrite)
    monkeypatch.setitem(sys.modules, "imageio", types.SimpleNamespace(v2=v2))
    monkeypatch.setitem(sys.modules, "imageio.v2", v2)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", types.ModuleType("imageio_ffmpeg"))
    code, _, err = _run(capsys, "interpolate", runs("stylegan2"), "--seeds", "0,1", "--frames", "4", "--fps", "12",
                        "--out", tmp_path / "walk.mp4")  # fmt: skip
    assert code == 0, err
    assert [(n, shape, str(dtype), fps, codec) for n, shape, dtype, fps, codec in calls] == [
        (4, (RES, RES, 3), "uint8", 12.0, "libx264")]  # fmt: skip
    assert (tmp_path / "walk.mp4").read_bytes() == b"mp4" and os.listdir(tmp_path) == ["walk.mp4"]


def test_cyclegan_input_folder(tmp_path, capsys):
    import numpy as np

    from gankernels.training.images import write_png

    for i in range(2):
        write_png(tmp_path / "in" / f"{i}.png", np.full((40, 48, 3), 60 * i, dtype=np.uint8))
    torch.save(cyclegan.ResnetGenerator(3, 3, ngf=4, n_blocks=1).state_dict(), tmp_path / "g.pth")
    code, _, err = _run(capsys, "sample", tmp_path / "g.pth", "--input", tmp_path / "in", "--seeds", "0-1",
                        "--outdir", tmp_path / "out")  # fmt: skip
    assert code == 0, err
    assert read_png(tmp_path / "out" / "seed0001.png").shape == (128, 128, 3)
    code, _, err = _run(capsys, "sample", runs_free_dcgan(tmp_path), "--input", tmp_path / "in", "--out",
                        tmp_path / "x.png")  # fmt: skip
    assert code == 2 and "input applies to CycleGAN" in err


def runs_free_dcgan(tmp_path):
    torch.save(dcgan.Generator(nz=8, ngf=4, nc=3, resolution=32).state_dict(), tmp_path / "netG.pth")
    return tmp_path / "netG.pth"


def test_arithmetic(runs, tmp_path, capsys):
    for model, res in (("stylegan2", RES), ("dcgan", 32)):
        run = runs(model)
        code, _, err = _run(capsys, "arithmetic", run, "--expr", "12+40+77 - 7 + 3", "--out", tmp_path / f"{model}.png")
        assert code == 0, err
        assert read_png(tmp_path / f"{model}.png").shape == (4 * res, 4 * res, 3)
    code, _, _ = _run(capsys, "arithmetic", runs("stylegan2"), "--expr", "1 - 2", "--space", "w",
                      "--out", tmp_path / "w.png")  # fmt: skip
    assert code == 0 and read_png(tmp_path / "w.png").shape == (RES, 3 * RES, 3)


@pytest.mark.parametrize(
    "args, match",
    [
        (["sample", "{run}", "--class", "0", "--out", "{tmp}/x.png"], "unconditional"),
        (["sample", "{cond}", "--class", "5", "--out", "{tmp}/x.png"], "out of range for a network of 5 classes"),
        (["sample", "{run}", "--out", "{tmp}/x.jpg"], "images are written as PNG"),
        (["sample", "{run}", "--trunc-cutoff", "9", "--out", "{tmp}/x.png"], "trunc-cutoff: 9 is not in 1..4"),
        (["sample", "{tmp}/garbage.bin", "--out", "{tmp}/x.png"], "tried: "),
        (["sample", "{tmp}/missing", "--out", "{tmp}/x.png"], "no checkpoint"),
        (["mix", "{run}", "--rows", "1", "--cols", "2", "--styles", "0-6", "--out", "{tmp}/x.png"],
         "layer 4 is beyond the network's 4 style layers"),
        (["interpolate", "{run}", "--seeds", "0,1", "--frames", "1", "--out", "{tmp}/x.gif"], "frames must be"),
        (["interpolate", "{run}", "--seeds", "0", "--out", "{tmp}/x.gif"], "at least 2 seeds"),
        (["interpolate", "{run}", "--seeds", "0,1", "--out", "{tmp}/x.avi"], "written as .gif or .mp4"),
        (["arithmetic", "{run}", "--expr", "12 -7", "--out", "{tmp}/x.png"], "expected \\+ or - after '12'"),
        (["arithmetic", "{run}", "--expr", "", "--out", "{tmp}/x.png"], "empty expression"),
    ],
)  # fmt: skip
def test_bad_input(runs, tmp_path, capsys, args, match, monkeypatch):
    import re

    monkeypatch.setitem(sys.modules, "PIL", None)  # the frames check comes first, with or without Pillow
    if "frames" in match or "at least 2" in match:
        monkeypatch.setattr("gankernels.generate.output._pillow", lambda: None)
    (tmp_path / "garbage.bin").write_bytes(b"\x00" * 64)
    subs = {"{run}": runs("stylegan2"), "{cond}": runs("stylegan2", cond=True), "{tmp}": str(tmp_path)}
    argv = []
    for a in args:
        for k, v in subs.items():
            a = a.replace(k, v)
        argv.append(a)
    code, _, err = _run(capsys, *argv)
    assert code == 2 and re.search(match, err), err
    assert err.count("\n") <= 2 and "Traceback" not in err  # "loaded ..." and the error line
    assert not os.path.exists(tmp_path / "x.png")


@pytest.mark.parametrize("seeds", ["1-x", "5-2", "-3", "4294967296", "0-99999999"])
def test_malformed_seeds(runs, tmp_path, capsys, seeds):
    with pytest.raises(SystemExit) as info:
        cli.main(["sample", runs("stylegan2"), "--seeds", seeds, "--out", str(tmp_path / "x.png")])
    assert info.value.code == 2 and "--seeds" in capsys.readouterr().err
