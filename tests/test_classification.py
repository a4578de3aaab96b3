"""Loading, cleaning, prompting and scoring of the CultureLLM classification tasks."""

from __future__ import annotations

import json
import logging
import re

import pytest

from culture_tasks.classification import (
    ManifestError,
    doc_to_text_mc,
    f1_macro,
    load_classification,
    parse_label,
    process_results_gen,
    process_results_mc,
)
from culture_tasks.data_root import DataRootError

LABELS = {"NOT": "not offensive", "OFF": "offensive"}


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _load(root, **overrides):
    kwargs = dict(task_name="t", file="X/data.jsonl", text_field="tweet", labels=LABELS, instruction="Offensive?")
    kwargs.update(overrides)
    return load_classification(None if root is None else str(root), **kwargs)


def test_macro_f1_hand_computed_with_a_class_never_predicted():
    # class 0: P=1/2 R=1/2 F=1/2; class 1: P=2/3 R=1 F=4/5; class 2: never predicted, F=0
    items = [(0, 0, 3), (0, 1, 3), (1, 1, 3), (1, 1, 3), (2, 0, 3)]
    assert f1_macro(items) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_macro_f1_averages_over_labels_absent_from_gold():
    # single-class gold (like SOLID easy): perfect predictions still score 1/2 over {NOT, OFF}
    assert f1_macro([(0, 0, 2)] * 4) == pytest.approx(0.5)


def test_unparseable_answer_is_wrong_for_its_gold_class():
    # gold 0 answered -1: class 0 has tp=1, fn=1 -> F=2/3; class 1 tp=1 -> F=1
    assert f1_macro([(0, 0, 2), (0, -1, 2), (1, 1, 2)]) == pytest.approx((2 / 3 + 1) / 2)


def test_dirty_rows_are_dropped_and_counted(tmp_path, caplog):
    rows = [
        {"tweet": "a", "label": "NOT"},
        {"tweet": "b", "label": "OFF"},
        {"tweet": "c", "label": ""},
        {"tweet": "d", "label": ""},
        {"tweet": "  ", "label": "NOT"},
        {"tweet": "e", "label": "SPAM"},
        {"tweet": 1.0, "label": "NOT"},
        {"tweet": "x" * 30, "label": "OFF"},
        {"text": "the field under another name", "label": "NOT"},
    ]
    _write_jsonl(tmp_path / "culturellm/X/data.jsonl", rows)
    with caplog.at_level(logging.INFO, logger="culture_tasks"):
        ds = _load(tmp_path, drop_labels=["SPAM"], max_text_chars=10)["test"]
    assert ds["text"] == ["a", "b", "x" * 10]
    assert ds["label"] == [0, 1, 1]
    assert ds["label_count"] == [1, 2, 2]  # each kept row's gold label among the kept rows (its design weight)
    assert ds["choices"][0] == ["A", "B"]
    message = caplog.text
    assert "kept 3 of 9 rows" in message
    assert "2 empty label" in message and "1 empty text" in message and "1 label 'SPAM'" in message
    assert "1 non-text tweet" in message and "1 truncated (kept)" in message
    assert "1 no tweet field" in message  # counted as "empty text" before


def test_a_row_giving_a_key_twice_is_refused_naming_its_line_and_key(tmp_path):
    # {"label": "NOT", "label": "OFF"} was read as OFF without a word (a JSON reader keeps the last)
    from culture_tasks.jsonl import JsonlError

    path = tmp_path / "culturellm/X/data.jsonl"
    _write_jsonl(path, [{"tweet": "a", "label": "NOT"}])
    path.write_text(path.read_text(encoding="utf-8") + '{"tweet": "b", "label": "NOT", "label": "OFF"}\n',
                    encoding="utf-8")
    with pytest.raises(JsonlError, match=r"X/data\.jsonl:2: key 'label' is given twice in one object; keep the one"):
        _load(tmp_path)


def test_a_file_with_no_usable_row_is_an_error_not_a_task_of_no_documents(tmp_path):
    # it loaded as a task of 0 documents with a warning, and dropped out of its culture's mean
    _write_jsonl(tmp_path / "culturellm/X/data.jsonl", [{"tweet": " ", "label": "NOT"}, {"tweet": "a", "label": ""}])
    with pytest.raises(ManifestError) as err:
        _load(tmp_path)
    assert str(err.value).startswith(f"t: {tmp_path / 'culturellm/X/data.jsonl'} ") and "has no usable row of its 2 (1 empty label, 1 empty " \
        "text); fix the file, or its `text_field` / `drop_labels` in" in str(err.value)


def test_repeated_conflicting_and_misdecoded_texts_are_kept_and_counted(tmp_path, caplog):
    rows = [
        {"tweet": "a", "label": "NOT"},
        {"tweet": "a ", "label": "NOT"},  # the same text up to surrounding whitespace: 1 repeat
        {"tweet": "b", "label": "OFF"},
        {"tweet": "b", "label": "NOT"},  # 2 more repeats; all three "b" rows have conflicting labels
        {"tweet": "b", "label": "OFF"},
        {"tweet": "Kocaeli \u00c3\u0153niversitesi", "label": "NOT"},  # "Ü" as UTF-8 read as cp1252
        {"tweet": "Kocaeli \u00c3\u009cniversitesi", "label": "NOT"},  # ... and as Latin-1
        {"tweet": "N\u00c3O \u00c9\u2026 J\u00c1\u201d", "label": "OFF"},  # real Portuguese capitals
    ]
    _write_jsonl(tmp_path / "culturellm/X/data.jsonl", rows)
    with caplog.at_level(logging.INFO, logger="culture_tasks"):
        ds = _load(tmp_path)["test"]
    assert len(ds) == 8  # kept, as upstream evaluates them
    assert caplog.records[0].levelno == logging.WARNING
    message = caplog.text
    assert "kept 8 of 8 rows (NOT=5, OFF=3)" in message
    assert "3 repeated text (kept)" in message
    assert "3 text with conflicting labels (kept)" in message
    assert "2 mis-decoded UTF-8 text (kept)" in message


def test_html_escaped_texts_are_kept_and_counted(tmp_path, caplog):
    rows = [
        {"tweet": "so funny &#128514;&#128514;", "label": "NOT"},  # an emoji as a numeric reference
        {"tweet": "Q&amp;A &#x200B;", "label": "OFF"},  # named and hexadecimal references: one row
        {"tweet": "AT&T &c; &amplifier; &nbsp, 3 & 4", "label": "NOT"},  # no reference the source escaped
        {"tweet": "plain", "label": "OFF"},
    ]
    _write_jsonl(tmp_path / "culturellm/X/data.jsonl", rows)
    with caplog.at_level(logging.INFO, logger="culture_tasks"):
        ds = _load(tmp_path)["test"]
    assert ds["text"][0] == "so funny &#128514;&#128514;"  # shown as published, as upstream evaluates it
    assert caplog.records[0].levelno == logging.WARNING
    assert caplog.records[0].getMessage() == "t: kept 4 of 4 rows (NOT=2, OFF=2); 2 HTML-escaped text (kept)"


def test_unknown_label_is_a_clear_error(tmp_path):
    _write_jsonl(tmp_path / "culturellm/X/data.jsonl", [{"tweet": "a", "label": "ind"}, {"tweet": "b", "label": "NOT"}])
    with pytest.raises(ManifestError, match=r"label\(s\) 'ind' \(1 rows\).*manifest.yaml"):
        _load(tmp_path)


def test_label_absent_from_file_is_only_a_warning(tmp_path, caplog):
    _write_jsonl(tmp_path / "culturellm/X/data.jsonl", [{"tweet": "a", "label": "NOT"}])
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        assert len(_load(tmp_path)["test"]) == 1
    assert "['OFF'] never occur" in caplog.text


def test_wrong_text_field_names_the_field(tmp_path):
    _write_jsonl(tmp_path / "culturellm/X/data.jsonl", [{"data": "a", "label": "NOT"}])
    with pytest.raises(ManifestError, match="no field 'tweet'"):
        _load(tmp_path)


def test_missing_data_root_names_both_ways_and_the_source(monkeypatch):
    monkeypatch.delenv("CULTURE_DATA_DIR", raising=False)
    with pytest.raises(DataRootError) as err:
        _load(None)
    text = str(err.value)
    assert "--metadata" in text and "CULTURE_DATA_DIR" in text and "CultureLLM" in text


def test_missing_file_names_the_path_and_the_source(tmp_path):
    (tmp_path / "culturellm").mkdir()
    with pytest.raises(DataRootError) as err:
        _load(tmp_path, file="Korean/missing.jsonl")
    text = str(err.value)
    assert str(tmp_path / "culturellm/Korean/missing.jsonl") in text
    assert "github.com/Scarelette/CultureLLM" in text and "CULTURE_DATA_DIR" in text


@pytest.mark.parametrize("value", [True, 5, ["/data"]])
def test_data_dir_that_is_not_a_path_is_named(value):
    # --metadata '{"data_dir": true}' was a bare TypeError ("expected str, bytes or os.PathLike object")
    with pytest.raises(DataRootError, match=rf"data_dir must be a folder path, got {re.escape(repr(value))}"):
        load_classification(value, task_name="t", file="X/data.jsonl", text_field="tweet", labels=LABELS,
                            instruction="?")


def test_data_root_from_environment(tmp_path, monkeypatch):
    _write_jsonl(tmp_path / "culturellm/X/data.jsonl", [{"tweet": "a", "label": "OFF"}])
    monkeypatch.setenv("CULTURE_DATA_DIR", str(tmp_path))
    assert _load(None)["test"]["label"] == [1]


def test_prompt_and_scoring():
    doc = {"instruction": "Offensive?", "text": "hi", "options": ["not offensive", "offensive"],
           "choices": ["A", "B"], "label": 1, "label_count": 3}
    assert doc_to_text_mc(doc) == "Offensive?\n\nText: hi\n\nOptions:\nA. not offensive\nB. offensive\nAnswer:"
    # every metric's interval companions receive the metric's own per-document item
    assert process_results_mc(doc, [(-2.0, False), (-1.0, True)]) == {
        "f1_macro": (1, 1, 2, 3), "f1_macro_ci_low": (1, 1, 2, 3), "f1_macro_ci_high": (1, 1, 2, 3),
        "acc": (1.0, 1, 3), "acc_ci_low": (1.0, 1, 3), "acc_ci_high": (1.0, 1, 3)}
    gen = process_results_gen(doc, ["Not offensive."])
    assert {k: v for k, v in gen.items() if "_ci_" not in k} == {"f1_macro": (1, 0, 2, 3), "acc": (0.0, 1, 3),
                                                                "parse_fail_rate": (0.0, 1, 3)}
    assert gen["parse_fail_rate_ci_low"] == gen["parse_fail_rate_ci_high"] == (0.0, 1, 3)
    assert process_results_gen(doc, ["no idea"])["parse_fail_rate"] == (1.0, 1, 3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("offensive", 1),
        ("It is not offensive", 0),
        ("NOT OFFENSIVE, rather offensive", 0),
        ("inoffensive", -1),
        ("", -1),
    ],
)
def test_parse_label_first_and_longest_match(text, expected):
    assert parse_label(text, ["not offensive", "offensive"]) == expected


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [  # a negated mention is not the label it denies (these were read as hate speech, offensive, spam)
        ("No hate speech", ["not hate speech", "hate speech"], -1),
        ("Non-offensive", ["not offensive", "offensive"], -1),
        ("non-offensive language", ["neutral", "offensive"], -1),
        ("no spam, it is ham", ["ham", "spam"], 0),
        ("It is not spam.", ["ham", "spam"], -1),
        ("Not offensive", ["not offensive", "offensive"], 0),  # the option itself holds the negation
        ("The text is offensive, not neutral", ["neutral", "offensive"], 1),
        ("Offensive", ["neutral", "offensive"], 1),
        # a negation a few words before the mention, in the same clause (these were read as the label)
        ("The text does not contain an insult.", ["no insult", "an insult"], -1),
        ("It doesn't contain a threat", ["not a threat", "a threat"], -1),
        ("There is no real hate speech here", ["not hate speech", "hate speech"], -1),
        ("Neither offensive nor hateful", ["not offensive", "offensive"], -1),
        ("None of it is offensive", ["not offensive", "offensive"], -1),
        # ... but not across a clause's end or a contrasting "but"
        ("Not sure, but offensive", ["not offensive", "offensive"], 1),
        ("It is not clear but offensive", ["neutral", "offensive"], 1),
        ("No. It is spam", ["ham", "spam"], 1),
        ("No, a stereotype", ["no stereotype", "a stereotype"], 1),
        ("offensive but not hate speech", ["hate speech", "offensive but not hate speech", "neither"], 1),
    ],
)
def test_parse_label_does_not_read_a_negated_label(text, options, expected):
    assert parse_label(text, options) == expected


def test_real_file_counts(data_root):
    # the Korean-Hate-Speech-Detection file has 218 empty labels: 607 NOT_HS + 175 HS remain
    ds = load_classification(
        str(data_root), task_name="k", file="Korean/Korean-Hate-Speech-Detection/data-2.jsonl",
        text_field="data", labels={"NOT_HS": "not hate speech", "HS": "hate speech"}, instruction="?",
    )["test"]
    assert len(ds) == 782 and sum(ds["label"]) == 175


def test_real_files_report_repeated_conflicting_and_misdecoded_texts(data_root, caplog):
    # counted independently over the files: a quarter of the Korean set repeats an earlier text; the
    # Turkish spam set holds 51 e-mails with UTF-8 read as cp1252 ("Ãœniversite") and one text
    # filed twice as Spam and once as Ham
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        load_classification(str(data_root), task_name="k", file="Korean/Korean-Hate-Speech-Detection/data-2.jsonl",
                            text_field="data", labels={"NOT_HS": "n", "HS": "h"}, instruction="?")
        load_classification(str(data_root), task_name="t", file="Turkey/TurkishSpam/trspam.jsonl", text_field="tweet",
                            labels={"Ham": "not spam", "Spam": "spam"}, instruction="?", max_text_chars=2000)
        load_classification(str(data_root), task_name="d", file="English/hate-speech-and-offensive-language/data.jsonl",
                            text_field="data", labels={"0": "h", "1": "o", "2": "n"}, instruction="?")
    korean, turkish, davidson = (r.getMessage() for r in caplog.records)
    assert korean.endswith("218 empty label, 199 repeated text (kept)")
    # 297 of the 1,000 Davidson et al. tweets show HTML character references ("&#128514;" for an emoji)
    assert davidson == "d: kept 1000 of 1000 rows (0=56, 1=762, 2=182); 297 HTML-escaped text (kept)"
    assert turkish.endswith("3 empty text, 51 mis-decoded UTF-8 text (kept), 99 repeated text (kept), "
                            "3 text with conflicting labels (kept), 312 truncated (kept)")


def test_load_task_rejects_unknown_metadata_and_accepts_model_args(tmp_path):
    from culture_tasks.classification import load_task
    from culture_tasks.metadata import MetadataError

    _write_jsonl(tmp_path / "culturellm/X/data.jsonl", [{"tweet": "hi", "label": "OFF"}])
    kwargs = dict(task_name="t", file="X/data.jsonl", text_field="tweet", labels=LABELS, instruction="Offensive?")
    with pytest.raises(MetadataError, match=r"t: unknown --metadata key\(s\) 'datadir' \(did you mean 'data_dir'\?\)"):
        load_task(datadir=str(tmp_path), **kwargs)
    ds = load_task(str(tmp_path), version=1.0, pretrained="m", peft="p", dtype="float32", **kwargs)["test"]
    assert ds["label"] == [1]


def test_loader_refuses_an_argument_it_does_not_read(tmp_path):
    # a misspelt cut (from the sampler or the README table) was swallowed and every text kept whole
    _write_jsonl(tmp_path / "culturellm/X/data.jsonl", [{"tweet": "hello", "label": "OFF"}])
    with pytest.raises(TypeError, match="max_text_char"):
        _load(tmp_path, max_text_char=2)


def test_vectorised_macro_f1_equals_sklearn_on_resamples():
    import numpy as np

    rng = np.random.default_rng(1)
    items = [(int(g), int(p), 4) for g, p in zip(rng.integers(0, 3, 25), rng.integers(-1, 4, 25))]  # label 3 never gold
    idx = rng.integers(0, 25, size=(30, 25))
    expected = [f1_macro([items[i] for i in row]) for row in idx]
    assert f1_macro.batched(items, idx) == pytest.approx(expected)


def test_vectorised_macro_f1_counts_a_label_never_gold_nor_predicted_as_zero():
    # three labels, label 2 neither gold nor predicted: F1 1, 1 and 0 (0 / 0 -> 0, sklearn's zero_division=0), macro
    # 2/3 in every resample path, as f1_macro gives; leaving the empty label out would say 1
    import numpy as np

    from culture_tasks.classification import f1_macro_weighted

    items = [(0, 0, 3), (1, 1, 3)]
    assert f1_macro(items) == pytest.approx(2 / 3)
    assert f1_macro_weighted(items, np.array([[1.0, 1.0], [2.0, 1.0]])).tolist() == pytest.approx([2 / 3, 2 / 3])
    assert f1_macro.batched(items, np.array([[0, 1], [1, 1]])).tolist() == pytest.approx([2 / 3, 1 / 3])


def test_a_sample_is_weighted_back_to_the_task_label_shares():
    # a task of 8 documents of label 0 and 2 of label 1, sampled 2 + 2 (the sampling's label floor); the model
    # answers every label-0 document right and one of the two label-1 documents (the other as 0)
    from culture_tasks import classification

    f1_items = [(0, 0, 2, 8), (0, 0, 2, 8), (1, 0, 2, 2), (1, 1, 2, 2)]
    acc_items = [(1.0, 0, 8), (1.0, 0, 8), (0.0, 1, 2), (1.0, 1, 2)]
    assert classification.design_weights([0, 0, 1, 1], [8, 8, 2, 2]).tolist() == [4.0, 4.0, 1.0, 1.0]
    # weights 4, 4, 1, 1: label 0 gold 8, TP 8, predicted 4 + 4 + 1 = 9 -> F1 16/17; label 1 gold 2, TP 1,
    # predicted 1 -> F1 2/3; macro (16/17 + 2/3) / 2 = 41/51, the complete task's value if the model answers it
    # as it answers the sample (unweighted: (4/5 + 2/3) / 2 = 11/15, the rare label counted as half the task)
    assert classification.f1_macro(f1_items) == pytest.approx(41 / 51)
    assert classification.f1_macro([item[:3] for item in f1_items]) == pytest.approx(11 / 15)  # earlier logs
    # accuracy (4 + 4 + 0 + 1) / 10 = 0.9, the task's 9 of 10 (unweighted 3 of 4)
    assert classification.share(acc_items) == pytest.approx(0.9)
    assert classification.share([v for v, _, _ in acc_items]) == pytest.approx(0.75)
    # a complete run: every weight 1, sklearn's unweighted macro-F1
    complete = [(0, 0, 2, 2), (0, 1, 2, 2), (1, 1, 2, 2), (1, 1, 2, 2)]
    assert classification.design_weights([0, 0, 1, 1], [2, 2, 2, 2]).tolist() == [1.0] * 4
    assert classification.f1_macro(complete) == classification.f1_macro([c[:3] for c in complete]) == pytest.approx(
        (2 / 3 + 4 / 5) / 2)


def test_resamples_keep_the_sample_design_weights():
    # a resample counts each document as often as it is drawn, times the weight the sample gave it (its label's
    # share in the sample, not in the resample): sklearn with those products as sample weights
    import numpy as np
    from sklearn.metrics import f1_score

    from culture_tasks import classification

    rng = np.random.default_rng(3)
    golds, preds = rng.integers(0, 3, 30), rng.integers(0, 3, 30)
    counts = {0: 50, 1: 7, 2: 300}
    items = [(int(g), int(p), 3, counts[int(g)]) for g, p in zip(golds, preds)]
    design = np.array([counts[int(g)] / np.sum(golds == g) for g in golds])
    idx = rng.integers(0, 30, size=(20, 30))
    drawn = np.stack([np.bincount(row, minlength=30) for row in idx]).astype(float)
    expected = [f1_score(golds, preds, labels=[0, 1, 2], average="macro", zero_division=0, sample_weight=w * design)
                for w in drawn]
    assert classification.f1_macro.batched(items, idx) == pytest.approx(expected)
    values = (golds == preds).astype(float)
    shares = [(float(v), int(g), counts[int(g)]) for v, g in zip(values, golds)]
    assert classification.share.batched(shares, idx) == pytest.approx(drawn * design @ values / (drawn @ design))


def test_few_shot_examples_show_the_gold_answer(data_root):
    """lm-eval draws CultureLLM few-shot examples from the test split (never the evaluated
    document itself) and ends each with its own gold answer: the letter (mc) or label word (gen)."""
    from culture_tasks.classification import doc_to_text_gen
    from culture_tasks.prompts import LETTERS
    from culture_tasks.paths import task_manager

    names = ["culturellm_arabic_spam", "culturellm_gen_arabic_spam"]
    tasks = task_manager({"data_dir": str(data_root)}).load(names)["tasks"]
    for name in names:
        task = tasks[name]
        task.set_config(key="num_fewshot", value=3)
        task.set_fewshot_seed(seed=1234)
        docs = list(task.test_docs())
        render = doc_to_text_mc if name == names[0] else doc_to_text_gen
        shown = 0
        for doc in docs[:4]:
            context = task.fewshot_context(doc, num_fewshot=3)
            examples = [d for d in docs if d is not doc and render(d) in context and render(d) != render(doc)]
            for example in examples:
                answer = LETTERS[example["label"]] if name == names[0] else example["options"][example["label"]]
                assert f"{render(example)} {answer}\n\n" in context, name
            shown += len(examples)
        assert shown >= 10, name  # 4 documents x 3 examples (a text repeated in the file may hide one)


def test_lm_eval_reports_an_interval_around_every_metric(tiny_model, data_root):
    import math

    import numpy as np

    from culture_tasks import stats
    from tests.lm_eval_helpers import evaluate

    out = evaluate(tiny_model, ["culturellm_arabic_spam"], data_root, limit=30, log_samples=True)
    res = out["results"]["culturellm_arabic_spam"]
    for key in ("f1_macro", "acc"):
        low, value, high = (res[f"{key}{s},none"] for s in ("_ci_low", "", "_ci_high"))
        assert all(isinstance(v, float) and math.isfinite(v) for v in (low, value, high)), key
        assert low <= value <= high, key
    # the logged items are (0 / 1, gold, the gold label's documents in the task: Ham 838, Spam 162); the first 30
    # documents are weighted back to the task's label shares, each label's documents weighing 838 (or 162) over
    # their number among the 30
    items = sorted((tuple(s["acc"]) for s in out["samples"]["culturellm_arabic_spam"]), key=repr)
    values, golds, counts = (np.array([item[k] for item in items], dtype=float) for k in range(3))
    assert sorted(set(zip(golds, counts))) == [(0, 838), (1, 162)]
    design = counts / np.array([np.sum(golds == g) for g in golds])
    assert res["acc,none"] == pytest.approx(design @ values / design.sum())
    assert res["acc_stderr,none"] == "N/A"  # lm-eval's standard error of a plain mean would not be this mean's
    # the interval is the seeded percentile bootstrap of those items, each resample weighted the same way
    idx = np.random.default_rng(stats.SEED).integers(0, 30, size=(stats.ITERS, 30))
    means = (design[idx] * values[idx]).sum(axis=1) / design[idx].sum(axis=1)
    assert (res["acc_ci_low,none"], res["acc_ci_high,none"]) == (
        pytest.approx(np.percentile(means, 2.5)), pytest.approx(np.percentile(means, 97.5)))


@pytest.mark.parametrize("text", ["It isn’t offensive", "it doesn’t seem offensive", "It ISN’T offensive"])
def test_a_negation_with_a_typographic_apostrophe_is_a_negation(text):
    # chat models often write ’ (U+2019): "isn’t offensive" denies the label as "isn't offensive" does
    assert parse_label(text, ["not offensive", "offensive"]) == -1
    assert parse_label(text.replace("’", "'"), ["not offensive", "offensive"]) == -1


@pytest.mark.parametrize(("text", "options", "expected"), [
    ("It cannot be offensive", ["not offensive", "offensive"], -1),
    ("This text cannot be considered offensive", ["neutral", "offensive"], -1),
    ("There is nothing offensive here", ["not offensive", "offensive"], -1),
    ("Nobody would find it offensive", ["neutral", "offensive"], -1),
    ("The message cannot be spam.", ["not spam", "spam"], -1),
    ("Nothing but offensive", ["not offensive", "offensive"], 1),  # a contrasting "but" ends the negation
    ("Cannot tell; offensive", ["not offensive", "offensive"], 1),  # so does the clause's end
])
def test_cannot_nothing_and_nobody_are_negations(text, options, expected):
    # these were read as the label they deny ("It cannot be offensive" as offensive)
    assert parse_label(text, options) == expected


def test_few_shot_draws_a_repeat_of_the_evaluated_text_only_where_the_rows_differ(data_root):
    """lm-eval leaves every few-shot candidate equal to the evaluated document out of the pool, so of
    the 845 rows whose text occurs more than once (surrounding whitespace aside) only a copy that
    differs from the row can be drawn: in whitespace with the same label (30 rows of 5 tasks) or in
    its label (the 17 conflicting rows); the other 798 never see their own text as an example."""
    from collections import Counter, defaultdict

    from lm_eval.api.samplers import ContextSampler

    from culture_tasks.culturellm._generate_configs import load_manifest

    same, other, never = Counter(), Counter(), 0
    for e in load_manifest():
        docs = load_classification(str(data_root), task_name=e.task("mc"), file=e.file, text_field=e.text_field,
                                   labels=e.labels, instruction=e.instruction, drop_labels=e.drop_labels,
                                   max_text_chars=e.max_text_chars)["test"].to_list()
        copies = defaultdict(list)
        for doc in docs:
            copies[doc["text"].strip()].append(doc)
        for group in (g for g in copies.values() if len(g) > 1):
            for doc in group:
                pool = ContextSampler.rm_eval_doc(doc, group)  # what lm-eval may still draw for this document
                same[e.task("mc")] += any(d["label"] == doc["label"] for d in pool)
                other[e.task("mc")] += any(d["label"] != doc["label"] for d in pool)
                never += not pool
    assert never == 798
    assert +same == {"culturellm_bengali_racism": 12, "culturellm_bengali_threat": 12, "culturellm_english_mlma_hate": 2,
                     "culturellm_english_mlma_directness": 2, "culturellm_portuguese_offcombr": 2}
    assert sum(other.values()) == 17


def _mc_items(loglikelihoods_and_golds):
    docs = [process_results_mc({"label": gold, "label_count": 2, "options": ["x", "y"]}, [(ll, False) for ll in lls])
            for lls, gold in loglikelihoods_and_golds]
    return [d["f1_macro"] for d in docs], [d["acc"] for d in docs]


def test_a_nan_loglikelihood_chooses_no_option_and_makes_the_task_nan(caplog):
    import math

    from culture_tasks import classification

    nan = float("nan")
    # golds 0, 1, 0, 1; the first document's scores overflowed, the other three are answered right.
    # Read as option A (the old argmax over a NaN), the task scored a perfect 1.0 macro-F1 and accuracy.
    docs = [([nan, -1.0], 0), ([-2.0, -1.0], 1), ([-1.0, -2.0], 0), ([-2.0, -1.0], 1)]
    f1_items, acc_items = _mc_items(docs)
    assert f1_items[0] == (0, None, 2, 2) and math.isnan(acc_items[0][0])
    assert f1_items[1:] == [(1, 1, 2, 2), (0, 0, 2, 2), (1, 1, 2, 2)]
    assert acc_items[1:] == [(1.0, 1, 2), (1.0, 0, 2), (1.0, 1, 2)]
    # a NaN after the first option is no answer either (the old argmax skipped it)
    assert _mc_items([([-3.0, nan, -1.0], 1)])[0] == [(1, None, 2, 2)]
    assert _mc_items([([float("inf"), -1.0], 1)])[0] == [(1, None, 2, 2)]
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        values = [classification.f1_macro(f1_items), classification.f1_macro_ci_low(f1_items),
                  classification.f1_macro_ci_high(f1_items), classification.acc_ci_low(acc_items),
                  classification.acc_ci_high(acc_items)]
    assert all(math.isnan(v) for v in values), values
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3 and "1 of 4 documents have a NaN or infinite log-likelihood" in warnings[0]
    assert "f1_macro, acc and their intervals are NaN" in warnings[0] and "dtype=float32" in warnings[0]
    # and 4 documents are too few for an interval of a classification metric in any case (classification.MIN_DOCS)
    assert warnings[1:] == [f"a task: no {m} interval ({m}_ci_low / _ci_high are NaN): 4 documents, and a bootstrap "
                            f"of {m} needs {classification.MIN_DOCS} to hold the complete run's value "
                            "(docs/interval_calibration.md)" for m in ("f1_macro", "acc")]
    # the other documents alone score as before
    assert classification.f1_macro(f1_items[1:]) == 1.0
    enough = acc_items[1:] * classification.MIN_DOCS
    assert classification.acc_ci_low(enough) == 1.0 and math.isnan(classification.acc_ci_low(acc_items[1:]))


def test_a_task_of_one_document_warns_why_its_intervals_are_nan(caplog):
    # below classification.MIN_DOCS documents every _ci_ row is NaN with one warning per metric naming the count,
    # one document included (it was NaN without a word)
    import math

    from culture_tasks import classification

    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        values = [classification.f1_macro_ci_low([(0, 0, 2)]), classification.acc_ci_low([1.0]),
                  classification.parse_fail_rate_ci_low([0.0])]
    assert all(math.isnan(v) for v in values), values
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"a task: no {m} interval ({m}_ci_low / _ci_high are NaN): 1 document, and a bootstrap of {m} "
                        f"needs {classification.MIN_DOCS} to hold the complete run's value (docs/interval_calibration.md)"
                        for m in ("f1_macro", "acc", "parse_fail_rate")]


def test_vectorised_macro_f1_is_nan_with_a_document_without_prediction():
    import numpy as np

    from culture_tasks.classification import f1_macro_weighted

    items = [(0, None, 2), (1, 1, 2), (0, 0, 2)]
    out = f1_macro_weighted(items, np.array([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]]))
    assert out.shape == (2,) and np.isnan(out).all()


def _nan_model(tiny_model, tmp_path):
    """The tiny model with one NaN weight in its output layer: every log-likelihood is NaN, as in a
    float16 overflow."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    path = tmp_path / "nan_model"
    shutil.copytree(tiny_model, path)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    with torch.no_grad():
        model.lm_head.weight[5, 0] = float("nan")
    model.save_pretrained(str(path))
    return path


def test_lm_eval_with_nan_loglikelihoods_reports_nan_and_names_the_task(tiny_model, data_root, tmp_path, caplog):
    import math

    from tests.lm_eval_helpers import evaluate

    model = _nan_model(tiny_model, tmp_path)
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        out = evaluate(model, ["culturellm_arabic_spam", "wvs_usa", "vsm13_usa"], data_root, limit=24)
    res = out["results"]
    for task, keys in (("culturellm_arabic_spam", ("f1_macro", "acc")),
                       ("wvs_usa", ("wvs_jsd", "wvs_w1", "wvs_majority", "wvs_jsd_ethical_values")),
                       ("vsm13_usa", ("vsm13_l1", "vsm13_mae", "pdi", "ivr", "vsm13_margin", "vsm13_rank"))):
        for key in keys:
            for suffix in ("", "_ci_low", "_ci_high"):
                assert math.isnan(res[task][f"{key}{suffix},none"]), (task, key, suffix)
    warned = [r.getMessage() for r in caplog.records if "NaN or infinite log-likelihood" in r.getMessage()]
    assert sorted(w.split(":")[0] for w in warned) == ["culturellm_arabic_spam", "vsm13_usa", "wvs_usa"], warned
    assert all("24 of 24 documents" in w and "dtype=float32" in w for w in warned), warned


@pytest.mark.parametrize("command", ["culture-train data", "sampling", "culture-align"])
def test_a_command_without_a_data_root_names_its_own_flag(command, monkeypatch, tmp_path, capsys):
    # the message named only lm-eval's --metadata and the environment: culture-train data has no --metadata
    from aligners.cli import main as align_main
    from culture_tasks.sampling import main as sampling_main
    from trainers.cli import main as train_main

    monkeypatch.delenv("CULTURE_DATA_DIR", raising=False)
    out = tmp_path / "out"
    if command == "culture-train data":
        code = train_main(["data", "--culture", "arabic", "--output", str(out)])
    elif command == "sampling":
        code = sampling_main(["--output", str(out)])
    else:
        code = align_main(["--model", str(tmp_path), "--country", "USA", "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert "No data root given" in err and "--data-dir" in err and "CULTURE_DATA_DIR" in err
def test_lm_eval_gives_no_standard_error_its_groups_would_combine_as_independent(tiny_model, data_root):
    # a CultureLLM standard error in lm-eval's Stderr column would be combined by its groups as if the tasks were
    # independent, but several tasks of a culture label the same texts (the six DETOXIS tasks: Qwen2.5-Coder's
    # culture interval drawing texts is 1.7 times the independent one): tasks and groups say N/A, with lm-eval's
    # standard errors on, and each task's interval is in its _ci_ rows
    import math

    from tests.lm_eval_helpers import evaluate

    out = evaluate(tiny_model, ["culturellm_chinese"], data_root, limit=20, bootstrap_iters=100)
    res = out["results"]
    for name in ("culturellm_chinese", "culturellm_chinese_cdial_gender_bias", "culturellm_chinese_camouflage_spam"):
        assert (res[name]["f1_macro_stderr,none"], res[name]["acc_stderr,none"]) == ("N/A", "N/A"), name
    for task in ("culturellm_chinese_cdial_gender_bias", "culturellm_chinese_camouflage_spam"):
        assert all(math.isfinite(res[task][f"{m}_ci_{end},none"]) for m in ("f1_macro", "acc") for end in ("low", "high"))
