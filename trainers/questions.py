"""Question variants for training: the WVS seed questions and paraphrases of them.

One reader for three kinds of file, so that each is accepted wherever another is: the seed
bank (``WVQ.jsonl``), upstream's augmented sets (``new_WVQ_*.jsonl``: some rows carry only
``ori_content`` and ``q_content``, the seed is found by its text) and this package's own
augmentation output (which adds ``step``, ``similarity`` and ``generator``). The option scale
always comes from the seed bank, so that a paraphrase is answered on its seed's scale.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from culture_tasks.jsonl import read_jsonl_lines
from culture_tasks.survey.wvs import Question
from trainers.keys import check_row_keys

log = logging.getLogger("trainers")
# the seed bank's keys (q_id, q_content, topic, option), upstream's (+ ori_content) and augment's (+ step,
# similarity, generator)
QUESTION_KEYS = frozenset({"q_id", "q_content", "ori_content", "topic", "option", "step", "similarity", "generator"})
STEPS = ("seed", "paraphrase", "synonym", "upstream")  # where a wording came from: Variant.step
TEXT_FIELDS = ("q_content", "ori_content", "topic", "option", "generator")  # text, or absent / null
OTHER_SEED_WORDING = "wording of another seed question"  # skipped rows, as counted and reported
SHARED_WORDING = "same wording under several seed questions"


def check_row_types(row: dict, where: str) -> None:
    """A question row's fields as the readers use them: a mapping or a number as ``q_content`` became the
    text of a training prompt ("{'text': ...}"), a misspelt ``step`` a provenance no count knows."""
    for key in TEXT_FIELDS:
        if row.get(key) is not None and not isinstance(row[key], str):
            raise ValueError(f"{where}: {key} must be text, got {row[key]!r}")
    q_id = row.get("q_id")
    if q_id is not None and (isinstance(q_id, bool) or not isinstance(q_id, (str, int))):
        raise ValueError(f"{where}: q_id must be the seed question's id (text or a whole number), got {q_id!r}")
    if row.get("step") is not None and row["step"] not in STEPS:
        raise ValueError(f"{where}: step must be one of {', '.join(STEPS)}, got {row['step']!r}")


@dataclass(frozen=True)
class Variant:
    q_id: str
    text: str
    step: str  # one of STEPS
    similarity: float | None = None
    generator: str | None = None


def normalise(text: str) -> str:
    """The form under which two wordings count as duplicates."""
    return re.sub(r"[^\w]+", " ", text.casefold()).strip()


def seed_question_variants(questions: list[Question]) -> list[Variant]:
    """The seed questions' own wordings, as variants of step ``seed``."""
    return [Variant(q.q_id, q.text, "seed") for q in questions]


def seed_wordings(questions: list[Question]) -> dict[str, str]:
    """Each seed question's wording (``normalise``d) -> its q_id: whose prompt a training row's wording is."""
    return {normalise(q.text): q.q_id for q in questions}


def drop_shared_wordings(variants: list[Variant], questions: list[Question], skipped: Counter) -> list[Variant]:
    """The variants whose wording belongs to their own seed question only. A wording that is another seed
    question's (a synonym rewrite of Q29 that became Q31's text), or that the file gives under several seed
    questions, would put a question's prompt into the training rows of another: a cross-validation holding
    that question out would train on it, labelled with another question's answer. Every such row is dropped
    (which question it really rewrites cannot be told) and counted in ``skipped``."""
    seed_of = seed_wordings(questions)
    owners: dict[str, set[str]] = {}
    for v in variants:
        owners.setdefault(normalise(v.text), set()).add(v.q_id)
    kept = []
    for v in variants:
        text = normalise(v.text)
        if seed_of.get(text, v.q_id) != v.q_id:
            skipped[OTHER_SEED_WORDING] += 1
        elif len(owners[text]) > 1:
            skipped[SHARED_WORDING] += 1
        else:
            kept.append(v)
    return kept


def read_variants(path: Path, questions: list[Question]) -> tuple[list[Variant], Counter]:
    """Variants of a JSONL file, deduplicated per seed, without wordings of other seeds
    (``drop_shared_wordings``); counts of what was skipped and why."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"question file {path} does not exist")
    by_id = {q.q_id: q for q in questions}
    by_text = {normalise(q.text): q for q in questions}
    seen: set[tuple[str, str]] = set()
    skipped: Counter = Counter()
    out: list[Variant] = []
    for line_no, row in read_jsonl_lines(path):
        check_row_keys(row, QUESTION_KEYS, f"{path}:{line_no}", "question")
        check_row_types(row, f"{path}:{line_no}")
        text = (row.get("q_content") or "").strip()
        if not text:
            raise ValueError(f"{path}:{line_no}: missing field 'q_content' (the question text); "
                             "each line needs q_content and either q_id or ori_content (the seed question)")
        q_id = str(row["q_id"]) if row.get("q_id") not in (None, "") else None
        if q_id is None:
            if not row.get("ori_content"):
                raise ValueError(f"{path}:{line_no}: missing field 'q_id' and 'ori_content'; give the seed "
                                 "question's q_id (as in WVQ.jsonl) or its text as ori_content")
            seed = by_text.get(normalise(str(row["ori_content"])))
            if seed is None:
                skipped["ori_content matches no seed question"] += 1
                continue
            q_id = seed.q_id
        elif row.get("ori_content"):
            seed = by_text.get(normalise(str(row["ori_content"])))
            if seed is not None and seed.q_id != q_id:  # labelled with one question's answer, worded from another
                raise ValueError(f"{path}:{line_no}: q_id {q_id}, but ori_content is the wording of seed question "
                                 f"{seed.q_id}; correct one of the two")
        if q_id not in by_id:
            skipped[f"q_id {q_id} not in the seed bank"] += 1
            continue
        key = (q_id, normalise(text))
        if key in seen:
            skipped["duplicate wording"] += 1
            continue
        seen.add(key)
        step = str(row.get("step") or ("seed" if "ori_content" not in row else "upstream"))
        similarity = row.get("similarity")
        if similarity is not None and (isinstance(similarity, bool) or not isinstance(similarity, (int, float))
                                       or not -1.0 <= similarity <= 1.0):  # NaN too: json reads NaN as a float
            raise ValueError(f"{path}:{line_no}: similarity must be a cosine similarity in [-1, 1], got {similarity!r}")
        out.append(Variant(q_id, text, step, None if similarity is None else float(similarity), row.get("generator")))
    out = drop_shared_wordings(out, questions, skipped)
    if skipped:
        log.warning("%s: skipped %s", path, ", ".join(f"{n} ({why})" for why, n in sorted(skipped.items())))
    if not out:
        raise ValueError(f"{path}: no usable question (skipped: {dict(skipped) or 'none'}); "
                         "expected JSONL rows with q_content and q_id or ori_content")
    return out, skipped
