"""Percentiles of latency samples, computed the same way for every figure of the benchmark."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile (``fraction`` 0.5 for the median); None without samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float | None:
    """The middle sample (the mean of the two middle ones for an even count)."""
    if not samples:
        return None
    ordered = sorted(samples)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def summary(samples: Sequence[float]) -> dict[str, float | int | None]:
    """Count, median, p95, p99 and max of latencies in milliseconds, rounded for reading."""

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "count": len(samples),
        "p50": rounded(median(samples)),
        "p95": rounded(percentile(samples, 0.95)),
        "p99": rounded(percentile(samples, 0.99)),
        "max": rounded(max(samples) if samples else None),
    }
