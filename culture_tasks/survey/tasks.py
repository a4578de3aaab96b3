"""lm-eval glue for the WVS and VSM13 tasks: datasets, prompts, per-item results, aggregations.

Every score is computed over the whole task in an aggregation function named as the metric
key it returns (lm-eval would otherwise fall back to a plain mean); every score ``m`` also has
``m_ci_low`` / ``m_ci_high``, its seeded 95 % bootstrap interval (``culture_tasks.stats``). The
formulas themselves live in ``metrics``, ``wvs`` and ``vsm13``; the aligner imports the same
prompt builder and ``summarise_vsm13`` so that its loss is the loss lm-eval reports.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

import datasets
import numpy as np
from lm_eval.api.samplers import ContextSampler

from culture_tasks import stats
from culture_tasks.data_root import data_file, resolve_data_root
from culture_tasks.metadata import TASK_KEYS, MetadataError, check_keys, parse_bool
from culture_tasks.outputs import file_digest
from culture_tasks.prompts import in_code_order, lettered_options, option_letters, presentation_order
from culture_tasks.survey import compare, metrics
from culture_tasks.survey.countries import listed_countries
from culture_tasks.survey.vsm13 import (DIMENSIONS, HOFSTEDE_FILE, Target, constants_by_dimension, load_items,
                                        resolve_target, vsm13_indices)
from culture_tasks.survey.instruments import directionless_metrics
from culture_tasks.survey.wvs import WVS_TOPICS, load_country, load_questions, topic_key

log = logging.getLogger("culture_tasks")
# Metrics that are measurements, not scores: a higher or lower value is not better (their task
# YAMLs say higher_is_better: null); tables and rankings read this set.
DIRECTIONLESS = directionless_metrics()
# Respondents per simulated sample of the VSM13 interval: the VSM 2013 manual's ideal sample size.
VSM13_RESPONDENTS = 50


class NoFewShot(ContextSampler):
    """Survey items have no correct answer to show: a few-shot example would need a made-up one.

    Used as the tasks' ``fewshot_config.sampler``, so ``--num_fewshot N`` (N > 0) stops the run
    before anything is scored instead of prepending examples that all end in "Answer: A".
    """

    def sample(self, n: int, *args, **kwargs):
        if n > 0:
            raise ValueError(
                f"--num_fewshot {n}: the wvs_* and vsm13_* survey tasks are zero-shot only (a survey "
                "item has no correct answer to show as an example); drop --num_fewshot for these tasks"
            )
        return []


PERSONA_HEAD, PERSONA_TAIL = "Answer as a typical person from ", " would answer.\n\n"


# the order a _balanced task's document asks its options in ("listed" / "reversed"; "" in a one-order task): its
# aggregation needs both for every item
BOTH_ORDERS_MARK = "balanced_order"


def _persona_line(country_name: str | None) -> str:
    return f"{PERSONA_HEAD}{country_name}{PERSONA_TAIL}" if country_name else ""


def persona_of(prompt: str) -> str | None:
    """The country a survey prompt's persona line names, or None: how a training row shows that it
    was asked with the persona, so that it is scored by the ``_persona`` task that asks the same."""
    head, sep, _ = prompt.partition(PERSONA_TAIL)
    return head[len(PERSONA_HEAD):] if sep and head.startswith(PERSONA_HEAD) and "\n" not in head else None


def survey_prompt(question: str, options: Sequence[str], persona: str | None = None) -> str:
    """The prompt of one survey item; options lettered so that each answer is one letter."""
    return f"{_persona_line(persona)}{question}\n\nOptions:\n{lettered_options(options)}\nAnswer:"


def doc_to_text(doc: Mapping) -> str:
    return survey_prompt(doc["question"], doc["options"], doc["persona"] or None)


def _as_dict(value) -> dict:
    return dict(_logged_json(value))


# --------------------------------------------------------------------------- WVS


def question_ids(value) -> list[str]:
    """The ``questions`` metadata value as q_ids: a list (``[27, "28"]``) or ``"27,28"``."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or isinstance(value, bool):
        raise MetadataError(f"questions must be a list of WVS question ids (e.g. [27, 28]) or '27,28', got {value!r}")
    out = []
    for item in items:
        text = str(item).strip()
        if isinstance(item, bool) or not text.isdigit():
            raise MetadataError(f"questions: {item!r} is not a WVS question id (a number such as 27, as in WVQ.jsonl)")
        out.append(str(int(text)))
    if not out:
        raise MetadataError("questions is empty; name at least one WVS question id, or leave the key out for all")
    return out


def select_questions(questions: list, wanted, country: str, answered) -> list:
    """The questions named by the ``questions`` metadata key (all when None), in bank order.

    A q_id the bank lacks is an error; one the country did not ask is skipped with a warning, as
    in the whole task; none left is an error (a held-out subset must score something)."""
    if wanted is None:
        return questions
    ids = question_ids(wanted)
    known = {q.q_id for q in questions}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise MetadataError(f"questions: Q{', Q'.join(unknown)} not in the WVS question bank "
                            f"(valid: {min(known, key=int)}..{max(known, key=int)}, as in WVQ.jsonl)")
    chosen = [q for q in questions if q.q_id in set(ids)]
    unasked = [q.q_id for q in chosen if q.q_id not in answered]
    if unasked:
        log.warning("wvs (%s): questions Q%s have no valid answer in this country and are skipped",
                    country, ", Q".join(unasked))
    if len(unasked) == len(chosen):
        raise MetadataError(f"wvs ({country}): none of the questions {ids} has a valid answer in this country; "
                            "choose questions the country asked")
    return chosen


def load_wvs(data_dir: str | None = None, *, wvs_country: str, wvs_csv: str, persona: str = "",
             reversed_options: bool = False, questions=None, **metadata) -> datasets.DatasetDict:
    """One document per question the country answered; ``questions`` (metadata) keeps a subset,
    e.g. the held-out questions of a cross-validation fold."""
    check_keys(f"wvs ({wvs_country})", metadata, TASK_KEYS["wvs"])
    reversed_options = parse_bool("reversed_options", reversed_options)
    wanted = questions
    questions = load_questions(data_dir)
    answers = load_country(data_file(f"culturellm/{wvs_csv}", data_dir), questions, wvs_country)
    if not answers.distributions:
        raise ValueError(f"{answers.path}: no respondent gave a valid answer (a code in the scale) to any of the "
                         f"{len(questions)} questions; is this a WVS wave 7 respondent file for {wvs_country}?")
    rows = defaultdict(list)
    for q in select_questions(questions, wanted, wvs_country, answers.distributions):
        if q.q_id not in answers.distributions:
            continue
        order = presentation_order(len(q.scale.codes), reversed_options)
        rows["q_id"].append(q.q_id)
        rows["topic"].append(topic_key(q.topic))
        rows["question"].append(q.text)
        rows["options"].append([q.scale.labels[i] for i in order])
        rows["order"].append(order)  # presented position -> index in ascending code order
        rows["choices"].append(option_letters(len(order)))
        rows["country_dist"].append(answers.distributions[q.q_id].tolist())
        rows["persona"].append(persona)
    return datasets.DatasetDict({"test": datasets.Dataset.from_dict(dict(rows))})


def _in_code_order(doc: Mapping, results: Sequence) -> np.ndarray:
    return in_code_order(doc["order"], metrics.option_distribution([float(r[0]) for r in results]))


def process_results_wvs(doc: Mapping, results: Sequence) -> dict:
    """A document whose log-likelihoods are not all finite (a float16 overflow) has no answer
    distribution: its scores are NaN, and so are the task's (and its topic's) that average them."""
    if not stats.finite_scores([float(r[0]) for r in results]):
        jsd = math.nan
        out = dict.fromkeys(("wvs_jsd", "wvs_w1", "wvs_majority"), math.nan)
    else:
        p = _in_code_order(doc, results)
        q = np.asarray(doc["country_dist"])
        jsd = metrics.jsd_similarity(p, q)
        out = {
            "wvs_jsd": jsd,
            "wvs_w1": metrics.w1_similarity(p, q),
            "wvs_majority": metrics.majority_agreement(p, q),
        }
    out.update({f"wvs_jsd_{t}": (doc["topic"], jsd) for t in WVS_TOPICS})
    return stats.with_ci(out)


def _topic_values(topic: str):
    def select(items):
        return [float(v) for t, v in items if t == topic]

    return select


def _topic_mean(topic: str):
    select = _topic_values(topic)

    def aggregate(items):
        return stats.mean(select(items))

    aggregate.__name__ = f"wvs_jsd_{topic}"
    return aggregate


def _country_mean(name: str):
    """A WVS headline metric's aggregation: the mean over the country's questions (``stats.mean``).

    A function of ours rather than lm-eval's built-in ``mean`` on purpose: lm-eval then writes no standard
    error of its own for the task ("N/A"), and so none for a ``wvs`` group, whose formula (the root of the
    summed squared task errors over k) treats the countries as independent samples while they answer the
    same questions with the same prompt. For SmolLM2-135M-Instruct over the 11 countries it printed
    wvs_jsd 0.3463 ± 0.0060, a normal 95 % half-width of 0.012, where the question-clustered bootstrap of
    ``culture-leaderboard`` gives [0.324, 0.372]. A task's interval is in its ``_ci_`` rows, a group's in
    the leaderboard.
    """
    def aggregate(items):
        return stats.mean(items)

    aggregate.__name__ = aggregate.__qualname__ = name
    return aggregate


def majority_mean(items: Sequence[float]) -> float:
    """``wvs_majority`` over questions: the mean of 0 / 1 scores (1/2 for a tie). A model that misses, or hits,
    every question gets the Clopper-Pearson interval of 0 (or n) of n, not the bootstrap's point [0, 0]."""
    return stats.mean(items)


majority_mean.batched = stats.mean.batched
majority_mean.alike_ci = stats.alike_share_ci
# the aggregate each headline metric's interval resamples
WVS_AGGREGATES = {"wvs_jsd": stats.mean, "wvs_w1": stats.mean, "wvs_majority": majority_mean}
WVS_METRICS = ("wvs_jsd", "wvs_w1", "wvs_majority", *(f"wvs_jsd_{t}" for t in WVS_TOPICS))
for _name, _aggregate in WVS_AGGREGATES.items():
    globals()[_name] = _country_mean(_name)
    globals().update(stats.ci_aggregations(_name, _aggregate, nonfinite="wvs_jsd, wvs_w1, wvs_majority, the "
                                           "wvs_jsd_<topic> of their topics and their intervals"
                                           if _name == "wvs_jsd" else None))
for _topic in WVS_TOPICS:
    globals()[f"wvs_jsd_{_topic}"] = _topic_mean(_topic)
    # a topic's interval resamples that topic's questions only
    globals().update(stats.ci_aggregations(f"wvs_jsd_{_topic}", stats.mean, select=_topic_values(_topic)))


# --------------------------------------------------------------------------- VSM13


def _check_constants(country: str | None, constants) -> None:
    """``--metadata constants``: a misspelt name stops the task instead of counting as 0."""
    try:
        constants_by_dimension(constants)
    except ValueError as err:
        raise MetadataError(f"vsm13 ({country}): --metadata {err}") from None


_GIVEN_TARGETS: list[tuple[object, str | None]] = []  # (a --metadata target, the country it scored), kept alive


def _claim_target(target, country: str | None) -> None:
    """lm-eval hands one ``--metadata`` (the very same objects) to every task it loads: an explicit
    ``target`` reaching the VSM13 tasks of two countries would score both against one profile."""
    if target is None:
        return
    for given, other in _GIVEN_TARGETS:
        if given is target and other != country:
            raise MetadataError(f"--metadata target reached vsm13 ({other}) and vsm13 ({country}): one profile "
                                "is the target of one country; run each country's VSM13 task with its own target")
    _GIVEN_TARGETS.append((target, country))


def _check_target_country(country: str | None, given: str, code: str, persona: str, data_dir: str | None) -> None:
    """``target_country`` is for a country without a VSM13 task of its own, on a task without persona:
    another task's country would be reported in this task's place, and a persona task asks as its own
    country (naming the task's own country changes nothing)."""
    own = resolve_target(country, None, data_dir).code if country else None
    if code == own:
        return
    if persona:
        raise MetadataError(f"vsm13 ({country}): --metadata target_country {given!r} on a persona task, which asks as "
                            f"{persona}: score {code} with the task without persona")
    entry = next((c for c in listed_countries() if c.get("hofstede") == code), None)
    if entry is not None:
        raise MetadataError(f"vsm13 ({country}): --metadata target_country {given!r} is {code}, which has a task of "
                            f"its own: run vsm13_{entry['slug']} with --metadata target, without target_country")


def load_vsm13(data_dir: str | None = None, *, vsm13_country: str | None = None, persona: str = "",
               reversed_options: bool = False, both_orders: bool = False, target=None, target_source: str = "",
               target_country: str = "", constants=None, answer_mode: str = "expected",
               **metadata) -> datasets.DatasetDict:
    """The 24 items; target (with its source), constants and answer mode may come from ``--metadata``.

    ``persona`` is the country name of the in-context baseline ("" = the model's own answers).
    ``both_orders``: every item asked twice, options listed then reversed (48 documents, item by item); an
    item's score and answer distribution are the mean of the two (``_item_table``), so a bias towards a
    position cancels within each item instead of leaning each index by its items' option order.
    ``target_country``: the country whose scores ``target`` is (default: the task's own), so that a
    country without a task of its own is ranked as itself, not in the place of the task's country.
    """
    check_keys(f"vsm13 ({vsm13_country})", metadata, TASK_KEYS["vsm13"])
    _check_constants(vsm13_country, constants)
    reversed_options = parse_bool("reversed_options", reversed_options)
    both_orders = parse_bool("both_orders", both_orders)
    if both_orders and reversed_options:
        raise MetadataError(f"vsm13 ({vsm13_country}): dataset_kwargs both_orders and reversed_options are both true; "
                            "both_orders already asks every item in the reversed order too: drop reversed_options")
    _claim_target(target, vsm13_country)
    if target_source and (target is None or not len(target)):  # the file's scores would be logged as from it
        raise MetadataError(f"vsm13 ({vsm13_country}): --metadata target_source {target_source!r} names the source "
                            "of an explicit target, but no target is given; add the target or drop target_source")
    if not isinstance(target_country, str) or target_country and (not target_country.strip() or target is None
                                                                   or not len(target)):
        raise MetadataError(f"vsm13 ({vsm13_country}): --metadata target_country {target_country!r} names the country "
                            "of an explicit target: give it as a string, beside the target")
    try:
        chosen = resolve_target(target_country or vsm13_country, target, data_dir)
    except ValueError as err:
        if target is None:
            raise
        raise MetadataError(f"vsm13 ({vsm13_country}): --metadata target: {err}; e.g. --metadata "
                            "'{\"target\": [pdi, idv, mas, uai, lto, ivr], \"target_source\": \"...\"}'") from None
    if target_country:
        _check_target_country(vsm13_country, target_country, chosen.code, persona, data_dir)
    if answer_mode not in ("expected", "argmax"):
        raise ValueError(f"answer_mode must be 'expected' or 'argmax', got {answer_mode!r}")
    source = target_source or ("--metadata target" if target is not None and len(target) else "Hofstede 2015 file")
    missing = [d for d in DIMENSIONS if d not in chosen.scores]
    if missing:
        log.warning(
            "VSM13 target %s (%s) lacks %s: vsm13_l1/vsm13_mae cover %d of 6 dimensions (vsm13_dims) and are not "
            "comparable with 6-dimension losses; pass a full profile with --metadata "
            "'{\"target\": [pdi, idv, mas, uai, lto, ivr], \"target_source\": \"...\"}'",
            chosen.name, source, ", ".join(missing), 6 - len(missing),
        )
    # what vsm13_margin / vsm13_rank compare with: Hofstede's countries, the target's row replaced by its scores
    comparison = json.dumps({"code": chosen.code, "name": chosen.name,
                             "data_dir": str(resolve_data_root(data_dir).resolve())})
    rows = defaultdict(list)
    orders = (False, True) if both_orders else (reversed_options,)
    for item, reverse in itertools.product(load_items(data_dir), orders):  # item by item, listed first
        order = presentation_order(len(item.options), reverse)
        rows["item"].append(item.number)
        rows["question"].append(f"{item.stem}\n{item.text}" if item.stem else item.text)
        rows["options"].append([item.options[i] for i in order])
        rows["order"].append(order)
        rows["values"].append(list(item.values))
        rows["choices"].append(option_letters(len(order)))
        rows["persona"].append(persona)
        rows["target"].append(json.dumps(chosen.scores))
        rows["target_source"].append(source)
        rows["constants"].append(json.dumps(dict(constants or {})))
        rows["answer_mode"].append(answer_mode)
        rows["comparison"].append(comparison)
        rows[BOTH_ORDERS_MARK].append(("reversed" if reverse else "listed") if both_orders else "")
    return datasets.DatasetDict({"test": datasets.Dataset.from_dict(dict(rows))})


def item_result(doc: Mapping, loglikelihoods: Sequence[float]) -> tuple:
    """One item's contribution: (item, score, target, constants, answer distribution, values, comparison, the
    order it was asked in when the task asks both: "listed" / "reversed", else "").

    The answer distribution is a respondent's distribution over the values (in value order): the
    model's option probabilities, or all mass on the most likely option with ``argmax``; the
    score is its expected value. The interval of the indices samples respondents from it. Log-likelihoods
    that are not all finite give a NaN score and distribution: the indices that use the item are NaN.
    """
    if not stats.finite_scores(loglikelihoods):  # a float16 overflow: no answer, NaN (never the first option)
        p = np.full(len(doc["order"]), math.nan)
        score = math.nan
    else:
        p = in_code_order(doc["order"], metrics.option_distribution(loglikelihoods))
        score = metrics.item_score(p, doc["values"], doc["answer_mode"])
        if doc["answer_mode"] == "argmax":
            p = np.eye(len(p))[int(np.argmax(p))]
    return (int(doc["item"]), score, doc["target"], doc["constants"],
            tuple(float(x) for x in p), tuple(float(v) for v in doc["values"]), doc.get("comparison", ""),
            doc.get(BOTH_ORDERS_MARK, ""))


def item_means(docs: Sequence[Mapping], loglikelihoods: Sequence[Sequence[float]]) -> dict[int, float]:
    """Each VSM13 item's mean score over its documents under one prompt, as the task's aggregation
    reads them (its indices are ``vsm13_indices`` of these): for the aligner's and the steering
    matrix's intervals, which resample the items' terms."""
    means = _item_table([item_result(doc, lls) for doc, lls in zip(docs, loglikelihoods)])[0]
    return dict(sorted(means.items()))


# vsm13_margin / vsm13_rank: the country-specific comparison (culture_tasks.survey.compare), in lm-eval's output
COUNTRY_METRICS = ("vsm13_margin", "vsm13_rank")
VSM13_METRICS = ("vsm13_l1", "vsm13_mae", *DIMENSIONS, *COUNTRY_METRICS)


def process_results_vsm13(doc: Mapping, results: Sequence) -> dict:
    result = item_result(doc, [float(r[0]) for r in results])
    return {**stats.with_ci({key: result for key in VSM13_METRICS}), "vsm13_dims": result}


# a leaderboard reads every row's log of every VSM13 task, each metric's column, and compares each with the
# baseline's: its resamples are kept for as many logs as a board holds (about 100 kB each)
BOARD_LOGS = 512


def _content_cache(fn=None, *, size: int = 16, context=None):
    """Memoise ``fn(items)`` by the items' content: lm-eval hands every metric its own equal list. The
    ``size`` latest contents are kept (the oldest dropped first). ``context(items)``: what else the result
    is computed from, part of the key (``reference_version``: Hofstede's file as it is now)."""
    if fn is None:
        return functools.partial(_content_cache, size=size, context=context)
    cache: dict[str, object] = {}

    def cached(items, **kwargs):
        key = repr((list(items), sorted(kwargs.items()), context(items) if context else None))
        if key not in cache:
            if len(cache) >= size:
                cache.pop(next(iter(cache)))
            cache[key] = fn(items, **kwargs)
        return cache[key]

    cached.__wrapped__ = fn
    cached.cache = cache
    return cached


def _item_table(items: Sequence[tuple]):
    """Per item number: mean score and mean answer distribution over its documents."""
    scores, dists, values = defaultdict(list), defaultdict(list), {}
    for number, score, _, _, dist, vals, *_ in items:
        scores[int(number)].append(float(score))
        dists[int(number)].append(np.asarray(dist, dtype=float))
        values[int(number)] = np.asarray(vals, dtype=float)
    means = {k: float(np.mean(v)) for k, v in scores.items()}
    return means, {k: np.mean(v, axis=0) for k, v in dists.items()}, values


def reference_version(items: Sequence[tuple]) -> str:
    """The content of the Hofstede file that VSM13 results' margin and rank are ranked in ("" where they name
    none): a cache of their scores keyed by the results alone would serve an edited file's scores from before."""
    comparison = _comparison(items) if len(items) else {}
    return file_digest(data_file(HOFSTEDE_FILE, comparison["data_dir"])) if comparison else ""


def _reference(data_dir: str) -> compare.Reference:
    """Hofstede's countries as the file holds them now: cached by its content, not its folder, so that an
    edit between two evaluations in one process is read (the target comes from the documents, loaded afresh;
    the countries it is ranked among must not come from an earlier reading of the file)."""
    return _reference_of(data_dir, file_digest(data_file(HOFSTEDE_FILE, data_dir)))


@functools.lru_cache(maxsize=8)
def _reference_of(data_dir: str, digest: str) -> compare.Reference:
    """``_reference`` of one content of the file (``digest``): read and its defects warned about once."""
    return compare.hofstede_reference(data_dir)


def vsm13_scores(means: Mapping[int, float | np.ndarray], target: Mapping, constants: Mapping,
                 comparison: Mapping) -> dict:
    """Every VSM13 metric of these item means (floats, or arrays of resamples) as the task computes it."""
    indices = vsm13_indices(means, constants)
    return {**indices, **_index_scores(indices, target, comparison)}


def _index_scores(indices: Mapping, target: Mapping, comparison: Mapping) -> dict:
    """The losses and the country comparison of these indices (floats, or arrays of resamples)."""
    if comparison:  # the target among Hofstede's countries (its row replaced by the scores the task uses)
        chosen = Target(comparison["name"], comparison["code"], {k: float(v) for k, v in target.items()})
        return compare.loss_and_margin(indices, chosen, _reference(comparison["data_dir"]))
    # a document made without the loader (no reference named): nothing to rank against
    return compare.loss_and_margin(indices, Target("", "", dict(target)), None)


@_content_cache(size=BOARD_LOGS, context=reference_version)
def summarise_vsm13(items: Sequence[tuple]) -> dict[str, float]:
    """Indices and loss from per-item results (the mean score per item over its documents).

    Computed once per evaluation: every VSM13 metric's aggregation reads this cached summary.
    """
    means, _, _ = _item_table(items)
    target, constants, comparison = _as_dict(items[0][2]), _as_dict(items[0][3]), _comparison(items)
    if len(means) < 24:
        log.warning("VSM13 needs all 24 items, got %d (items %s missing: --limit below the task's documents, 24, or 48 "
                    "in a _balanced task, or --samples without "
                    "every item?): indices are NaN", len(means), _spans(sorted(set(range(1, 25)) - set(means))))
        return {key: math.nan for key in VSM13_METRICS}
    one_order = _one_order_items(items)
    if one_order:
        log.warning("VSM13 _balanced task: item%s %s asked in one option order only (--limit below the task's 48 "
                    "documents, or --samples without both orders of every item?): their means would lean to that "
                    "order, indices are NaN", "s" if len(one_order) > 1 else "", _spans(one_order))
        return {key: math.nan for key in VSM13_METRICS}
    out = {k: float(v) for k, v in vsm13_scores(means, target, constants, comparison).items()}
    nan = [k for k in VSM13_METRICS if not math.isfinite(out[k])]
    stats.warn_nonfinite(sum(not math.isfinite(float(item[1])) for item in items), len(items),
                         f"{', '.join(nan)} (the metrics that use their items) and their intervals")
    return out


def _one_order_items(items: Sequence[tuple]) -> list[int]:
    """The items of a ``_balanced`` task's documents asked in one option order only: an item mean of one order
    keeps the position bias that asking both orders cancels. None of a one-order task's documents."""
    orders: dict[int, set] = defaultdict(set)
    for item in items:
        orders[int(item[0])].add(item[7] if len(item) > 7 else "")
    if not any(side for sides in orders.values() for side in sides):
        return []
    return sorted(k for k, sides in orders.items() if not {"listed", "reversed"} <= sides)


def _spans(numbers: Sequence[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``1-3, 7``."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _comparison(items: Sequence[tuple]) -> dict:
    return _as_dict(items[0][6]) if len(items[0]) > 6 else {}


@_content_cache(size=BOARD_LOGS, context=reference_version)
def vsm13_replicates(items: Sequence[tuple], *, iters: int = stats.ITERS, seed: int = stats.SEED,
                     respondents: int = VSM13_RESPONDENTS) -> dict[str, np.ndarray]:
    """Every VSM13 metric in each resample of a seeded respondent bootstrap: arrays of ``iters`` values.

    The indices need all 24 items (each uses specific ones), so items cannot be resampled.
    Instead each resample asks ``respondents`` simulated respondents every item, each answering
    from the model's own answer distribution for that item, and recomputes the indices and
    losses from their item means - the sampling error of a survey of that size of "the model"
    as a population. An ``argmax`` answer is deterministic, so every resample is the value.
    The draws go item by item in item order from one ``Generator(seed)``: tasks asked with the
    same answer distributions (the countries of ``vsm13``: one prompt, other targets) get the
    same respondents in resample b, so their resamples are paired.
    """
    summary = summarise_vsm13(items)
    if not any(math.isfinite(summary[key]) for key in VSM13_METRICS):
        return {key: np.full(iters, math.nan) for key in VSM13_METRICS}
    _, dists, values = _item_table(items)
    target, constants = _as_dict(items[0][2]), _as_dict(items[0][3])
    rng = np.random.default_rng(seed)
    # an item without finite scores (a NaN distribution) is NaN in every resample: so are the metrics that use it
    sampled = {k: rng.multinomial(respondents, dists[k] / dists[k].sum(), size=iters) @ values[k] / respondents
               if np.isfinite(dists[k]).all() else np.full(iters, math.nan) for k in sorted(dists)}
    runs = vsm13_scores(sampled, target, constants, _comparison(items))  # arrays: one value per resample
    return {key: np.broadcast_to(np.asarray(runs[key], dtype=float), (iters,)) for key in VSM13_METRICS}


@_content_cache(context=reference_version)
def vsm13_intervals(items: Sequence[tuple], *, iters: int = stats.ITERS, seed: int = stats.SEED,
                    level: float = stats.LEVEL, respondents: int = VSM13_RESPONDENTS) -> dict[str, tuple[float, float]]:
    """Percentile interval of every VSM13 metric from the seeded respondent bootstrap of ``vsm13_replicates``
    (an ``argmax`` answer is deterministic, so its interval has width 0)."""
    runs = vsm13_replicates(items, iters=iters, seed=seed, respondents=respondents)
    return {key: stats.percentile_interval(runs[key], level) for key in VSM13_METRICS}


def _logged_json(value):
    """A logged target or constants (a mapping, its JSON, or nothing), unchecked: a string that is not JSON says so."""
    if value in (None, ""):
        return {}
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise ValueError(f"not JSON: {value!r}") from None


def logged_settings(item: tuple) -> tuple[dict, dict]:
    """The target and constants a VSM13 document's logged result carries (``process_results_vsm13``), which
    its metrics are computed from; a value the task does not write (a hand-edited log) is a ValueError naming it."""
    try:
        constants = _logged_json(item[3])
        constants_by_dimension(constants or None)
    except ValueError as err:
        raise ValueError(f"its VSM13 constants are not valid ({err})") from None
    try:
        target = _logged_json(item[2])
        if not isinstance(target, dict):
            raise ValueError(f"not a mapping of dimensions to scores: {target!r}")
        unknown = [k for k in target if k not in DIMENSIONS]
        if unknown:
            raise ValueError(f"unknown dimension(s) {', '.join(map(repr, unknown))}; the dimensions are "
                             f"{', '.join(DIMENSIONS)}")
        for key, value in target.items():
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise ValueError(f"{key} must be a number, got {value!r}")
        if not any(value is not None and math.isfinite(value) for value in target.values()):
            raise ValueError(f"no dimension has a score: {target!r}")
    except ValueError as err:
        raise ValueError(f"its VSM13 target is not valid ({err})") from None
    return dict(target), dict(constants)


def logged_vsm13(items: Sequence[tuple]) -> tuple[dict[int, float], dict, dict, dict]:
    """A VSM13 task's per-document results read back: (each item's mean score over its documents, in item
    order; the target; the constants; the country comparison), what its metrics are computed from."""
    target, constants = logged_settings(items[0])
    return dict(sorted(_item_table(items)[0].items())), target, constants, _comparison(items)


@_content_cache(size=BOARD_LOGS, context=reference_version)
def vsm13_pair_replicates(items: Sequence[tuple], *, iters: int = stats.ITERS,
                          seed: int = stats.SEED) -> dict[str, np.ndarray]:
    """Every VSM13 metric (the indices, the losses and the country comparison) of each item-pair resample of a
    task's per-document results (``logged_vsm13``'s item means through ``compare.replicate_indices``: one seed, so
    two models' resample b draw the same item pairs): arrays of ``iters`` values."""
    means, target, constants, comparison = logged_vsm13(items)
    indices = compare.replicate_indices(means, constants, iters=iters, seed=seed)
    scores = {**indices, **_index_scores(indices, target, comparison)}
    return {key: np.broadcast_to(np.asarray(value, dtype=float), (iters,)) for key, value in scores.items()}


def vsm13_dims(items: Sequence[tuple]) -> int:
    """How many of the six dimensions the loss covers (those the target has)."""
    return sum(1 for d in DIMENSIONS if d in _as_dict(items[0][2]))


def _summary_metric(key: str):
    def aggregate(items):
        return summarise_vsm13(items)[key]

    aggregate.__name__ = key
    return aggregate


def _interval_metric(key: str, position: int):
    def aggregate(items):
        return vsm13_intervals(items)[key][position]

    aggregate.__name__ = key + stats.CI_SUFFIXES[position]
    return aggregate


for _key in VSM13_METRICS:
    globals()[_key] = _summary_metric(_key)
    for _position, _suffix in enumerate(stats.CI_SUFFIXES):
        globals()[_key + _suffix] = _interval_metric(_key, _position)
