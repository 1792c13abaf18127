"""FID, KID and precision/recall on feature tensors [N, D], as NVlabs' stylegan2-ada-pytorch metrics compute them.

- `fid(a, b)`: the Fréchet distance between Gaussians fitted to the two feature sets,
  ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)), covariances normalised by N (NVlabs' FeatureStats).
  Computed in float64 with torch, no SciPy: with S = F F^T for any factor F [D, r], the eigenvalues of S_a S_b are
  the squared singular values of F_a^T F_b, so tr((S_a S_b)^(1/2)) is the sum of the singular values of F_a^T F_b.
  The factor is the centred features themselves (F = X_c^T / sqrt(N)) when N <= D, which needs no decomposition
  and is exact for rank-deficient covariances; otherwise F = V diag(sqrt(w)) from the eigendecomposition of S.
- `kid(a, b)`: the unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / D + 1)^3, averaged over
  `num_subsets` random subsets of min(N_a, N_b, max_subset_size) rows of each (NVlabs: 100 subsets of 1000).
- `precision_recall(real, fake, k=3)`: the k-NN manifolds of Kynkäänniemi et al.: precision is the fraction of fakes
  inside some real's k-th-neighbour ball, recall the fraction of reals inside some fake's.

A covariance that cannot be square-rooted (non-finite values, a matrix that is not positive semi-definite) raises
ValueError; nothing here returns NaN.
"""

from __future__ import annotations

import torch

__all__ = ["fid", "frechet_distance", "kid", "precision_recall"]


def _check_features(x, name: str, min_rows: int = 2) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [N, D], got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape [N, D], got {list(x.shape)}")
    if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64, torch.uint8)):
        raise TypeError(f"{name} must be a real tensor, got {x.dtype}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows (feature vectors of images), got {x.shape[0]}")
    if x.shape[1] < 1:
        raise ValueError(f"{name} has no feature columns: {list(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return x


def _check_pair(a, b, names=("features_a", "features_b"), min_rows=2):
    a, b = _check_features(a, names[0], min_rows), _check_features(b, names[1], min_rows)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names[0]} and {names[1]} have different widths: {a.shape[1]} vs {b.shape[1]}")
    return a, b.to(a.device)


def _psd_factor(sigma: torch.Tensor, name: str) -> torch.Tensor:
    """F [D, r] with F F^T = sigma (float64, symmetric): eigenvectors scaled by the square roots of the eigenvalues.
    Rounding-level negative eigenvalues are clipped; a clearly negative one means sigma is no covariance."""
    try:
        w, v = torch.linalg.eigh(sigma)
    except RuntimeError as e:  # torch.linalg.LinAlgError: did not converge
        raise ValueError(f"{name}: the eigendecomposition of the covariance failed: {e}") from e
    scale = float(w.abs().max()) if w.numel() else 0.0
    tolerance = 1e-8 * max(scale, 1e-300) * sigma.shape[0] ** 0.5
    if float(w.min()) < -tolerance:
        raise ValueError(
            f"{name} is not positive semi-definite (eigenvalue {float(w.min()):.3g}, largest {scale:.3g}): "
            "it has no real square root"
        )
    return v * w.clamp(min=0).sqrt()[None, :]


def _trace_sqrt_product(factor_a: torch.Tensor, factor_b: torch.Tensor) -> torch.Tensor:
    """tr((S_a S_b)^(1/2)) for S = F F^T: the nuclear norm of F_a^T F_b."""
    try:
        return torch.linalg.svdvals(factor_a.T @ factor_b).sum()
    except RuntimeError as e:
        raise ValueError(f"the square root of the covariance product could not be computed: {e}") from e


def frechet_distance(mu_a, sigma_a, mu_b, sigma_b) -> float:
    """The Fréchet distance between N(mu_a, sigma_a) and N(mu_b, sigma_b): mu [D], sigma [D, D] (symmetric PSD),
    computed in float64. ValueError for mismatched shapes, non-finite values or a sigma that is not PSD."""
    tensors = {}
    for name, value, rank in (("mu_a", mu_a, 1), ("sigma_a", sigma_a, 2), ("mu_b", mu_b, 1), ("sigma_b", sigma_b, 2)):
        value = torch.as_tensor(value)
        if value.dim() != rank:
            raise ValueError(f"{name} must have {rank} dimension(s), got shape {list(value.shape)}")
        if not torch.isfinite(value).all():
            raise ValueError(f"{name} holds NaN or infinite values")
        tensors[name] = value.to(torch.float64)
    d = tensors["mu_a"].shape[0]
    for name in ("sigma_a", "sigma_b"):
        if tuple(tensors[name].shape) != (d, d):
            raise ValueError(f"{name} must have shape [{d}, {d}] to match mu_a, got {list(tensors[name].shape)}")
    if tensors["mu_b"].shape[0] != d:
        raise ValueError(f"mu_b must have {d} entries to match mu_a, got {tensors['mu_b'].shape[0]}")
    device = tensors["mu_a"].device
    s_a, s_b = (0.5 * (tensors[n] + tensors[n].T).to(device) for n in ("sigma_a", "sigma_b"))
    mean_term = (tensors["mu_a"] - tensors["mu_b"].to(device)).square().sum()
    trace_sqrt = _trace_sqrt_product(_psd_factor(s_a, "sigma_a"), _psd_factor(s_b, "sigma_b"))
    return float(mean_term + s_a.trace() + s_b.trace() - 2 * trace_sqrt)


def _mean_and_factor(x: torch.Tensor, name: str):
    """mean [D], a factor F of the covariance (normalised by N), and its trace, in float64."""
    x = x.to(torch.float64)
    n, d = x.shape
    mean = x.mean(0)
    centred = x - mean
    trace = centred.square().sum() / n
    if n <= d:  # S = X_c^T X_c / N: the centred rows are an exact factor, however rank-deficient
        return mean, centred.T / n**0.5, trace
    return mean, _psd_factor(centred.T @ centred / n, name), trace


def fid(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet Inception Distance between two feature sets: features_a [N_a, D], features_b [N_b, D], N >= 2 each
    (any N, including fewer samples than dimensions). Float64 throughout, on features_a's device."""
    a, b = _check_pair(features_a, features_b)
    mu_a, f_a, tr_a = _mean_and_factor(a, "the covariance of features_a")
    mu_b, f_b, tr_b = _mean_and_factor(b, "the covariance of features_b")
    value = (mu_a - mu_b).square().sum() + tr_a + tr_b - 2 * _trace_sqrt_product(f_a, f_b)
    return float(value)


def kid(features_a: torch.Tensor, features_b: torch.Tensor, num_subsets: int = 100, max_subset_size: int = 1000,
        seed: int = 0) -> float:  # fmt: skip
    """Kernel Inception Distance: the unbiased MMD^2 of the cubic polynomial kernel (x.y / D + 1)^3, averaged over
    `num_subsets` pairs of random subsets (without replacement) of m = min(N_a, N_b, max_subset_size) rows.

    features_a [N_a, D], features_b [N_b, D], N >= 2 each. Kernel matrices in float32 as NVlabs' (float64 when the
    features are float64), sums in float64. `seed` fixes the subsets.
    """
    a, b = _check_pair(features_a, features_b)
    for name, value in (("num_subsets", num_subsets), ("max_subset_size", max_subset_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (2 if name == "max_subset_size" else 1):
            raise ValueError(f"{name} must be an int >= {2 if name == 'max_subset_size' else 1}, got {value!r}")
    dtype = torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32
    a, b = a.to(dtype), b.to(dtype)
    d = a.shape[1]
    m = min(a.shape[0], b.shape[0], max_subset_size)
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros([], dtype=torch.float64, device=a.device)
    for _ in range(num_subsets):
        x = a[torch.randperm(a.shape[0], generator=generator)[:m].to(a.device)]
        y = b[torch.randperm(b.shape[0], generator=generator)[:m].to(b.device)]
        k_xx = (x @ x.T / d + 1) ** 3
        k_yy = (y @ y.T / d + 1) ** 3
        k_xy = (x @ y.T / d + 1) ** 3
        within = k_xx.sum(dtype=torch.float64) + k_yy.sum(dtype=torch.float64)
        diagonal = k_xx.diagonal().sum(dtype=torch.float64) + k_yy.diagonal().sum(dtype=torch.float64)
        total += (within - diagonal) / (m - 1) - k_xy.sum(dtype=torch.float64) * 2 / m
    return float(total / num_subsets / m)


def _kth_neighbour_radii(manifold: torch.Tensor, k: int, batch: int) -> torch.Tensor:
    """Distance from each row of manifold [M, D] to its k-th nearest other row: [M]."""
    radii = []
    for rows in manifold.split(batch):
        smallest = None  # the k + 1 smallest distances so far (the row itself is one of them, at 0)
        for cols in manifold.split(batch):
            dist = torch.cdist(rows, cols)
            merged = dist if smallest is None else torch.cat([smallest, dist], dim=1)
            smallest = merged.topk(min(k + 1, merged.shape[1]), dim=1, largest=False).values
        radii.append(smallest[:, k])
    return torch.cat(radii)


def _inside_any_ball(probes: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, batch: int) -> torch.Tensor:
    """For each probe [P, D]: whether it lies within radii[j] of some centres[j]. -> bool [P]."""
    inside = []
    for rows in probes.split(batch):
        hit = torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device)
        for cols, r in zip(centres.split(batch), radii.split(batch), strict=True):
            hit |= (torch.cdist(rows, cols) <= r[None, :]).any(dim=1)
        inside.append(hit)
    return torch.cat(inside)


def precision_recall(real_features: torch.Tensor, fake_features: torch.Tensor, k: int = 3,
                     batch_size: int = 10000) -> tuple[float, float]:  # fmt: skip
    """Improved precision and recall (Kynkäänniemi et al. 2019), NVlabs' pr50k3 with nhood_size k.

    real_features [N_r, D], fake_features [N_f, D], more than k rows each. precision: the fraction of fakes within
    the k-th-nearest-neighbour distance of some real; recall: the fraction of reals within that of some fake.
    Distances in float32 (NVlabs: float16), `batch_size` rows x columns at a time. -> (precision, recall).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    real, fake = _check_pair(real_features, fake_features, ("real_features", "fake_features"), min_rows=k + 1)
    real, fake = real.to(torch.float32), fake.to(torch.float32)
    results = []
    for manifold, probes in ((real, fake), (fake, real)):
        radii = _kth_neighbour_radii(manifold, k, batch_size)
        results.append(float(_inside_any_ball(probes, manifold, radii, batch_size).float().mean()))
    return results[0], results[1]
