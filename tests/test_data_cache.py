"""A data file edited in place (same size, same modification time) is read afresh: no cache keyed by
path, size or time stands between the file and the task."""

from __future__ import annotations

import json
import os

from culture_tasks.paths import task_manager

TASK = "culturellm_english_hate_offensive"
FILE = "culturellm/English/hate-speech-and-offensive-language/data.jsonl"


def _write(path, texts_labels):
    path.write_text("".join(json.dumps({"data": t, "label": lab}) + "\n" for t, lab in texts_labels), encoding="utf-8")


def test_task_sees_a_same_size_same_mtime_edit(tmp_path):
    from lm_eval.tasks import get_task_dict

    data = tmp_path / FILE
    data.parent.mkdir(parents=True)
    _write(data, [("first text", "0"), ("second text", "2")])
    stat = data.stat()
    manager = task_manager({"data_dir": str(tmp_path)})

    before = get_task_dict([TASK], manager)[TASK].dataset["test"]
    assert before["text"] == ["first text", "second text"] and before["label"] == [0, 2]

    _write(data, [("FIRST TEXT", "1"), ("second text", "2")])  # same length, other content
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert data.stat().st_size == stat.st_size and data.stat().st_mtime_ns == stat.st_mtime_ns

    after = get_task_dict([TASK], manager)[TASK].dataset["test"]
    assert after["text"] == ["FIRST TEXT", "second text"] and after["label"] == [1, 2]
    assert after["options"][0] == ["hate speech", "offensive but not hate speech", "neither"]


def _evaluate(model, root, **cache):
    import lm_eval

    return lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={model},dtype=float32", tasks=[TASK],
                                   task_manager=task_manager({"data_dir": str(root)}), device="cpu", batch_size=4,
                                   bootstrap_iters=0, log_samples=True, **cache)


def test_a_stale_lm_eval_request_cache_stops_the_run(tiny_model, tmp_path, monkeypatch):
    """lm-eval names its request cache by task, not by documents or prompt code: after an edit its cached prompts
    would be scored against the new labels. The culture tasks check the cache against the run's documents and its
    first document's requests built now, and stop with the fix; --cache_requests refresh rebuilds it."""
    import lm_eval.caching.cache as request_cache
    import pytest

    from culture_tasks import classification
    from culture_tasks.task import StaleRequestCache

    monkeypatch.setattr(request_cache, "PATH", str(tmp_path / "requests"))
    data = tmp_path / "data" / FILE
    data.parent.mkdir(parents=True)
    _write(data, [("first text", "0"), ("second text", "2")])
    first = _evaluate(tiny_model, tmp_path / "data", cache_requests=True)
    assert len(list((tmp_path / "requests").iterdir())) == 1  # written
    again = _evaluate(tiny_model, tmp_path / "data", cache_requests=True)  # read back: the same documents
    assert again["results"][TASK]["acc,none"] == first["results"][TASK]["acc,none"]

    _write(data, [("FIRST TEXT", "1"), ("second text", "2")])
    with pytest.raises(StaleRequestCache, match=rf"^{TASK}: lm-eval's request cache holds requests built from other "
                       r"documents or prompts than this run's \(1 of 2 documents differ; .*rerun with "
                       r"--cache_requests refresh$"):
        _evaluate(tiny_model, tmp_path / "data", cache_requests=True)
    fresh = _evaluate(tiny_model, tmp_path / "data", cache_requests=True, rewrite_requests_cache=True)
    assert [s["doc"]["text"] for s in fresh["samples"][TASK]] == ["FIRST TEXT", "second text"]
    assert [s["target"] for s in fresh["samples"][TASK]] == [1, 2]
    _evaluate(tiny_model, tmp_path / "data", cache_requests=True)  # the rebuilt cache matches

    # the same documents, another prompt (a release of the tasks that words it otherwise)
    real = classification.doc_to_text_mc
    monkeypatch.setattr(classification, "doc_to_text_mc", lambda doc: "Reworded. " + real(doc))
    with pytest.raises(StaleRequestCache, match=r"\(1 of 2 documents differ"):
        _evaluate(tiny_model, tmp_path / "data", cache_requests=True)
