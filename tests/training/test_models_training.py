"""DCGAN, WGAN-GP and CycleGAN training on CPU at tiny sizes: finite losses, exact resume, the CLI, export."""

import os
import subprocess
import sys

import pytest
import torch

from gankernels.models import load_model, save_model
from gankernels.training import loop, registry

TINY = {
    "dcgan": (["--resolution", "32", "--batch", "4", "--nz", "8", "--ngf", "4", "--ndf", "4"], 4),
    "wgan-gp": (["--resolution", "8", "--batch", "4", "--zdim", "8", "--width", "8", "--n-critic", "2"], 8),
    "cyclegan": (
        ["--resolution", "32", "--batch", "1", "--ngf", "4", "--ndf", "4", "--n-blocks", "1", "--pool", "3"],
        1,
    ),
}


def tiny_config(model):
    args, _ = TINY[model]
    task_cls = registry.get(model)
    config = {**task_cls.defaults, "seed": 1, "data": None}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        key = {"--zdim": "z_dim", "--n-critic": "n_critic", "--n-blocks": "n_blocks"}.get(flag, flag[2:])
        config[key] = type(task_cls.defaults.get(key, 0) or 0)(value) if key in task_cls.defaults else int(value)
    return task_cls, config


@pytest.mark.parametrize("model", list(TINY))
def test_resume_continues_identically(model, tmp_path):
    task_cls, config = tiny_config(model)
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    r = loop.train(task_cls, dict(config), straight, steps=4, snap=2, device="cpu", quiet=True)
    assert all(torch.isfinite(torch.tensor(v)) for v in r["stats"].values()), r["stats"]
    loop.train(task_cls, dict(config), split, steps=2, snap=2, device="cpu", quiet=True)
    loop.train(task_cls, None, split, steps=4, snap=2, resume=True, device="cpu", quiet=True)
    a, b = loop.read_run(straight)["task"], loop.read_run(split)["task"]
    assert a.keys() == b.keys()
    for key in a:
        if key.startswith(("G", "D")):
            for name, v in a[key].items():
                assert torch.equal(v, b[key][name]), f"{key}.{name} differs after resume"
    _, images_per_step = TINY[model]
    assert loop.read_run(split)["nimg"] == 4 * images_per_step


@pytest.mark.parametrize("model", list(TINY))
def test_export_round_trip(model, tmp_path):
    task_cls, config = tiny_config(model)
    task = task_cls(config, torch.device("cpu"), loop.distributed.DistInfo(), training=False)
    for name, net in task.networks().items():
        path = tmp_path / f"{name}.safetensors"
        save_model(net, path)
        back = load_model(path)
        assert type(back) is type(net)
        for k, v in net.state_dict().items():
            assert torch.equal(back.state_dict()[k], v)


def test_cyclegan_learning_rate_decay():
    task_cls, config = tiny_config("cyclegan")
    task = task_cls(config, torch.device("cpu"), loop.distributed.DistInfo(), training=False)
    task.total_steps = 100
    lrs = [task.learning_rate(s) for s in (0, 49, 50, 75, 99)]
    assert lrs[:3] == [2e-4] * 3 and lrs[3] == pytest.approx(1e-4) and lrs[4] == pytest.approx(4e-6)


@pytest.mark.parametrize("model", list(TINY))
def test_cli_smoke(model, tmp_path):
    args, _ = TINY[model]
    run, grid = str(tmp_path / "run"), str(tmp_path / "grid.png")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "gankernels"]
    r = subprocess.run([*cmd, "train", model, "--out", run, "--steps", "2", *args], capture_output=True, text=True,
                       env=env, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert os.path.isfile(os.path.join(run, "fakes000002.png"))
    r = subprocess.run([*cmd, "sample", run, "--out", grid, "--seeds", "0-3"], capture_output=True, text=True,
                       env=env, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr
    from gankernels.training.images import read_png

    h, w, _ = read_png(grid).shape
    res = int(args[args.index("--resolution") + 1])
    if model == "cyclegan":
        assert (h, w) == (6 * res, 4 * res)  # rows: A, G_A(A), G_B(G_A(A)), B, G_B(B), G_A(G_B(B))
    else:
        assert (h, w) == (2 * res, 2 * res)


@pytest.mark.parametrize(
    "args, match",
    [
        (["dcgan", "--batch", "0"], "batch"),
        (["wgan-gp", "--resolution", "12"], "resolution"),
        (["stylegan2", "--steps", "0"], "steps"),
        (["cyclegan", "--data", "/nonexistent-gankernels-dir"], "nonexistent-gankernels-dir"),
    ],
)
def test_cli_bad_input(args, match, tmp_path):
    """Bad options end with exit status 2 and a message naming them, before any training."""
    r = subprocess.run([sys.executable, "-m", "gankernels", "train", *args, "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 2 and match in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "run" / "checkpoint.pt")
