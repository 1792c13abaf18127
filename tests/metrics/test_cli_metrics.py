"""`gankernels metrics` and `gankernels plot` through the real entry point, and metrics during tiny training runs."""

import json
import os
import pickle

import pytest
import torch

from gankernels import cli
from gankernels.models import save_model
from gankernels.training import loop, registry
from gankernels.training.images import read_png
from tests.models.test_nvlabs_pickle import G_KWARGS, nvlabs  # noqa: F401 (a fixture)

DCGAN = ["--resolution", "32", "--batch", "4", "--nz", "8", "--ngf", "4", "--ndf", "4"]


def train(tmp_path, model, args, *extra, name="run"):
    out = str(tmp_path / name)
    assert cli.main(["train", model, "--out", out, "--steps", "2", "--snap", "1", "--quiet", *args, *extra]) == 0
    return out


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_training_with_metrics_writes_jsonl_and_curves(tmp_path, tiny_inception, capsys):
    out = train(tmp_path, "dcgan", DCGAN, "--metrics", "fid8,kid6,pr83", "--inception", tiny_inception)
    rows = [json.loads(line) for line in open(os.path.join(out, "metric-fid8.jsonl"))]
    assert [r["step"] for r in rows] == [1, 2] and rows[1]["kimg"] == pytest.approx(0.008)
    assert rows[0]["results"]["fid8"] > 0 and rows[0]["num_gen"] == 8
    pr = json.loads(open(os.path.join(out, "metric-pr83.jsonl")).readline())["results"]
    assert set(pr) == {"pr83_precision", "pr83_recall"}
    image = read_png(os.path.join(out, "curves.png"))
    assert image.ndim == 3 and image.shape[0] >= 200 and (image < 255).any()
    os.remove(os.path.join(out, "curves.png"))
    capsys.readouterr()
    assert cli.main(["plot", out]) == 0
    assert os.path.isfile(os.path.join(out, "curves.png")) and "curves.png" in capsys.readouterr().out


def test_stylegan2_training_evaluates_g_ema(tmp_path, tiny_inception, monkeypatch):
    monkeypatch.setenv("GANKERNELS_INCEPTION", tiny_inception)
    args = ["--resolution", "8", "--batch", "2", "--cbase", "64", "--cmax", "16", "--zdim", "8", "--wdim", "8",
            "--map", "1", "--fp16-res", "0"]  # fmt: skip
    out = train(tmp_path, "stylegan2", args, "--metrics", "fid4")
    assert len(open(os.path.join(out, "metric-fid4.jsonl")).readlines()) == 2


def test_cyclegan_translations_are_compared_with_domain_b(tmp_path, tiny_inception):
    args = ["--resolution", "32", "--batch", "1", "--ngf", "4", "--ndf", "4", "--n-blocks", "1", "--pool", "2"]
    out = train(tmp_path, "cyclegan", args)
    task = loop.restore_task(loop.read_run(out), torch.device("cpu"))
    assert task.eval_reals().kind == "squares"
    batches = list(task.eval_images(5, batch=2))
    assert [b.shape[0] for b in batches] == [2, 2, 1] and batches[0].shape[1:] == (3, 32, 32)


def test_cli_metrics_on_a_run_and_an_export(tmp_path, tiny_inception, capsys):
    out = train(tmp_path, "wgan-gp", ["--resolution", "8", "--batch", "4", "--zdim", "8", "--width", "8",
                                      "--n-critic", "1"])  # fmt: skip
    capsys.readouterr()
    assert cli.main(["metrics", out, "--metric", "fid10,kid10", "--inception", tiny_inception, "--batch", "4"]) == 0
    captured = capsys.readouterr()
    results = json_lines(captured.out)
    assert [r["metric"] for r in results] == ["fid10", "kid10"] and results[0]["num_real"] == 10
    assert "generated features" in captured.err  # the progress bar
    # the same generator as a safetensors export, against a folder of reals, gives the same FID
    task = loop.restore_task(loop.read_run(out), torch.device("cpu"))
    export = str(tmp_path / "G.safetensors")
    save_model(task.G, export)
    from gankernels.training.images import save_image_grid

    data = tmp_path / "reals"
    reals = task.eval_reals()
    for i in range(10):
        save_image_grid(reals[i][None], str(data / f"{i}.png"), cols=1)
    assert cli.main(["metrics", export, "--metric", "fid10", "--data", str(data), "--inception", tiny_inception,
                     "--batch", "4", "--quiet"]) == 0  # fmt: skip
    again = json_lines(capsys.readouterr().out)[0]
    assert again["results"]["fid10"] == pytest.approx(results[0]["results"]["fid10"], rel=1e-3)


def test_cli_metrics_bad_input(tmp_path, tiny_inception, capsys):
    out = train(tmp_path, "dcgan", DCGAN)
    assert cli.main(["metrics", out, "--metric", "fid10k_bogus", "--inception", tiny_inception]) == 2
    assert "unknown metric" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["metrics", str(empty), "--metric", "fid10", "--inception", tiny_inception]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    task = loop.restore_task(loop.read_run(out), torch.device("cpu"))
    save_model(task.D, tmp_path / "D.safetensors")
    assert cli.main(["metrics", str(tmp_path / "D.safetensors"), "--inception", tiny_inception]) == 2
    assert "not a generator" in capsys.readouterr().err
    save_model(task.G, tmp_path / "G.safetensors")
    assert cli.main(["metrics", str(tmp_path / "G.safetensors"), "--metric", "fid10", "--inception",
                     tiny_inception]) == 2  # fmt: skip
    assert "--data" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a network")
    assert cli.main(["metrics", out, "--metric", "fid10", "--inception", str(bad)]) == 2
    assert "not a TorchScript archive" in capsys.readouterr().err
    assert cli.main(["train", "dcgan", "--out", str(tmp_path / "r2"), "--metrics", "nope", *DCGAN]) == 2
    assert "unknown metric" in capsys.readouterr().err
    assert cli.main(["plot", str(empty)]) == 2
    assert cli.main(["metrics", out, "--metric", "fid10", "--inception", tiny_inception, "--trunc", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "truncation_psi applies to StyleGAN2" in err and "features" not in err


def test_a_task_without_eval_images_fails_clearly():
    with pytest.raises(NotImplementedError):
        loop.Task({"resolution": 8}, torch.device("cpu"), None, training=False).eval_images(2)
    assert registry.get("dcgan").eval_images is not loop.Task.eval_images


def test_cli_metrics_on_an_nvlabs_pickle(tmp_path, tiny_inception, nvlabs, capsys):  # noqa: F811 (the fixture)
    from gankernels.models import stylegan2 as sg2
    from gankernels.training.data import ShapesDataset
    from gankernels.training.images import save_image_grid

    data = tmp_path / "reals"
    for i in range(6):
        save_image_grid(ShapesDataset(16, size=6)[i][None], str(data / f"{i}.png"), cols=1)
    network = tmp_path / "network-snapshot.pkl"
    G = nvlabs.wrap(sg2.Generator(**G_KWARGS), G_KWARGS)
    with open(network, "wb") as f:
        pickle.dump({"G_ema": G, "training_set_kwargs": {"path": "elsewhere"}}, f)
    args = ["--metric", "fid6", "--data", str(data), "--inception", tiny_inception, "--quiet"]
    assert cli.main(["metrics", str(network), *args]) == 0
    plain = json_lines(capsys.readouterr().out)[0]["results"]["fid6"]
    assert cli.main(["metrics", str(network), *args, "--trunc", "0"]) == 0  # every image the mean w's
    truncated = json_lines(capsys.readouterr().out)[0]["results"]["fid6"]
    assert plain > 0 and truncated > 0 and truncated != plain
    only_d = tmp_path / "d.pkl"
    with open(only_d, "wb") as f:
        pickle.dump({"D": {"not": "a generator"}}, f)
    assert cli.main(["metrics", str(only_d), *args]) == 2
    assert "no G_ema or G generator" in capsys.readouterr().err
