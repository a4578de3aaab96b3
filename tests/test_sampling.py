"""The stratified sample for lm-eval's --samples: counts, seeding, ranges, and what lm-eval evaluates."""

from __future__ import annotations

import json
import logging
from collections import Counter

import pytest

from culture_tasks import sampling
from culture_tasks.classification import load_classification
from culture_tasks.culturellm._generate_configs import load_manifest
from culture_tasks.paths import task_manager

# A toy suite: culture a has two tasks, culture b one task with three labels.
TOY = {
    "a_x": ("a", ["n"] * 8 + ["y"] * 2),
    "a_y": ("a", ["p", "q"] * 3),
    "b_z": ("b", ["u"] * 6 + ["v"] * 3 + ["w"]),
}


def test_split_evenly_fills_small_strata_and_gives_the_remainder_to_the_first():
    assert sampling.split_evenly(10, [3, 100, 100]) == [3, 4, 3]
    assert sampling.split_evenly(7, [1, 100]) == [1, 6]
    assert sampling.split_evenly(6, [2, 2, 2]) == [2, 2, 2]
    with pytest.raises(sampling.SamplingError, match=r"^cannot draw 7 documents from strata holding 6$"):
        sampling.split_evenly(7, [2, 2, 2])
    with pytest.raises(sampling.SamplingError, match=r"^cannot draw -1 documents$"):
        sampling.split_evenly(-1, [2, 2, 2])


def test_label_quota_one_per_label_then_largest_remainder():
    # 10 of 90/8/2: one each, then 7 over the 89/7/1 left: 6.42, 0.51, 0.07 -> 6 + the largest remainder (label 1)
    assert sampling.label_quota(10, [90, 8, 2]) == [7, 2, 1]
    # fewer documents than labels: the most frequent labels first
    assert sampling.label_quota(2, [5, 1, 9]) == [1, 0, 1]
    # a label with no document gets none
    assert sampling.label_quota(4, [0, 3, 1]) == [0, 3, 1]
    assert sampling.label_quota(6, [3, 3]) == [3, 3]


def test_toy_suite_counts_per_culture_task_and_label():
    drawn = sampling.draw(TOY, per_culture=5, seed=0)
    assert {t: len(v) for t, v in drawn.items()} == {"a_x": 3, "a_y": 2, "b_z": 5}
    labels = {t: Counter(TOY[t][1][i] for i in idx) for t, idx in drawn.items()}
    # a_x: 3 of n 8 / y 2 -> one each, the third to n (7/8 of the room left)
    assert labels["a_x"] == {"n": 2, "y": 1}
    assert labels["a_y"] == {"p": 1, "q": 1}
    # b_z: 5 of u 6 / v 3 / w 1 -> one each, then 2 over the 5/2/0 left: 1.43, 0.57 -> u 1, v by remainder
    assert labels["b_z"] == {"u": 2, "v": 2, "w": 1}
    for task, idx in drawn.items():
        assert idx == sorted(set(idx)) and 0 <= idx[0] and idx[-1] < len(TOY[task][1])


def test_seeded_and_independent_of_the_other_tasks():
    big = {"c_t": ("c", ["a"] * 500 + ["b"] * 500)}
    assert sampling.draw(big, 40, seed=3) == sampling.draw(big, 40, seed=3)
    assert sampling.draw(big, 40, seed=3) != sampling.draw(big, 40, seed=4)
    both = sampling.draw({**big, "d_t": ("d", ["a"] * 50)}, 40, seed=3)
    assert both["c_t"] == sampling.draw(big, 40, seed=3)["c_t"]


def test_budget_below_the_task_count_or_above_the_documents_is_refused():
    with pytest.raises(sampling.SamplingError, match="below the 2 tasks of culture a"):
        sampling.draw(TOY, per_culture=1, seed=0)
    with pytest.raises(sampling.SamplingError, match="more than the 10 documents of culture b"):
        sampling.draw(TOY, per_culture=11, seed=0)


def test_a_negative_seed_is_one_line_naming_the_flag_before_the_suite_is_read(tmp_path, monkeypatch, capsys):
    """numpy's own "expected non-negative integer" came out once the whole suite had been read, naming no flag."""
    monkeypatch.setattr(sampling, "suite_labels", lambda *a: pytest.fail("read the suite"))
    out = tmp_path / "s.json"
    assert sampling.main(["--output", str(out), "--seed", "-1"]) == 2
    assert capsys.readouterr().err == "culture_tasks.sampling: --seed must be 0 or more, got -1\n"
    assert sampling.main(["--output", str(out), "--per_culture", "0"]) == 2
    assert capsys.readouterr().err == "culture_tasks.sampling: --per_culture must be at least 1, got 0\n"
    assert not out.exists()
    with pytest.raises(sampling.SamplingError, match=r"^--seed must be 0 or more, got -2$"):
        sampling.draw(TOY, per_culture=5, seed=-2)


def test_cli_on_the_real_suite_writes_in_range_indices_and_refuses_to_overwrite(tmp_path, data_root, capsys):
    out = tmp_path / "samples.json"
    args = ["--output", str(out), "--per_culture", "60", "--seed", "0", "--data_dir", str(data_root)]
    logger = logging.getLogger("culture_tasks")
    level = logger.level
    assert sampling.main(args) == 0
    # it quiets the row counts while drawing, then leaves the caller's logging as it was: a test after it
    # in the same process lost every culture_tasks warning below ERROR
    assert logger.level == level != logging.ERROR
    drawn = json.loads(out.read_text())
    entries = load_manifest()
    assert list(drawn) == [e.task("mc") for e in entries]
    per_culture = Counter()
    for e in entries:
        n = len(load_classification(str(data_root), task_name=e.task("mc"), file=e.file, text_field=e.text_field,
                                    labels=e.labels, instruction=e.instruction, drop_labels=e.drop_labels,
                                    max_text_chars=e.max_text_chars)["test"])
        idx = drawn[e.task("mc")]
        assert idx and idx == sorted(set(idx)) and idx[0] >= 0 and idx[-1] < n, e.task("mc")
        per_culture[e.culture] += len(idx)
    assert per_culture == {c: 60 for c in per_culture} and len(per_culture) == 9
    before = out.read_text()
    assert sampling.main(args) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == before


def test_lm_eval_samples_evaluates_exactly_the_drawn_documents(tiny_model, data_root):
    suite = sampling.suite_labels(str(data_root), cultures=["chinese"])
    drawn = sampling.draw(suite, per_culture=6, seed=0)
    assert {t: len(v) for t, v in drawn.items()} == {"culturellm_chinese_cdial_gender_bias": 3,
                                                     "culturellm_chinese_camouflage_spam": 3}
    import lm_eval

    results = lm_eval.simple_evaluate(  # what `lm_eval ... --samples <file>` runs, with the file's JSON
        model="hf", model_args=f"pretrained={tiny_model},dtype=float32", tasks=["culturellm_chinese"],
        task_manager=task_manager({"data_dir": str(data_root)}), samples=json.loads(json.dumps(drawn)),
        device="cpu", batch_size=8, log_samples=True, bootstrap_iters=0)
    for task, idx in drawn.items():
        entry = next(e for e in load_manifest() if e.task("mc") == task)
        texts = load_classification(str(data_root), task_name=task, file=entry.file, text_field=entry.text_field,
                                    labels=entry.labels, instruction=entry.instruction,
                                    max_text_chars=entry.max_text_chars)["test"]["text"]
        logged = results["samples"][task]
        assert sorted(s["doc_id"] for s in logged) == idx
        assert [s["doc"]["text"] for s in sorted(logged, key=lambda s: s["doc_id"])] == [texts[i] for i in idx]
        assert results["n-samples"][task] == {"original": 1000, "effective": 3}


def test_default_sample_misses_labels_only_in_the_four_tasks_the_docs_name(data_root):
    """At 20 per culture a task's share can be smaller than its label count (README, --help): Spanish's
    11 tasks get 2, 2, ..., 1, 1 (the remainder goes to the first), Arabic's 10 get 2 each, Turkish's
    7 get 3 ×6 and 2; only these four tasks then miss a label, the most frequent labels drawn."""
    suite = sampling.suite_labels(str(data_root))
    drawn = sampling.draw(suite, 20, 0)
    short = {}
    for task, idx in drawn.items():
        labels = suite[task][1]
        if len({labels[i] for i in idx}) < len(set(labels)):
            short[task] = (len(idx), len(set(labels)))
    assert short == {"culturellm_arabic_osact5_hate_finegrained": (2, 7),
                     "culturellm_spanish_detoxis_aggressiveness": (1, 2),
                     "culturellm_spanish_detoxis_negative_stance": (1, 2),
                     "culturellm_turkish_offense_corpus_finegrained": (3, 5)}
    # the one document of a two-label task is of its more frequent label (0: 970 of 1,000)
    labels = suite["culturellm_spanish_detoxis_aggressiveness"][1]
    assert labels[drawn["culturellm_spanish_detoxis_aggressiveness"][0]] == "0"


def test_cli_never_writes_over_its_config_or_a_data_file_and_locks_its_output(tmp_path, data_root, capsys):
    from culture_tasks.outputs import OutputLock

    config = tmp_path / "s.yaml"
    config.write_text(f"output: {config}\nper_culture: 20\ndata_dir: {data_root}\n")
    before = config.read_text()
    assert sampling.main(["--config", str(config), "--overwrite"]) == 2
    assert f"output {config} is also an input of this run" in capsys.readouterr().err
    assert config.read_text() == before
    data = sampling.suite_files(str(data_root))
    assert len(data) == 58 and all(p.is_file() for p in data)
    out = tmp_path / "drawn.json"
    with OutputLock.for_file(out):  # another draw into the same file, still running
        assert sampling.main(["--output", str(out), "--data_dir", str(data_root)]) == 2
    assert f"{out} is in use by another run" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "drawn.json.lock").exists()
