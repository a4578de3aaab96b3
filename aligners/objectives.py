"""Aligner objectives by name: functions of the six VSM13 indices -> loss (lower is better).

``l1`` is the soft-prompt paper's raw L1 with every constant at 0 (it rewards any shift of the
index scale toward the target's level); ``standardised`` and ``contrastive`` (the default: minus the
``vsm13_margin`` the VSM13 tasks report) are the country-specific comparisons of
culture_tasks.survey.compare, invariant to adding one constant to every index.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from culture_tasks.survey.compare import (Reference, hofstede_reference, margin_and_rank, resolve, spread, target_dims,
                                          z_distance)
from culture_tasks.survey.vsm13 import DIMENSIONS, Target, vsm13_loss

Objective = Callable[[Mapping[str, float]], float]


def _prepared(target: str | Target, reference: Reference | None, data_dir: str | None):
    reference = reference or hofstede_reference(data_dir)
    code, ref = resolve(target, reference, data_dir)
    country = ref.profiles[code]
    dims = target_dims(dict.fromkeys(DIMENSIONS, 0.0), country)
    return code, ref, dims, spread(ref, dims, leave_out=code)


def l1(target: str | Target, reference: Reference | None = None, data_dir: str | None = None) -> Objective:
    """Raw L1 (C=0) over the dimensions the target has: the soft-prompt paper's loss."""
    code, ref, _, _ = _prepared(target, reference, data_dir)
    scores = ref.profiles[code]
    return lambda indices: float(vsm13_loss(indices, scores)["l1"])


def _standardised(norm: int):
    def make(target: str | Target, reference: Reference | None = None, data_dir: str | None = None) -> Objective:
        """z-space distance to the target with the common offset removed (sigma leaves the target out)."""
        code, ref, _, sigma = _prepared(target, reference, data_dir)
        scores = ref.profiles[code]
        return lambda indices: z_distance(indices, scores, sigma, norm)

    return make


def contrastive(target: str | Target, reference: Reference | None = None, data_dir: str | None = None) -> Objective:
    """z-space distance to the target minus the mean distance to the other reference countries
    (= minus the margin, the task's vsm13_margin): rewards moving toward the target, not just anywhere."""
    code, ref, _, _ = _prepared(target, reference, data_dir)
    return lambda indices: -float(margin_and_rank(indices, code, ref)["margin"])


OBJECTIVES: dict[str, Callable[..., Objective]] = {
    "l1": l1,
    "standardised": _standardised(2),
    "standardised_l1": _standardised(1),
    "contrastive": contrastive,
}

# What each objective's loss is, for the y-axis of loss_curve.png and anything else that prints it.
LOSS_LABELS: dict[str, str] = {
    "l1": "VSM13 raw L1 (C = 0) to target",
    "standardised": "z-space L2 distance to target",
    "standardised_l1": "z-space L1 distance to target",
    "contrastive": "minus the margin (vsm13_margin)",
}


def make_objective(name: str, target: str | Target, reference: Reference | None = None,
                   data_dir: str | None = None) -> Objective:
    """The loss function of ``name`` for one target (a Hofstede code/ISO code/name, or explicit scores)."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name](target, reference, data_dir)
