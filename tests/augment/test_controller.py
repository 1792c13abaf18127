"""The ADA controller: the exact p trajectory on a scripted sequence of D's signs, clamping to [0, 1], measuring
without adapting, exact resume from its state mid-interval, bad arguments."""

import pytest
import torch

from gankernels.augment import AdaController

# batch 64, interval 4, kimg 1.024: p moves by 64 * 4 / 1024 = 0.25 per adjustment (exact in float32).
BATCH, INTERVAL, KIMG = 64, 4, 1.024


def logits(*signs):
    return torch.tensor([2.5 * s for s in signs])  # only the sign counts


# (D's real logits at each step), grouped by adjustment interval: (the 4 steps, r_t, p after the adjustment)
SCRIPT = [
    ([logits(1, 1, 1, -1), logits(1, 1, 1, 1), logits(1, 1, -1, -1), logits(1, 1, 1, 1)], 10 / 16, 0.25),
    ([logits(1, 1, 1, 1)] * 4, 1.0, 0.5),
    ([logits(1, 0, 1, 1)] * 4, 0.75, 0.75),  # sign(0) = 0 counts as a logit
    ([logits(1, 1, 1, 1)] * 4, 1.0, 1.0),
    ([logits(1, 1, 1, 1)] * 4, 1.0, 1.0),  # clamped at 1 (NVlabs would go to 1.25)
    ([logits(-1, -1, 1, 1)] * 4, 0.0, 0.75),
    ([logits(1, 1, 1, 1, -1)] * 4, 0.6, 0.75),  # r_t == target: no change
    ([logits(-1, -1, -1, -1)] * 4, -1.0, 0.5),
    ([logits(-1, -1, -1, -1)] * 4, -1.0, 0.25),
    ([logits(-1, -1, -1, -1)] * 4, -1.0, 0.0),
    ([logits(-1, -1, -1, -1)] * 4, -1.0, 0.0),  # clamped at 0
]


def run(ctrl, script, start=0):
    trajectory, step = [], start
    for steps, _, _ in script:
        for real in steps:
            before = ctrl.p.item()
            ctrl.accumulate(real)
            adjusted = ctrl.step(step)
            assert adjusted == ((step + 1) % INTERVAL == 0)
            if not adjusted:
                assert ctrl.p.item() == before  # p moves only every `interval` steps
            step += 1
        trajectory.append((ctrl.r_t, ctrl.p.item()))
    return trajectory


def test_p_trajectory_on_scripted_signs():
    ctrl = AdaController(torch.zeros([]), BATCH, target=0.6, interval=INTERVAL, kimg=KIMG)
    assert ctrl.adjustment == 0.25 and ctrl.r_t is None
    assert run(ctrl, SCRIPT) == [(r_t, p) for _, r_t, p in SCRIPT]


def test_adjusts_the_pipe_buffer_in_place():
    from gankernels.augment import AugmentPipe

    pipe = AugmentPipe.from_preset("bgc", p=0.0)
    ctrl = AdaController(pipe.p, BATCH, interval=INTERVAL, kimg=KIMG)
    run(ctrl, SCRIPT[:2])
    assert pipe.p.item() == 0.5


def test_measure_only_keeps_p():
    ctrl = AdaController(torch.full([], 0.3), BATCH, interval=INTERVAL, kimg=KIMG, adapt=False)
    trajectory = run(ctrl, SCRIPT[:3])
    assert [r for r, _ in trajectory] == [10 / 16, 1.0, 0.75]
    assert all(p == pytest.approx(0.3) for _, p in trajectory)


def test_nvlabs_default_speed():
    ctrl = AdaController(torch.zeros([]), batch=32)  # interval 4, 500 kimg: 128 / 500000 per adjustment
    for step in range(4):
        ctrl.accumulate(logits(1, 1))
        ctrl.step(step)
    assert ctrl.p.item() == pytest.approx(32 * 4 / 500_000, rel=1e-6)


def test_state_dict_resume_mid_interval():
    straight = AdaController(torch.zeros([]), BATCH, interval=INTERVAL, kimg=KIMG)
    expected = run(straight, SCRIPT)
    first = AdaController(torch.zeros([]), BATCH, interval=INTERVAL, kimg=KIMG)
    steps = [real for group, _, _ in SCRIPT for real in group]
    for step, real in enumerate(steps[:6]):  # stop half-way through the second interval
        first.accumulate(real)
        first.step(step)
    state = first.state_dict()
    assert state["count"] == 8 and state["signs"].item() == 8
    second = AdaController(torch.zeros([]), BATCH, interval=INTERVAL, kimg=KIMG)
    second.load_state_dict(state)
    for step, real in enumerate(steps[6:], start=6):
        second.accumulate(real)
        second.step(step)
    assert (second.r_t, second.p.item()) == expected[-1]


def test_no_logits_no_adjustment():
    ctrl = AdaController(torch.zeros([]), BATCH, interval=1, kimg=KIMG)
    assert ctrl.step(0) is False and ctrl.p.item() == 0 and ctrl.r_t is None


def test_bad_arguments():
    p = torch.zeros([])
    with pytest.raises(ValueError, match="target"):
        AdaController(p, BATCH, target=-0.1)
    with pytest.raises(ValueError, match="target"):
        AdaController(p, BATCH, target=1.5)
    with pytest.raises(ValueError, match="kimg"):
        AdaController(p, BATCH, kimg=0)
    with pytest.raises(TypeError, match="interval"):
        AdaController(p, BATCH, interval=2.5)
    with pytest.raises(ValueError, match="batch"):
        AdaController(p, 0)
    with pytest.raises(TypeError, match="p must be"):
        AdaController(0.0, BATCH)
