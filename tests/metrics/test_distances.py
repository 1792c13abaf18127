"""FID, KID and precision/recall on feature tensors: against float64 NumPy / SciPy, closed forms and known answers."""

import math

import numpy as np
import pytest
import torch

from gankernels.metrics import fid, frechet_distance, kid, precision_recall

try:
    import scipy.linalg
except ImportError:  # the library never needs SciPy; only this oracle does
    scipy = None
needs_scipy = pytest.mark.skipif(scipy is None, reason="scipy not installed (the float64 sqrtm oracle)")


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """NVlabs' formula in float64: biased covariances, scipy.linalg.sqrtm of the product, real part of the trace."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a = np.cov(a, rowvar=False, bias=True)
    s_b = np.cov(b, rowvar=False, bias=True)
    root = scipy.linalg.sqrtm(s_a @ s_b)
    return float(np.real(np.square(mu_a - mu_b).sum() + np.trace(s_a + s_b - 2 * root)))


def features(n, d, rank=None, seed=0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    if rank is None:
        x = torch.randn([n, d], generator=g, dtype=torch.float64)
    else:  # rows in a random rank-dimensional subspace: a rank-deficient covariance
        x = torch.randn([n, rank], generator=g, dtype=torch.float64) @ torch.randn([rank, d], generator=g,
                                                                                  dtype=torch.float64)  # fmt: skip
    return x * (1 + torch.rand([d], generator=g, dtype=torch.float64)) + shift


@needs_scipy
@pytest.mark.parametrize(
    "n_a, n_b, d, rank",
    [(200, 150, 16, None), (40, 30, 16, 5), (10, 12, 32, None), (8, 300, 24, None), (64, 64, 8, 3)],
    ids=["full-rank", "rank-deficient", "fewer-samples-than-dims", "mixed", "low-rank-square"],
)
def test_fid_matches_scipy(n_a, n_b, d, rank):
    a = features(n_a, d, rank, seed=1)
    b = features(n_b, d, rank, seed=2, shift=0.3)
    expected = scipy_fid(a.numpy(), b.numpy())
    got = fid(a.float(), b.float())  # float32 features, as an extractor gives them
    assert got == pytest.approx(scipy_fid(a.float().double().numpy(), b.float().double().numpy()), rel=1e-6, abs=1e-6)
    assert fid(a, b) == pytest.approx(expected, rel=1e-7, abs=1e-7)
    assert math.isfinite(got)


def test_fid_gaussian_closed_form_diagonal():
    """Diagonal (commuting) covariances: ||mu_a - mu_b||^2 + sum (sqrt(s_a) - sqrt(s_b))^2, no SciPy needed."""
    mu_a, mu_b = torch.tensor([0.0, 1.0, -2.0, 0.5], dtype=torch.float64), torch.tensor([1.0, 1.0, 0.0, 0.0])
    var_a, var_b = torch.tensor([1.0, 4.0, 0.25, 9.0], dtype=torch.float64), torch.tensor([4.0, 1.0, 1.0, 0.0])
    expected = float((mu_a - mu_b).square().sum() + (var_a.sqrt() - var_b.double().sqrt()).square().sum())
    assert frechet_distance(mu_a, torch.diag(var_a), mu_b, torch.diag(var_b)) == pytest.approx(expected, rel=1e-12)


def test_fid_gaussian_closed_form_commuting():
    """S_a = Q diag(l_a) Q^T, S_b = Q diag(l_b) Q^T: tr((S_a S_b)^(1/2)) = sum sqrt(l_a l_b)."""
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    l_a = torch.tensor([3.0, 2.0, 1.0, 0.5, 0.0, 0.0], dtype=torch.float64)  # singular
    l_b = torch.tensor([1.0, 0.0, 2.0, 2.0, 1.0, 0.1], dtype=torch.float64)
    s_a, s_b = q @ torch.diag(l_a) @ q.T, q @ torch.diag(l_b) @ q.T
    mu = torch.zeros(6, dtype=torch.float64)
    expected = float(l_a.sum() + l_b.sum() - 2 * (l_a * l_b).sqrt().sum())
    # singular: rounding-level eigenvalues (1e-16) have square roots of 1e-8, hence the absolute tolerance
    assert frechet_distance(mu, s_a, mu + 0.5, s_b) == pytest.approx(expected + 6 * 0.25, rel=1e-10, abs=1e-6)


def test_fid_of_exact_gaussian_samples_equals_their_closed_form():
    """Features whose sample mean / covariance are known exactly (a whitened sample, scaled): fid() on them equals
    the closed form for the Gaussians with those moments, through both code paths (N <= D and N > D)."""
    for n, d in ((6, 8), (40, 3)):
        z = torch.randn(n, d, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
        z = z - z.mean(0)
        scale_a, scale_b = torch.linspace(0.5, 2.0, d, dtype=torch.float64), torch.linspace(2.0, 1.0, d).double()
        a, b = z * scale_a + 1.0, z * scale_b
        cov_z = z.T @ z / n
        sa, sb = scale_a[:, None] * cov_z * scale_a[None], scale_b[:, None] * cov_z * scale_b[None]
        expected = frechet_distance(torch.ones(d), sa, torch.zeros(d), sb)
        assert fid(a, b) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_fid_identical_sets_is_zero_and_symmetric():
    a, b = features(30, 10, seed=3), features(50, 10, seed=4, shift=1.0)
    assert abs(fid(a, a)) < 1e-8
    assert fid(a, b) == pytest.approx(fid(b, a), rel=1e-9)


def test_fid_bad_input():
    a = features(10, 4)
    with pytest.raises(ValueError, match="at least 2"):
        fid(a[:1], a)
    with pytest.raises(ValueError, match="widths"):
        fid(a, a[:, :3])
    with pytest.raises(ValueError, match=r"shape \[N, D\]"):
        fid(a[0], a)
    bad = a.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fid(bad, a)
    with pytest.raises(TypeError, match="features_a"):
        fid(a.numpy(), a)


def test_frechet_distance_refuses_a_covariance_without_a_square_root():
    mu = torch.zeros(3, dtype=torch.float64)
    not_psd = torch.diag(torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="sigma_b is not positive semi-definite"):
        frechet_distance(mu, torch.eye(3), mu, not_psd)
    with pytest.raises(ValueError, match="sigma_a holds NaN"):
        frechet_distance(mu, torch.full([3, 3], float("inf")), mu, torch.eye(3))
    with pytest.raises(ValueError, match="sigma_b must have shape"):
        frechet_distance(mu, torch.eye(3), mu, torch.eye(2))


# ---------------------------------------------------------------------------------------------------------------
# KID


def kid_oracle(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 of the kernel (x.y / d + 1)^3 over all rows, by explicit sums in float64."""
    d = x.shape[1]
    k = lambda p, q: (p @ q.T / d + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())  # fmt: skip


def test_kid_matches_the_unbiased_mmd_when_one_subset_covers_everything():
    a, b = features(40, 6, seed=5), features(40, 6, seed=6, shift=0.5)
    # m = N: every subset is a permutation of all rows and the statistic does not depend on the order
    got = kid(a, b, num_subsets=3, max_subset_size=1000)
    assert got == pytest.approx(kid_oracle(a.numpy(), b.numpy()), rel=1e-10)


def test_kid_known_answers():
    g = torch.Generator().manual_seed(0)
    same_a, same_b = torch.randn(2000, 8, generator=g), torch.randn(2000, 8, generator=g)
    shifted = torch.randn(2000, 8, generator=g) + 1.0
    close = kid(same_a, same_b, num_subsets=10, max_subset_size=500)
    far = kid(same_a, shifted, num_subsets=10, max_subset_size=500)
    assert abs(close) < 0.01 and far > 0.1
    # D = 1, every row 0 vs every row 1: k(0, 0) = 1, k(1, 1) = 8, k(0, 1) = 1, so MMD^2 = 1 + 8 - 2 * 1 = 7
    zeros, ones = torch.zeros(5, 1), torch.ones(5, 1)
    assert kid(zeros, ones, num_subsets=2) == pytest.approx(7.0, rel=1e-12)


def test_kid_bad_input():
    a = features(10, 4)
    with pytest.raises(ValueError, match="num_subsets"):
        kid(a, a, num_subsets=0)
    with pytest.raises(ValueError, match="max_subset_size"):
        kid(a, a, max_subset_size=1)
    with pytest.raises(ValueError, match="features_b needs at least 2"):
        kid(a, a[:1])


# ---------------------------------------------------------------------------------------------------------------
# Precision / recall


def test_precision_recall_known_answers():
    reals = torch.arange(10, dtype=torch.float32)[:, None]  # 0, 1, ..., 9: with k = 1 every radius is 1
    fakes = torch.tensor([[0.5], [100.0]])  # one inside the reals' manifold, one far outside
    precision, recall = precision_recall(reals, fakes, k=1)
    assert precision == 0.5
    assert recall == 1.0  # the fakes' radius (|100 - 0.5|) covers every real
    assert precision_recall(reals, reals, k=3) == (1.0, 1.0)
    far = reals + 1000
    assert precision_recall(reals, far, k=3) == (0.0, 0.0)


def test_precision_recall_batched_equals_unbatched():
    g = torch.Generator().manual_seed(0)
    reals, fakes = torch.randn(60, 5, generator=g), torch.randn(45, 5, generator=g) * 1.3 + 0.2
    assert precision_recall(reals, fakes, k=3, batch_size=7) == precision_recall(reals, fakes, k=3, batch_size=1000)


def test_precision_recall_bad_input():
    a = features(10, 4)
    with pytest.raises(ValueError, match="k must be"):
        precision_recall(a, a, k=0)
    with pytest.raises(ValueError, match="fake_features needs at least 4"):
        precision_recall(a, a[:3], k=3)
