"""The intervals of the numbers alignment.json reports.

A task metric carries the interval lm_eval reports for it: the task's ``_ci_low`` / ``_ci_high``
companions (a seeded respondent bootstrap, ``culture_tasks.survey.tasks``). A change against the
plain model needs a paired interval, which two separate intervals cannot give; as culture-steer
does, both prompts' item means are resampled by the item-pair bootstrap under one seed
(``compare.term_replicates``), so replicate i of each draws the same item pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from culture_tasks import stats
from culture_tasks.survey import compare
from culture_tasks.survey.compare import replicate_indices
from culture_tasks.survey.vsm13 import DIMENSIONS, Target, constants_by_dimension

PAIRED = (f"item-pair bootstrap, {stats.ITERS} resamples paired by seed {stats.SEED} "
          "(culture_tasks.survey.compare.term_replicates): the spread of the instrument's two item pairs per "
          "dimension, a lower bound on the uncertainty (docs/interval_calibration.md)")


def interval(metrics: Mapping[str, float], key: str) -> list[float]:
    """The task's own interval of ``key``, as lm_eval reports it."""
    return [metrics[key + suffix] for suffix in stats.CI_SUFFIXES]


def with_intervals(metrics: Mapping[str, float], keys) -> dict:
    """``{key: value, key_ci: [low, high]}`` for each of ``keys``."""
    out = {}
    for key in keys:
        out[key], out[f"{key}_ci"] = metrics[key], interval(metrics, key)
    return out


def scorer_item_means(scorer, loglikelihoods) -> dict[int, float]:
    """``item_means`` of a scorer's documents under one prompt."""
    from culture_tasks.survey.tasks import item_means

    return item_means([item.doc for item in scorer.items], loglikelihoods)


def task_constants(scorer) -> dict[str, float]:
    """The additive constants the VSM13 task adds to every index (the same in all its documents)."""
    from culture_tasks.survey.tasks import _as_dict

    return constants_by_dimension(_as_dict(scorer.items[0].doc["constants"]))


def change_vs_plain(report: dict, means: Mapping[str, Mapping[int, float]], constants: Mapping[str, float],
                    target: Target, reference) -> dict:
    """Each prompt's raw L1 and margin minus the plain model's, with paired intervals."""
    plain = compare.loss_and_margin(replicate_indices(means["plain"], constants), target, reference)
    out = {}
    for name in means:
        if name == "plain":
            continue
        reps = compare.loss_and_margin(replicate_indices(means[name], constants), target, reference)
        out[name] = {
            "vsm13_l1": report["vsm13_l1"][name] - report["vsm13_l1"]["plain"],
            "vsm13_l1_ci": list(stats.percentile_interval(reps["vsm13_l1"] - plain["vsm13_l1"], stats.LEVEL)),
            "margin": report["comparison"][name]["margin"] - report["comparison"]["plain"]["margin"],
            "margin_ci": list(stats.percentile_interval(reps["vsm13_margin"] - plain["vsm13_margin"], stats.LEVEL)),
        }
    return out


def _replicate_objective(objective: Callable, means: Mapping[int, float], constants: Mapping[str, float]
                         ) -> np.ndarray:
    """The objective of each item-pair resample of these item means (one seed: resample i of every call
    draws the same item pairs)."""
    reps = replicate_indices(means, constants)
    return np.array([objective({d: reps[d][i] for d in DIMENSIONS}) for i in range(stats.ITERS)])


def loss_interval(objective_name: str, objective: Callable, final: Mapping[str, float],
                  means: Mapping[int, float], constants: Mapping[str, float]) -> tuple[list[float], str]:
    """The loss's interval and where it comes from: the task's own where the loss is a task metric
    (minus vsm13_margin, vsm13_l1), else the objective of each item-pair resample."""
    if objective_name == "contrastive":
        low, high = interval(final, "vsm13_margin")
        return [-high, -low], "the task's interval of vsm13_margin, negated"
    if objective_name == "l1":
        return interval(final, "vsm13_l1"), "the task's interval of vsm13_l1"
    values = _replicate_objective(objective, means, constants)
    return (list(stats.percentile_interval(values, stats.LEVEL)),
            f"the objective of {stats.ITERS} item-pair bootstrap resamples (seed {stats.SEED})")


def parts_loss_interval(objective: Callable, part_means: Mapping[str, Mapping[int, float]],
                        constants: Mapping[str, float]) -> tuple[list[float], str, dict[str, list[float]]]:
    """The interval of a loss that is the largest of the objective over several parts (the option orders of
    --option-order worst): each part's item means resampled by the item-pair bootstrap under one seed, so
    resample i draws the same item pairs in every part, and the largest of the parts' objectives per resample;
    with each part's own interval from the same resamples (``loss_by_order``)."""
    reps = {part: _replicate_objective(objective, means, constants) for part, means in part_means.items()}
    values = np.max(list(reps.values()), axis=0)
    return (list(stats.percentile_interval(values, stats.LEVEL)),
            f"the largest of the objective over {', '.join(part_means)} in each of {stats.ITERS} item-pair bootstrap "
            f"resamples (seed {stats.SEED}), paired across them",
            {part: list(stats.percentile_interval(v, stats.LEVEL)) for part, v in reps.items()})
