"""The FIR filters of the augmentation pipeline (NVlabs' ADA, Karras et al. 2020, appendix B).

- `geometric_filter()`: the low-pass of the orthogonal symlet-6 wavelet (12 taps). The geometric transforms
  upsample 2x with it before the bilinear grid sample and downsample 2x with it (flipped) after, so that an
  identity transform reproduces the image and rotations do not alias.
- `filter_bank()`: [4, taps] band-pass filters that split an image into 4 octave bands (the symlet-2 low-pass and
  its quadrature mirror, zero-inserted per octave); the "imgfilter" augmentation scales each band's amplitude.

The taps are the standard wavelet coefficients (as tabulated by PyWavelets, in reconstruction order).
"""

from __future__ import annotations

import math

import numpy as np

# symlet 2 equals Daubechies 2, which has a closed form: (1 -+ sqrt 3), (3 -+ sqrt 3) over 4 sqrt 2.
_R3 = math.sqrt(3.0)
SYM2 = [(1 - _R3) / (4 * math.sqrt(2)), (3 - _R3) / (4 * math.sqrt(2)),
        (3 + _R3) / (4 * math.sqrt(2)), (1 + _R3) / (4 * math.sqrt(2))]  # fmt: skip
SYM6 = [
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
]  # fmt: skip
NUM_BANDS = 4
# The expected power of each band in natural images (a 1/f spectrum): the imgfilter gains are normalised by it so
# that an augmented image keeps its expected power.
EXPECTED_BAND_POWER = [10 / 13, 1 / 13, 1 / 13, 1 / 13]


def geometric_filter() -> list[float]:
    """The 12 taps of the symlet-6 low-pass (normalised to sum 1 by setup_filter)."""
    return list(SYM6)


def filter_bank(num_bands: int = NUM_BANDS) -> np.ndarray:
    """[num_bands, taps] float64: row 0 the lowest band, row num_bands - 1 the highest.

    With lo(z) the symlet-2 low-pass and hi(z) = lo(-z) its mirror, lo2 = lo(z) lo(1/z) / 2 and
    hi2 = hi(z) hi(1/z) / 2 are the zero-phase power-complementary pair (lo2 + hi2 = delta). Band i is built by
    starting from a delta, then for each octave i = 1 .. num_bands - 1: zero-insert every row (dilate by 2), smooth
    it with lo2, and add hi2 (centred) to row i. The rows sum to a delta: all gains 1 is the identity filter.
    """
    lo = np.asarray(SYM2, dtype=np.float64)
    hi = lo * (-1.0) ** np.arange(lo.size)
    lo2 = np.convolve(lo, lo[::-1]) / 2
    hi2 = np.convolve(hi, hi[::-1]) / 2
    bank = np.zeros([num_bands, 1])
    bank[0, 0] = 1.0
    for i in range(1, num_bands):
        dilated = np.zeros([num_bands, bank.shape[1] * 2 - 1])
        dilated[:, ::2] = bank
        bank = np.stack([np.convolve(row, lo2) for row in dilated])
        start = (bank.shape[1] - hi2.size) // 2
        bank[i, start : start + hi2.size] += hi2
    return bank
