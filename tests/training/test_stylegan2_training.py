"""StyleGAN2 training on CPU at a tiny size: finite losses on every backend, exact resume, the CLI, DDP."""

import os
import subprocess
import sys

import pytest
import torch

import gankernels
from gankernels.training import loop
from gankernels.training.stylegan2 import StyleGAN2Task

from ..conftest import backends_for

TINY = {"cbase": 128, "cmax": 16, "z_dim": 16, "w_dim": 16, "map": 2}


def tiny_config(**overrides):
    config = {**StyleGAN2Task.defaults, **TINY, "resolution": 8, "batch": 4, "seed": 3, "data": None}
    config.update(overrides)
    return config


def all_params(task):
    return {f"{name}.{k}": v.clone() for name, net in task.networks().items() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("backend", ["ref", *backends_for("bias_act", "cpu")])
def test_one_step_finite_on_every_backend(backend):
    task = StyleGAN2Task(tiny_config(batch=2), torch.device("cpu"), loop.distributed.DistInfo())
    before = all_params(task)
    with gankernels.use_backend(backend, strict=False):
        loop.seed_step(0, 0, 0)
        stats = task.step(0)  # step 0 runs all four phases: Gmain, Greg (path length), Dmain, Dreg (R1)
    assert set(stats) == {"G", "pl", "D", "r1", "p"}  # p: ADA's augmentation strength (default --aug ada)
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values()), stats
    after = all_params(task)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("G.") for k in changed) and any(k.startswith("D.") for k in changed)
    assert all(torch.isfinite(v).all() for v in after.values())


def test_resume_continues_identically(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    loop.train(StyleGAN2Task, tiny_config(), str(straight), steps=4, snap=2, device="cpu", quiet=True)
    loop.train(StyleGAN2Task, tiny_config(), str(split), steps=2, snap=2, device="cpu", quiet=True)
    with pytest.raises(ValueError, match="--resume"):  # never overwrite a run
        loop.train(StyleGAN2Task, tiny_config(), str(split), steps=4, device="cpu", quiet=True)
    loop.train(StyleGAN2Task, None, str(split), steps=4, snap=2, resume=True, device="cpu", quiet=True)
    a, b = loop.read_run(straight), loop.read_run(split)
    assert a["step"] == b["step"] == 4 and a["nimg"] == b["nimg"] == 16
    for net in ("G", "D", "G_ema"):
        for k, v in a["task"][net].items():
            assert torch.equal(v, b["task"][net][k]), f"{net}.{k} differs after resume"
    assert torch.equal(a["task"]["pl_mean"], b["task"]["pl_mean"])
    assert a["task"]["stream"] == b["task"]["stream"]
    assert sorted(p.name for p in straight.glob("fakes*.png")) == ["fakes000002.png", "fakes000004.png"]


def test_bad_config():
    with pytest.raises(ValueError, match="resolution"):
        StyleGAN2Task.check_config(tiny_config(resolution=12))
    with pytest.raises(ValueError, match="style_mixing"):
        StyleGAN2Task.check_config(tiny_config(style_mixing=2.0))
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        loop.batch_per_rank(5, loop.distributed.DistInfo(rank=0, world_size=2))


def run_cli(*args, env=None, timeout=600):
    cmd = [sys.executable, "-m", "gankernels", *args]
    env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


TINY_ARGS = ["--resolution", "8", "--batch", "4", "--cbase", "128", "--cmax", "16", "--zdim", "16", "--wdim", "16"]


def test_cli_train_sample_resume(tmp_path):
    run = str(tmp_path / "run")
    r = run_cli("train", "stylegan2", "--out", run, "--steps", "2", *TINY_ARGS)
    assert r.returncode == 0, r.stderr
    assert "sec/kimg" in r.stdout + r.stderr and os.path.isfile(os.path.join(run, "checkpoint.pt"))
    r = run_cli("train", "stylegan2", "--out", run, "--steps", "3", "--resume")
    assert r.returncode == 0, r.stderr
    assert loop.read_run(run)["step"] == 3
    grid = str(tmp_path / "grid.png")
    r = run_cli("sample", run, "--seeds", "0-5", "--trunc", "0.7", "--out", grid)
    assert r.returncode == 0, r.stderr
    from gankernels.training.images import read_png

    img = read_png(grid)
    assert img.shape == (24, 16, 3)  # 6 images of 8x8: round(sqrt(6)) = 2 columns, 3 rows
    r = run_cli("train", "stylegan2", "--out", run, "--steps", "2", *TINY_ARGS)
    assert r.returncode == 2 and "--resume" in r.stderr
    exported = str(tmp_path / "G.safetensors")
    r = run_cli("export", run, "--out", exported)
    assert r.returncode == 0 and "G_ema" in r.stdout, r.stderr
    from gankernels.models import load_model

    assert load_model(exported).img_resolution == 8
    r = run_cli("sample", str(tmp_path / "nothing"), "--out", grid)
    assert r.returncode == 2 and "no checkpoint" in r.stderr


def test_ddp_two_processes_gloo(tmp_path):
    run = str(tmp_path / "ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "gankernels",
           "train", "stylegan2", "--out", run, "--steps", "4", "--quiet", "--ada-kimg", "0.1", *TINY_ARGS]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ranks in sync: True" in r.stdout
    state = loop.read_run(run)
    assert state["nimg"] == 16
    # step 4: ADA's first adjustment, r_t summed over both ranks' real logits (2 x (4 Dmain + 1 R1) x 2 images)
    assert state["task"]["ada"]["r_t"] is not None and state["task"]["ada"]["count"] == 0


def test_export_safetensors_round_trip(tmp_path):
    from gankernels.models import load_model, save_model
    from gankernels.models.safetensors import load_metadata

    task = StyleGAN2Task(tiny_config(), torch.device("cpu"), loop.distributed.DistInfo(), training=False)
    z, c = torch.randn(2, 16), torch.zeros(2, 0)
    for name, net in task.networks().items():
        path = tmp_path / f"{name}.safetensors"
        save_model(net, path, metadata={"note": "tiny"})
        assert load_metadata(path)["note"] == "tiny"
        back = load_model(path).eval()
        net.eval()  # the same fused_modconv path in both
        if name != "D":
            torch.testing.assert_close(back(z, c, noise_mode="const"), net(z, c, noise_mode="const"), rtol=0, atol=0)
    (tmp_path / "plain.safetensors").write_bytes(b"")
    with pytest.raises(ValueError):
        load_model(tmp_path / "plain.safetensors")
