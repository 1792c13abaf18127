"""gankernels.generate's functions: NVlabs' z for a seed (the fixture network gives gen_images.py's images),
determinism, the layouts of the mixing grid and the arithmetic figure, the walk, and bad input."""

import json

import numpy as np
import pytest
import torch

from gankernels import generate
from gankernels.generate.latents import parse_expression, slerp
from gankernels.models import dcgan
from gankernels.models import stylegan2 as sg2
from tests.conftest import STYLEGAN2_FIXTURE, needs_fixture
from tests.generate.conftest import tiny_generator, write_nvlabs_pickle


@pytest.fixture(scope="module")
def G():
    return tiny_generator()


@needs_fixture
def test_nvlabs_network_gives_gen_images_images(tmp_path):
    """The fixture network (NVlabs' weights and outputs), pickled as NVlabs do: load_generator + sample give what
    gen_images.py computes, G(RandomState(seed).randn(1, z_dim), c, psi, noise_mode='const')."""
    meta = json.loads(STYLEGAN2_FIXTURE.with_suffix(".json").read_text())
    f = np.load(STYLEGAN2_FIXTURE)
    G = sg2.Generator(**meta["generator_kwargs"]).eval()
    G.load_state_dict({k[2:]: torch.from_numpy(f[k]) for k in f.files if k.startswith("G.")})
    with torch.no_grad():  # this G is NVlabs' network: it reproduces their outputs
        torch.testing.assert_close(G(torch.from_numpy(f["in.z"][:1]), torch.zeros(1, 0), noise_mode="const"),
                                   torch.from_numpy(f["out.img_const"][:1]), rtol=1e-4, atol=1e-4)  # fmt: skip
    path = write_nvlabs_pickle(tmp_path / "network-snapshot-000000.pkl", G, meta["generator_kwargs"])
    net = generate.load_generator(path, device="cpu")
    for psi in (1.0, 0.7):
        got = generate.sample(net, [0, 7, 2**32 - 1], truncation_psi=psi)
        for i, seed in enumerate([0, 7, 2**32 - 1]):
            z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()  # gen_images.py's z
            with torch.no_grad():
                want = G(z, torch.zeros(1, 0), truncation_psi=psi, noise_mode="const").clamp(-1, 1)
            torch.testing.assert_close(got[i : i + 1], want, rtol=1e-5, atol=1e-5)


def test_sample_is_deterministic_per_seed_and_batch_independent(G):
    from gankernels.generate.latents import z_for_seeds

    # A seed's latent does not depend on the other seeds of its call: bit for bit.
    assert torch.equal(z_for_seeds([3, 1, 4], 8)[[2, 0]], z_for_seeds([4, 3], 8))
    a = generate.sample(G, [3, 1, 4], batch_size=2)
    b = generate.sample(G, [4, 3], batch_size=1)
    assert a.shape == (3, 3, 16, 16) and a.dtype == torch.float32 and a.abs().max() <= 1
    # The images, to float32 rounding: the modulated convs run as one grouped conv over the batch, and oneDNN picks
    # a different kernel for 1 and for 2 groups (seen: 1.6e-6 apart after the network, on values ~0.05). The same
    # batch twice is exact.
    torch.testing.assert_close(a[[2, 0]], b, rtol=1e-4, atol=1e-5)
    assert torch.equal(generate.sample(G, [3, 1, 4], batch_size=2), a)
    r1 = generate.sample(G, [3, 1], noise_mode="random")
    r2 = generate.sample(G, [1], noise_mode="random")
    torch.testing.assert_close(r1[1:], r2)  # random noise seeded per image
    assert not torch.equal(r1[:1], a[:1])
    assert not torch.allclose(generate.sample(G, [3], truncation_psi=0.5), a[:1])
    cut = generate.sample(G, [3], truncation_psi=0.5, truncation_cutoff=2)
    assert not torch.allclose(cut, a[:1]) and not torch.allclose(cut, generate.sample(G, [3], truncation_psi=0.5))


def test_conditional_stylegan2_sample_grid():
    G = tiny_generator(c_dim=3)
    images, cols = generate.sample_grid(G, [0, 1])
    assert images.shape[0] == 6 and cols == 2
    each, names = generate.sample_images(G, [0, 1])
    assert torch.equal(each, images) and names[:3] == ["seed0000-class0.png", "seed0001-class0.png",
                                                       "seed0000-class1.png"]  # fmt: skip
    torch.testing.assert_close(images[2:4], generate.sample(G, [0, 1], class_idx=1))
    z = generate.z_for_seeds([1], 64)
    with torch.no_grad():
        want = G(z, torch.tensor([[0.0, 0.0, 1.0]]), noise_mode="const").clamp(-1, 1)
    torch.testing.assert_close(images[5:], want, rtol=1e-5, atol=1e-5)


def test_style_mix_layout(G):
    images, cols = generate.style_mix(G, [5, 6], [7, 8, 9], styles=[0, 1, 2])
    assert images.shape == (12, 3, 16, 16) and cols == 4
    assert torch.equal(images[0], torch.full_like(images[0], -1))  # the blank top-left cell
    rows, columns = generate.sample(G, [5, 6]), generate.sample(G, [7, 8, 9])
    torch.testing.assert_close(images[1:4], columns)  # across the top
    torch.testing.assert_close(images[[4, 8]], rows)  # down the left
    ws = generate.latents.to_w(_net(G), generate.z_for_seeds([6, 8], 64))
    mixed = ws[0].clone()
    mixed[:3] = ws[1][:3]  # row 6's w with column 8's coarse styles
    with torch.no_grad():
        want = G.synthesis(mixed[None], noise_mode="const")
    torch.testing.assert_close(images[10:11], want.clamp(-1, 1), rtol=1e-5, atol=1e-5)
    assert generate.default_styles(G.num_ws) == list(range(min(7, G.num_ws - 1)))


def _net(G):
    from gankernels.generate.loader import as_network

    return as_network(G)


def test_interpolate(G):
    frames = generate.interpolate(G, [0, 5, 9], frames=6)
    keys = generate.sample(G, [0, 5, 9])
    assert frames.shape == (6, 3, 16, 16)
    torch.testing.assert_close(frames[[0, 2, 4]], keys, rtol=1e-5, atol=1e-5)  # 6 frames over 3 looped segments
    open_walk = generate.interpolate(G, [0, 5], frames=3, space="w", spherical=True, loop=False)
    torch.testing.assert_close(open_walk[[0, 2]], generate.sample(G, [0, 5]), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(open_walk[1], open_walk[0])
    torch.testing.assert_close(generate.interpolate(G, [0, 5, 9], frames=6), frames)  # deterministic


def test_slerp():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    mid = slerp(a, b, torch.tensor([0.5]))
    torch.testing.assert_close(mid, torch.tensor([[2**-0.5, 2**0.5]]))
    torch.testing.assert_close(slerp(a, 3 * a, torch.tensor([0.5])), 2 * a)  # parallel: lerp


def test_latent_arithmetic(G):
    grid, cols = generate.latent_arithmetic(G, "1+2+3 - 4 + 5")
    assert cols == 4 and grid.shape == (16, 3, 16, 16)  # 3 seed rows + 1 mean row, 3 terms + the result
    z = generate.z_for_seeds([1, 2, 3, 4, 5], 64)
    result = z[:3].mean(0) - z[3] + z[4]
    with torch.no_grad():
        want = G(result[None], torch.zeros(1, 0), noise_mode="const").clamp(-1, 1)
    torch.testing.assert_close(grid[-1:], want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grid[[0, 4, 8]], generate.sample(G, [1, 2, 3]), rtol=1e-5, atol=1e-5)
    seed4 = generate.sample(G, [4])[0]
    torch.testing.assert_close(grid[1], seed4, rtol=1e-5, atol=1e-5)  # term 2's one seed, at the top
    assert torch.equal(grid[5], torch.full_like(grid[5], -1)) and torch.equal(grid[9], grid[5])  # then blanks
    torch.testing.assert_close(grid[13], seed4, rtol=1e-5, atol=1e-5)  # and its mean, the same image
    assert torch.equal(grid[3], grid[5])  # the result column is blank above the result
    flat, cols = generate.latent_arithmetic(G, "1 - 4 + 5", space="w")
    assert flat.shape[0] == 4 and cols == 4  # a single row
    ws = generate.latents.to_w(_net(G), z)
    with torch.no_grad():
        want = G.synthesis((ws[0] - ws[3] + ws[4])[None], noise_mode="const").clamp(-1, 1)
    torch.testing.assert_close(flat[-1:], want, rtol=1e-5, atol=1e-5)


def test_parse_expression():
    assert parse_expression("12 - 7 + 3") == [(1, [12]), (-1, [7]), (1, [3])]
    assert parse_expression(" 12+40+77 - 7,9 ") == [(1, [12, 40, 77]), (-1, [7, 9])]
    for bad in ["", "12 -7", "- 12", "12 +", "12 * 3", "a + 1", "12 + + 3", "1+", "12 4294967296"]:
        with pytest.raises(ValueError, match="expr"):
            parse_expression(bad)
    with pytest.raises(ValueError, match="out of range"):
        parse_expression("4294967296")


def test_dcgan_generation():
    torch.manual_seed(0)
    G = dcgan.Generator(nz=8, ngf=4, nc=3, resolution=32, num_classes=2).eval()
    images, cols = generate.sample_grid(G, [0, 1, 2])
    assert images.shape == (6, 3, 32, 32) and cols == 3
    with torch.no_grad():
        want = G(generate.z_for_seeds([2], 8), torch.tensor([1])).clamp(-1, 1)
    torch.testing.assert_close(images[5:], want)
    frames = generate.interpolate(G, [0, 1], frames=4, class_idx=0, spherical=True)
    assert frames.shape == (4, 3, 32, 32)
    grid, cols = generate.latent_arithmetic(G, "0 - 1 + 2", class_idx=1)
    assert grid.shape[0] == 4
    with pytest.raises(ValueError, match="needs a StyleGAN2"):
        generate.style_mix(G, [0], [1])
    with pytest.raises(ValueError, match="needs a StyleGAN2"):
        generate.interpolate(G, [0, 1], 3, space="w", class_idx=0)
    with pytest.raises(ValueError, match="truncation needs"):
        generate.sample(G, [0], class_idx=0, truncation_psi=0.5)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda G: generate.sample(G, [0], class_idx=0), ValueError, "unconditional"),
        (lambda G: generate.sample(G, [-1]), ValueError, "out of range"),
        (lambda G: generate.sample(G, [2**32]), ValueError, "out of range"),
        (lambda G: generate.sample(G, ["1"]), TypeError, "ints"),
        (lambda G: generate.sample(G, []), ValueError, "at least 1"),
        (lambda G: generate.sample(G, [0], noise_mode="loud"), ValueError, "noise_mode"),
        (lambda G: generate.sample(G, [0], truncation_cutoff=99), ValueError, "trunc-cutoff"),
        (lambda G: generate.sample(G, [0], batch_size=0), ValueError, "batch_size"),
        (lambda G: generate.style_mix(G, [0], [1], styles=[0, 99]), ValueError, "beyond the network's 6 style"),
        (lambda G: generate.style_mix(G, [0], [1], styles=[]), ValueError, "at least one"),
        (lambda G: generate.interpolate(G, [0, 1], frames=1), ValueError, "frames must be an int >= 2"),
        (lambda G: generate.interpolate(G, [0], frames=4), ValueError, "at least 2 seeds"),
        (lambda G: generate.interpolate(G, [0, 1], frames=4, space="x"), ValueError, "space"),
        (lambda G: generate.latent_arithmetic(G, "1 -2"), ValueError, "expected \\+ or -"),
    ],
)
def test_bad_input(G, call, error, match):
    with pytest.raises(error, match=match):
        call(G)


def test_wgan_gp_generation():
    from gankernels.models import wgan_gp

    torch.manual_seed(0)
    G = wgan_gp.ResNetGenerator(z_dim=8, channels=8, img_channels=3, resolution=8).eval()
    images = generate.sample(G, [0, 1])
    with torch.no_grad():
        torch.testing.assert_close(images, G(generate.z_for_seeds([0, 1], 8)).clamp(-1, 1))
    assert generate.interpolate(G, [0, 1], frames=3).shape == (3, 3, 8, 8)
    assert generate.sample_grid(G)[0].shape[0] == 16  # the default seeds 0-15


def test_class_checks():
    G = tiny_generator(c_dim=3)
    with pytest.raises(ValueError, match="conditional \\(3 classes"):
        generate.sample(G, [0])
    with pytest.raises(ValueError, match="3 is out of range for a network of 3 classes"):
        generate.sample(G, [0], class_idx=3)
    with pytest.raises(TypeError, match="class must be an int"):
        generate.sample(G, [0], class_idx="1")
