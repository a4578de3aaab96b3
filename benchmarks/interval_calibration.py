"""How often the macro-F1 intervals of a partial CultureLLM run hold the complete run's number.

    python -m benchmarks.interval_calibration --data_dir ../shared/data [--reps 100] [--models 3] [--unweighted]

A partial run (``--samples`` from ``culture_tasks.sampling``, or n documents of a task) is read as
an estimate of what the complete run would give. This script checks, for the suite's real tasks
(their label sets and sizes, read by the tasks' own loader) and deterministic synthetic models
(each task: the gold label with probability q ~ U(0.2, 0.8), otherwise a label drawn from a skewed
distribution, fixed per document), how often the 95 % interval the leaderboard and the tasks print
holds the complete run's value, over ``--reps`` samples:

- per culture: the mean of its tasks' macro-F1 over a ``--per_culture`` sample (the main job's
  design), its interval ``stats.TaskMean`` resampled within each task, as the leaderboard does;
- per task: one task's macro-F1 over n documents drawn by the same design (``sampling.draw_task``),
  its interval ``stats.bootstrap_ci`` (the task's ``f1_macro_ci_low`` / ``_ci_high``), grouped by n;
  the items carry their label's count in the task, as the tasks log them, so a sample is weighted back
  to the task's label shares (``classification.design_weights``); ``--unweighted`` drops the counts
  (the estimator of task versions before the weights, for comparison);
- accuracy over n documents (``acc_ci_low`` / ``_ci_high``), a proportion drawn from U(0.2, 0.8);
- a mean over n questions of values in [0, 1], as a WVS topic's ``wvs_jsd_<topic>`` interval.

It prints coverage (share of samples whose interval holds the complete value; 0.95 is the aim),
the mean error of the value (the sample's macro-F1 minus the complete run's), the mean width, and
how many of the intervals the project shows (every task with at least ``MIN_DOCS`` documents)
and their coverage.
``classification.MIN_DOCS`` is set from these tables (the intervals are computed here without it). CPU only; no model is loaded.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from culture_tasks import sampling, stats
from culture_tasks.classification import MIN_DOCS, f1_macro, f1_macro_weighted

PER_CULTURE = (20, 30, 40, 60, 80)
TASK_SIZES = (2, 3, 4, 6, 8, 10, 15, 20, 30, 50)


def synthetic_model(suite: dict, seed: int, weighted: bool = True) -> dict[str, list[tuple]]:
    """``{task: [(gold, prediction, labels, documents of the gold label)] for every document}`` of one
    deterministic model (without the count where not ``weighted``)."""
    rng = np.random.default_rng(seed)
    out = {}
    for task, (_, labels) in suite.items():
        names = sorted(set(labels))
        index = {x: i for i, x in enumerate(names)}
        gold = np.array([index[x] for x in labels])
        k, q = len(names), rng.uniform(0.2, 0.8)
        skew = rng.dirichlet(np.full(k, 0.7))
        pred = np.where(rng.random(len(gold)) < q, gold, rng.choice(k, size=len(gold), p=skew))
        count = np.bincount(gold, minlength=k)
        out[task] = [(int(g), int(p), k, int(count[g]))[:4 if weighted else 3] for g, p in zip(gold, pred)]
    return out


def covers(low: float, high: float, truth: float) -> bool | None:
    """Whether the interval holds ``truth``; None where there is no interval."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return None
    return bool(low - 1e-12 <= truth <= high + 1e-12)


def raw_f1(items) -> float:
    """macro-F1 with no minimum of documents: the interval the bootstrap gives at any size."""
    return f1_macro(items)


raw_f1.batched = f1_macro.batched


class Tally:
    """Coverage, error and width of one design's intervals: all of them, and those the project shows
    (every task with at least ``MIN_DOCS`` documents)."""

    def __init__(self):
        self.count, self.hits, self.errors, self.widths = 0, 0, [], []
        self.shown, self.shown_hits = 0, 0

    def add(self, value: float, low: float, high: float, truth: float, shown: bool) -> None:
        self.count += 1
        self.errors.append(value - truth)
        hit = covers(low, high, truth)
        if hit is not None:
            self.hits += hit
            self.widths.append(high - low)
            if shown:
                self.shown += 1
                self.shown_hits += hit

    def line(self, label: str) -> str:
        coverage = f"{self.hits / len(self.widths):.3f}" if self.widths else "  -  "
        width = f"{np.mean(self.widths):.3f}" if self.widths else "  -  "
        shown = f"{self.shown_hits / self.shown:.3f}" if self.shown else "  -  "
        return (f"| {label} | {self.count} | {coverage} | {np.mean(self.errors):+.3f} | {np.std(self.errors):.3f} | "
                f"{width} | {self.shown} | {shown} |")


HEADER = ("| design | cases | coverage | mean error | sd of error | mean width | shown | coverage of shown |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|")


def per_culture(suite: dict, models: list[dict], reps: int, sizes) -> dict[tuple, Tally]:
    culture_of = {t: c for t, (c, _) in suite.items()}
    cultures = sorted(set(culture_of.values()))
    aggregate = stats.TaskMean(raw_f1, f1_macro_weighted)
    tallies: dict[tuple, Tally] = defaultdict(Tally)
    for docs in sizes:
        for model in models:
            truth = {c: np.mean([f1_macro(model[t]) for t in suite if culture_of[t] == c]) for c in cultures}
            for rep in range(reps):
                sample = sampling.draw(suite, docs, 1000 + rep)
                for c in cultures:
                    items = [(t, model[t][i]) for t in sample if culture_of[t] == c for i in sample[t]]
                    low, high = stats.bootstrap_ci(aggregate, items)
                    shown = min(len(sample[t]) for t in sample if culture_of[t] == c) >= MIN_DOCS
                    for key in ((docs, c), (docs, "all")):
                        tallies[key].add(aggregate(items), low, high, truth[c], shown)
    return tallies


def per_task(suite: dict, models: list[dict], reps: int, sizes) -> dict[int, Tally]:
    tallies: dict[int, Tally] = defaultdict(Tally)
    for model in models:
        for task, (_, labels) in suite.items():
            truth = f1_macro(model[task])
            for n in sizes:
                if n >= len(labels):
                    continue
                for rep in range(reps):
                    chosen = sampling.draw_task(labels, n, 1000 + rep, task)
                    items = [model[task][i] for i in chosen]
                    tallies[n].add(f1_macro(items), *stats.bootstrap_ci(raw_f1, items), truth, n >= MIN_DOCS)
    return tallies


def _mean_coverage(sizes, reps: int, draw, shown) -> dict[int, Tally]:
    """``stats.mean``'s interval over n values from ``draw(rng, n) -> (values, true mean)``, ``reps`` per size."""
    rng = np.random.default_rng(0)
    tallies: dict[int, Tally] = defaultdict(Tally)
    for n in sizes:
        for rep in range(reps):
            items, truth = draw(rng, n)
            tallies[n].add(stats.mean(items), *stats.bootstrap_ci(stats.mean, items, seed=rep), truth, shown(n))
    return tallies


def _proportion(rng: np.random.Generator, n: int) -> tuple[list[float], float]:
    p = rng.uniform(0.2, 0.8)
    return list((rng.random(n) < p).astype(float)), p


def _bounded(rng: np.random.Generator, n: int) -> tuple[list[float], float]:
    a, b = rng.uniform(2, 10), rng.uniform(2, 6)
    return list(rng.beta(a, b, size=n)), a / (a + b)


def accuracy(sizes, reps: int) -> dict[int, Tally]:
    """Accuracy (a mean of 0/1, ``stats.mean``'s interval): ``reps`` tasks per size whose true accuracy is drawn
    from U(0.2, 0.8); its interval is computed without the minimum, as macro-F1's is."""
    return _mean_coverage(sizes, reps, _proportion, lambda n: n >= MIN_DOCS)


def question_mean(sizes, reps: int) -> dict[int, Tally]:
    """A mean over n questions of values in [0, 1] (a WVS topic's 1-JSD: ``stats.mean``'s interval over its
    questions), each drawn from Beta(a, b) with a ~ U(2, 10), b ~ U(2, 6); truth: the Beta's mean, i.e. the
    questions read as a sample of the topic's questions. No minimum applies (``shown``: every interval)."""
    return _mean_coverage(sizes, reps, _bounded, lambda n: True)


def _item_means(terms: dict[str, np.ndarray]) -> dict[int, float]:
    """Item means whose VSM13 terms w (m_a - m_b) are ``terms`` (one value per term of ``FORMULAS``)."""
    from culture_tasks.survey.vsm13 import FORMULAS

    means = {}
    for dim, formula in FORMULAS.items():
        for (w, a, b), t in zip(formula, terms[dim]):
            means[a], means[b] = 3.0 + t / (2 * w), 3.0 - t / (2 * w)
    return means


def vsm13_item_pairs(data_dir: str | None, reps: int, spread: float, seed: int = 0) -> dict[str, Tally]:
    """The item-pair bootstrap of the VSM13 comparison (``compare.replicate_indices``: the steering matrix's and
    the aligner's intervals) read as a sample of the item pairs that could measure each dimension.

    A synthetic model's true profile is a six-dimension country's Hofstede scores plus N(0, 20) per dimension;
    each dimension's two terms are their weight's share of the true index plus an item pair's own deviation,
    N(0, ``spread``) (the two pairs of one dimension differ by about 1-20 points in real models' answers:
    SmolLM2 and Qwen2.5-Coder persona profiles). The truth is each metric at the true profile with that
    country as the target; the interval is the percentile interval of the item-pair resamples, as reported."""
    from culture_tasks.survey import compare
    from culture_tasks.survey.vsm13 import DIMENSIONS, FORMULAS, Target

    reference = compare.hofstede_reference(data_dir)
    countries = reference.having(DIMENSIONS)
    rng = np.random.default_rng(seed)
    tallies: dict[str, Tally] = defaultdict(Tally)
    for _ in range(reps):
        code = countries[rng.integers(len(countries))]
        target = Target(reference.names[code], code, dict(reference.profiles[code]))
        truth = {d: reference.profiles[code][d] + rng.normal(0, 20) for d in DIMENSIONS}
        terms = {}
        for d, formula in FORMULAS.items():
            weights = np.array([w for w, _, _ in formula], dtype=float)
            terms[d] = truth[d] * weights / weights.sum() + rng.normal(0, spread, size=len(formula))
        means = _item_means(terms)
        observed = {d: float(np.sum(terms[d])) for d in DIMENSIONS}
        resamples = compare.replicate_indices(means)
        true_cmp = compare.margin_and_rank(truth, target, reference)
        seen_cmp = compare.margin_and_rank(observed, target, reference)
        rep_cmp = compare.margin_and_rank(resamples, target, reference)
        for key in ("rank", "margin"):
            low, high = stats.percentile_interval(np.asarray(rep_cmp[key], dtype=float), stats.LEVEL)
            tallies[key].add(float(seen_cmp[key]), low, high, float(true_cmp[key]), True)
        for d in DIMENSIONS:
            low, high = stats.percentile_interval(resamples[d], stats.LEVEL)
            tallies["index"].add(observed[d], low, high, truth[d], True)
    return tallies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=None, help="data root (default: CULTURE_DATA_DIR)")
    parser.add_argument("--reps", type=int, default=100, help="samples per design and model")
    parser.add_argument("--models", type=int, default=3, help="synthetic models (seeds 0 .. models-1)")
    parser.add_argument("--per_culture", type=int, nargs="*", default=list(PER_CULTURE))
    parser.add_argument("--task_sizes", type=int, nargs="*", default=list(TASK_SIZES))
    parser.add_argument("--unweighted", action="store_true",
                        help="score samples without design weights (task versions before them)")
    parser.add_argument("--vsm13", type=int, default=0, metavar="REPS",
                        help="also the VSM13 item-pair intervals over REPS synthetic models per spread (0: not)")
    args = parser.parse_args(argv)
    if args.vsm13:
        print("VSM13 item-pair intervals (steering matrix, aligner) read as a sample of item pairs, "
              f"{args.vsm13} synthetic models per spread:\n")
        print(HEADER)
        for spread in (5.0, 10.0, 20.0):
            tallies = vsm13_item_pairs(args.data_dir, args.vsm13, spread)
            for key in ("index", "rank", "margin"):
                print(tallies[key].line(f"{key}, item-pair spread {spread:g}"))
        if not (args.per_culture or args.task_sizes):
            return 0
    suite = sampling.suite_labels(args.data_dir)
    models = [synthetic_model(suite, seed, weighted=not args.unweighted) for seed in range(args.models)]
    print(f"{len(suite)} tasks, {args.models} synthetic models, {args.reps} samples each, "
          f"{'unweighted' if args.unweighted else 'design-weighted'} macro-F1; "
          f"MIN_DOCS = {MIN_DOCS} (the project shows no interval where a task has fewer documents)")
    if args.per_culture:
        print("\nPer culture (the mean macro-F1 of its tasks), a `culture_tasks.sampling` sample:\n")
        print(HEADER)
        tallies = per_culture(suite, models, args.reps, args.per_culture)
        for key in sorted(tallies, key=lambda k: (k[0], k[1] != "all", k[1])):
            docs, culture = key
            print(tallies[key].line(f"{docs} per culture, {culture}"))
    if args.task_sizes:
        print("\nPer task, n documents drawn by label (`sampling.draw_task`), all tasks pooled:\n")
        print(HEADER)
        for n, tally in sorted(per_task(suite, models, args.reps, args.task_sizes).items()):
            print(tally.line(f"n = {n}"))
        print("\nAccuracy of one task, n documents (2,000 tasks per size, true accuracy U(0.2, 0.8)):\n")
        print(HEADER)
        for n, tally in sorted(accuracy(args.task_sizes, 2000).items()):
            print(tally.line(f"n = {n}"))
        print("\nA mean over n questions of values in [0, 1] (a WVS topic), 2,000 per size:\n")
        print(HEADER)
        for n, tally in sorted(question_mean(args.task_sizes, 2000).items()):
            print(tally.line(f"n = {n}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
