"""Features of reals (cached, reused, invalidated when the data changes) and of generated images; metric names."""

import os

import numpy as np
import pytest
import torch

from gankernels.metrics import load_inception, parse_metric, parse_metrics
from gankernels.metrics.evaluate import evaluate
from gankernels.metrics.features import dataset_features, generated_features, to_uint8
from gankernels.training.data import ImageFolderDataset, ShapesDataset
from gankernels.training.images import write_png


class Counting:
    """A FeatureExtractor that counts the images it sees."""

    def __init__(self, inner):
        self.inner, self.seen = inner, 0
        self.feature_dim, self.identity, self.device = inner.feature_dim, inner.identity, inner.device

    def __call__(self, images):
        self.seen += images.shape[0]
        return self.inner(images)


def write_folder(root, n, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    for i in range(n):
        write_png(os.path.join(root, f"{i:03d}.png"), rng.integers(0, 256, [8, 8, 3], dtype=np.uint8))


def test_reals_cache_is_reused_extended_and_invalidated(tmp_path, tiny_inception):
    root = tmp_path / "data"
    write_folder(root, 6)
    net = Counting(load_inception(tiny_inception))
    dataset = ImageFolderDataset(root, 8)
    first = dataset_features(dataset, net, max_items=4, batch=3)
    assert net.seen == 4 and first.shape == (4, 2048)
    again = dataset_features(ImageFolderDataset(root, 8), net, max_items=4)
    assert net.seen == 4 and torch.equal(again, first)  # reused
    more = dataset_features(ImageFolderDataset(root, 8), net)
    assert net.seen == 6 and torch.equal(more[:4], first)  # extended by the two missing rows only
    os.utime(root / "001.png", ns=(1, 1))  # a file changed (its mtime): extracted again
    dataset_features(ImageFolderDataset(root, 8), net)
    assert net.seen == 12
    write_folder(root, 7, seed=1)  # new contents and a new file
    changed = dataset_features(ImageFolderDataset(root, 8), net)
    assert net.seen == 19 and not torch.equal(changed[:6], more)
    dataset_features(ImageFolderDataset(root, 16), net)  # another resolution: its own cache
    assert net.seen == 26
    dataset_features(ImageFolderDataset(root, 8), net, cache=False)
    assert net.seen == 33
    assert len(os.listdir(tmp_path / "cache" / "metrics")) == 2


def test_builtin_data_is_cached_per_extractor(tmp_path, tiny_inception):
    from .conftest import save_detector

    shapes = ShapesDataset(8, size=5)
    a = Counting(load_inception(tiny_inception))
    dataset_features(shapes, a)
    dataset_features(ShapesDataset(8, size=5), a)
    assert a.seen == 5
    b = Counting(load_inception(save_detector(tmp_path / "other.pt", seed=3)))
    dataset_features(shapes, b)
    assert b.seen == 5


def test_to_uint8_and_counts(tiny_inception):
    """NVlabs' conversion: x * 127.5 + 128, clamped, truncated; one channel repeated to three."""
    x = torch.tensor([-1.0, -0.5, 0.0, 1.0, 2.0]).reshape(1, 1, 1, 5)
    assert to_uint8(x)[0, :, 0].tolist() == [[0, 64, 128, 255, 255]] * 3
    with pytest.raises(ValueError, match="C 1 or 3"):
        to_uint8(torch.zeros(2, 2, 4, 4))
    net = load_inception(tiny_inception)
    with pytest.raises(ValueError, match="at least 2"):
        generated_features(iter([torch.zeros(1, 3, 4, 4)]), net, 10)
    with pytest.raises(ValueError, match="at least 2"):
        dataset_features(ShapesDataset(8, size=1), net)
    rows = generated_features((torch.zeros(4, 3, 4, 4) for _ in range(3)), net, 10)
    assert rows.shape == (10, 2048)


def test_metric_names():
    assert parse_metric("fid50k_full") == parse_metric("fid50k_full")
    spec = parse_metric("fid50k_full")
    assert (spec.kind, spec.num_gen, spec.max_real) == ("fid", 50000, None)
    assert (parse_metric("fid50k").max_real, parse_metric("kid50k_full").max_real) == (50000, 1_000_000)
    pr = parse_metric("pr50k3_full")
    assert (pr.num_gen, pr.max_real, pr.k, pr.result_keys()) == (
        50000, 200_000, 3, ("pr50k3_full_precision", "pr50k3_full_recall"))  # fmt: skip
    assert [(s.kind, s.num_gen, s.k) for s in parse_metrics("fid10k,fid500,kid2k,pr1k3,fid500")] == [
        ("fid", 10000, None), ("fid", 500, None), ("kid", 2000, None), ("pr", 1000, 3)]  # fmt: skip
    for bad in ("is50k", "fid", "fid50k_ful", "kid2k3", "pr50k", "fid1", ""):
        with pytest.raises(ValueError, match="metric"):
            parse_metrics(bad)


class Source:
    """An image source: reals are built-in shapes; fakes the same shapes (so FID ~ 0 with enough of them)."""

    def __init__(self, n):
        self.data = ShapesDataset(8, size=n)

    def eval_reals(self, data=None):
        return self.data

    def eval_images(self, count, batch=64, seed=0):
        for start in range(0, count, batch):
            yield torch.stack([self.data[i % len(self.data)] for i in range(start, min(start + batch, count))])


def test_evaluate_shares_features_and_reports_each_metric(tiny_inception):
    net = Counting(load_inception(tiny_inception))
    results = evaluate(Source(12), "fid12,kid10,pr103_full", net, batch=5)
    assert [r["metric"] for r in results] == ["fid12", "kid10", "pr103_full"]
    assert net.seen == 12 + 12  # reals: the 12 that fid12 / pr103_full need; fakes: the largest count
    assert results[0]["results"]["fid12"] == pytest.approx(0.0, abs=1e-6)
    assert results[2]["results"] == {"pr103_full_precision": 1.0, "pr103_full_recall": 1.0}
    assert results[1]["num_real"] == 10 and results[1]["num_gen"] == 10


def test_precision_recall_on_vgg16_when_given(tmp_path, tiny_inception, monkeypatch):
    """NVlabs compute pr50k3 on VGG16 features: with one given, PR uses it and FID still uses Inception; the
    generated images are made once for both."""
    from gankernels.metrics import load_vgg16

    from .conftest import save_detector

    assert load_vgg16() is None  # nothing given, nothing cached: PR falls back to the Inception features
    with pytest.raises(ValueError, match="expected 4096"):
        load_vgg16(tiny_inception)
    monkeypatch.setenv("GANKERNELS_VGG16", save_detector(tmp_path / "vgg16.pt", dim=4096))
    vgg = Counting(load_vgg16())
    inception = Counting(load_inception(tiny_inception))
    results = evaluate(Source(12), "fid10,pr123", inception, batch=5, pr_extractor=vgg)
    assert (inception.seen, vgg.seen) == (10 + 12, 12 + 12)
    assert results[0]["feature_network"] == inception.identity and results[1]["feature_network"] == vgg.identity
    only_pr = Counting(load_inception(tiny_inception))
    evaluate(Source(12), "pr123", only_pr, pr_extractor=vgg)
    assert only_pr.seen == 0
