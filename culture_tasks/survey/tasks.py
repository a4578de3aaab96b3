"""lm-eval glue for the WVS and VSM13 tasks: datasets, prompts, per-item results, aggregations.

Every score is computed over the whole task in an aggregation function named as the metric
key it returns (lm-eval would otherwise fall back to a plain mean). The formulas themselves
live in ``metrics``, ``wvs`` and ``vsm13``; the aligner imports the same prompt builder and
``summarise_vsm13`` so that its loss is the loss lm-eval reports.
"""

from __future__ import annotations

import json
import logging
import math
import re
import string
from collections import defaultdict
from collections.abc import Mapping, Sequence

import datasets
import numpy as np

from culture_tasks.data_root import data_file
from culture_tasks.survey import metrics
from culture_tasks.survey.vsm13 import DIMENSIONS, load_items, resolve_target, vsm13_indices, vsm13_loss
from culture_tasks.survey.wvs import load_country, load_questions

log = logging.getLogger("culture_tasks")
LETTERS = string.ascii_uppercase


def _persona_line(country_name: str | None) -> str:
    return f"Answer as a typical person from {country_name} would answer.\n\n" if country_name else ""


def survey_prompt(question: str, options: Sequence[str], persona: str | None = None) -> str:
    """The prompt of one survey item; options lettered so that each answer is one letter."""
    lines = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
    return f"{_persona_line(persona)}{question}\n\nOptions:\n{lines}\nAnswer:"


def doc_to_text(doc: Mapping) -> str:
    return survey_prompt(doc["question"], doc["options"], doc["persona"] or None)


def _as_dict(value) -> dict:
    if value in (None, "", {}):
        return {}
    return json.loads(value) if isinstance(value, str) else dict(value)


# --------------------------------------------------------------------------- WVS


def topic_key(topic: str) -> str:
    """'POLITICAL INTEREST & POLITICAL PARTICIPATION' -> 'political_interest' (first two words)."""
    return "_".join(re.findall(r"[a-z]+", topic.lower())[:2])


WVS_TOPICS = (
    "social_values", "migration", "security", "science_technology",
    "religious_values", "ethical_values", "political_interest",
)


def load_wvs(data_dir: str | None = None, *, wvs_country: str, wvs_csv: str, persona: str = "",
             reversed_options: bool = False, **_ignored) -> datasets.DatasetDict:
    questions = load_questions(data_dir)
    answers = load_country(data_file(f"culturellm/{wvs_csv}", data_dir), questions, wvs_country)
    rows = defaultdict(list)
    for q in questions:
        if q.q_id not in answers.distributions:
            continue
        order = list(range(len(q.scale.codes)))[::-1] if reversed_options else list(range(len(q.scale.codes)))
        rows["q_id"].append(q.q_id)
        rows["topic"].append(topic_key(q.topic))
        rows["question"].append(q.text)
        rows["options"].append([q.scale.labels[i] for i in order])
        rows["order"].append(order)  # presented position -> index in ascending code order
        rows["choices"].append(list(LETTERS[: len(order)]))
        rows["country_dist"].append(answers.distributions[q.q_id].tolist())
        rows["persona"].append(persona)
    return datasets.DatasetDict({"test": datasets.Dataset.from_dict(dict(rows))})


def _in_code_order(doc: Mapping, results: Sequence) -> np.ndarray:
    presented = metrics.option_distribution([float(r[0]) for r in results])
    p = np.zeros(len(presented))
    p[list(doc["order"])] = presented
    return p


def process_results_wvs(doc: Mapping, results: Sequence) -> dict:
    p = _in_code_order(doc, results)
    q = np.asarray(doc["country_dist"])
    jsd = metrics.jsd_similarity(p, q)
    out = {
        "wvs_jsd": jsd,
        "wvs_w1": metrics.w1_similarity(p, q),
        "wvs_majority": metrics.majority_agreement(p, q),
    }
    out.update({f"wvs_jsd_{t}": (doc["topic"], jsd) for t in WVS_TOPICS})
    return out


def _topic_mean(topic: str):
    def aggregate(items):
        values = [v for t, v in items if t == topic]
        return float(np.mean(values)) if values else float("nan")

    aggregate.__name__ = f"wvs_jsd_{topic}"
    return aggregate


for _topic in WVS_TOPICS:
    globals()[f"wvs_jsd_{_topic}"] = _topic_mean(_topic)


# --------------------------------------------------------------------------- VSM13


def load_vsm13(data_dir: str | None = None, *, vsm13_country: str | None = None, persona: str = "",
               reversed_options: bool = False, target=None, constants=None, answer_mode: str = "expected",
               **_ignored) -> datasets.DatasetDict:
    """The 24 items; target, constants and answer mode may come from ``--metadata``.

    ``persona`` is the country name of the in-context baseline ("" = the model's own answers).
    """
    chosen = resolve_target(vsm13_country, target, data_dir)
    if answer_mode not in ("expected", "argmax"):
        raise ValueError(f"answer_mode must be 'expected' or 'argmax', got {answer_mode!r}")
    rows = defaultdict(list)
    for item in load_items(data_dir):
        order = list(range(len(item.options)))[::-1] if reversed_options else list(range(len(item.options)))
        rows["item"].append(item.number)
        rows["question"].append(f"{item.stem}\n{item.text}" if item.stem else item.text)
        rows["options"].append([item.options[i] for i in order])
        rows["order"].append(order)
        rows["values"].append(list(item.values))
        rows["choices"].append(list(LETTERS[: len(order)]))
        rows["persona"].append(persona)
        rows["target"].append(json.dumps(chosen.scores))
        rows["constants"].append(json.dumps(dict(constants or {})))
        rows["answer_mode"].append(answer_mode)
    return datasets.DatasetDict({"test": datasets.Dataset.from_dict(dict(rows))})


def item_result(doc: Mapping, loglikelihoods: Sequence[float]) -> tuple:
    """One item's contribution: (item, score, target, constants), scores in value order."""
    presented = metrics.option_distribution(loglikelihoods)
    p = np.zeros(len(presented))
    p[list(doc["order"])] = presented
    score = metrics.item_score(p, doc["values"], doc["answer_mode"])
    return int(doc["item"]), score, doc["target"], doc["constants"]


def process_results_vsm13(doc: Mapping, results: Sequence) -> dict:
    result = item_result(doc, [float(r[0]) for r in results])
    return {key: result for key in ("vsm13_l1", "vsm13_mae", *DIMENSIONS)}


def summarise_vsm13(items: Sequence[tuple]) -> dict[str, float]:
    """Indices and loss from per-item results (the mean score per item over its documents)."""
    per_item = defaultdict(list)
    for number, score, _, _ in items:
        per_item[int(number)].append(float(score))
    means = {k: float(np.mean(v)) for k, v in per_item.items()}
    target, constants = _as_dict(items[0][2]), _as_dict(items[0][3])
    if len(means) < 24:
        log.warning("VSM13 needs all 24 items, got %d (is --limit below 24?): indices are NaN", len(means))
        return {"vsm13_l1": math.nan, "vsm13_mae": math.nan, **{d: math.nan for d in DIMENSIONS}}
    indices = vsm13_indices(means, constants)
    loss = vsm13_loss(indices, target)
    return {"vsm13_l1": loss["l1"], "vsm13_mae": loss["mae"], **indices}


def _summary_metric(key: str):
    def aggregate(items):
        return summarise_vsm13(items)[key]

    aggregate.__name__ = key
    return aggregate


for _key in ("vsm13_l1", "vsm13_mae", *DIMENSIONS):
    globals()[_key] = _summary_metric(_key)
