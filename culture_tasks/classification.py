"""Loading, prompting and scoring of the CultureLLM classification tasks.

The task YAMLs point here (the generative ones load through ``hf_prompt.load_generative``, which
calls ``load_task``); every rule about dirty rows, prompts, answer parsing and macro-F1 lives in
this one module so that it can be tested without running a model.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from html.entities import html5

import datasets
import numpy as np

from culture_tasks import stats
from culture_tasks.data_root import data_file
from culture_tasks.jsonl import read_jsonl
from culture_tasks.metadata import TASK_KEYS, check_keys
from culture_tasks.prompts import lettered_options, option_letters

log = logging.getLogger("culture_tasks")

MANIFEST_HINT = "culture_tasks/culturellm/manifest.yaml"


class ManifestError(ValueError):
    """The manifest does not describe the data file it points to."""


def _clean_rows(
    rows: Sequence[dict], text_field: str, labels: Mapping[str, str], drop_labels: Sequence[str], max_chars: int
):
    """Keep rows with a text and a known label; count every other kind of row.

    Texts longer than ``max_chars`` (e-mails of up to 32,767 characters in the Turkish spam set)
    are cut to their first ``max_chars`` characters and counted, so one row cannot dominate
    the cost of a run or overflow a small model's context.
    """
    dropped: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    kept = []
    for row in rows:
        text = row.get(text_field)
        label = row.get("label")
        label = "" if label is None else str(label).strip()
        if text_field not in row:
            dropped[f"no {text_field} field"] += 1
        elif text is not None and not isinstance(text, str):
            dropped[f"non-text {text_field}"] += 1
        elif text is None or not text.strip():
            dropped["empty text"] += 1
        elif label == "":
            dropped["empty label"] += 1
        elif label in drop_labels:
            dropped[f"label {label!r} (drop_labels)"] += 1
        elif label not in labels:
            unknown[label] += 1
        else:
            if max_chars and len(text) > max_chars:
                dropped["truncated (kept)"] += 1
                text = text[:max_chars]
            kept.append((text, label))
    return kept, dropped, unknown


# A letter of U+00C0-U+017F or a typographic mark (U+2010-U+20AC) whose UTF-8 bytes were read as
# cp1252 or Latin-1: "Ã¼" for "ü", "Ä±" for "ı", "â€™" for "’" (the Turkish spam e-mails).
_BYTE_OF = {**{chr(b): b for b in range(0x80, 0x100)},
            **{c: b for b in range(0x80, 0x100) if (c := bytes([b]).decode("cp1252", errors="ignore"))}}
_CONTINUATION = re.escape("".join(sorted(c for c, b in _BYTE_OF.items() if b < 0xC0)))
_MISDECODED = re.compile(f"[\u00c3\u00c4\u00c5][{_CONTINUATION}]|\u00e2[{_CONTINUATION}]{{2}}")


def looks_misdecoded(text: str) -> bool:
    """Whether ``text`` holds UTF-8 that was decoded as cp1252/Latin-1 on its way into the file."""
    for match in _MISDECODED.finditer(text):
        try:
            char = bytes(_BYTE_OF[c] for c in match.group()).decode("utf-8")
        except UnicodeDecodeError:
            continue
        if "\u00c0" <= char <= "\u017f" or "\u2010" <= char <= "\u20ac":
            return True
    return False


# A numeric character reference, or a named one that HTML defines ("&amp;", "&quot;"): the text of a
# tweet as the platform escaped it ("&#128514;" for an emoji in the Davidson et al. set).
_HTML_REFERENCE = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|([A-Za-z][A-Za-z0-9]{1,31}));")


def looks_html_escaped(text: str) -> bool:
    """Whether ``text`` holds an HTML character reference where its source had the character."""
    return any(m.group(1) is None or f"{m.group(1)};" in html5 for m in _HTML_REFERENCE.finditer(text))


def _flag_rows(kept: Sequence[tuple[str, str]]) -> Counter[str]:
    """Kept rows a reader should know about (upstream evaluates them, so they stay): texts that
    repeat an earlier row's (as shown to the model, surrounding whitespace aside), rows whose text
    also occurs under another label (no answer can be right for all of them), mis-decoded texts,
    HTML-escaped texts."""
    labels_of: dict[str, list[str]] = {}
    flagged: Counter[str] = Counter()
    for text, label in kept:
        labels_of.setdefault(text.strip(), []).append(label)
        flagged["mis-decoded UTF-8 text (kept)"] += looks_misdecoded(text)
        flagged["HTML-escaped text (kept)"] += looks_html_escaped(text)
    for labels in labels_of.values():
        flagged["repeated text (kept)"] += len(labels) - 1
        if len(set(labels)) > 1:
            flagged["text with conflicting labels (kept)"] += len(labels)
    return +flagged


def load_classification(
    data_dir: str | None = None,
    *,
    task_name: str,
    file: str,
    text_field: str,
    labels: Mapping[str, str],
    instruction: str,
    drop_labels: Sequence[str] = (),
    max_text_chars: int = 0,
) -> datasets.DatasetDict:
    """The manifest's file, cleaned, as a ``test`` split.

    ``data_dir`` arrives through ``--metadata``; the other arguments through the task YAML's
    ``dataset_kwargs``. The rest of what lm-eval passes along is checked by ``load_task``.
    """
    path = data_file(f"culturellm/{file}", data_dir)
    raw = read_jsonl(path)  # file:line errors for truncated, non-UTF-8 or empty files
    columns = list(dict.fromkeys(k for row in raw for k in row))
    if text_field not in columns:
        raise ManifestError(
            f"{task_name}: {path} has no field {text_field!r} (fields: {columns}). "
            f"Fix `text_field` of this dataset in {MANIFEST_HINT} and re-run _generate_configs.py."
        )
    if "label" not in columns:
        raise ManifestError(f"{task_name}: {path} has no `label` field (fields: {columns}).")
    kept, dropped, unknown = _clean_rows(raw, text_field, labels, drop_labels, max_text_chars)
    if unknown:
        found = ", ".join(f"{k!r} ({v} rows)" for k, v in sorted(unknown.items()))
        raise ManifestError(
            f"{task_name}: {path} has label(s) {found} that the manifest does not list; the manifest "
            f"lists {list(labels)}. Fix `labels` of this dataset in {MANIFEST_HINT} (or list a label "
            f"under `drop_labels` to drop its rows) and re-run _generate_configs.py."
        )
    if not kept:  # a task of 0 documents would drop out of its culture's mean without a word
        raise ManifestError(f"{task_name}: {path} has no usable row of its {len(raw)} "
                            f"({', '.join(f'{v} {k}' for k, v in sorted(dropped.items()))}); fix the file, or its "
                            f"`text_field` / `drop_labels` in {MANIFEST_HINT}")
    present = Counter(label for _, label in kept)
    absent = [label for label in labels if label not in present]
    summary = ", ".join(f"{k}={present[k]}" for k in labels)
    notes = dropped + _flag_rows(kept)
    if notes:
        log.warning(
            "%s: kept %d of %d rows (%s); %s",
            task_name, len(kept), len(raw), summary, ", ".join(f"{v} {k}" for k, v in sorted(notes.items())),
        )
    else:
        log.info("%s: kept all %d rows (%s)", task_name, len(kept), summary)
    if absent:
        log.warning("%s: label(s) %s never occur in %s; macro-F1 still averages over them", task_name, absent, path)
    options = list(labels.values())
    index = {label: i for i, label in enumerate(labels)}
    rows = {
        "text": [t for t, _ in kept],
        "raw_label": [label for _, label in kept],
        "label": [index[label] for _, label in kept],
        # the task's documents of this gold label: a sample's design weight (``design_weights``)
        "label_count": [present[label] for _, label in kept],
        "options": [options] * len(kept),
        "choices": [option_letters(len(options))] * len(kept),
        "instruction": [instruction] * len(kept),
    }
    return datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)})


def load_task(data_dir: str | None = None, **kwargs) -> datasets.DatasetDict:
    """lm-eval ``custom_dataset`` of the task YAMLs: ``load_classification`` after checking that
    every ``--metadata`` key is one the task reads (or lm-eval's, or a model argument)."""
    own = set(inspect.signature(load_classification).parameters) - {"data_dir"}
    check_keys(kwargs.get("task_name", "culturellm"), {k: v for k, v in kwargs.items() if k not in own},
               TASK_KEYS["culturellm"])
    return load_classification(data_dir, **{k: v for k, v in kwargs.items() if k in own})


def doc_to_text_mc(doc: Mapping) -> str:
    """Options are lettered so that every choice the model scores is one short letter."""
    return f"{doc['instruction']}\n\nText: {doc['text']}\n\nOptions:\n{lettered_options(doc['options'])}\nAnswer:"


def doc_to_text_gen(doc: Mapping) -> str:
    """The paper's protocol: the model writes the label words themselves."""
    choices = ", ".join(f'"{option}"' for option in doc["options"])
    return f"{doc['instruction']}\n\nText: {doc['text']}\n\nAnswer with one of: {choices}.\nAnswer:"


def doc_to_target_gen(doc: Mapping) -> str:
    return doc["options"][doc["label"]]


# a negation up to three words before a mention, in the same clause ("does not contain an insult",
# "no real hate speech", "non-offensive", "isn’t" with either apostrophe, "cannot be offensive", "nothing
# offensive"); a clause ends at punctuation or a contrasting "but"
NEGATION = re.compile(r"(?:\b(?:no|not|none|nothing|nobody|never|cannot|without|neither|nor|\w+n['’]t)\b|\bnon)"
                      r"(?:[\s-]+(?!(?:but|yet|rather|instead)\b)[^\s.,;:!?\-]+){0,3}[\s-]*$")


def parse_label(generation: str, options: Sequence[str]) -> int:
    """Index of the option the text names first (the longest one at that position), or -1.

    "not offensive" and "offensive" both match inside "not offensive"; the earlier, longer
    match wins, so the answer is read as the model wrote it. A mention negated in the text itself
    ("no hate speech", "non-offensive", "does not contain an insult") names no option unless an
    option holds the negation: it is not read as the label it denies (-1, a parse failure, when
    nothing else matches).
    """
    text = generation.lower()
    best: tuple[int, int, int] | None = None
    for i, option in enumerate(options):
        for match in re.finditer(r"(?<!\w)" + re.escape(option.lower()) + r"(?!\w)", text):
            if NEGATION.search(text[:match.start()]):
                continue
            key = (match.start(), -len(option), i)
            if best is None or key < best:
                best = key
            break
    return -1 if best is None else best[2]


def process_results_mc(doc: Mapping, results: Sequence) -> dict:
    """The most likely option is the prediction. A NaN or infinite log-likelihood (a float16 overflow)
    chooses none: the document has no prediction (None) and accuracy NaN, so the task's macro-F1,
    accuracy and their intervals are NaN, with a warning (``stats.warn_nonfinite``)."""
    loglikelihoods = [float(r[0]) for r in results]
    if not stats.finite_scores(loglikelihoods):
        return _results(doc, None)
    return _results(doc, max(range(len(loglikelihoods)), key=loglikelihoods.__getitem__))


def process_results_gen(doc: Mapping, results: Sequence[str]) -> dict:
    pred = parse_label(results[0], doc["options"])
    return _results(doc, pred, parse_fail_rate=float(pred == -1))


def _results(doc: Mapping, pred: int | None, **shares: float) -> dict:
    """A document's items: macro-F1's ``(gold, prediction, labels, documents of the gold label in the task)``,
    each share's ``(value, gold, documents of the gold label)`` - the gold label and its count weigh a sample
    back to the complete task (``design_weights``)."""
    gold, count = int(doc["label"]), int(doc["label_count"])
    shares = {"acc": float("nan") if pred is None else float(pred == gold), **shares}
    return stats.with_ci({"f1_macro": (gold, pred, len(doc["options"]), count),
                          **{name: (value, gold, count) for name, value in shares.items()}})


def design_weights(golds: Sequence, counts: Sequence) -> np.ndarray:
    """Each document's weight in an estimate of the complete task: the task's documents of its gold label
    (``counts``) over those among these documents.

    A sample of ``culture_tasks.sampling`` draws one document of every label first, then in proportion:
    a rare label holds a larger share of the sample than of the task (2 of 6 documents for a label of 4 in
    1,000), and macro-F1 and accuracy on the sample lean toward the model's answers on it. Weighted back to
    the task's label shares (the stratified estimator of the complete run's confusion counts) they do not;
    in a complete run every weight is 1 and nothing changes. A ``--limit`` run (the first documents) is
    weighted to the task's label shares the same way.
    """
    golds = np.asarray(golds)
    _, inverse, sampled = np.unique(golds, return_inverse=True, return_counts=True)
    return np.asarray(counts, dtype=float) / sampled[inverse.reshape(-1)]


def _f1_columns(items: Sequence[tuple]) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Golds, predictions, the task's number of labels and the design weights of macro-F1 items (an item of
    an earlier version, without the label's count, weighs 1)."""
    arr = np.asarray(items, dtype=np.int64)
    arr = arr.reshape(len(items), arr.shape[-1] if arr.size else 3)
    golds, preds, n_labels = arr[:, 0], arr[:, 1], int(arr[:, 2].max())
    weights = design_weights(golds, arr[:, 3]) if arr.shape[1] > 3 else np.ones(len(arr))
    return golds, preds, n_labels, weights


def f1_macro(items: Sequence[tuple]) -> float:
    """Macro-F1 over the task's full label set, as sklearn's ``f1_score(average='macro', labels=...)`` with
    each document's design weight (``design_weights``: all 1 in a complete run).

    A class that is never predicted (or never gold) contributes F1 = 0, as in the paper's
    evaluation; an unparseable answer (-1) is wrong for its gold class. A document without a
    prediction (None: its scores were not finite) makes it NaN.
    """
    from sklearn.metrics import f1_score

    if any(item[1] is None for item in items):
        return float("nan")
    golds, preds, n_labels, weights = _f1_columns(items)
    return float(f1_score(golds, preds, labels=list(range(n_labels)), average="macro", zero_division=0,
                          sample_weight=weights))


def f1_macro_weighted(items: Sequence[tuple], weights: np.ndarray) -> np.ndarray:
    """``f1_macro`` of every row of ``weights`` (how often each item is counted, times its design weight),
    from weighted counts.

    Per class F1 = 2 TP / (gold count + predicted count), 0 when both are 0 - the value
    sklearn's ``zero_division=0`` gives. Group intervals weight a task's items the same way.
    Every row is NaN when a document has no prediction (``f1_macro``).
    """
    if any(item[1] is None for item in items):
        return np.full(weights.shape[0], np.nan)
    golds, preds, n_labels, design = _f1_columns(items)
    weights = weights * design
    rows = weights.shape[0]
    f1 = np.zeros((rows, n_labels))
    for c in range(n_labels):
        tp = weights @ ((golds == c) & (preds == c))
        denom = weights @ (golds == c) + weights @ (preds == c)
        f1[:, c] = np.divide(2.0 * tp, denom, out=np.zeros(rows), where=denom > 0)
    return f1.mean(axis=1)


def _resampled(weighted: Callable[[Sequence, np.ndarray], np.ndarray]) -> Callable:
    """The bootstrap form of a weighted statistic: its value in every resample (rows of ``idx``), each
    item counted as often as it is drawn (times its design weight)."""
    def batched(items: Sequence, idx: np.ndarray) -> np.ndarray:
        return np.concatenate([weighted(items, w) for w in stats.resample_counts(idx, len(items), 256)])

    return batched


f1_macro.batched = _resampled(f1_macro_weighted)
f1_macro.weighted = f1_macro_weighted  # what stats.TaskMean resamples it with: the design weights of the whole run


def _share_columns(items: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """The 0 / 1 values and design weights of a share's items (a bare number, an item of an earlier
    version, weighs 1)."""
    if len(items) and isinstance(items[0], (tuple, list)):
        arr = np.asarray(items, dtype=float).reshape(len(items), 3)
        return arr[:, 0], design_weights(arr[:, 1].astype(np.int64), arr[:, 2])
    return np.asarray(items, dtype=float), np.ones(len(items))


def share_weighted(items: Sequence, weights: np.ndarray) -> np.ndarray:
    """``share`` of every row of ``weights`` (how often each item is counted, times its design weight)."""
    values, design = _share_columns(items)
    weights = weights * design
    total = weights.sum(axis=1)
    return np.divide(weights @ values, total, out=np.full(len(weights), np.nan), where=total > 0)


def share(items: Sequence) -> float:
    """Accuracy or the parse-failure rate: the design-weighted mean of the documents' 0 / 1 (``design_weights``;
    a complete run's plain mean), with the classification metrics' minimum of documents for an interval."""
    if not len(items):
        return float("nan")
    return float(share_weighted(items, np.ones((1, len(items))))[0])


share.batched = _resampled(share_weighted)
share.weighted = share_weighted
share.alike_ci = lambda items, level: stats.exact_share_ci(_share_columns(items)[0], level)

# Below this many documents in a task a bootstrap interval of a classification metric does not hold
# the complete run's value often enough to be read as a 95 % interval (macro-F1: a resample drops
# labels, and an absent label scores F1 = 0; accuracy: a proportion's percentile interval at a few
# documents): no interval is given, for the task or for a mean over tasks with one so small.
# Measured by benchmarks/interval_calibration.py (docs/interval_calibration.md).
MIN_DOCS = 20
f1_macro.min_items = share.min_items = MIN_DOCS

# Companion metrics: the 95 % bootstrap interval of each corpus metric (culture_tasks.stats).
METRICS = {"f1_macro": f1_macro, "acc": share, "parse_fail_rate": share}
for _name, _aggregate in METRICS.items():
    globals().update(stats.ci_aggregations(_name, _aggregate, nonfinite="f1_macro, acc and their intervals"
                                           if _name == "f1_macro" else None))
