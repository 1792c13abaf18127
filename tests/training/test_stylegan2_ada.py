"""StyleGAN2 with ADA at a tiny size on CPU: the pipe sees every D input, exact resume with a p that moves, the
CLI's --aug / --augpipe / --p / --target / --ada-kimg and their bad values, p and r_t in stats.jsonl."""

import json
import os

import pytest
import torch

from gankernels import cli
from gankernels.training import loop
from gankernels.training.stylegan2 import StyleGAN2Task

from .test_stylegan2_training import TINY_ARGS, run_cli, tiny_config

# p moves by 4 * 3 / (0.1 * 1000) = 0.12 after the 3rd step; target 0: any r_t > 0 (this seed's is) raises it.
MOVING_P = dict(aug="ada", target=0.0, ada_kimg=0.1, ada_interval=3)


def test_augments_every_D_input_only():
    task = StyleGAN2Task(tiny_config(batch=2, aug="fixed", p=1.0), torch.device("cpu"), loop.distributed.DistInfo())
    calls = []
    pipe_forward = task.augment_pipe.forward
    task.augment_pipe.forward = lambda img, **kw: calls.append(img.requires_grad) or pipe_forward(img, **kw)
    loop.seed_step(0, 0, 0)
    stats = task.step(0)  # Gmain, Greg (path length: no D), Dmain (fakes, reals), Dreg (R1 on the reals)
    assert calls == [True, False, False, True]  # Gmain's fakes (grad to G), Dmain's fakes and reals, R1's reals
    assert set(stats) == {"G", "pl", "D", "r1", "p"} and stats["p"] == 1.0
    images, _ = task.sample_grid(seeds=[0])
    assert len(calls) == 4 and images.shape == (1, 3, 8, 8)  # the samples a user sees are never augmented


def test_noaug_has_no_pipe_but_measures_r_t():
    task = StyleGAN2Task(tiny_config(batch=2, aug="noaug"), torch.device("cpu"), loop.distributed.DistInfo())
    assert task.augment_pipe is None
    for step in range(4):
        loop.seed_step(0, 0, step)
        stats = task.step(step)
    assert stats["p"] == 0.0 and -1 <= stats["r_t"] <= 1


def test_resume_with_ada_continues_identically(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    loop.train(StyleGAN2Task, tiny_config(**MOVING_P), str(straight), steps=4, snap=2, device="cpu", quiet=True)
    loop.train(StyleGAN2Task, tiny_config(**MOVING_P), str(split), steps=2, snap=2, device="cpu", quiet=True)
    mid = loop.read_run(split)["task"]["ada"]
    assert mid["count"] == 2 * 4 + 4  # Dmain's reals at steps 0 and 1, R1's at step 0: half an interval pending
    loop.train(StyleGAN2Task, None, str(split), steps=4, snap=2, resume=True, device="cpu", quiet=True)
    a, b = loop.read_run(straight), loop.read_run(split)
    assert a["task"]["ada"]["p"].item() == pytest.approx(0.12)  # p moved, and step 3 ran with it
    for key in ("p", "signs"):
        assert torch.equal(a["task"]["ada"][key], b["task"]["ada"][key])
    assert a["task"]["ada"]["count"] == b["task"]["ada"]["count"] and a["task"]["ada"]["r_t"] == b["task"]["ada"]["r_t"]
    for net in ("G", "D", "G_ema"):
        for k, v in a["task"][net].items():
            assert torch.equal(v, b["task"][net][k]), f"{net}.{k} differs after resume"
    lines = [json.loads(line) for line in (straight / "stats.jsonl").read_text().splitlines()]
    assert [round(line["p"], 6) for line in lines] == [0.0, 0.12] and "r_t" in lines[-1]


def test_checkpoint_from_before_ada_resumes_without_augmentation():
    config = tiny_config()
    for key in ("aug", "augpipe", "target", "p", "ada_kimg", "ada_interval"):
        del config[key]
    StyleGAN2Task.check_config(config)
    task = StyleGAN2Task(config, torch.device("cpu"), loop.distributed.DistInfo())
    state = task.state_dict()
    del state["ada"]
    task.load_state_dict(state)
    assert task.augment_pipe is None


def test_cli_train_with_ada(tmp_path):
    run = str(tmp_path / "run")
    r = run_cli("train", "stylegan2", "--out", run, "--steps", "4", "--aug", "ada", "--augpipe", "bgc", "--target",
                "0.6", "--ada-kimg", "100", *TINY_ARGS)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert " p 0" in r.stdout + r.stderr and "r_t" in r.stdout + r.stderr  # the progress line
    lines = [json.loads(line) for line in open(os.path.join(run, "stats.jsonl"))]
    assert all("p" in line for line in lines) and "r_t" in lines[-1]
    config = json.load(open(os.path.join(run, "config.json")))
    assert (config["aug"], config["augpipe"], config["target"], config["ada_kimg"]) == ("ada", "bgc", 0.6, 100.0)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--aug", "fixed"], "--aug fixed needs --p"),
        (["--aug", "fixed", "--p", "1.5"], "--p must be in [0, 1]"),
        (["--aug", "fixed", "--p", "-0.1"], "--p must be in [0, 1]"),
        (["--p", "0.5"], "--p is for --aug fixed only"),
        (["--target", "-0.1"], "--target must be in [0, 1]"),
        (["--ada-kimg", "0"], "--ada-kimg must be > 0"),
    ],
)
def test_cli_bad_augment_options(tmp_path, capsys, args, message):
    rc = cli.main(["train", "stylegan2", "--out", str(tmp_path / "run"), "--steps", "1", *TINY_ARGS, *args])
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args,option", [(["--augpipe", "bgx"], "--augpipe"), (["--aug", "sometimes"], "--aug")])
def test_cli_unknown_choice(tmp_path, capsys, args, option):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "stylegan2", "--out", str(tmp_path / "run"), *args])
    assert e.value.code == 2 and f"argument {option}: invalid choice" in capsys.readouterr().err


def test_check_config_bad_augment():
    with pytest.raises(ValueError, match="--augpipe: unknown preset 'bgx'"):
        StyleGAN2Task.check_config(tiny_config(augpipe="bgx"))
    with pytest.raises(ValueError, match="--aug must be one of ada, fixed, noaug"):
        StyleGAN2Task.check_config(tiny_config(aug="always"))
    with pytest.raises(ValueError, match="--augpipe bgcf filters the images .* needs --resolution >= 32"):
        StyleGAN2Task.check_config(tiny_config(augpipe="bgcf"))  # 8x8
    StyleGAN2Task.check_config(tiny_config(augpipe="bgcf", aug="noaug"))
    with pytest.raises(ValueError, match="ada_interval"):
        StyleGAN2Task.check_config(tiny_config(ada_interval=0))
