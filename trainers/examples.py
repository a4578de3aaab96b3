"""Chat-format training examples: a question variant, its seed's options, the country's answer.

The prompt is the one the ``wvs_*`` lm-eval tasks score (``survey_prompt``: lettered options,
``Answer:``), so a fine-tuned model is trained on exactly the format the harness measures; the
answer is the letter of the country's majority option (or of its rounded mean answer), read
through the survey-scoring core's loader, which drops negative missing-answer codes and the
pre-computed average rows.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from culture_tasks.atomic import write_text_atomic
from culture_tasks.data_root import data_file, resolve_data_root
from culture_tasks.metadata import check_bool_fields
from culture_tasks.outputs import OutputLock, claim_output
from culture_tasks.prompts import LETTERS
from culture_tasks.survey.tasks import survey_prompt
from culture_tasks.survey.wvs import QUESTIONS_FILE, CountryAnswers, Question, load_country, load_questions
from trainers.augment import check_finished
from trainers.cultures import ONE, Country, countries_of, culture_key
from trainers.questions import Variant, normalise, read_variants, seed_question_variants

log = logging.getLogger("trainers")
ANSWER_RULES = ("majority", "mean")
HALF_TOLERANCE = 1e-9  # float error of a mean from proportions; a mean of n < 10**8 answers is a multiple of 1/n


def answer_index(distribution, codes, rule: str = "majority") -> int:
    """Position (in ascending code order) of the country's answer.

    majority: the most chosen code; a tie goes to the lower code. mean: the code nearest the
    respondents' mean answer, halves rounded up (mean 2.5 on 1..4 -> 3). The mean comes from
    proportions, so an exact half may arrive as 2.4999999999999996 (1, 6, 6, 1 respondents): it is
    rounded with a tolerance far below the 1/(2n) by which n respondents' mean can miss a half.
    """
    p = np.asarray(distribution, dtype=float)
    if rule == "majority":
        return int(np.argmax(p))
    if rule == "mean":
        mean = float(np.dot(p, codes) / p.sum())
        nearest = math.floor(mean + 0.5 + HALF_TOLERANCE)
        return int(np.argmin([abs(c - nearest) for c in codes]))
    raise ValueError(f"answer rule must be one of {ANSWER_RULES}, got {rule!r}")


@dataclass
class ExampleSet:
    rows: list[dict]
    counts: Counter = field(default_factory=Counter)
    inputs: list[str] = field(default_factory=list)  # files read: the output may not be one of them

    def write(self, path: Path, *, overwrite: bool = False) -> None:
        """Write atomically, locked against a second run writing the same file; an existing file is
        replaced only with ``overwrite``, an input never."""
        with OutputLock.for_file(path):
            claim_output(path, overwrite=overwrite, inputs=self.inputs, folder=False, resumable=False)
            write_text_atomic(Path(path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.rows))


def country_csv(country: Country, data_dir: str | None) -> Path:
    """The country's WVS answers file in the data root (an input of every run that labels with it)."""
    return data_file(f"culturellm/{country.wvs_csv}", data_dir)


def country_answers(country: Country, questions: list[Question], data_dir: str | None) -> CountryAnswers:
    answers = load_country(country_csv(country, data_dir), questions, country.slug)
    if not answers.distributions:
        raise ValueError(f"{answers.path}: no valid answer to any question for {country.slug} "
                         "(every code missing or negative); it cannot label training examples")
    return answers


@dataclass
class DataConfig:
    """Settings of `culture-train data`: which culture, which questions, which answer rule."""

    culture: str = field(metadata={
        "help": "arabic, bengali, chinese, english, german, korean, portuguese, spanish, turkish, "
                "or one (CultureLLM-One: every culture)"})
    output: str = field(metadata={"help": "training examples JSONL to write"})
    questions: str | None = field(default=None, metadata={
        "help": "augmented questions JSONL (`culture-train augment`'s or upstream's new_WVQ_*.jsonl)"})
    rule: str = field(default="majority", metadata={
        "help": "the country's answer: the most chosen code, or the code nearest the mean answer",
        "choices": list(ANSWER_RULES)})
    include_seed_questions: bool = field(default=True, metadata={
        "help": "also train on the seed questions' own wording", "aliases": ["--include-seeds"]})
    tag_country: bool | None = field(default=None, metadata={
        "help": "persona line naming the country in each prompt (default: only for one)"})
    data_dir: str | None = field(default=None, metadata={"help": "data root (default: $CULTURE_DATA_DIR)"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output"})

    def __post_init__(self):
        check_bool_fields(self)
        if self.rule not in ANSWER_RULES:
            raise ValueError(f"--rule must be one of {ANSWER_RULES}, got {self.rule!r}")
        countries_of(self.culture)  # an unknown culture fails here, before any file is read


def _variants(questions: list[Question], questions_file: str | None, include_seed_questions: bool,
              counts: Counter) -> list[Variant]:
    """The seed questions' wordings (unless excluded) and the file's variants, without repeating them
    (a variant with its seed's own wording is counted)."""
    variants: list[Variant] = seed_question_variants(questions) if include_seed_questions else []
    if questions_file:
        check_finished(questions_file)
        extra, skipped = read_variants(Path(questions_file), questions)
        counts.update({f"variant skipped: {k}": v for k, v in skipped.items()})
        own = {(v.q_id, normalise(v.text)) for v in variants}  # as read_variants counts duplicates
        new = [v for v in extra if (v.q_id, normalise(v.text)) not in own]
        if len(new) < len(extra):
            counts["variant skipped: same wording as its seed question"] += len(extra) - len(new)
        variants += new
    return variants


def _country_rows(country: Country, answers: CountryAnswers, variants: list[Variant], by_id: dict[str, Question],
                  rule: str, tag: bool, counts: Counter) -> list[dict]:
    """One chat example per variant the country answered, labelled with its answer's letter."""
    unanswered = sorted({v.q_id for v in variants if v.q_id not in answers.distributions}, key=int)
    if unanswered:
        log.warning("%s: no valid answer to Q%s; their variants are skipped", country.slug, ", Q".join(unanswered))
    if rule == "majority":
        _count_ties(country, answers, sorted({v.q_id for v in variants} & set(answers.distributions), key=int), counts)
    rows = []
    for v in variants:
        q = by_id[v.q_id]
        if v.q_id not in answers.distributions:
            counts[f"{country.slug}: skipped, question without valid answer"] += 1
            continue
        index = answer_index(answers.distributions[v.q_id], q.scale.codes, rule)
        prompt = survey_prompt(v.text, list(q.scale.labels), country.name if tag else None)
        rows.append({
            "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": LETTERS[index]}],
            "culture": country.culture, "country": country.slug, "q_id": v.q_id, "step": v.step,
            "answer_code": q.scale.codes[index], "rule": rule,
        })
        counts[f"{country.slug}: examples"] += 1
    return rows


def _count_ties(country: Country, answers: CountryAnswers, q_ids: list[str], counts: Counter) -> None:
    """A majority shared by two codes is labelled with the lower one by convention, not by the
    data: such questions are counted and named."""
    tied = [q for q in q_ids if np.count_nonzero(answers.distributions[q] == answers.distributions[q].max()) > 1]
    if tied:
        counts[f"{country.slug}: questions with a tied majority (lower code taken)"] = len(tied)
        log.warning("%s: the most chosen answer to Q%s is tied; the lower code is taken", country.slug,
                    ", Q".join(tied))


def _count_disagreements(culture: str, all_answers: list[CountryAnswers], names: list[str],
                         questions: list[Question], rule: str, counts: Counter) -> None:
    """Untagged countries of one culture may answer a question differently: both are kept, as
    upstream did, and the questions where they differ are counted."""
    differ = [q.q_id for q in questions if all(q.q_id in a.distributions for a in all_answers)
              and len({answer_index(a.distributions[q.q_id], q.scale.codes, rule) for a in all_answers}) > 1]
    counts["questions whose countries' answers differ"] = len(differ)
    if differ:
        log.warning("%s: %s answer %d of the questions differently (Q%s); both answers are kept, as upstream did",
                    culture, " and ".join(names), len(differ), ", Q".join(differ))


def _tag_countries(culture: str, tag_country: bool | None) -> bool:
    """Whether prompts name the country: asked for, or by default only for CultureLLM-One."""
    return (culture_key(culture) == ONE) if tag_country is None else tag_country


def _all_country_rows(countries: list[Country], questions: list[Question], variants: list[Variant],
                      data_dir: str | None, rule: str, tag: bool, counts: Counter) -> tuple[list[dict], list]:
    """Every country's examples, and each country's answers (for the disagreement count)."""
    by_id = {q.q_id: q for q in questions}
    rows, all_answers = [], []
    for country in countries:
        answers = country_answers(country, questions, data_dir)
        all_answers.append(answers)
        rows += _country_rows(country, answers, variants, by_id, rule, tag, counts)
    return rows, all_answers


def build_examples(culture: str, *, questions_file: str | None = None, data_dir: str | None = None,
                   rule: str = "majority", include_seed_questions: bool = True,
                   tag_country: bool | None = None) -> ExampleSet:
    """Examples of one culture (or ``one``: every culture, each prompt tagged with its country)."""
    if rule not in ANSWER_RULES:
        raise ValueError(f"answer rule must be one of {ANSWER_RULES}, got {rule!r}")
    countries = countries_of(culture)
    tag = _tag_countries(culture, tag_country)
    questions = load_questions(data_dir)
    counts: Counter = Counter()
    variants = _variants(questions, questions_file, include_seed_questions, counts)
    rows, all_answers = _all_country_rows(countries, questions, variants, data_dir, rule, tag, counts)
    if len(countries) > 1 and not tag:
        _count_disagreements(culture, all_answers, [c.slug for c in countries], questions, rule, counts)
    if not rows:
        raise ValueError(f"no training example for {culture!r}: {dict(counts)}")
    return ExampleSet(rows, counts, _inputs(countries, questions_file, data_dir))


def _inputs(countries: list[Country], questions_file: str | None, data_dir: str | None) -> list[str]:
    """Every file the examples were read from: the seed bank, the country files and the variants
    file; the output may be none of them, even with --overwrite, nor lie in the data root."""
    files = [data_file(QUESTIONS_FILE, data_dir), *(country_csv(c, data_dir) for c in countries),
             resolve_data_root(data_dir)]
    return [str(f) for f in files] + ([str(questions_file)] if questions_file else [])
