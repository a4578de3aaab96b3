"""World Values Survey (wave 7): the question bank, its option scales, and country answers.

Upstream's files are dirty in known ways, each handled here on purpose and counted:
option strings with a wrong code (Q31 "4. Disagree" where 3 is meant), 1-10 scales with only
the endpoints labelled (Q158-Q162), scales listed in reverse (Q122-Q129, 2..0); respondent
CSVs with negative missing-answer codes and three trailing average rows (Avg, Avg_First,
Avg_Last) that are not respondents. A respondent row with a field too few or too many is skipped
and named: its answers may stand under the wrong questions. Rows that repeat an earlier row in
every field are kept and counted (Mexico: 12).
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from culture_tasks.data_root import data_file
from culture_tasks.csv_table import read_table
from culture_tasks.jsonl import read_jsonl_lines, text_field
from culture_tasks.metadata import with_hints

log = logging.getLogger("culture_tasks")


def topic_key(topic: str) -> str:
    """'POLITICAL INTEREST & POLITICAL PARTICIPATION' -> 'political_interest' (first two words)."""
    return "_".join(re.findall(r"[a-z]+", topic.lower())[:2])


WVS_TOPICS = (
    "social_values", "migration", "security", "science_technology",
    "religious_values", "ethical_values", "political_interest",
)

QUESTIONS_FILE = "culturellm/WVQ.jsonl"
BANK_KEYS = ("option", "q_content", "q_id", "topic")  # a row of the seed bank
AVERAGE_ROWS = {"Avg", "Avg_First", "Avg_Last"}
_OPTION = re.compile(r"(-?\d+)\.\s*(.*?)\s*(?=(?:-?\d+\.\s)|$)")


@dataclass(frozen=True)
class Scale:
    """Answer codes in ascending (ordinal) order with the label shown for each."""

    codes: tuple[int, ...]
    labels: tuple[str, ...]
    fixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Question:
    q_id: str
    topic: str
    text: str
    scale: Scale


@dataclass
class CountryAnswers:
    """Per-question answer distributions of one country's respondents (codes as in the scale)."""

    country: str
    path: Path
    respondents: int
    distributions: dict[str, np.ndarray]
    counts: dict[str, Counter] = field(default_factory=dict)  # per question: excluded answers by reason
    skipped_rows: int = 0
    malformed_lines: list[int] = field(default_factory=list)  # rows skipped: a field too few or too many
    repeated_rows: int = 0  # respondent rows equal to an earlier one in every field (kept)


def parse_scale(option: str) -> Scale:
    pairs = [(int(c), label.strip().rstrip(".")) for c, label in _OPTION.findall(option.strip())]
    if len(pairs) < 2:
        raise ValueError(f"cannot read an answer scale from {option!r}")
    fixes = []
    codes = [c for c, _ in pairs]
    if len(set(codes)) != len(codes):
        # Q31: "1. ... 2. ... 4. Disagree 4. ..." - the codes must be distinct; number by position
        start = min(codes)
        fixed = list(range(start, start + len(codes)))
        fixes.append(f"duplicate codes {codes} renumbered {fixed}")
        pairs = [(c, label) for c, (_, label) in zip(fixed, pairs)]
    if [c for c, _ in pairs] == sorted((c for c, _ in pairs), reverse=True):
        fixes.append("listed in descending order; sorted ascending")
    pairs.sort()
    codes = [c for c, _ in pairs]
    if codes != list(range(codes[0], codes[-1] + 1)):
        # Q158-Q162: "1. Completely disagree 10. Completely agree" - only the endpoints are named
        labels = dict(pairs)
        fixes.append(f"only codes {codes} labelled; filled {codes[0]}..{codes[-1]}")
        pairs = [(c, f"{c} ({labels[c]})" if c in labels else str(c)) for c in range(codes[0], codes[-1] + 1)]
    return Scale(tuple(c for c, _ in pairs), tuple(label for _, label in pairs), tuple(fixes))


def load_questions(data_dir: str | None = None, path: Path | None = None) -> list[Question]:
    path = path or data_file(QUESTIONS_FILE, data_dir)
    questions = []
    repaired: dict[str, list[str]] = {}
    lines: dict[str, int] = {}  # q_id -> its line: a question given twice would be asked and scored twice
    for line_no, row in read_jsonl_lines(path):
        unknown = [k for k in row if k not in BANK_KEYS]  # a misspelt "topic" would be read as no topic
        if unknown:
            raise ValueError(f"{path}:{line_no}: unknown key(s) {with_hints(unknown, BANK_KEYS)}; the keys are "
                             f"{', '.join(BANK_KEYS)}")
        missing = [k for k in ("q_id", "q_content", "option") if not row.get(k)]
        if missing:
            raise ValueError(f"{path}:{line_no}: missing field(s) {missing}; each line needs q_id, q_content, option")
        q_id = str(row["q_id"])
        topic = str(row.get("topic", "")).strip()
        if topic_key(topic) not in WVS_TOPICS:  # scored in wvs_jsd, but in none of the wvs_jsd_<topic> means
            raise ValueError(f"{path}:{line_no}: topic {topic!r} (Q{q_id}) is none of the topics the WVS tasks report "
                             f"({', '.join(WVS_TOPICS)}: its first two words)")
        if q_id in lines:
            raise ValueError(f"{path}:{line_no}: q_id {q_id} is given twice (lines {lines[q_id]} and {line_no}); keep one")
        lines[q_id] = line_no
        where = f"{path}:{line_no}"
        text = text_field(row["q_content"], where, "q_content")
        option = text_field(row["option"], where, "option")
        try:
            scale = parse_scale(option)
        except ValueError as err:
            raise ValueError(f"{where}: option: {err}; write it as \"1. <label> 2. <label> ...\"") from None
        if scale.fixes:
            repaired.setdefault("; ".join(scale.fixes), []).append(f"Q{row['q_id']}")
        questions.append(Question(q_id, topic, text, scale))
    if repaired:
        report_once(f"WVS {path.name}: {sum(map(len, repaired.values()))} option scales repaired: "
                    + "; ".join(f"{', '.join(ids)}: {fix}" for fix, ids in repaired.items()))
    return questions


@functools.lru_cache(maxsize=None)
def report_once(message: str) -> None:
    """A defect of the data, counted, as a warning (lm-eval prints warnings, not this logger's info
    lines), once per process however many tasks read the same file."""
    log.warning(message)


def _reasons(excluded: Mapping[str, Counter]) -> str:
    """`` (why: count, ...)`` over all questions, most frequent first, or nothing."""
    total = Counter()
    for c in excluded.values():
        for reason, n in c.items():
            coded = reason.startswith(("missing code ", "out-of-scale code "))  # "missing code -2": its kind
            total[reason.rsplit(" ", 1)[0] if coded else reason] += n
    return f" ({', '.join(f'{k}: {v}' for k, v in total.most_common())})" if total else ""


def load_country(csv_path: Path, questions: list[Question], country: str | None = None) -> CountryAnswers:
    """Answer distributions over each question's codes; missing codes and average rows excluded."""
    tallies = {q.q_id: Counter() for q in questions}
    excluded = {q.q_id: Counter() for q in questions}
    respondents = skipped = 0
    malformed: list[int] = []
    seen: set[tuple] = set()
    repeated = 0
    reader = read_table(csv_path, [f"Q{q.q_id}" for q in questions], "one column per question (Q27 ... Q233)")
    first = reader.fieldnames[0]
    for row in reader:
        if (row.get(first) or "").strip() in AVERAGE_ROWS:
            skipped += 1
            continue
        if None in row or None in row.values():  # a stray or lost comma: answers under the wrong questions
            malformed.append(reader.line_num)
            continue
        respondents += 1
        key = tuple(row.values())  # without respondent ids a copied row and two alike answers look the same
        repeated += key in seen
        seen.add(key)
        for q in questions:
            raw = (row.get(f"Q{q.q_id}") or "").strip()
            try:
                value = float(raw)
            except ValueError:
                excluded[q.q_id]["unreadable"] += 1
                continue
            if not value.is_integer():  # 2.6 or inf is no answer code; int() would truncate it to one
                excluded[q.q_id]["not a whole-number code"] += 1
                continue
            code = int(value)
            if code < 0:
                excluded[q.q_id][f"missing code {code}"] += 1
            elif code not in q.scale.codes:
                excluded[q.q_id][f"out-of-scale code {code}"] += 1
            else:
                tallies[q.q_id][code] += 1
    distributions = {}
    for q in questions:
        total = sum(tallies[q.q_id].values())
        if total:
            distributions[q.q_id] = np.array([tallies[q.q_id][c] / total for c in q.scale.codes])
    name = country or csv_path.stem
    unanswered = [q.q_id for q in questions if q.q_id not in distributions]
    n_missing = sum(sum(c.values()) for c in excluded.values())
    bad = (f"; {len(malformed)} rows skipped with a field too few or too many (their answers may stand under the "
           f"wrong questions): {csv_path} lines {', '.join(map(str, malformed[:10]))}"
           f"{', ...' if len(malformed) > 10 else ''}") if malformed else ""
    again = f"; {repeated} rows repeat an earlier row exactly (kept)" if repeated else ""
    report_once(f"WVS {name}: {respondents} respondents, {skipped} average rows skipped, {n_missing} "
                f"missing/invalid answers excluded{_reasons(excluded)}{bad}{again}")
    if unanswered and distributions:
        log.warning("WVS %s: %d question(s) skipped, no valid answer (only missing codes) in %s: Q%s",
                    name, len(unanswered), csv_path.name, ", Q".join(unanswered))
    return CountryAnswers(name, csv_path, respondents, distributions, excluded, skipped, malformed, repeated)
