"""Model answers as option distributions, and their distance to a population's answers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# scipy is imported where used: its stats, spatial and special modules take over a second to import, which every
# command and every lm_eval process loading these tasks would pay at start


def option_distribution(loglikelihoods: Sequence[float]) -> np.ndarray:
    """Normalised probabilities of the options from the log-likelihoods of their labels."""
    from scipy.special import softmax

    return softmax(np.asarray(loglikelihoods, dtype=np.float64))


def item_score(probs: Sequence[float], values: Sequence[float], mode: str = "expected") -> float:
    """The item's answer: the expected option value (default) or the most likely option's value."""
    if mode == "expected":
        return float(np.dot(probs, values))
    if mode == "argmax":
        return float(values[int(np.argmax(probs))])
    raise ValueError(f"answer mode must be 'expected' or 'argmax', got {mode!r}")


def jsd_similarity(p: Sequence[float], q: Sequence[float]) -> float:
    """1 - Jensen-Shannon distance with base-2 logarithms: 1 for identical, 0 for disjoint."""
    from scipy.spatial.distance import jensenshannon

    return float(1.0 - jensenshannon(np.asarray(p, float), np.asarray(q, float), base=2))


def w1_similarity(p: Sequence[float], q: Sequence[float]) -> float:
    """1 - W1(p, q) / (N - 1) over the ordinal positions 0..N-1 (OpinionQA representativeness)."""
    from scipy.stats import wasserstein_distance

    positions = np.arange(len(p), dtype=float)
    if len(p) < 2:
        return 1.0
    return float(1.0 - wasserstein_distance(positions, positions, p, q) / (len(p) - 1))


def majority_agreement(p: Sequence[float], q: Sequence[float]) -> float:
    """1 if the model's most likely answer is a most common answer of the population, else 0.

    A tie is no choice by position: every answer the population chose most often is its majority
    answer (Brazil's Q231: codes 3 and 4, 33.0 % each), and a model torn between its top answers
    gets the share of them that are (1/2 when one of two is)."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    top_p, top_q = p == p.max(), q == q.max()
    return float(np.count_nonzero(top_p & top_q) / np.count_nonzero(top_p))
