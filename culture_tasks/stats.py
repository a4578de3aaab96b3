"""Percentile bootstrap intervals, seeded so that two aggregates over the same items are paired."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np


def bootstrap_ci(aggregate: Callable[[list], float], items: Sequence, *, iters: int = 1000, seed: int = 1234,
                 level: float = 0.95) -> tuple[float, float]:
    """(low, high) of ``aggregate`` over ``iters`` resamples of ``items`` drawn with replacement."""
    items = list(items)
    if not items or iters < 1:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(iters):
        v = float(aggregate([items[i] for i in rng.integers(0, len(items), len(items))]))
        if not math.isnan(v):
            values.append(v)
    if not values:
        return math.nan, math.nan
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))
