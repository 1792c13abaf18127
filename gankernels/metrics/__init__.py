"""Evaluation: feature extractors (Inception-v3 through TorchScript) and FID / KID / precision-recall.

    from gankernels.metrics import load_inception, fid
    inception = load_inception()                      # see extractor.py for where the network comes from
    f_real = inception(real_uint8)                    # [N, 2048]
    score = fid(f_real, inception(fake_uint8))

Metric names (`parse_metric`) follow NVlabs: fid50k_full, kid50k_full, pr50k3_full, fid50k, and any count (fid10k,
fid500, kid2k, pr1k3). `evaluate` runs them on an image source (a training Task or a loaded network).
"""

from .distances import fid, frechet_distance, kid, precision_recall
from .extractor import (
    FeatureExtractor,
    TorchScriptExtractor,
    cache_dir,
    load_feature_extractor,
    load_inception,
    load_vgg16,
)
from .names import MetricSpec, parse_metric, parse_metrics

__all__ = [
    "FeatureExtractor",
    "MetricSpec",
    "TorchScriptExtractor",
    "cache_dir",
    "fid",
    "frechet_distance",
    "kid",
    "load_feature_extractor",
    "load_inception",
    "load_vgg16",
    "parse_metric",
    "parse_metrics",
    "precision_recall",
]
