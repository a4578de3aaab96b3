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
