"""How a search asks the VSM13 options and reads one loss from a candidate's answers, registered by name.

``listed`` and ``balanced`` score the task of that order (``vsm13_<country>``, ``vsm13_<country>_balanced``):
the loss is the objective of its metrics. ``worst`` asks every item in both orders (the balanced task's
documents) and takes the larger of the objective over the listed and the reversed halves. Each half holds
exactly the documents of ``vsm13_<country>`` / ``vsm13_<country>_reversed``, so ``lm_eval`` reports both
losses for the checkpoint. A balanced mean lets a large gain in one order pay for a loss in the other
(docs/aligner_objectives_smollm2/balanced); the worse order gains only where both do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from culture_tasks.prompts import presentation_order
from culture_tasks.survey.instruments import OPTION_ORDERS, VARIANTS

# single orders -> the VSM13 task variant that asks only them
SINGLE_ORDERS = {"listed": "", "reversed": "_reversed"}


@dataclass(frozen=True)
class SearchOrder:
    """``variant``: the VSM13 task variant the search scores; ``parts``: the single orders (``SINGLE_ORDERS``)
    whose larger loss is a candidate's, or none: the objective of the task's own metrics."""

    variant: str
    parts: tuple[str, ...] = ()

    def __post_init__(self):
        unknown = [p for p in self.parts if p not in SINGLE_ORDERS]
        if unknown:
            raise ValueError(f"unknown single order(s) {unknown}; choose from {sorted(SINGLE_ORDERS)}")

    def part_items(self, docs: Sequence[dict]) -> dict[str, list[int]]:
        """Per part, the positions of the documents whose options are shown in that order."""
        out = {}
        for part in self.parts:
            reverse = bool(VARIANTS[SINGLE_ORDERS[part]].get("reversed_options"))  # as that part's own task asks
            out[part] = [i for i, doc in enumerate(docs)
                         if list(doc["order"]) == presentation_order(len(doc["order"]), reverse)]
            if not out[part]:
                raise ValueError(f"no document asks its options {part}: the {self.variant!r} task does not hold "
                                 f"the {part} order")
        return out


def combined(losses: dict[str, float]) -> float:
    """A candidate's loss: the largest of its parts' losses, NaN if any is not finite (``max`` would pass a
    NaN over or not by where it stands)."""
    values = list(losses.values())
    return max(values) if all(math.isfinite(v) for v in values) else math.nan


SEARCH_ORDERS: dict[str, SearchOrder] = {
    "listed": SearchOrder(OPTION_ORDERS["listed"]),
    "balanced": SearchOrder(OPTION_ORDERS["balanced"]),
    "worst": SearchOrder(OPTION_ORDERS["balanced"], parts=("listed", "reversed")),
}
