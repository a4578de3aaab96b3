"""Seeded bootstrap intervals for corpus-level metrics, and their lm-eval companion metrics.

Every corpus metric ``m`` of the tasks gets two companion metrics, ``m_ci_low`` and
``m_ci_high``: the same per-document items, aggregated into the bounds of a 95 % percentile
bootstrap interval of ``m`` (documents resampled with replacement, ``ITERS`` resamples, numpy
``Generator`` seeded with ``SEED``). The seed is fixed, so a rerun prints identical intervals.

Items are put into one canonical order before resampling, so an interval depends only on the
multiset of items: lm-eval gathers items across processes in rank order, and the interval must
not change with the number of processes or the batch size.

An aggregate may carry a vectorised form as its ``batched`` attribute: ``batched(items, idx)``
takes the items and an ``(iters, n)`` index matrix and returns the ``iters`` statistics at
once. Without it the aggregate is called once per resample. An aggregate with a ``strata``
attribute (item -> key) is resampled within each stratum: ``TaskMean``, a culture's or the
suite's mean over tasks, keeps every task and its number of documents in every resample.
An aggregate of 0 / 1 scores may carry ``alike_ci(items, level)``: when every resample is the same
(every document scored alike) the percentile interval is a point, which would read as certainty;
it gives the exact interval instead (``exact_share_ci``), or None to keep the point.
``cluster_mean`` takes per-cluster ``(sum, count)`` items, so documents that are not independent
(the countries of one question) are resampled and exchanged as one unit.
"""

from __future__ import annotations

import logging
import math
import sys
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Mapping, Sequence

import numpy as np

log = logging.getLogger("culture_tasks")

ITERS = 1000
SEED = 1234
MIN_ITEMS = 2  # fewer documents give no interval; an aggregate's ``min_items`` attribute may ask for more
LEVEL = 0.95
CI_SUFFIXES = ("_ci_low", "_ci_high")


def _canonical(items: Sequence) -> list:
    return sorted(items, key=repr)


def resample_indices(n: int, iters: int, seed: int) -> np.ndarray:
    """``(iters, n)`` indices drawn with replacement; the same for every metric with this ``n``."""
    return np.random.default_rng(seed).integers(0, n, size=(iters, n))


def stratified_indices(keys: Sequence, iters: int, seed: int) -> np.ndarray:
    """``(iters, n)`` indices that resample within each stratum: position i is replaced by a draw
    from the positions that share its key. The k-th stratum in sorted key order draws from its
    own stream seeded ``seed + k``, so a single stratum gives ``resample_indices(n, iters, seed)``."""
    keys = list(keys)
    idx = np.empty((iters, len(keys)), dtype=np.int64)
    for k, key in enumerate(sorted(set(keys))):
        positions = np.array([i for i, x in enumerate(keys) if x == key])
        draws = np.random.default_rng(seed + k).integers(0, len(positions), size=(iters, len(positions)))
        idx[:, positions] = positions[draws]
    return idx


def min_items(aggregate: Callable) -> int:
    """The documents an interval of ``aggregate`` needs (per stratum for a stratified one): its
    ``min_items`` attribute where a bootstrap of it is known not to hold its value on fewer
    (macro-F1, ``classification.MIN_DOCS``), else ``MIN_ITEMS``."""
    return max(MIN_ITEMS, int(getattr(aggregate, "min_items", MIN_ITEMS)))


def enough_items(aggregate: Callable, items: Sequence) -> bool:
    """Whether ``items`` are enough for an interval of ``aggregate``: ``MIN_ITEMS`` in all, and for a
    stratified aggregate (``TaskMean``) ``min_items`` of its per-stratum statistic in every stratum and
    ``MIN_ITEMS`` in some stratum (one item in each: every resample is the items themselves, as one item is)."""
    if len(items) < MIN_ITEMS:
        return False
    strata = getattr(aggregate, "strata", None)
    if strata is None:
        return len(items) >= min_items(aggregate)
    counts = defaultdict(int)
    for item in items:
        counts[strata(item)] += 1
    return min(counts.values()) >= getattr(aggregate, "min_per_stratum", 1) and max(counts.values()) >= MIN_ITEMS


def _indices(aggregate: Callable, items: list, iters: int, seed: int) -> np.ndarray:
    strata = getattr(aggregate, "strata", None)
    if strata is None:
        return resample_indices(len(items), iters, seed)
    return stratified_indices([strata(item) for item in items], iters, seed)


def _statistics(aggregate: Callable, items: list, idx: np.ndarray) -> np.ndarray:
    batched = getattr(aggregate, "batched", None)
    if batched is not None:
        return np.asarray(batched(items, idx), dtype=float)
    return np.array([aggregate([items[i] for i in row]) for row in idx], dtype=float)


def exact_share_ci(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """The Clopper-Pearson interval of a share whose ``values`` (0 / 1) are all 0 or all 1, where every
    bootstrap resample is the same and the percentile interval [0, 0] would read as certainty: [0, 1 - (α/2)^(1/n)]
    for 0 of n (20 documents without a parse failure: [0, 0.168]), [(α/2)^(1/n), 1] for n of n."""
    values = np.asarray(values, dtype=float)
    tail = ((1.0 - level) / 2.0) ** (1.0 / len(values))
    if (values == 0).all():
        return 0.0, float(1.0 - tail)
    if (values == 1).all():
        return float(tail), 1.0
    raise ValueError("exact_share_ci: the values are not all 0 or all 1")


def alike_share_ci(values: Sequence[float], level: float = LEVEL) -> tuple[float, float] | None:
    """``exact_share_ci`` where the ``values`` are all 0 or all 1, else None (the percentile interval stands): for a
    mean of 0 / 1 scores with a half-credit score between (``wvs_majority``: 1/2 for a tie), whose resamples agree
    also when every value is 1/2."""
    values = np.asarray(values, dtype=float)
    return exact_share_ci(values, level) if (values == 0).all() or (values == 1).all() else None


def alike_mean_ci(intervals: Sequence[tuple[float, float]], level: float = LEVEL) -> tuple[float, float] | None:
    """The exact interval of an unweighted mean of independent shares that are all 0 (or all 1), from each share's
    Clopper-Pearson interval (``exact_share_ci``): the mean of shares of n_1..n_T documents has the variance of one
    share of n_eff = T² / Σ 1/n_t documents (n_t documents each: T n), so its bound is that of 0 (or n_eff) of
    n_eff. None where the shares are not all at the same end (mixed 0 and 1 shares: keep the percentile one)."""
    alpha = (1.0 - level) / 2.0
    if intervals and all(low == 0.0 and high < 1.0 for low, high in intervals):
        sizes = [math.log(alpha) / math.log(1.0 - high) for _, high in intervals]
        return alike_bound(len(sizes) ** 2 / sum(1.0 / n for n in sizes), False, level)
    if intervals and all(high == 1.0 and low > 0.0 for low, high in intervals):
        sizes = [math.log(alpha) / math.log(low) for low, _ in intervals]
        return alike_bound(len(sizes) ** 2 / sum(1.0 / n for n in sizes), True, level)
    return None


def alike_bound(n_eff: float, ones: bool, level: float = LEVEL) -> tuple[float, float]:
    """``exact_share_ci`` of 0 (``ones``: n_eff) of ``n_eff`` independent units, n_eff not necessarily whole: the
    exact interval of a mean of alike shares that has one share's variance of so many units (``alike_mean_ci``)."""
    tail = ((1.0 - level) / 2.0) ** (1.0 / n_eff)
    return (float(tail), 1.0) if ones else (0.0, float(1.0 - tail))


def percentile_interval(stats: Sequence[float] | np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of bootstrap statistics, NaN resamples left out (NaN when all are)."""
    stats = np.asarray(stats, dtype=float)
    finite = stats[~np.isnan(stats)]
    if finite.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    low, high = np.percentile(finite, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


RANK_NOISE = 1e-9  # a rank bound this close to a whole rank is that rank: float noise (7.0000000001), not a fraction


def rank_interval_text(low: float, high: float) -> str:
    """A rank's interval as printed, "[6, 52]" for [6.6, 51.3]: the narrowest interval of whole ranks that holds
    the computed one (low floored, high ceiled), so it is never shown narrower than it is, as rounding to the
    nearest rank would ([7, 51]). Whole ranks rather than one decimal: a rank is a whole number, and a bound's
    fraction is only np.percentile's interpolation between two resampled ranks. A bound within ``RANK_NOISE`` of
    a whole rank is that rank (10.024999999999977 is 10.025, 11; 7.0000000001 is 7); NaN (no interval) prints
    as nan."""
    def shown(bound: float, outward) -> str:
        if math.isnan(bound):
            return "nan"
        nearest = round(bound)
        return str(int(nearest if abs(bound - nearest) <= RANK_NOISE else outward(bound)))

    return f"[{shown(low, math.floor)}, {shown(high, math.ceil)}]"


def t_interval(values: Sequence[float], level: float = LEVEL,
               bounds: tuple[float, float] = (-math.inf, math.inf)) -> tuple[float, float, float]:
    """The mean of a few independent replicates (training seeds, targets) with its t-interval (n - 1 degrees of
    freedom), cut to the metric's ``bounds`` (a share lies in 0..1, a rank in 1..countries): with 2-7 replicates a
    bootstrap over them is far too narrow. NaN bounds for fewer than two."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return (float(values.mean()) if values.size else float("nan")), float("nan"), float("nan")
    from scipy.stats import t

    centre = float(values.mean())
    half = float(t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return centre, max(centre - half, bounds[0]), min(centre + half, bounds[1])


def bootstrap_ci(aggregate: Callable[[Sequence], float], items: Sequence, *, iters: int = ITERS,
                 seed: int = SEED, level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of ``aggregate(items)``, resampling the items.

    Resamples whose statistic is NaN (a category absent from the resample) are left out; the
    interval is NaN when every resample is, when the statistic of all the items is (a document
    without a finite score: resamples that happen to leave it out would give an interval of the
    other documents), and when there are fewer than ``MIN_ITEMS`` items (one document resampled
    is that document again: a zero-width interval would read as certainty), or fewer than the
    aggregate's own ``min_items`` (``enough_items``).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    items = _canonical(items)
    if not enough_items(aggregate, items) or not np.isfinite(aggregate(items)):
        return float("nan"), float("nan")  # no interval around a NaN (a document without a finite score)
    low, high = percentile_interval(bootstrap_statistics(aggregate, items, iters=iters, seed=seed), level)
    alike = getattr(aggregate, "alike_ci", None)  # every document scored alike: every resample is the same
    exact = alike(items, level) if alike is not None and low == high else None  # None: keep the percentile one
    return exact if exact is not None else (low, high)


def bootstrap_statistics(aggregate: Callable[[Sequence], float], items: Sequence, *, iters: int = ITERS,
                         seed: int = SEED) -> np.ndarray:
    """``aggregate`` of each of ``bootstrap_ci``'s resamples (NaN where it is undefined), for a caller that must
    know how many resamples left it undefined before it trusts their percentile interval."""
    items = _canonical(items)
    return _statistics(aggregate, items, _indices(aggregate, items, iters, seed))


def paired_bootstrap(aggregate: Callable[[Sequence], float], items_a: Sequence, items_b: Sequence, *,
                     iters: int = ITERS, seed: int = SEED, level: float = LEVEL) -> dict[str, float]:
    """Difference ``aggregate(b) - aggregate(a)`` on the same documents: its bootstrap interval and
    a randomisation p-value.

    ``items_a[i]`` and ``items_b[i]`` belong to the same document (base vs. checkpoint). The
    interval resamples the documents with the same indices for both runs, so what the documents
    share cancels (NaN where ``enough_items`` says the documents are too few). The two-sided p-value is the paired
    approximate randomisation test (the usual test for NLP metrics, macro-F1 included): if the
    runs do not differ, the two outputs of a document are exchangeable, so each of ``iters``
    rounds swaps every document's pair with probability 1/2 and recomputes the difference;
    p = (1 + rounds with |difference| >= the observed one) / (1 + ``iters``). It never reaches 0,
    identical inputs give 1, and it needs many documents to get small: two documents give about
    0.5 however large their difference, five that all moved the same way about 0.06 (the exact
    sign test's 2/32), where a bootstrap p-value would be 0 for both.

    The two can disagree where few documents differ: of 30 documents with 5 that moved one way, a resample
    draws none of the 5 with chance (25/30)^30 ≈ 0.4 %, under the 2.5 % tail, so the percentile interval
    excludes 0 while the test's p stays near 2/32. The test is the one whose error rate is known at any number
    of differing documents; the interval is the difference's spread. A caller that marks a difference marks
    it by the p-value and says where the interval excludes 0 without it (``leaderboard.Cell.disagreement``).
    """
    if len(items_a) != len(items_b):
        raise ValueError(f"paired items differ in length: {len(items_a)} vs {len(items_b)}")
    nan = float("nan")
    if not items_a:
        return {"diff": nan, "low": nan, "high": nan, "p_value": nan}
    pairs = sorted(zip(items_a, items_b), key=repr)
    a = [x for x, _ in pairs]
    b = [y for _, y in pairs]
    diff = float(aggregate(b) - aggregate(a))
    low, high = paired_interval(aggregate, a, b, iters=iters, seed=seed, level=level)
    return {"diff": diff, "low": low, "high": high, "p_value": randomisation_p(aggregate, a, b, diff, iters, seed)}


def paired_interval(aggregate: Callable[[Sequence], float], items_a: Sequence, items_b: Sequence, *,
                    iters: int = ITERS, seed: int = SEED, level: float = LEVEL) -> tuple[float, float]:
    """``paired_bootstrap``'s interval alone: the same resample indices for both lists (``items_a[i]`` and
    ``items_b[i]`` one document, in this order), for two statistics of the same documents whose items cannot be
    swapped between them, as the randomisation test would (weighted and unweighted macro-F1). NaN where
    ``enough_items`` says the documents are too few or the difference is not finite."""
    diff = aggregate(items_b) - aggregate(items_a)
    if not enough_items(aggregate, items_a) or not math.isfinite(diff):
        return float("nan"), float("nan")
    idx = _indices(aggregate, items_a, iters, seed)
    return percentile_interval(_statistics(aggregate, items_b, idx) - _statistics(aggregate, items_a, idx), level)


def randomisation_p(aggregate: Callable[[Sequence], float], a: Sequence, b: Sequence, diff: float,
                    iters: int, seed: int) -> float:
    """Two-sided p-value of ``diff`` = aggregate(b) - aggregate(a) under random swaps within pairs:
    the runs' items side by side (``a + b``), each round picking every document's item of one run or
    the other, so a vectorised aggregate scores all rounds at once."""
    if not np.isfinite(diff):
        return float("nan")
    n = len(a)
    swap = swap_rounds(n, iters, seed)
    own = np.arange(n)[None, :]
    both = list(a) + list(b)
    diffs = _statistics(aggregate, both, own + n * (1 - swap)) - _statistics(aggregate, both, own + n * swap)
    return randomisation_share(diffs, diff)


def swap_rounds(n: int, iters: int, seed: int) -> np.ndarray:
    """The randomisation test's rounds: (iters, n) of 0 / 1, 1 = the pair's two outputs swapped."""
    return np.random.default_rng((seed, 1)).integers(0, 2, size=(iters, n))


def randomisation_share(diffs: np.ndarray, diff: float) -> float:
    """The two-sided p-value of ``diff`` among the rounds' differences ``diffs`` (NaN rounds left out):
    (1 + rounds with |difference| >= |diff|) / (1 + rounds)."""
    if not np.isfinite(diff):
        return float("nan")
    diffs = np.asarray(diffs, dtype=float)
    diffs = diffs[~np.isnan(diffs)]
    if diffs.size == 0:
        return float("nan")
    reached = np.abs(diffs) >= abs(diff) - 1e-12 * max(1.0, abs(diff))
    return float((1 + reached.sum()) / (1 + diffs.size))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input's order (NaN stays NaN and is not counted): the
    i-th smallest of m p-values times (m - i + 1), never below the one before it, at most 1. Marking
    adjusted p < alpha keeps the chance of any false mark among the m tests at most alpha."""
    finite = sorted((p, i) for i, p in enumerate(p_values) if math.isfinite(p))
    out = [float("nan")] * len(p_values)
    running, m = 0.0, len(finite)
    for rank, (p, i) in enumerate(finite):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def paired_task_mean(aggregate: Callable[[Sequence], float], samples_a: Mapping[str, Sequence[Mapping]],
                     samples_b: Mapping[str, Sequence[Mapping]], *, metric: str = "f1_macro",
                     weighted: Callable | None = None, iters: int = ITERS, seed: int = SEED,
                     level: float = LEVEL) -> dict:
    """Paired bootstrap of a per-culture score (the mean over tasks of ``aggregate``, e.g. macro-F1)
    between two lm-eval runs (base vs adapter) on the same documents: the leaderboard's ``--baseline``
    test (``TaskMean`` through ``paired_bootstrap``; ``ClusteredTaskMean`` where tasks share texts), from
    logged samples.

    ``samples_*`` map each task to lm-eval's logged samples (``--log_samples``: ``doc_id`` and the
    per-document item under ``metric``; ``doc`` with its ``text``). Documents are paired by ``doc_id`` and
    resampled within their task (texts that several tasks label: within their family, each text with all its
    documents) with the same indices for both runs; each resample recomputes both runs' per-task
    ``aggregate`` (macro-F1 needs the whole resample, not a mean of per-document values) and the
    difference of their means over tasks. ``weighted``: the aggregate's vectorised form (as
    ``TaskMean`` takes it). A task or document present in one run only is an error: a difference
    over other documents would not be paired.
    """
    if set(samples_a) != set(samples_b):
        raise ValueError(f"the runs cover different tasks: only in the first {sorted(set(samples_a) - set(samples_b))}"
                         f", only in the second {sorted(set(samples_b) - set(samples_a))}")
    if not samples_a:
        raise ValueError("no task to compare")
    a_items, b_items, a_docs, b_docs = [], [], [], []
    for task in sorted(samples_a):
        by_doc = [{int(s["doc_id"]): s for s in run[task]} for run in (samples_a, samples_b)]
        if by_doc[0].keys() != by_doc[1].keys() or not by_doc[0]:
            raise ValueError(f"{task}: the runs scored different documents ({len(by_doc[0])} vs {len(by_doc[1])}, "
                             f"{len(by_doc[0].keys() ^ by_doc[1].keys())} unpaired); run both on the same documents")
        # the same doc_id in another data file is another document: lm-eval's doc_hash says which (as the
        # leaderboard compares it), else the logged text
        problem = pairing_problem(*({doc: document_key(s) for doc, s in run.items()} for run in by_doc))
        if problem:
            raise ValueError(f"{task}: {problem}; run both on the same data")
        for doc in sorted(by_doc[0]):
            for items, docs, sample in ((a_items, a_docs, by_doc[0][doc]), (b_items, b_docs, by_doc[1][doc])):
                items.append((task, _item(sample[metric])))
                docs.append((task, logged_text(sample), items[-1][1]))
    clusters = [text_clusters(docs) for docs in (a_docs, b_docs)]
    if None not in clusters and [c[:2] for c in clusters[0]] == [c[:2] for c in clusters[1]]:
        out = paired_bootstrap(ClusteredTaskMean(aggregate, weighted), *clusters, iters=iters, seed=seed, level=level)
    else:
        out = paired_bootstrap(TaskMean(aggregate, weighted), a_items, b_items, iters=iters, seed=seed, level=level)
    out.update(tasks=len(samples_a), documents=len(a_items))
    return out


def document_identity(sample: Mapping):
    """What identifies a logged sample's document: lm-eval's ``doc_hash``, else its text (None: neither logged).
    A doc_id alone is a position: the same doc_id in another data file is another document."""
    return sample.get("doc_hash") or logged_text(sample)


def document_key(sample: Mapping) -> tuple:
    """(``document_identity``, lm-eval's ``target_hash`` or None): what two runs' samples under one doc_id must
    share to be one document scored against one answer."""
    return document_identity(sample), sample.get("target_hash")


def pairing_problem(a: Mapping[int, tuple], b: Mapping[int, tuple]) -> str:
    """Why two runs' logged documents of one task (doc_id -> ``document_key``) are not the same documents with the
    same answers, or "" when they are. A log without a document identity cannot show it: refused, not assumed;
    a target_hash is compared where both logs hold one."""
    if a.keys() != b.keys():
        return (f"the runs scored different documents ({len(a)} vs {len(b)}, {len(a.keys() ^ b.keys())} "
                "unpaired)")
    blind = [doc for doc in sorted(a) if a[doc][0] is None or b[doc][0] is None]
    if blind:
        return (f"a per-sample log holds neither lm-eval's doc_hash nor the document's text (doc_id {blind[0]}), "
                "so whether the same doc_id is the same document cannot be told; log both runs with an lm-eval "
                "that writes doc_hash")
    differ = [doc for doc in sorted(a) if a[doc][0] != b[doc][0]]
    if differ:
        return (f"the runs scored different documents under the same doc_id ({len(differ)} of {len(a)}, first "
                f"doc_id {differ[0]})")
    targets = [doc for doc in sorted(a) if None not in (a[doc][1], b[doc][1]) and a[doc][1] != b[doc][1]]
    if targets:
        return (f"the runs scored the same documents against other answers (lm-eval's target_hash differs on "
                f"{len(targets)} of {len(a)}, first doc_id {targets[0]})")
    return ""


def logged_text(sample: Mapping) -> str | None:
    """A logged classification document's text as shown (its unit across tasks that label the same texts);
    None where the log holds none."""
    text = (sample.get("doc") or {}).get("text")
    return text.strip() if isinstance(text, str) else None


def _item(value):
    """A logged item as the aggregate expects it: JSON turns tuples into lists."""
    return tuple(value) if isinstance(value, list) else value


# --------------------------------------------------------------------------- aggregates


def mean(items: Sequence[float]) -> float:
    return float(np.mean(np.asarray(items, dtype=float))) if len(items) else float("nan")


mean.batched = lambda items, idx: np.asarray(items, dtype=float)[idx].mean(axis=1)


def cluster_sums(keys: Sequence, values: Sequence[float]) -> list[tuple[float, int]]:
    """Per cluster (documents sharing a key, in the order the keys first appear): ``(sum of its values,
    number of documents)``, the items of ``cluster_mean``. Documents that are not independent (the
    countries of one question share its prompt) are resampled and exchanged as one cluster."""
    if len(keys) != len(values):
        raise ValueError(f"keys and values differ in length: {len(keys)} vs {len(values)}")
    members: dict = {}
    for key, value in zip(keys, values):
        members.setdefault(key, []).append(float(value))
    return [(float(sum(v, 0.0)), len(v)) for v in members.values()]


def cluster_mean(items: Sequence[tuple[float, int]]) -> float:
    """The mean over documents from per-cluster ``(sum, count)`` items (``cluster_sums``): resampling
    the items resamples whole clusters. With one document per cluster it is ``mean`` of the
    documents, bit for bit (the same summation, divided by the same count)."""
    if not len(items):
        return float("nan")
    sums, counts = _cluster_columns(items)
    return float(sums.sum() / counts.sum())


def _cluster_columns(items: Sequence[tuple[float, int]]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([s for s, _ in items], dtype=float), np.array([n for _, n in items], dtype=float))


def _cluster_mean_batched(items: Sequence[tuple[float, int]], idx: np.ndarray) -> np.ndarray:
    sums, counts = _cluster_columns(items)
    return sums[idx].sum(axis=1) / counts[idx].sum(axis=1)


def cluster_mean_weighted(items: Sequence[tuple[float, int]], weights: np.ndarray) -> np.ndarray:
    """``cluster_mean`` of every resample given as a row of counts per item: ``TaskMean``'s vectorised pass
    (``TaskMean(cluster_mean, cluster_mean_weighted)``), ten times faster than a resample at a time and equal to
    it up to the order of summation (float noise); without it ``TaskMean(cluster_mean)`` gives the documents'
    own numbers bit for bit."""
    sums, counts = _cluster_columns(items)
    return (weights @ sums) / (weights @ counts)


cluster_mean.batched = _cluster_mean_batched


def cluster_share_mean(items: Sequence[tuple[float, int]]) -> float:
    """``cluster_mean`` of a score in [0, 1] that is 0 or 1 but for a half-credit score between (``wvs_majority``:
    1/2 for a tie): the same number, with the exact interval where every document scored alike
    (``cluster_alike_ci``)."""
    return cluster_mean(items)


def cluster_alike_ci(items: Sequence[tuple[float, int]], level: float = LEVEL) -> tuple[float, float] | None:
    """Every document of every cluster 0 (or every one 1), where every resample is the same: the exact interval
    with the cluster as the unit, as the resamples draw it. The mean weighs a cluster of n_q of the N documents by
    c_q = n_q / N, so it is a share of n_eff = 1 / sum(c_q^2) clusters (k clusters of one size: k). None
    otherwise (every value 1/2: keep the percentile one, as ``alike_share_ci`` does)."""
    sums, counts = _cluster_columns(items)
    if (sums == 0).all() or (sums == counts).all():
        c = counts / counts.sum()
        return alike_bound(1.0 / float((c * c).sum()), bool((sums == counts).all()), level)
    return None


cluster_share_mean.batched = _cluster_mean_batched
cluster_share_mean.alike_ci = cluster_alike_ci


class TaskMean:
    """Mean over tasks of a per-task statistic, from ``(task, item)`` pairs: a culture's or the
    suite's score, the unweighted mean of its tasks' macro-F1. That is lm-eval's number for the
    group: the group YAMLs say ``weight_by_size: false``, and lm-eval (>= 0.4.13) ``Group.aggregate``
    averages a nested group's leaf tasks, so ``culturellm`` is the mean over all its tasks, not over
    the cultures' means.

    ``strata``: resampled within each task, so every resample has every task with the number of
    documents the run scored (the design of the run, whatever it was: all documents, ``--limit``,
    a stratified ``--samples``). ``weighted(items, weights)``, the per-task statistic of every row of
    a weight matrix, makes the resamples one vectorised pass (default: ``one.weighted``, which a statistic with
    design weights must carry); without it each is computed alone.
    ``min_per_stratum``: the documents every task needs for an interval, the per-task statistic's
    ``min_items`` (macro-F1: ``classification.MIN_DOCS``) or 1.
    """

    CHUNK = 64

    def __init__(self, one: Callable[[Sequence], float], weighted: Callable | None = None):
        # a statistic that weighs its documents (macro-F1, accuracy: design weights) carries its weighted form:
        # computed alone on each resample, it would weigh the resample back to the task's label mix
        self.one, self.weighted = one, weighted or getattr(one, "weighted", None)
        self.min_per_stratum = int(getattr(one, "min_items", 1))

    @staticmethod
    def strata(item: tuple) -> str:
        return item[0]

    @staticmethod
    def documents(items: Sequence[tuple]):
        """``(position of the resampling unit, task, document's item)`` for every document of ``items``."""
        for position, (task, item) in enumerate(items):
            yield position, task, item

    def __call__(self, items: Sequence[tuple]) -> float:
        by_task = self._by_task(items)
        return float(np.mean([self.one(v) for v in by_task.values()])) if by_task else float("nan")

    def _by_task(self, items: Sequence[tuple]) -> dict[str, list]:
        by_task: dict[str, list] = defaultdict(list)
        for _, task, item in self.documents(items):
            by_task[task].append(item)
        return by_task

    def alike_ci(self, items: Sequence[tuple], level: float) -> tuple[float, float] | None:
        """Every task's documents scored alike (a share that is 0, or 1, in every task): every resample is the
        value, and the interval is ``alike_mean_ci`` of the tasks' own exact intervals (the statistic's
        ``alike_ci``); None where the statistic has none or the tasks are not all at the same end."""
        alike = getattr(self.one, "alike_ci", None)
        if alike is None:
            return None
        try:  # a task whose documents are not all alike (its share varies, though this mean's resamples did not)
            intervals = [alike(v, level) for v in self._by_task(items).values()]
        except ValueError:
            return None
        return None if any(i is None for i in intervals) else alike_mean_ci(intervals, level)

    def batched(self, items: Sequence[tuple], idx: np.ndarray) -> np.ndarray:
        if self.weighted is None:
            return np.array([self([items[i] for i in row]) for row in idx], dtype=float)
        payload: dict[str, list] = defaultdict(list)
        owner: dict[str, list] = defaultdict(list)  # the unit (item position) of each of a task's documents
        for position, task, item in self.documents(items):
            payload[task].append(item)
            owner[task].append(position)
        tasks = sorted(payload)
        out = []  # idx may pick from a longer list than one row holds (the randomisation test's a + b)
        for weights in resample_counts(idx, len(items), self.CHUNK):
            per_task = np.full((len(weights), len(tasks)), np.nan)
            for k, task in enumerate(tasks):
                w = weights[:, owner[task]]
                present = w.sum(axis=1) > 0
                per_task[present, k] = self.weighted(payload[task], w[present])
            with np.errstate(all="ignore"):
                out.append(np.nanmean(per_task, axis=1) if tasks else np.full(len(weights), np.nan))
        return np.concatenate(out) if out else np.array([])


class ClusteredTaskMean(TaskMean):
    """``TaskMean`` of tasks that share texts (the CultureLLM sets that label one corpus several ways: the six
    DETOXIS tasks are the same 992 texts), from items ``(family, text, ((task, item), ...))``: one per text,
    with its document in every task that holds it. A model's answers on one text move together across
    those tasks, so resampling each task's documents on its own would treat them as independent and
    understate the spread of their mean. A resample draws texts within each family (tasks linked by a
    shared text), each with all its documents; a family of one task draws that task's documents, as
    ``TaskMean`` does. The documents every task needs are counted before (the leaderboard's ``_too_few``):
    a family's texts can be fewer than its tasks' documents (a text repeated in a task), so
    ``min_per_stratum`` asks for none here."""

    def __init__(self, one: Callable[[Sequence], float], weighted: Callable | None = None):
        super().__init__(one, weighted)
        self.min_per_stratum = 1

    def alike_ci(self, items: Sequence[tuple], level: float) -> tuple[float, float] | None:
        """Every task's documents scored alike at one end (``TaskMean.alike_ci``): the exact interval with the text
        as the unit, as the resamples draw it. A text's documents move together, so the mean over tasks, which
        weighs a text by c = the sum over its documents of 1 / (tasks x the task's documents), is a share of
        n_eff = 1 / sum(c^2) texts: two tasks over the same 20 texts, 20 (one task's interval), not 40 independent
        documents; tasks without a shared text, ``TaskMean``'s n_eff."""
        tasks_ci = super().alike_ci(items, level)
        if tasks_ci is None:
            return None
        sizes: dict[str, int] = defaultdict(int)
        for _, task, _ in self.documents(items):
            sizes[task] += 1
        weight: dict[int, float] = defaultdict(float)
        for position, task, _ in self.documents(items):
            weight[position] += 1.0 / (len(sizes) * sizes[task])
        return alike_bound(1.0 / sum(c * c for c in weight.values()), tasks_ci[0] > 0.0, level)

    @staticmethod
    def documents(items: Sequence[tuple]):
        for position, (_, _, pairs) in enumerate(items):
            for task, item in pairs:
                yield position, task, item


def text_clusters(documents: Sequence[tuple[str, str | None, object]]) -> list[tuple] | None:
    """``ClusteredTaskMean``'s items from ``(task, text, item)`` per document: ``(family, text, ((task, item),
    ...))`` per text, a family being the tasks linked by shared texts (named by its first task). None when no
    text is a document of two tasks, or a document's text is unknown (None): the tasks' documents are then
    independent (``TaskMean``)."""
    by_text: dict[str, list] = defaultdict(list)
    for task, text, item in documents:
        if text is None:
            return None
        by_text[text].append((task, item))
    if all(len({t for t, _ in pairs}) < 2 for pairs in by_text.values()):
        return None
    family = {t: t for t, _, _ in documents}  # union-find over tasks that share a text

    def root(task: str) -> str:
        while family[task] != task:
            task = family[task]
        return task

    for pairs in by_text.values():
        for task, _ in pairs[1:]:
            first, other = root(pairs[0][0]), root(task)
            family[max(first, other)] = min(first, other)
    return [(root(pairs[0][0]), text, tuple(pairs)) for text, pairs in sorted(by_text.items())]


def resample_counts(idx: np.ndarray, n: int, chunk: int):
    """Resamples (rows of ``idx``, indices into n items) as how often each item is drawn, ``chunk`` rows at a
    time: a rows × n count matrix per block keeps memory bounded however many resamples there are."""
    for start in range(0, len(idx), chunk):
        block = idx[start:start + chunk]
        rows = len(block)
        counts = np.bincount((block + n * np.arange(rows)[:, None]).ravel(), minlength=rows * n)
        yield counts.reshape(rows, n).astype(float)

# --------------------------------------------------------------------------- lm-eval glue

_CACHE: OrderedDict[tuple, tuple[float, float]] = OrderedDict()
_CACHE_SIZE = 64


def cached_ci(name: str, aggregate: Callable, items: Sequence) -> tuple[float, float]:
    """``bootstrap_ci`` once per metric and item content: ``m_ci_low`` and ``m_ci_high`` share it."""
    key = (name, repr(_canonical(items)))
    if key not in _CACHE:
        _CACHE[key] = bootstrap_ci(aggregate, items)
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return _CACHE[key]


def ci_aggregations(name: str, aggregate: Callable[[Sequence], float],
                    select: Callable[[Sequence], Sequence] | None = None,
                    nonfinite: str | None = None) -> dict[str, Callable]:
    """``{name_ci_low: fn, name_ci_high: fn}``: lm-eval aggregations of the bounds of ``name``.

    ``select`` picks the resampling units from lm-eval's items (e.g. one category's documents).
    ``nonfinite``: the metrics a document without finite scores makes NaN, for one metric of a task
    (one item per document): its lower bound warns once per task (``warn_nonfinite``).
    """
    out = {}
    for position, suffix in enumerate(CI_SUFFIXES):
        def bound(items, _position=position):
            units = select(items) if select else items
            if _position == 0:
                if nonfinite:
                    warn_nonfinite(sum(map(nonfinite_item, items)), len(items), nonfinite)
                warn_too_few(name, aggregate, units)
            return cached_ci(name, aggregate, units)[_position]

        bound.__name__ = bound.__qualname__ = name + suffix
        bound.__doc__ = f"{'Lower' if position == 0 else 'Upper'} bound of the {LEVEL:.0%} bootstrap interval of {name}."
        out[name + suffix] = bound
    return out


def finite_scores(loglikelihoods: Sequence[float]) -> bool:
    """Whether a document's option log-likelihoods are all finite numbers. A NaN or infinite one (a
    float16 overflow) chooses no option: the document's result is NaN, never its first option."""
    return all(math.isfinite(x) for x in loglikelihoods)


def nonfinite_item(item) -> bool:
    """Whether a per-document item marks a document without finite scores: a NaN / infinite number,
    or a tuple holding one or None (a classification document's missing prediction)."""
    if item is None:
        return True
    if isinstance(item, (tuple, list)):
        return any(nonfinite_item(x) for x in item)
    return isinstance(item, float) and not math.isfinite(item)


def _of_lm_eval(obj) -> bool:
    """Whether ``obj`` is an instance of an lm-eval class or of a subclass (the tasks' ``CultureTask``)."""
    return any(cls.__module__.startswith("lm_eval") for cls in type(obj).__mro__)


def lm_eval_task_name() -> str | None:
    """The name of the lm-eval task whose results are being aggregated, or None outside lm-eval: lm-eval
    hands a task's functions no name, so it is read from its calling frames (the Task object)."""
    frame = sys._getframe(1)
    while frame is not None:
        for local in ("task", "self"):
            obj = frame.f_locals.get(local)
            name = getattr(obj, "task_name", None) if _of_lm_eval(obj) else None
            if isinstance(name, str) and name:
                return name
        frame = frame.f_back
    return None


def nonfinite_documents(loglikelihoods: Sequence[Sequence[float]]) -> int:
    """How many documents (one list of option log-likelihoods each) have a score that is not finite."""
    return sum(not finite_scores(x) for x in loglikelihoods)


def nonfinite_model_fix(dtype: str) -> str:
    """What to do when a model's own log-likelihoods are not finite, loaded in ``dtype`` (a command's --dtype)."""
    if dtype == "float32":
        return "its numbers are not finite even in float32; check the model's weights (a damaged file?)"
    return f"its numbers overflow in {dtype}; use --dtype float32"


NONFINITE_FIX = ("the model's log-likelihoods overflowed (float16?): run it in float32 or bfloat16 "
                 "(--model_args ...,dtype=float32)")


def warn_nonfinite(bad: int, total: int, metrics: str, task: str | None = None) -> None:
    """One warning for a task with ``bad`` of ``total`` documents whose scores are not finite."""
    if bad:
        log.warning("%s: %d of %d documents have a NaN or infinite log-likelihood, so %s are NaN; %s",
                    task or lm_eval_task_name() or "a task", bad, total, metrics, NONFINITE_FIX)


def warn_too_few(name: str, aggregate: Callable, items: Sequence, task: str | None = None) -> None:
    """One warning for a task whose ``name`` interval is NaN because it has fewer documents than the
    metric's own minimum (``min_items``, where it asks for more than the ``MIN_ITEMS`` every interval needs)."""
    need = min_items(aggregate)
    if need > MIN_ITEMS and 0 < len(items) < need:
        log.warning("%s: no %s interval (%s_ci_low / _ci_high are NaN): %d document%s, and a bootstrap of %s "
                    "needs %d to hold the complete run's value (docs/interval_calibration.md)",
                    task or lm_eval_task_name() or "a task", name, name, len(items), "s" if len(items) != 1 else "",
                    name, need)


def with_ci(results: dict) -> dict:
    """Per-document results plus the companion keys: each ``m_ci_*`` gets the item of ``m``."""
    out = dict(results)
    for key, value in results.items():
        for suffix in CI_SUFFIXES:
            out[key + suffix] = value
    return out


# --------------------------------------------------------------------------- task YAML


def metric_list_yaml(module: str, metrics: Sequence[tuple[str, str, bool | None]], *,
                     intervals: Sequence[str] = ()) -> str:
    """The ``metric_list:`` block of a task template.

    ``metrics`` holds ``(name, aggregation, higher_is_better)``, None for a metric with no better
    direction (lm-eval prints no arrow for it); an aggregation other than ``mean`` is a function of
    ``module``. Each metric named in ``intervals`` is followed by its ``_ci_low`` / ``_ci_high``
    companions (functions of ``module``, same direction).
    """
    def entry(name: str, aggregation: str, better: bool | None) -> str:
        agg = aggregation if aggregation == "mean" else f"!function {module}.{aggregation}"
        direction = "null" if better is None else str(better).lower()
        return f"  - {{metric: {name}, aggregation: {agg}, higher_is_better: {direction}}}"

    lines = ["metric_list:"]
    for name, aggregation, better in metrics:
        lines.append(entry(name, aggregation, better))
        if name in intervals:
            lines += [entry(name + s, name + s, better) for s in CI_SUFFIXES]
    return "\n".join(lines) + "\n"


def with_metric_list(template: str, block: str) -> str:
    """``template`` with its ``metric_list:`` block (up to the next top-level key) replaced."""
    lines = template.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("metric_list:"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i][:1].strip() and not lines[i].startswith(" ")),
               len(lines))
    return "".join(lines[:start]) + block + "".join(lines[end:])


def culture_tasks(metrics: Mapping[str, Mapping[str, float]], groups: Mapping[str, Sequence[str]], suite: str,
                  key: str | None = None) -> dict[str, list[str]]:
    """Per culture group of a suite (``<suite>_<culture>``, as ``groups`` lists them, e.g.
    ``paths.task_groups``): its tasks that ``metrics`` (task -> metric -> value) holds, with a
    ``key`` value when ``key`` is given.

    A culture's tasks are its group's members, in the group's order; a task that no culture group
    lists (one run on its own from outside the tasks folder) counts under the culture group its
    name extends, ``<suite>_<culture>_<name>``, after the members.
    """
    cultures = list(groups.get(suite, []))
    listed = {t for group in cultures for t in groups.get(group, [])}
    unlisted = sorted(t for t in metrics if t not in listed and t not in groups)
    out = {}
    for group in cultures:
        tasks = [t for t in groups.get(group, []) if t in metrics]
        tasks += [t for t in unlisted if t.startswith(group + "_")
                  and max((g for g in cultures if t.startswith(g + "_")), key=len) == group]
        tasks = [t for t in tasks if key is None or key in metrics[t]]
        if tasks:
            out[group.removeprefix(suite + "_")] = tasks
    return out


def culture_scores(metrics: Mapping[str, Mapping[str, float]], groups: Mapping[str, Sequence[str]], suite: str,
                   key: str = "f1_macro") -> dict[str, list[float]]:
    """Per culture of a suite (``culture_tasks``): the ``key`` values of its tasks."""
    found = culture_tasks(metrics, groups, suite, key)
    return {c: [float(metrics[t][key]) for t in tasks] for c, tasks in found.items()}


def culture_means(metrics: Mapping[str, Mapping[str, float]], groups: Mapping[str, Sequence[str]],
                  suite: str = "culturellm", key: str = "f1_macro") -> dict[str, float]:
    """The paper's per-culture score: the unweighted mean of a culture's tasks (macro-F1)."""
    return {c: float(np.mean(v)) for c, v in culture_scores(metrics, groups, suite, key).items()}
