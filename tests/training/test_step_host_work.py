"""What a training iteration asks of the host: no sync (no tensor read back) unless a value is printed, the EMA and
the gradient clean-up as a few foreach launches that give bit for bit what the per-parameter formulas give."""

import io
import traceback

import pytest
import torch

from gankernels.training import distributed, loop, progress, registry
from gankernels.training.ema import EMA

from .test_models_training import tiny_config as tiny_gan_config
from .test_stylegan2_training import tiny_config as tiny_stylegan2_config

# Tensor -> Python conversions: on a CUDA tensor each one waits for the device.
READS = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__")
# Reads of tensors that stay on the host when training on CUDA: CycleGAN's image pool draws from its own CPU
# generator, and torch.optim keeps its step counters on the CPU (Adam without capturable=True).
HOST_ONLY = {("cyclegan.py", "_uniform"), ("cyclegan.py", "_index"), ("torch.optim", "")}


class CountReads:
    """Records every Tensor -> Python read (READS) made inside the block, with the gankernels frame that made it."""

    def __init__(self, monkeypatch):
        self.monkeypatch, self.calls = monkeypatch, []

    def __enter__(self):
        for name in READS:
            original = getattr(torch.Tensor, name)

            def read(t, *args, _original=original, _name=name, **kwargs):
                stack = traceback.extract_stack()[:-1]
                ours = [f for f in stack if "/gankernels/" in f.filename and "/tests/" not in f.filename]
                where = (ours[-1].filename.rsplit("/", 1)[-1], ours[-1].name) if ours else ("?", "?")
                if any("/torch/optim/" in f.filename for f in stack):
                    where = ("torch.optim", "")
                self.calls.append((_name, *where))
                return _original(t, *args, **kwargs)

            self.monkeypatch.setattr(torch.Tensor, name, read)
        return self

    def __exit__(self, *exc):
        self.monkeypatch.undo()

    def device_reads(self):
        return [c for c in self.calls if (c[1], c[2]) not in HOST_ONLY]


# ADA's geometric augmentations pad by a data-dependent margin (NVlabs' too): one read of the padding sizes per
# augmentation call that draws a geometric transform; nothing else.
ADA_PADDING = ("tolist", "geometric.py", "apply_geometric")


def make_task(model):
    if model in ("stylegan2", "stylegan2-ada"):
        aug = {"aug": "fixed", "p": 1.0} if model == "stylegan2-ada" else {"aug": "noaug"}
        task_cls, config = registry.get("stylegan2"), tiny_stylegan2_config(batch=2, **aug)
    else:
        task_cls, config = tiny_gan_config(model)
    torch.manual_seed(config["seed"])
    task = task_cls(dict(config), torch.device("cpu"), distributed.DistInfo())
    task.total_steps = 4
    return task


@pytest.mark.parametrize("model", ["stylegan2", "stylegan2-ada", "dcgan", "wgan-gp", "cyclegan"])
def test_a_step_reads_nothing_back(model, monkeypatch):
    """task.step() returns its losses as tensors and reads no tensor back (step 0 of StyleGAN2 runs all four phases,
    R1 and path length included); the loop reads them only when it prints or writes them."""
    task = make_task(model)
    loop.seed_step(0, 0, 0)
    task.step(0)  # first-call work (dataset permutation, lazy initialisation) is not what is counted
    loop.seed_step(0, 0, 0)
    with CountReads(monkeypatch) as reads:
        stats = task.step(0 if model.startswith("stylegan2") else 1)
    device_reads = reads.device_reads()
    if model == "stylegan2-ada":  # p = 1: each of the four D inputs (Gmain, Dmain fake and real, R1) pads once
        assert device_reads.count(ADA_PADDING) == 4, device_reads
        device_reads = [r for r in device_reads if r != ADA_PADDING]
    assert device_reads == [], f"host reads during {model}'s step: {device_reads}"
    assert stats and all(isinstance(v, (torch.Tensor, float)) for v in stats.values())
    assert all(not v.requires_grad for v in stats.values() if isinstance(v, torch.Tensor))

    # The progress line reads them when, and only when, it prints
    line = io.StringIO()
    bar = progress.Progress(10, stream=line, every=3600.0)
    bar.update(1, 4, stats)  # the first update prints
    with CountReads(monkeypatch) as reads:
        bar.update(2, 8, stats)  # within `every`: nothing printed, nothing read
    assert reads.calls == [] and line.getvalue().count("\n") == 1
    assert all(f"{k} " in line.getvalue() for k in stats)


def test_ema_is_the_per_parameter_formula():
    """EMA.update (foreach) equals, bit for bit, p_ema = lerp(p, p_ema, beta) per parameter and b_ema = b per
    buffer (BatchNorm's float running statistics and its int64 counter included), at several betas."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(6, 2))
    ema = EMA(model, ema_kimg=0.01, rampup=0.05)
    expected = {k: v.clone() for k, v in ema.module.state_dict().items()}
    nimg = 0
    for step in range(4):
        with torch.no_grad():  # new weights and statistics, as an optimizer step and a forward pass would leave
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(2, 3, 8, 8))
        nimg += 4
        beta = ema.beta(nimg, 4)
        assert 0 < beta < 1
        ema.update(model, nimg, 4)
        params = dict(model.named_parameters())
        for k, v in model.state_dict().items():
            expected[k] = params[k].detach().lerp(expected[k], beta) if k in params else v.clone()
        for k, v in ema.module.state_dict().items():
            assert v.dtype == expected[k].dtype and torch.equal(v, expected[k]), f"{k} differs at step {step}"
    assert ema.module.state_dict()["1.num_batches_tracked"].item() == 4


def test_gradient_clean_up_is_the_per_parameter_formula():
    """average_gradients in one process: every gradient nan_to_num'd (nan 0, +-inf +-1e5) in place, finite values
    untouched, None gradients left None, parameters of several dtypes and layouts."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3, 3, 3).contiguous(memory_format=torch.channels_last)),
              torch.nn.Parameter(torch.randn(5)), torch.nn.Parameter(torch.randn(2, 2, dtype=torch.float64)),
              torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(2), requires_grad=False)]  # fmt: skip
    for p in params[:3]:
        p.grad = torch.randn_like(p) * 1e6
    for index, value in zip([(0, 0, 0, 0), (1, 2, 0, 1), (3, 1, 2, 2)], ["nan", "inf", "-inf"], strict=True):
        params[0].grad[index] = float(value)
    params[2].grad[0, 1] = float("nan")
    grads = [p.grad for p in params[:3]]
    expected = [torch.nan_to_num(g, nan=0, posinf=1e5, neginf=-1e5) for g in grads]
    distributed.average_gradients(params, distributed.DistInfo())
    for p, g, e in zip(params, grads, expected, strict=False):  # the first three
        assert p.grad is g and torch.equal(g, e)  # in place: the same tensors, their layouts kept
    assert params[0].grad.is_contiguous(memory_format=torch.channels_last)
    assert params[3].grad is None and params[4].grad is None


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["stylegan2", "dcgan", "wgan-gp", "cyclegan"])
def test_a_cuda_step_does_not_synchronize(model):
    """On CUDA, torch.cuda.set_sync_debug_mode("error") turns every synchronizing call torch makes into an error:
    a step (after a first one, which may autotune) runs without one, data loading included."""
    if model == "stylegan2":  # without augmentation: ADA's padding sizes are one read per call (ADA_PADDING)
        task_cls, config = registry.get("stylegan2"), tiny_stylegan2_config(batch=2, aug="noaug")
    else:
        task_cls, config = tiny_gan_config(model)
    torch.manual_seed(config["seed"])
    task = task_cls(dict(config), torch.device("cuda"), distributed.DistInfo())
    task.total_steps = 4
    for step in range(2):
        loop.seed_step(0, 0, step)
        task.step(step)
    torch.cuda.synchronize()
    loop.seed_step(0, 0, 0)
    torch.cuda.set_sync_debug_mode("error")
    try:
        stats = task.step(0 if model == "stylegan2" else 2)  # StyleGAN2's step 0 runs all four phases again
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in progress.scalars(stats).values())
