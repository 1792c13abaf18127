"""Metric names as NVlabs' metric_main.py: `<kind><count>[_full]`.

  fid<count>      FID of <count> generated images against the first <count> reals (fid50k: NVlabs' legacy metric)
  fid<count>_full FID of <count> generated images against every real image (fid50k_full: the standard one)
  kid<count>[_full]   KID, 100 subsets of at most 1000; _full: up to 1 000 000 reals
  pr<count><k>[_full] precision / recall with k neighbours; _full: up to 200 000 reals (pr50k3_full)

<count> is digits with an optional k (thousands): 50k, 10k, 2k, 1k, 500. For pr the digits after the count's k are
the neighbourhood size (pr50k3, pr1k10); without a k the last digit is (pr5003: 500 images, k=3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = ("fid", "kid", "pr")
FULL_MAX_REAL = {"fid": None, "kid": 1_000_000, "pr": 200_000}  # NVlabs' *_full: max_real
_PATTERN = re.compile(r"(fid|kid|pr)(\d+)(k?)(\d*)(_full)?")


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name. num_gen: generated images; max_real: reals used at most (None: all); k: PR's
    neighbourhood size (None for fid / kid)."""

    name: str
    kind: str
    num_gen: int
    max_real: int | None
    k: int | None = None

    def result_keys(self) -> tuple[str, ...]:
        """The keys of this metric's results: (name,), or name_precision / name_recall for pr."""
        return (f"{self.name}_precision", f"{self.name}_recall") if self.kind == "pr" else (self.name,)


def parse_metric(name: str) -> MetricSpec:
    """'fid50k_full' -> MetricSpec(kind='fid', num_gen=50000, max_real=None). ValueError naming a bad name."""
    if not isinstance(name, str):
        raise TypeError(f"metric must be a str, got {type(name).__name__}")
    match = _PATTERN.fullmatch(name.strip())
    problem = None
    if match is None:
        problem = "not of the form fid<count>[_full], kid<count>[_full] or pr<count><k>[_full]"
    else:
        kind, digits, thousands, tail, full = match.groups()
        if kind == "pr":
            if not thousands and not tail:
                digits, tail = digits[:-1], digits[-1:]
            if not digits or not tail:
                problem = "pr needs a count and a neighbourhood size, e.g. pr50k3 or pr1k3"
        elif tail:
            problem = f"{kind} takes a count only, e.g. {kind}50k or {kind}10k_full"
    if problem is None:
        count = int(digits) * (1000 if thousands else 1)
        k = int(tail) if kind == "pr" else None
        if count < 2:
            problem = "the count must be at least 2 images"
        elif k is not None and k < 1:
            problem = "the neighbourhood size must be at least 1"
    if problem is not None:
        raise ValueError(
            f"unknown metric {name!r}: {problem} (e.g. fid50k_full, kid50k_full, pr50k3_full, fid50k, fid10k, kid2k)"
        )
    max_real = FULL_MAX_REAL[kind] if full else count
    return MetricSpec(name=name.strip(), kind=kind, num_gen=count, max_real=max_real, k=k)


def parse_metrics(text) -> list[MetricSpec]:
    """'fid10k,kid2k' (or a list of names) -> [MetricSpec, ...], duplicates dropped, in order."""
    names = text.split(",") if isinstance(text, str) else list(text)
    specs, seen = [], set()
    for name in names:
        if not str(name).strip():
            continue
        spec = parse_metric(name)
        if spec.name not in seen:
            seen.add(spec.name)
            specs.append(spec)
    if not specs:
        raise ValueError(f"no metric named in {text!r}")
    return specs
