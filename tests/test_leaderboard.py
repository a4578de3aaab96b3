"""Leaderboard from synthetic lm-eval result files (the fields lm-eval 0.4 writes), hand-computed values."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from pathlib import Path

import pytest

from culture_tasks.classification import MIN_DOCS
from culture_tasks.leaderboard import main
from culture_tasks.paths import installed_version

COUNTER = iter(range(3600))
STAMP = (f"2026-01-01T00-{k // 60:02d}-{k % 60:02d}.000000" for k in COUNTER)  # later calls: later dates


def _result(folder, model, scores, *, peft=None, extra=None, hib=None, limit=None, fewshot=0, chat=False,
            samples=None, versions=None, ci=None, n_samples=None, groups=None, metadata=None, gen_kwargs=None,
            model_args=None, config=None, doc_ids=None):
    """A results_<stamp>.json (+ samples_<task>_<stamp>.jsonl for ``samples``, whose rows' doc_ids are 0, 1, ...
    or ``doc_ids[task]``) in ``folder``; ``model_args`` and ``config`` add to the file's ``config.model_args``
    and ``config``; each task's version, unless ``versions`` names it, is its installed definition's (else 1.0)."""
    stamp = next(STAMP)
    args = {"pretrained": model, "dtype": "float32", **({"peft": peft} if peft else {}), **(model_args or {})}
    results = {}
    for task, value in scores.items():
        results[task] = {"alias": task, "f1_macro,none": value, "f1_macro_stderr,none": "N/A", "acc,none": 0.5}
        if ci and task in ci:
            results[task].update({"f1_macro_ci_low,none": ci[task][0], "f1_macro_ci_high,none": ci[task][1]})
    results.update(extra or {})
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "results": results, "group_subtasks": groups or {},
        "config": {"model": "hf", "model_args": args, "model_dtype": "torch.float32", "limit": limit, **(config or {})},
        "higher_is_better": hib or {}, "versions": versions or {t: installed_version(t) or 1.0 for t in results},
        "n-shot": {t: fewshot for t in results}, "n-samples": n_samples or {},
        "date": 1767225600.0 + 60 * int(stamp[-12:-10]) + int(stamp[-9:-7]), "lm_eval_version": "0.4.13", "transformers_version": "5.24.0",
        "git_hash": "abc1234", "chat_template": "{{ x }}" if chat else None,
        "chat_template_sha": "c0ffee" if chat else None, "fewshot_as_multiturn": False,
        "system_instruction": None, "system_instruction_sha": None,
    }
    if metadata is not None:  # lm-eval's configs: the task YAML's metadata, --metadata and the model args
        data["configs"] = {t: {"metadata": {"version": 1.0, **args, **metadata}, "output_type":
                               "generate_until" if "_gen_" in t else "multiple_choice"} for t in scores}
        data["config"]["gen_kwargs"] = gen_kwargs
    (folder / f"results_{stamp}.json").write_text(json.dumps(data))
    for task, rows in (samples or {}).items():
        ids = (doc_ids or {}).get(task) or range(len(rows))
        lines = [json.dumps({"doc_id": i, "doc_hash": f"h{i}", "filter": "none", **row}) for i, row in zip(ids, rows)]
        (folder / f"samples_{task}_{stamp}.jsonl").write_text("\n".join(lines) + "\n")


def _json(tmp_path, *extra):
    out = tmp_path / f"board{next(STAMP)}.json"
    assert main([str(tmp_path / "res"), "--format", "json", "--output", str(out), *extra]) == 0
    return json.loads(out.read_text())


def _cell(data, model, column, table="CultureLLM (multiple choice), macro-F1"):
    found = [c for c in data["cells"] if c["label"] == model and c["column"] == column and c["table"] == table]
    assert len(found) == 1, found
    return found[0]


def test_two_runs_side_by_side(tmp_path, capsys):
    _result(tmp_path / "res/a", "/m/base", {
        "culturellm_arabic_x": 0.2, "culturellm_arabic_y": 0.4, "culturellm_korean_z": 0.9,
        "culturellm_arabic": 0.3}, groups={"culturellm_arabic": ["culturellm_arabic_x", "culturellm_arabic_y"]})
    _result(tmp_path / "res/b", "/m/base", {
        "culturellm_arabic_x": 0.6, "culturellm_arabic_y": 0.6, "culturellm_korean_z": 0.3},
        peft="/ckpt/arabic-lora", ci={"culturellm_korean_z": (0.1, 0.5)})
    assert main([str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| base")]
    # base: arabic (0.2+0.4)/2 = 0.3, korean 0.9, overall (0.2+0.4+0.9)/3 = 0.5
    # base + arabic-lora: arabic 0.6, korean 0.3 with the file's interval, overall 0.5 -> a tie: both best
    none = "(no interval: no per-sample logs (run lm_eval with --log_samples))"
    assert lines[0].startswith("| base [r")
    assert lines[0].endswith(f"| 0.3000 {none} | **0.9000** (no interval: the result file reports none for this "
                             f"metric) | **0.5000** {none} | 3 |")
    assert lines[1].endswith(f"| **0.6000** {none} | 0.3000 [0.1000, 0.5000] | **0.5000** {none} | 3 |")


def test_culture_of_a_task_from_the_groups_not_its_name(tmp_path):
    # hatecheck_ar does not look like culturellm_<culture>_<name>, but lm-eval ran it in culturellm_arabic:
    # arabic (0.25 + 0.75) / 2 = 0.5; korean 0.9 (run on its own: placed by its name); overall 1.9 / 3
    groups = {"culturellm_arabic": ["culturellm_arabic_x", "hatecheck_ar"]}
    scores = {"culturellm_arabic_x": 0.25, "hatecheck_ar": 0.75, "culturellm_korean_z": 0.9}
    _result(tmp_path / "res", "/m/base", scores, groups=groups)
    data = _json(tmp_path)
    assert _cell(data, "base", "arabic")["value"] == 0.5
    assert _cell(data, "base", "korean")["value"] == 0.9
    assert _cell(data, "base", "overall")["value"] == pytest.approx(1.9 / 3)
    assert _cell(data, "base", "tasks")["value"] == 3.0
    assert {c["column"] for c in data["cells"]} == {"arabic", "korean", "overall", "tasks"}


def test_row_identity(tmp_path):
    scores = {"culturellm_english_x": 0.5}
    _result(tmp_path / "res/1", "/m/base", scores, peft="/runs/a/adapter")        # two adapters, same folder name
    _result(tmp_path / "res/2", "/m/base", scores, peft="/runs/b/adapter")
    _result(tmp_path / "res/3", "/org1/model", scores)                            # two bases, same folder name
    _result(tmp_path / "res/4", "/org2/model", scores)
    _result(tmp_path / "res/5", "/m/base", scores)                                # plain base, full run
    _result(tmp_path / "res/6", "/m/base", scores, limit=5)                       # --limit 5
    _result(tmp_path / "res/7", "/m/base", scores, fewshot=3)                     # --num_fewshot 3
    _result(tmp_path / "res/8", "/m/base", scores, chat=True)                     # chat template
    _result(tmp_path / "res/9", "/m/base", scores, versions={"culturellm_english_x": 2.0})  # task version 2
    # same identity as 5, other tasks: joins its row
    _result(tmp_path / "res/10", "/m/base", {}, extra={"wvs_usa": {"wvs_jsd,none": 0.7}})
    data = _json(tmp_path)
    args = sorted((r["model_args"], r["limit"], r["num_fewshot"], r["chat_template"], r["task_versions"])
                  for r in data["runs"])
    assert args == sorted([
        ("dtype=float32,pretrained=/m/base", "5", "0", "none", "1.0"),
        ("dtype=float32,pretrained=/m/base", "none", "0", "applied", "1.0"),
        ("dtype=float32,pretrained=/m/base", "none", "0", "none", "1.0, 1.1"),  # wvs_usa's installed 1.1 joined it
        ("dtype=float32,pretrained=/m/base", "none", "0", "none", "2.0"),
        ("dtype=float32,pretrained=/m/base", "none", "3", "none", "1.0"),
        ("dtype=float32,peft=/runs/a/adapter,pretrained=/m/base", "none", "0", "none", "1.0"),
        ("dtype=float32,peft=/runs/b/adapter,pretrained=/m/base", "none", "0", "none", "1.0"),
        ("dtype=float32,pretrained=/org1/model", "none", "0", "none", "1.0"),
        ("dtype=float32,pretrained=/org2/model", "none", "0", "none", "1.0"),
    ])
    assert len({r["row_id"] for r in data["runs"]}) == 9
    merged = [r for r in data["runs"] if len(r["files"]) == 2]
    assert len(merged) == 1 and merged[0]["limit"] == "none" and merged[0]["num_fewshot"] == "0"


def test_adapter_kind_and_provenance(tmp_path, capsys):
    """The kind is read from an absolute adapter path only (lm_eval read a relative one from a working directory
    the file does not record); an adapter written after the row's run is named in its provenance and on stderr."""
    lora, prompt, retrained = tmp_path / "lora", tmp_path / "prompt", tmp_path / "retrained"
    before_runs = 1767225600.0 - 3600  # the files' runs start at 2026-01-01 00:00 UTC
    for folder, kind in ((lora, "LORA"), (prompt, "PROMPT_TUNING"), (retrained, "LORA")):
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps({"peft_type": kind}))
        os.utime(folder / "adapter_config.json", (before_runs, before_runs))
    os.utime(retrained / "adapter_config.json", (before_runs + 2 * 86400, before_runs + 2 * 86400))
    for peft in (lora, prompt, retrained, tmp_path / "gone", "lora"):
        _result(tmp_path / "res" / Path(peft).name / str(len(str(peft))), "/m/base", {"culturellm_english_x": 0.5},
                peft=str(peft))
    runs = {r["adapter"]: r for r in _json(tmp_path)["runs"]}
    assert runs[str(lora)]["adapter_kind"] == "LoRA"
    assert runs[str(prompt)]["adapter_kind"] == "prompt tuning"
    assert runs[str(tmp_path / "gone")]["adapter_kind"] == "unknown"
    assert runs["lora"]["adapter_kind"].startswith("unknown (a relative path or hub id")  # not ./lora read from here
    assert runs[str(retrained)]["adapter_kind"].startswith(
        "LoRA; changed since: adapter files written 2026-01-02 23:00 UTC, after the run of 2026-01-01 00:")
    assert "its numbers may be another adapter's" in capsys.readouterr().err
    row = runs[str(lora)]
    assert (row["dtype"], row["lm_eval_version"], row["transformers_version"], row["git_hash"]) == \
        ("float32", "0.4.13", "5.24.0", "abc1234")
    assert row["date"] == "2026-01-01 00:00 UTC" and row["partial"] == ""


def test_a_recorded_fingerprint_tells_exactly_whether_the_model_or_adapter_folder_changed(tmp_path, capsys):
    """hf-prompt records a local model's and adapter's content fingerprint (model_sha / peft_sha, sha256-full:...): a
    folder touched after the run but holding the same files is no change (the file dates alone would say so), a
    folder with other content is one, named in the provenance and on stderr, for the model too."""
    from culture_tasks.fingerprints import loaded_fingerprint

    model, touched, rewritten = tmp_path / "model", tmp_path / "touched", tmp_path / "rewritten"
    for folder, text in ((model, "w"), (touched, "LORA"), (rewritten, "LORA")):
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps({"peft_type": text}))
    recorded = {f: loaded_fingerprint(f) for f in (model, touched, rewritten)}
    later = 1767225600.0 + 2 * 86400  # after every run's start
    for peft in (touched, rewritten):
        _result(tmp_path / "res" / peft.name, str(model), {"culturellm_english_x": 0.5}, peft=str(peft),
                config={"model": "hf-prompt", "model_sha": recorded[model], "peft_sha": recorded[peft]})
    os.utime(touched / "adapter_config.json", (later, later))  # the same bytes, a later date
    (touched / "README.md").write_text("notes")  # and files no model or adapter is loaded from
    (touched / "eval").mkdir()
    (touched / "eval" / "results_1.json").write_text("{}")
    (rewritten / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 16}))
    runs = {r["adapter"]: r for r in _json(tmp_path)["runs"]}
    assert runs[str(touched)]["adapter_kind"] == "LoRA"
    assert runs[str(rewritten)]["adapter_kind"] == (
        f"LoRA; changed since: adapter files differ from the fingerprint its run recorded ({recorded[rewritten][:24]}...)")
    assert f"peft_sha={recorded[touched]}" in runs[str(touched)]["model_revision"]
    assert "changed" not in runs[str(touched)]["model_revision"]
    assert "its numbers may be another adapter's" in capsys.readouterr().err
    # the model folder rewritten: every row read from it says so
    (model / "adapter_config.json").write_text("other weights")
    runs = {r["adapter"]: r for r in _json(tmp_path)["runs"]}
    assert all(r["model_revision"].endswith(
        f"; model changed since: model files differ from the fingerprint its run recorded ({recorded[model][:24]}...)")
        for r in runs.values())
    assert capsys.readouterr().err.count("the numbers of the rows that name it may be another model's") == 1


def test_a_model_in_a_subfolder_is_checked_against_the_subfolder(tmp_path, capsys):
    """``pretrained=ROOT,subfolder=ckpt``: hf-prompt's model_sha is the fingerprint of ROOT/ckpt, the folder the
    weights load from; the board compares it with that folder, not with ROOT's top level (no file at all)."""
    from culture_tasks.fingerprints import loaded_fingerprint

    ckpt = tmp_path / "root" / "ckpt"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text("{}")
    recorded = loaded_fingerprint(ckpt)
    _result(tmp_path / "res" / "a", str(tmp_path / "root"), {"culturellm_english_x": 0.5},
            model_args={"subfolder": "ckpt"}, config={"model": "hf-prompt", "model_sha": recorded})
    (row,) = _json(tmp_path)["runs"]
    assert row["model_revision"] == f"model_sha={recorded}"
    (ckpt / "config.json").write_text('{"other": 1}')
    (row,) = _json(tmp_path)["runs"]
    assert row["model_revision"] == (f"model_sha={recorded}; model changed since: model files differ from the "
                                     f"fingerprint its run recorded ({recorded[:24]}...)")
    assert f"culture-leaderboard: {ckpt}: the model folder's files differ" in capsys.readouterr().err


def test_partial_run_marked_in_every_format(tmp_path, capsys):
    _result(tmp_path / "res/full", "/m/full", {"culturellm_english_x": 0.5})
    _result(tmp_path / "res/part", "/m/part", {"culturellm_english_x": 0.7}, limit=5,
            n_samples={"culturellm_english_x": {"original": 40, "effective": 5}})
    assert main([str(tmp_path / "res")]) == 0
    md = capsys.readouterr().out
    # the partial run's 0.7 is higher but not comparable: the complete run is the column's best and ranks first
    assert "| part [r" in md and "] † partial | 0.7000" in md and "**0.7000**" not in md
    assert "| full [r" in md and "] | **0.5000**" in md and md.index("| full [r") < md.index("| part [r")
    assert "† partial" not in md.split("| full [r")[1].split("\n")[0]
    assert "partial run (--limit 5; documents per task: 5 of 40)" in md

    out = tmp_path / "b.csv"
    assert main([str(tmp_path / "res"), "--format", "csv", "--output", str(out)]) == 0
    rows = {r["label"]: r for r in csv.DictReader(io.StringIO(out.read_text())) if r["column"] == "english"}
    assert (rows["part"]["partial"], rows["full"]["partial"]) == ("True", "False")
    assert rows["part"]["limit"] == "5" and rows["part"]["value"] == "0.7"

    data = _json(tmp_path)
    assert _cell(data, "part", "english")["partial"] is True and _cell(data, "full", "english")["partial"] is False
    assert {r["model"]: r["is_partial"] for r in data["runs"]} == {"/m/full": False, "/m/part": True}

    html = tmp_path / "b.html"
    assert main([str(tmp_path / "res"), "--format", "html", "--output", str(html)]) == 0
    page = html.read_text()
    assert page.count('† partial</span>') == 1 and "† partial run (--limit 5" in page


def test_intervals_task_group_and_missing(tmp_path):
    # one-class tasks answered right every time: macro-F1 = 1 in every resample -> interval [1, 1]
    right = [{"f1_macro": [0, 0, 1], "acc": 1.0}] * MIN_DOCS
    _result(tmp_path / "res/a", "/m/logged", {"culturellm_english_x": 1.0, "culturellm_english_y": 1.0},
            samples={"culturellm_english_x": right, "culturellm_english_y": right},
            ci={"culturellm_english_x": (1.0, 1.0), "culturellm_english_y": (1.0, 1.0)})
    _result(tmp_path / "res/b", "/m/nolog", {"culturellm_english_x": 0.5, "culturellm_english_y": 0.25})
    # a WVS group with no interval of its own: from its members' logs (every question 0.5 -> [0.5, 0.5])
    half = [{"wvs_jsd": 0.5}] * 3
    _result(tmp_path / "res/c", "/m/logged", {}, extra={
        "wvs": {"wvs_jsd,none": 0.5}, "wvs_usa": {"wvs_jsd,none": 0.5, "wvs_jsd_ci_low,none": 0.5,
                                                   "wvs_jsd_ci_high,none": 0.5},
        "wvs_china": {"wvs_jsd,none": 0.5, "wvs_jsd_ci_low,none": 0.5, "wvs_jsd_ci_high,none": 0.5}},
        samples={"wvs_usa": half, "wvs_china": half}, groups={"wvs": ["wvs_usa", "wvs_china"]},
        hib={"wvs": {"wvs_jsd": True}})
    data = _json(tmp_path)
    logged = _cell(data, "logged", "english")
    assert (logged["value"], logged["ci_low"], logged["ci_high"]) == (1.0, 1.0, 1.0)
    nolog = _cell(data, "nolog", "overall")
    assert nolog["value"] == 0.375 and nolog["ci_low"] is None
    assert nolog["interval_note"] == "no interval: no per-sample logs (run lm_eval with --log_samples)"
    group = _cell(data, "logged", "wvs", table="wvs: wvs_jsd (higher is better)")
    assert (group["value"], group["ci_low"], group["ci_high"]) == (0.5, 0.5, 0.5)


def test_a_row_id_never_moves_to_another_run(tmp_path, capsys):
    # one model at task versions 2.0 and 3.0: two rows; an older file at version 1.0 added later makes a
    # third row and leaves both ids where they were. A row that gains a sibling loses its plain id, which
    # then names no row (an error), never another run.
    _result(tmp_path / "res/a", "/m/base", {"culturellm_english_x": 0.2}, versions={"culturellm_english_x": 2.0})
    _result(tmp_path / "res/b", "/m/base", {"culturellm_english_x": 0.4}, versions={"culturellm_english_x": 3.0})
    _result(tmp_path / "res/c", "/m/other", {"culturellm_english_x": 0.5})
    ids = lambda data: {r["task_versions"] + r["model"]: r["row_id"] for r in data["runs"]}  # noqa: E731
    before = ids(_json(tmp_path))
    _result(tmp_path / "res/d", "/m/base", {"culturellm_english_x": 0.6}, versions={"culturellm_english_x": 1.0})
    older = next((tmp_path / "res/d").glob("results_*.json"))
    older.write_text(older.read_text().replace('"date": 17672', '"date": 17670'))  # dated before a and b
    after = ids(_json(tmp_path))
    assert len(after) == 4 and {k: after[k] for k in before} == before
    plain = before["1.0/m/other"]
    _result(tmp_path / "res/e", "/m/other", {"culturellm_english_x": 0.7}, versions={"culturellm_english_x": 2.0})
    assert plain not in ids(_json(tmp_path)).values()
    assert main([str(tmp_path / "res"), "--baseline", plain]) == 2
    assert f"--baseline {plain!r} names no row" in capsys.readouterr().err


def test_other_task_settings_make_another_row(tmp_path):
    # the same model: x and y with one data folder merge into one row; x again with another data folder is
    # another row (not a repeat that hides the first); so is a generative task under other --gen_kwargs.
    # A file joins the first row whose settings agree for every task family it holds.
    _result(tmp_path / "res/a", "/m/base", {"culturellm_english_x": 0.2}, metadata={"data_dir": "/d1"})
    _result(tmp_path / "res/b", "/m/base", {"culturellm_english_y": 0.4}, metadata={"data_dir": "/d1"})
    _result(tmp_path / "res/c", "/m/base", {"culturellm_english_x": 0.8}, metadata={"data_dir": "/d2"})
    _result(tmp_path / "res/d", "/m/base", {"culturellm_gen_english_x": 0.1}, metadata={"data_dir": "/d1"},
            gen_kwargs={"temperature": 0.7})
    _result(tmp_path / "res/e", "/m/base", {"culturellm_gen_english_x": 0.3}, metadata={"data_dir": "/d1"},
            gen_kwargs={"temperature": 0.0})
    data = _json(tmp_path)
    runs = sorted(data["runs"], key=lambda r: r["task_settings"])
    assert [r["task_settings"] for r in runs] == [
        'culturellm: data_dir=/d1; culturellm (generation): data_dir=/d1, gen_kwargs={"temperature": 0.7}',
        'culturellm: data_dir=/d2; culturellm (generation): data_dir=/d1, gen_kwargs={"temperature": 0.0}',
    ]
    assert [len(r["files"]) for r in runs] == [3, 2] and runs[0]["row_id"] != runs[1]["row_id"]
    english = {c["row_id"]: c["value"] for c in data["cells"]
               if c["column"] == "english" and c["table"] == "CultureLLM (multiple choice), macro-F1"}
    assert english == {runs[0]["row_id"]: pytest.approx(0.3), runs[1]["row_id"]: 0.8}  # (0.2 + 0.4) / 2; 0.8


def test_two_documents_are_never_significant(tmp_path):
    # the same flip on 2 documents: the bootstrap interval is [1, 1], but a random swap reaches |1| with
    # probability 1/2, so p is about 0.5 and nothing is marked
    task = "culturellm_english_x"
    _result(tmp_path / "res/a", "/m/base", {task: 0.0}, samples={task: [{"f1_macro": [i, 1 - i, 2]} for i in (0, 1)]})
    _result(tmp_path / "res/b", "/m/good", {task: 1.0}, samples={task: [{"f1_macro": [i, i, 2]} for i in (0, 1)]})
    good = _cell(_json(tmp_path, "--baseline", "base"), "good", "english")
    assert good["diff"] == 1.0 and good["p_value"] == pytest.approx(0.5, abs=0.05) and good["significant"] is False


def test_baseline_paired_bootstrap_marks_significant_differences(tmp_path, capsys):
    # 20 documents, labels alternate 0/1; the baseline answers every one wrong, "good" every one right:
    # macro-F1 0 vs 1: difference +1; a random swap of the pairs reaches |1| only by swapping all 20 or none
    # (2 / 2^20), so p = 1 / (1 + 1000) and it is marked.
    wrong = [{"f1_macro": [i % 2, 1 - i % 2, 2]} for i in range(20)]
    right = [{"f1_macro": [i % 2, i % 2, 2]} for i in range(20)]
    task = "culturellm_english_x"
    _result(tmp_path / "res/a", "/m/base", {task: 0.0}, samples={task: wrong})
    _result(tmp_path / "res/b", "/m/good", {task: 1.0}, samples={task: right})
    _result(tmp_path / "res/c", "/m/same", {task: 0.0}, samples={task: wrong})
    _result(tmp_path / "res/d", "/m/nolog", {task: 0.5})
    data = _json(tmp_path, "--baseline", "base")
    good, same, nolog = (_cell(data, m, "english") for m in ("good", "same", "nolog"))
    assert (good["diff"], good["diff_low"], good["diff_high"], good["p_value"], good["significant"]) == \
        (1.0, 1.0, 1.0, pytest.approx(1 / 1001), True)
    assert (same["diff"], same["p_value"], same["significant"]) == (0.0, 1.0, False)
    assert nolog["diff"] is None and nolog["diff_note"].startswith("no paired test: no per-sample logs for " + task)
    assert _cell(data, "base", "english")["diff"] is None

    assert main([str(tmp_path / "res"), "--baseline", "base"]) == 0
    md = capsys.readouterr().out
    good_line = next(line for line in md.splitlines() if line.startswith("| good"))
    assert "▲ vs baseline: +1.0000 [+1.0000, +1.0000], p = 0.001 (significant)" in good_line
    same_line = next(line for line in md.splitlines() if line.startswith("| same"))
    assert "▲" not in same_line and "▼" not in same_line and "p = 1.000 (not significant)" in same_line
    assert "(baseline)" in next(line for line in md.splitlines() if line.startswith("| base"))

    assert main([str(tmp_path / "res"), "--baseline", "/m/"]) == 2
    assert "matches 4 rows" in capsys.readouterr().err
    assert main([str(tmp_path / "res"), "--baseline", "nothing"]) == 2


def test_adjust_holm_marks_by_the_adjusted_p_value(tmp_path, capsys):
    from culture_tasks.leaderboard import Cell, adjust_row

    # one row's three paired tests p = 0.01, 0.04, 0.03 (and a cell without a test): Holm 0.03, 0.06, 0.06, so only
    # the first stays marked, where each alone is below 0.05
    cells = [Cell(0.5, diff={"diff": 0.1, "low": 0.0, "high": 0.2, "p_value": p}) for p in (0.01, 0.04, 0.03)]
    cells.append(Cell(0.5))
    assert [c.significant for c in cells] == [True, True, True, False]
    assert adjust_row(cells) == 3
    assert [c.p_adjusted for c in cells] == [pytest.approx(0.03), pytest.approx(0.06), pytest.approx(0.06), None]
    assert [c.significant for c in cells] == [True, False, False, False]

    # end to end: english, korean and the overall mean each flip every document (p = 1/1001 each): Holm 3/1001
    wrong = [{"f1_macro": [i % 2, 1 - i % 2, 2]} for i in range(20)]
    right = [{"f1_macro": [i % 2, i % 2, 2]} for i in range(20)]
    tasks = ("culturellm_english_x", "culturellm_korean_y")
    _result(tmp_path / "res/a", "/m/base", dict.fromkeys(tasks, 0.0), samples=dict.fromkeys(tasks, wrong))
    _result(tmp_path / "res/b", "/m/good", dict.fromkeys(tasks, 1.0), samples=dict.fromkeys(tasks, right))
    data = _json(tmp_path, "--baseline", "base", "--adjust", "holm")
    for column in ("english", "korean", "overall"):
        cell = _cell(data, "good", column)
        assert (cell["p_value"], cell["p_holm"], cell["significant"]) == (pytest.approx(1 / 1001), pytest.approx(3 / 1001), True)
    assert _cell(_json(tmp_path, "--baseline", "base"), "good", "english")["p_holm"] is None
    assert main([str(tmp_path / "res"), "--baseline", "base", "--adjust", "holm"]) == 0
    md = capsys.readouterr().out
    assert "▲/▼: Holm-Bonferroni adjusted p < 0.05 over each row's paired tests in this table (--adjust holm)" in md
    assert "p = 0.001, Holm 0.003 (significant)" in next(line for line in md.splitlines() if line.startswith("| good"))
    assert main([str(tmp_path / "res"), "--adjust", "holm"]) == 2
    assert "--adjust holm adjusts the paired tests against a --baseline row; name one" in capsys.readouterr().err


def test_html_sortable_self_contained_with_plots_and_output_guard(tmp_path, capsys):
    _result(tmp_path / "res/a", "/m/weak", {"culturellm_english_x": 0.1, "culturellm_korean_y": 0.3})
    _result(tmp_path / "res/b", "/m/strong", {"culturellm_english_x": 0.7, "culturellm_korean_y": 0.5})
    html = tmp_path / "out/board.html"
    assert main([str(tmp_path / "res"), "--format", "html", "--output", str(html)]) == 0
    page = html.read_text()
    assert page.lstrip().startswith("<!DOCTYPE html>")
    assert page.index("strong [r") < page.index("weak [r")
    assert 'class="num best" data-sort="0.7"' in page and ">0.7000" in page
    assert 'id="plot-culturellm_heatmap"><svg' in page and "table.sortable" in page
    assert not any(ref in page for ref in ('src="http', 'href="http', "<link", "@import", "url(http"))  # offline
    assert (tmp_path / "out/board_plots/culturellm_heatmap.png").stat().st_size > 1000

    capsys.readouterr()
    assert main([str(tmp_path / "res"), "--format", "html", "--output", str(html)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert html.read_text() == page
    assert main([str(tmp_path / "res"), "--format", "html", "--output", str(html), "--overwrite"]) == 0


def test_survey_metrics_get_their_own_table_with_direction(tmp_path, capsys):
    hib = {"vsm13_usa": {"vsm13_l1": False, "pdi": True}}
    _result(tmp_path / "res/a", "/m/a", {"culturellm_english_x": 0.5}, hib=hib,
            extra={"vsm13_usa": {"vsm13_l1,none": 80.0, "pdi,none": 40.0}})
    _result(tmp_path / "res/b", "/m/b", {"culturellm_english_x": 0.4}, hib=hib,
            extra={"vsm13_usa": {"vsm13_l1,none": 20.0, "pdi,none": 10.0}})
    assert main([str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out
    l1 = out.split("### vsm13: vsm13_l1 (↓ lower is better)")[1]
    assert l1.split("\n")[4].startswith("| b [r") and "| **20.0000** (no interval" in l1  # lower L1 is best
    indices = out.split("### vsm13_usa: the six VSM13 indices (measurements: no better or worse)")[1]
    assert "| 40.0000 (no interval" in indices and "**" not in indices  # pdi: no best, though lm-eval says "higher"


def test_a_file_without_directions_reads_them_from_the_task_definitions(tmp_path, capsys):
    # a result file without higher_is_better (written by hand or another tool) titled vsm13_l1 "higher is
    # better" and marked the worst loss, 300, best; now the task YAML's direction: the loss of 100 is best
    extra = {"vsm13_usa": {"vsm13_l1,none": 100.0, "vsm13_rank,none": 3.0}, "wvs_usa": {"wvs_jsd,none": 0.4}}
    _result(tmp_path / "res/a", "/m/a", {"culturellm_english_x": 0.5}, extra=extra)
    extra = {"vsm13_usa": {"vsm13_l1,none": 300.0, "vsm13_rank,none": 50.0}, "wvs_usa": {"wvs_jsd,none": 0.6}}
    _result(tmp_path / "res/b", "/m/b", {"culturellm_english_x": 0.4}, extra=extra)
    data = _json(tmp_path)
    assert _cell(data, "a", "vsm13_usa", table="vsm13: vsm13_l1 (↓ lower is better)")["best"] is True
    assert _cell(data, "b", "vsm13_usa", table="vsm13: vsm13_l1 (↓ lower is better)")["best"] is False
    assert _cell(data, "a", "vsm13_usa", table="vsm13: vsm13_rank (↓ lower is better)")["best"] is True
    assert _cell(data, "b", "wvs_usa", table="wvs: wvs_jsd (higher is better)")["best"] is True


def test_batch_size_and_device_are_provenance_and_split_half_precision_rows(tmp_path):
    # two bfloat16 files of one model, at batch 1 on the CPU and at batch 64 on cuda:0, became one row showing
    # only the newer file's wvs_usa; bf16 scores move with both. In float32 they are one row, both named.
    half = {"model_dtype": "torch.bfloat16"}
    for name, dtype in (("half", half), ("full", {})):
        for batch, device, value in ((1, "cpu", 0.30), (64, "cuda:0", 0.35)):
            _result(tmp_path / "res" / f"{name}{batch}", f"/m/{name}", {"culturellm_english_x": 0.5},
                    extra={"wvs_usa": {"wvs_jsd,none": value}}, config={"batch_size": batch, "device": device, **dtype})
    data = _json(tmp_path)
    rows = {(r["model"], r["batch_size"], r["device"]): r for r in data["runs"]}
    assert set(rows) == {("/m/half", "1", "cpu"), ("/m/half", "64", "cuda:0"), ("/m/full", "1 / 64", "cpu / cuda:0")}
    values = sorted(c["value"] for c in data["cells"] if c["column"] == "wvs_usa" and c["table"].startswith("wvs:"))
    assert values == [0.30, 0.35, 0.35]  # each half-precision row its own; the float32 row the newer file's


def test_not_a_result_file(tmp_path, capsys):
    bad = tmp_path / "results_x.json"
    bad.write_text(json.dumps({"hello": 1}))
    assert main([str(bad)]) == 2
    assert "not an lm-eval result file" in capsys.readouterr().err
    assert main([str(tmp_path / "nothing")]) == 2


@pytest.mark.parametrize("fmt", ["md", "csv", "json"])
def test_output_refuses_existing_file(tmp_path, capsys, fmt):
    _result(tmp_path / "res", "/m/a", {"culturellm_english_x": 0.5})
    out = tmp_path / f"board.{fmt}"
    out.write_text("keep me")
    assert main([str(tmp_path / "res"), "--format", fmt, "--output", str(out)]) == 2
    assert out.read_text() == "keep me"
    assert main([str(tmp_path / "res"), "--format", fmt, "--output", str(out), "--overwrite"]) == 0
    assert out.read_text() != "keep me"


def test_a_loss_over_fewer_dimensions_says_so(tmp_path, capsys):
    # Saudi Arabia's target has 2 of the 6 dimensions (the task reports vsm13_dims = 2): its column says so,
    # the USA's (6 of 6) does not, and the table notes that the two are not comparable
    extra = {"vsm13_usa": {"alias": "vsm13_usa", "vsm13_l1,none": 300.0, "vsm13_dims,none": 6},
             "vsm13_saudi_arabia": {"alias": "vsm13_saudi_arabia", "vsm13_l1,none": 110.0, "vsm13_dims,none": 2}}
    hib = {"vsm13_usa": {"vsm13_l1": False}, "vsm13_saudi_arabia": {"vsm13_l1": False}}
    _result(tmp_path / "res", "/m/base", {}, extra=extra, hib=hib)
    assert main([str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out
    assert "vsm13_saudi_arabia (2 of 6 dims)" in out and "vsm13_usa (" not in out
    assert "covers only the dimensions its target has: not comparable with the full-coverage columns" in out


def test_a_repeated_task_takes_every_number_from_the_newest_file(tmp_path):
    # the older file: arabic x, y with per-sample logs (every document right: resampled interval [1, 1]),
    # korean z with its own interval [0.85, 0.95]; the newer file of the same identity: x, y, z again, no
    # logs, no interval for z. Nothing of the older file's x, y, z may remain: arabic (0.2 + 0.3) / 2 = 0.25
    # without interval, korean 0.3 without interval, and the row is complete. (An older file that scored x on
    # fewer documents than it has, without --limit, is a row of its own: see the sampled-run test below.)
    right = [{"f1_macro": [i % 2, i % 2, 2]} for i in range(20)]
    _result(tmp_path / "res", "/m/base", {"culturellm_arabic_x": 1.0, "culturellm_arabic_y": 1.0,
                                          "culturellm_korean_z": 0.9},
            samples={"culturellm_arabic_x": right, "culturellm_arabic_y": right},
            ci={"culturellm_korean_z": (0.85, 0.95)})
    _result(tmp_path / "res", "/m/base", {"culturellm_arabic_x": 0.2, "culturellm_arabic_y": 0.3,
                                          "culturellm_korean_z": 0.3},
            n_samples={"culturellm_arabic_x": {"effective": 40, "original": 40}})
    data = _json(tmp_path)
    arabic, korean = _cell(data, "base", "arabic"), _cell(data, "base", "korean")
    assert (arabic["value"], arabic["ci_low"], arabic["ci_high"]) == (0.25, None, None)
    assert arabic["interval_note"] == "no interval: no per-sample logs (run lm_eval with --log_samples)"
    assert (korean["value"], korean["ci_low"], korean["ci_high"]) == (0.3, None, None)
    assert korean["interval_note"] == "no interval: the result file reports none for this metric"
    assert (arabic["partial"], arabic["partial_reason"]) == (False, "")
    assert [r["is_partial"] for r in data["runs"]] == [False]


def test_a_repeated_task_without_logs_is_not_compared_with_the_older_logs(tmp_path):
    # "new" reran x without --log_samples: its 0.5 must not be tested with the older run's logs
    task = "culturellm_english_x"
    right = [{"f1_macro": [i % 2, i % 2, 2]} for i in range(20)]
    _result(tmp_path / "res/a", "/m/base", {task: 1.0}, samples={task: right})
    _result(tmp_path / "res/b", "/m/new", {task: 1.0}, samples={task: right})
    _result(tmp_path / "res/b", "/m/new", {task: 0.5})
    new = _cell(_json(tmp_path, "--baseline", "base"), "new", "english")
    assert new["value"] == 0.5 and new["diff"] is None
    assert new["diff_note"] == f"no paired test: no per-sample logs for {task} in row {new['row_id']}"


def test_rows_over_fewer_tasks_are_neither_best_nor_ranked_first(tmp_path, capsys):
    # full: arabic x 0.5, y 0.5 -> 0.5; korean z 0.9; overall 1.9 / 3. one: arabic x 0.8 only -> 0.8 over
    # 1 of the column's 2 tasks, overall 0.8 over 1 of 3: higher, but not over the same tasks
    _result(tmp_path / "res/a", "/m/full", {"culturellm_arabic_x": 0.5, "culturellm_arabic_y": 0.5,
                                            "culturellm_korean_z": 0.9})
    _result(tmp_path / "res/b", "/m/one", {"culturellm_arabic_x": 0.8})
    assert main([str(tmp_path / "res")]) == 0
    md = capsys.readouterr().out
    full = next(line for line in md.splitlines() if line.startswith("| full [r"))
    one = next(line for line in md.splitlines() if line.startswith("| one [r"))
    assert md.index(full) < md.index(one)
    assert "| **0.5000** (no interval" in full and "| **0.6333** (no interval" in full and "‡" not in full
    assert "**" not in one
    assert "| 0.8000 (no interval: the result file reports none for this metric) ‡ 1 of 2 tasks |" in one
    assert "| 0.8000 (no interval: the result file reports none for this metric) ‡ 1 of 3 tasks |" in one
    assert "‡ k of n tasks:" in md

    data = _json(tmp_path)
    cell = _cell(data, "one", "overall")
    assert (cell["tasks_covered"], cell["tasks_in_column"]) == (1, 3)
    assert (_cell(data, "full", "overall")["tasks_covered"], _cell(data, "full", "overall")["tasks_in_column"]) == (3, 3)

    html = tmp_path / "b.html"
    assert main([str(tmp_path / "res"), "--format", "html", "--output", str(html)]) == 0
    page = html.read_text()
    assert page.count("‡ 1 of 2 tasks") == 1 and page.count("‡ 1 of 3 tasks") == 1
    assert 'class="num best" data-sort="0.8"' not in page and 'class="num best" data-sort="0.5"' in page


def test_model_args_shown_in_every_format(tmp_path, capsys):
    # two runs that differ only in revision=v2: two rows, told apart by their model arguments
    _result(tmp_path / "res", "/m/base", {"culturellm_arabic_x": 0.2})
    _result(tmp_path / "res", "/m/base", {"culturellm_arabic_x": 0.7}, model_args={"revision": "v2"})
    assert main([str(tmp_path / "res")]) == 0
    md = capsys.readouterr().out
    header = next(line for line in md.splitlines() if line.startswith("| row_id"))
    assert "| model | model_args |" in header
    assert "| dtype=float32,pretrained=/m/base,revision=v2 |" in md and "| dtype=float32,pretrained=/m/base |" in md

    out = tmp_path / "b.csv"
    assert main([str(tmp_path / "res"), "--format", "csv", "--output", str(out)]) == 0
    rows = {r["value"]: r["model_args"] for r in csv.DictReader(io.StringIO(out.read_text())) if r["column"] == "arabic"}
    assert rows == {"0.2": "dtype=float32,pretrained=/m/base", "0.7": "dtype=float32,pretrained=/m/base,revision=v2"}

    html = tmp_path / "b.html"
    assert main([str(tmp_path / "res"), "--format", "html", "--output", str(html)]) == 0
    assert "<th>model args</th>" in html.read_text() and "revision=v2" in html.read_text()


def test_seeds_and_model_revision_are_part_of_the_row(tmp_path):
    # lm-eval writes the seeds to config (random_seed, numpy_seed, torch_seed, fewshot_seed) and, for hf
    # models, model_revision / model_sha. 5-shot with few-shot seed 1 and 2: other prompts, two rows; the
    # same seeds: one row; another model_sha (the hub repo changed under the same name): another row.
    seeds = {"random_seed": 0, "numpy_seed": 1234, "torch_seed": 1234}
    _result(tmp_path / "res/a", "/m/a", {"culturellm_arabic_x": 0.2}, fewshot=5, config={**seeds, "fewshot_seed": 1})
    _result(tmp_path / "res/b", "/m/a", {"culturellm_korean_z": 0.9}, fewshot=5, config={**seeds, "fewshot_seed": 2})
    _result(tmp_path / "res/c", "/m/a", {"culturellm_english_w": 0.4}, fewshot=5, config={**seeds, "fewshot_seed": 2})
    _result(tmp_path / "res/d", "/m/a", {"culturellm_english_w": 0.6}, fewshot=5,
            config={**seeds, "fewshot_seed": 2, "model_revision": "main", "model_sha": "5eed"})
    data = _json(tmp_path)
    runs = sorted(((r["seeds"], r["model_revision"], len(r["files"])) for r in data["runs"]))
    assert runs == [
        ("fewshot_seed=1, numpy_seed=1234, random_seed=0, torch_seed=1234", "?", 1),
        ("fewshot_seed=2, numpy_seed=1234, random_seed=0, torch_seed=1234", "?", 2),
        ("fewshot_seed=2, numpy_seed=1234, random_seed=0, torch_seed=1234", "model_revision=main, model_sha=5eed", 1),
    ]
    assert len({r["row_id"] for r in data["runs"]}) == 3


def test_overall_is_lm_evals_culturellm_group(tmp_path):
    # lm-eval's own aggregation of the nested culturellm group (weight_by_size: false, as the group YAMLs
    # say): Group.aggregate averages the group's leaf tasks, so culturellm = (0.2 + 0.4 + 0.9) / 3 = 0.5,
    # not the mean of the culture means (0.3 + 0.9) / 2 = 0.6. The board's overall is the same number.
    from lm_eval.api.group import Group
    from lm_eval.api.task import Task

    class Leaf(Task):
        task_name = property(lambda self: self.__dict__["name"])

        def __init__(self, name):  # a bare leaf: only its name, as Group.aggregate reads it
            self.__dict__["name"] = name

    Leaf.__abstractmethods__ = frozenset()
    agg = [{"metric": "f1_macro", "aggregation": "mean", "weight_by_size": False}]
    scores = {"culturellm_arabic_x": 0.2, "culturellm_arabic_y": 0.4, "culturellm_korean_z": 0.9}
    arabic = Group.from_config({"group": "culturellm_arabic", "aggregate_metric_list": agg})
    korean = Group.from_config({"group": "culturellm_korean", "aggregate_metric_list": agg})
    suite = Group.from_config({"group": "culturellm", "aggregate_metric_list": agg})
    for task in scores:
        (arabic if "arabic" in task else korean).add(Leaf(task))
    suite.add(arabic)
    suite.add(korean)
    metrics = {t: {"f1_macro,none": v, "sample_len": 10 * (k + 1)} for k, (t, v) in enumerate(scores.items())}
    lm_eval_overall = suite.aggregate(metrics)["f1_macro,none"]
    assert lm_eval_overall == pytest.approx(0.5)

    _result(tmp_path / "res", "/m/a", scores, groups={
        "culturellm": ["culturellm_arabic", "culturellm_korean"],
        "culturellm_arabic": ["culturellm_arabic_x", "culturellm_arabic_y"], "culturellm_korean": ["culturellm_korean_z"]})
    assert _cell(_json(tmp_path), "a", "overall")["value"] == pytest.approx(lm_eval_overall)


def test_a_file_whose_suite_group_is_another_mean_is_reported(tmp_path, capsys):
    # a result file whose culturellm group is the mean of the culture means (0.6; an lm-eval that averaged
    # the subgroups), not the mean over its tasks (0.5) that the board shows: said on standard error
    _result(tmp_path / "res", "/m/a", {"culturellm_arabic_x": 0.2, "culturellm_arabic_y": 0.4, "culturellm_korean_z": 0.9},
            extra={"culturellm": {"f1_macro,none": 0.6}, "culturellm_arabic": {"f1_macro,none": 0.3}},
            groups={"culturellm": ["culturellm_arabic", "culturellm_korean"],
                    "culturellm_arabic": ["culturellm_arabic_x", "culturellm_arabic_y"],
                    "culturellm_korean": ["culturellm_korean_z"]})
    assert main([str(tmp_path / "res")]) == 0
    captured = capsys.readouterr()
    assert "| 0.3000 (no interval: no per-sample logs" in captured.out  # arabic
    assert "reports culturellm f1_macro 0.6000, but the mean over its 3 tasks is 0.5000" in captured.err
    assert "culturellm_arabic f1_macro" not in captured.err


def test_a_malformed_sample_log_is_a_one_line_error(tmp_path, capsys):
    logged = [{"f1_macro": [0, 0, 2]}]
    _result(tmp_path / "res", "/m/a", {"culturellm_arabic_x": 0.5, "culturellm_arabic_y": 0.5},
            samples={"culturellm_arabic_x": logged, "culturellm_arabic_y": logged})
    log = next((tmp_path / "res").glob("samples_culturellm_arabic_x_*.jsonl"))
    log.write_text(json.dumps({"doc_id": 0, "filter": "none", "f1_macro": [0, 0, 2]}) + "\n"
                   + json.dumps({"filter": "none", "f1_macro": [0, 0, 2]}) + "\n")
    assert main([str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err
    assert err == (f"culture-leaderboard: {log}:2: a per-sample row without an integer doc_id; "
                   "use the samples_*.jsonl that lm_eval --log_samples wrote\n")


def test_a_sample_count_without_effective_is_a_one_line_error(tmp_path, capsys):
    _result(tmp_path / "res", "/m/a", {"culturellm_arabic_x": 0.5}, n_samples={"culturellm_arabic_x": {"original": 40}})
    path = next((tmp_path / "res").glob("results_*.json"))
    assert main([str(tmp_path / "res")]) == 2
    assert capsys.readouterr().err == (
        f"culture-leaderboard: {path}: n-samples.culturellm_arabic_x needs integer `original` and `effective` "
        "(lm-eval writes both); got {'original': 40}\n")


def test_a_per_sample_log_that_is_not_the_results_is_a_one_line_error(tmp_path, capsys):
    # x reports 1.0 over 4 documents (n-samples); its log must hold those 4 documents, every one right
    right = [{"f1_macro": [i % 2, i % 2, 2]} for i in range(4)]
    task, counts = "culturellm_english_x", {"culturellm_english_x": {"effective": 4, "original": 4}}
    _result(tmp_path / "res", "/m/a", {task: 1.0, "culturellm_english_y": 1.0}, n_samples=counts,
            samples={task: right[:2], "culturellm_english_y": right})  # x's log cut after 2 documents
    log = next((tmp_path / "res").glob(f"samples_{task}_*.jsonl"))
    assert main([str(tmp_path / "res")]) == 2
    assert capsys.readouterr().err == (
        f"culture-leaderboard: {log}: 2 logged documents, but its result file reports f1_macro over 4 "
        f"(n-samples.{task}.effective): a cut or foreign per-sample log; rerun with --log_samples, or remove "
        "the log (the row then shows no interval)\n")

    # all 4 documents, but not the ones scored: every other answer wrong gives macro-F1 0.5, not the 1.0 reported
    half = [{"f1_macro": [i % 2, i % 2 if i < 2 else 1 - i % 2, 2]} for i in range(4)]
    _result(tmp_path / "res2", "/m/a", {task: 1.0, "culturellm_english_y": 1.0}, n_samples=counts,
            samples={task: half, "culturellm_english_y": right})
    log = next((tmp_path / "res2").glob(f"samples_{task}_*.jsonl"))
    assert main([str(tmp_path / "res2")]) == 2
    assert capsys.readouterr().err == (
        f"culture-leaderboard: {log}: the logged documents give f1_macro 0.500000, but its result file reports "
        "1.000000: a cut or foreign per-sample log; rerun with --log_samples, or remove the log (the row then "
        "shows no interval)\n")

    # one document logged twice (two logs joined): 5 rows for 4 documents
    rows = [json.dumps({"doc_id": i, "filter": "none", **r}) for i, r in enumerate(right)]
    log.write_text("\n".join(rows + rows[:1]) + "\n")
    assert main([str(tmp_path / "res2")]) == 2
    assert capsys.readouterr().err == (
        f"culture-leaderboard: {log}: doc_id 0 is logged twice: a cut or foreign per-sample log; rerun with "
        "--log_samples, or remove the log (the row then shows no interval)\n")


def test_the_same_results_give_the_same_html_page(tmp_path):
    # the inline plots' element ids too: matplotlib salts them at random unless told otherwise
    _result(tmp_path / "res", "/m/a", {"culturellm_english_x": 0.1, "culturellm_korean_y": 0.3})
    pages = []
    for name in ("one.html", "two.html"):
        assert main([str(tmp_path / "res"), "--format", "html", "--output", str(tmp_path / name)]) == 0
        pages.append((tmp_path / name).read_text())
    assert 'clip-path="url(#' in pages[0] and pages[0] == pages[1]
    # two figures of one page: no id of one is an id of the other (a clip path would clip the wrong plot)
    from culture_tasks.survey.tasks import WVS_TOPICS

    _result(tmp_path / "res", "/m/b", {}, extra={"wvs_usa": {"wvs_jsd,none": 0.7, f"wvs_jsd_{WVS_TOPICS[0]},none": 0.6}})
    assert main([str(tmp_path / "res"), "--format", "html", "--output", str(tmp_path / "three.html")]) == 0
    figures = (tmp_path / "three.html").read_text().split('<figure class="plot"')[1:]
    ids = [set(re.findall(r'(?:url\(#|href="#)([^")]+)', f)) for f in figures]  # the ids an element refers to
    assert len(ids) == 2 and ids[0] and ids[1] and not ids[0] & ids[1]


def test_a_pipe_in_a_model_name_keeps_the_markdown_columns(tmp_path, capsys):
    # an unescaped | in the row's name would add cells: 0.3 would stand under "korean", 0.4 under "overall"
    _result(tmp_path / "res", "/m/a|b", {"culturellm_english_x": 0.3, "culturellm_korean_y": 0.4}, peft="/c/x|y")
    assert main([str(tmp_path / "res")]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| a"))
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
    assert cells[0].startswith(r"a\|b + x\|y [r") and [c.split(" ")[0] for c in cells[1:]] == [
        "0.3000", "0.4000", "0.3500", "2"]


def test_the_lm_eval_model_class_is_in_the_row(tmp_path, capsys):
    # --model hf and --model hf-prompt with the same arguments are two rows (hf-prompt generates from a soft
    # prompt otherwise): their provenance must tell them apart by more than the row id
    _result(tmp_path / "res", "/m/base", {"culturellm_gen_english_x": 0.2}, peft="/c/prompt")
    _result(tmp_path / "res", "/m/base", {"culturellm_gen_english_x": 0.4}, peft="/c/prompt", config={"model": "hf-prompt"})
    runs = _json(tmp_path)["runs"]
    assert sorted(r["lm_eval_model"] for r in runs) == ["hf", "hf-prompt"]
    assert len({json.dumps({k: v for k, v in r.items() if k not in ("row_id", "date", "files")}) for r in runs}) == 2
    assert main([str(tmp_path / "res")]) == 0
    assert "| hf-prompt |" in capsys.readouterr().out


def test_a_group_over_other_tasks_is_neither_compared_nor_ranked_with_the_full_one(tmp_path):
    # the base's wvs group averages usa and china; the other row's wvs group holds usa only (an older tasks
    # folder): its 0.9 is usa's alone, not comparable with the base's 0.5, and not tested against it
    half, high = [{"wvs_jsd": 0.5}] * 3, [{"wvs_jsd": 0.9}] * 3
    hib = {"wvs": {"wvs_jsd": True}}
    _result(tmp_path / "res/a", "/m/base", {}, extra={
        "wvs": {"wvs_jsd,none": 0.5}, "wvs_usa": {"wvs_jsd,none": 0.5}, "wvs_china": {"wvs_jsd,none": 0.5}},
        samples={"wvs_usa": half, "wvs_china": half}, groups={"wvs": ["wvs_usa", "wvs_china"]}, hib=hib)
    _result(tmp_path / "res/b", "/m/other", {}, extra={"wvs": {"wvs_jsd,none": 0.9}, "wvs_usa": {"wvs_jsd,none": 0.9}},
            samples={"wvs_usa": high}, groups={"wvs": ["wvs_usa"]}, hib=hib)
    data = _json(tmp_path, "--baseline", "base")
    table = "wvs: wvs_jsd (higher is better)"
    other, base = _cell(data, "other", "wvs", table=table), _cell(data, "base", "wvs", table=table)
    assert other["value"] == 0.9 and other["diff"] is None
    assert other["diff_note"] == "no paired test: the rows cover different tasks"
    assert (other["tasks_covered"], other["tasks_in_column"]) == (1, 2)
    assert (base["tasks_covered"], base["tasks_in_column"]) == (2, 2)


def test_a_mean_whose_task_lost_its_log_names_that_task(tmp_path):
    # run with --log_samples, but y's log is gone: the note names y, not "run lm_eval with --log_samples"
    right = [{"f1_macro": [i % 2, i % 2, 2]} for i in range(4)]
    _result(tmp_path / "res", "/m/a", {"culturellm_english_x": 1.0, "culturellm_english_y": 1.0},
            samples={"culturellm_english_x": right})
    cell = _cell(_json(tmp_path), "a", "english")
    assert (cell["value"], cell["ci_low"]) == (1.0, None)
    assert cell["interval_note"] == ("no interval: no per-sample log for culturellm_english_y "
                                     "(samples_culturellm_english_y_<date>.jsonl is not beside its result file)")


def test_a_group_whose_task_a_newer_file_reruns_takes_the_new_number(tmp_path, capsys):
    # the first file: wvs = mean(usa 0.5, china 0.3) = 0.4; the second reruns usa alone at 0.9, so the
    # group is mean(0.9, 0.3) = 0.6, not the older file's 0.4 (and its interval is over the newest logs)
    hib = {"wvs": {"wvs_jsd": True}, "wvs_usa": {"wvs_jsd": True}, "wvs_china": {"wvs_jsd": True}}
    _result(tmp_path / "res", "/m/a", {}, extra={
        "wvs": {"wvs_jsd,none": 0.4}, "wvs_usa": {"wvs_jsd,none": 0.5}, "wvs_china": {"wvs_jsd,none": 0.3}},
        samples={"wvs_usa": [{"wvs_jsd": 0.5}] * 3, "wvs_china": [{"wvs_jsd": 0.3}] * 3},
        groups={"wvs": ["wvs_usa", "wvs_china"]}, hib=hib)
    _result(tmp_path / "res", "/m/a", {}, extra={"wvs_usa": {"wvs_jsd,none": 0.9}},
            samples={"wvs_usa": [{"wvs_jsd": 0.9}] * 3}, hib=hib)
    data = _json(tmp_path)
    cell = _cell(data, "a", "wvs", table="wvs: wvs_jsd (higher is better)")
    assert cell["value"] == pytest.approx(0.6)
    assert (cell["ci_low"], cell["ci_high"]) == (pytest.approx(0.6), pytest.approx(0.6))
    assert "the group's value is recomputed as the mean of its tasks' newest numbers" in capsys.readouterr().err



def _vsm13_usa_result(folder, model, extra, data_root, meta, hib=None):
    """A result file of vsm13_usa whose task config (as lm-eval records it) carries ``meta``."""
    _result(folder, model, {}, extra=extra, hib=hib)
    path = next(folder.glob("results_*.json"))
    data = json.loads(path.read_text())
    data["configs"] = {"vsm13_usa": {"dataset_kwargs": {"vsm13_country": "USA", "persona": "", "reversed_options": False},
                                     "metadata": {"version": 1.0, "data_dir": str(data_root), **meta},
                                     "output_type": "multiple_choice"}}
    path.write_text(json.dumps(data))


def test_a_vsm13_radar_draws_the_target_the_task_ranked(tmp_path, monkeypatch, data_root):
    """Japan scored through vsm13_usa (--metadata target_country) is drawn on Japan's radar against the
    profile the task used, not on the USA's against the U.S.A. row; an explicit Saudi profile likewise."""
    from culture_tasks import plots
    from culture_tasks.leaderboard import load_runs, vsm13_radars

    drawn = {}
    monkeypatch.setattr(plots, "vsm13_radar", lambda title, profiles, target, intervals: drawn.setdefault(
        title, (profiles, target, intervals)))
    indices = {d: {f"{d},none": float(k)} for k, d in enumerate(("pdi", "idv", "mas", "uai", "lto", "ivr"))}
    extra = {"vsm13_usa": {"alias": "vsm13_usa", **{k: v for m in indices.values() for k, v in m.items()},
                           "pdi_ci_low,none": -3.5, "pdi_ci_high,none": 4.0, "idv_ci_low,none": math.nan}}
    japan = {"pdi": 1.0, "idv": 2.0, "mas": 3.0, "uai": 4.0, "lto": 5.0, "ivr": 6.0}
    for name, meta in (("a", {"target": japan, "target_country": "JPN"}), ("b", {})):
        _vsm13_usa_result(tmp_path / f"res/{name}", f"/m/{name}", extra, data_root, meta)
    vsm13_radars(load_runs(sorted((tmp_path / "res").rglob("results_*.json"))))
    assert sorted(drawn) == ["VSM13 indices, JPN", "VSM13 indices, USA"]
    assert len(drawn["VSM13 indices, JPN"][0]) == len(drawn["VSM13 indices, USA"][0]) == 1
    assert drawn["VSM13 indices, JPN"][0][0][0].startswith("a [")
    assert drawn["VSM13 indices, JPN"][1] == ("JPN (--metadata target)", japan)
    assert drawn["VSM13 indices, USA"][0][0][0].startswith("b [")
    band = drawn["VSM13 indices, USA"][2][0]  # each index's interval from its companion metrics, NaN without one
    assert band["pdi"] == (-3.5, 4.0) and all(math.isnan(v) for d in ("idv", "ivr") for v in band[d])
    assert drawn["VSM13 indices, USA"][1] == ("U.S.A. (Hofstede)", {"pdi": 40.0, "idv": 91.0, "mas": 62.0,
                                                                      "uai": 46.0, "lto": 26.0, "ivr": 68.0})


def test_a_sampled_suite_leaves_the_row_s_complete_survey_numbers_comparable(tmp_path):
    # row "sampled": CultureLLM on 5 of 40 documents (--samples) and WVS USA complete at 0.8; row "full": WVS
    # USA complete at 0.6. The sampled suite cell is never best, but its complete WVS number is the best WVS
    hib = {"wvs_usa": {"wvs_jsd": True}}
    _result(tmp_path / "res/s", "/m/sampled", {"culturellm_english_x": 0.9},
            extra={"wvs_usa": {"wvs_jsd,none": 0.8}}, hib=hib,
            n_samples={"culturellm_english_x": {"original": 40, "effective": 5},
                       "wvs_usa": {"original": 50, "effective": 50}})
    _result(tmp_path / "res/f", "/m/full", {"culturellm_english_x": 0.5}, extra={"wvs_usa": {"wvs_jsd,none": 0.6}},
            hib=hib, n_samples={"culturellm_english_x": {"original": 40, "effective": 40},
                                "wvs_usa": {"original": 50, "effective": 50}})
    data = _json(tmp_path)
    table = "wvs: wvs_jsd (higher is better)"
    assert _cell(data, "sampled", "wvs_usa", table=table)["best"] is True
    assert _cell(data, "full", "wvs_usa", table=table)["best"] is False
    assert _cell(data, "sampled", "english")["best"] is False and _cell(data, "full", "english")["best"] is True


def test_runs_naming_one_country_two_ways_share_its_radar(tmp_path, monkeypatch, data_root):
    """target_country "JPN" (as culture-align records it) and "Japan" (as typed by hand) are one country:
    one radar with both runs, titled by the Hofstede file's code."""
    from culture_tasks import plots
    from culture_tasks.leaderboard import load_runs, vsm13_radars

    drawn = {}
    monkeypatch.setattr(plots, "vsm13_radar", lambda title, profiles, target, intervals: drawn.setdefault(
        title, (profiles, target, intervals)))
    indices = {f"{d},none": float(k) for k, d in enumerate(("pdi", "idv", "mas", "uai", "lto", "ivr"))}
    extra = {"vsm13_usa": {"alias": "vsm13_usa", **indices}}
    japan = {"pdi": 1.0, "idv": 2.0, "mas": 3.0, "uai": 4.0, "lto": 5.0, "ivr": 6.0}
    for name, spelt in (("a", "JPN"), ("b", "Japan")):
        _vsm13_usa_result(tmp_path / f"res/{name}", f"/m/{name}", extra, data_root,
                          {"target": japan, "target_country": spelt})
    vsm13_radars(load_runs(sorted((tmp_path / "res").rglob("results_*.json"))))
    assert sorted(drawn) == ["VSM13 indices, JPN"] and len(drawn["VSM13 indices, JPN"][0]) == 2


def test_a_vsm13_task_ranking_another_country_has_that_country_s_column(tmp_path, capsys, data_root):
    """Japan scored through vsm13_usa (--metadata target_country, spelt JPN or Japan) is shown in a column
    `vsm13_usa → JPN`, not as a score for the USA under `vsm13_usa`; a baseline is compared only with cells
    that ranked the same country."""
    hib = {"vsm13_usa": {"vsm13_l1": False}}
    indices = {f"{d},none": float(10 * k) for k, d in enumerate(("pdi", "idv", "mas", "uai", "lto", "ivr"), 1)}
    japan = {"pdi": 54.0, "idv": 46.0, "mas": 95.0, "uai": 92.0, "lto": 88.0, "ivr": 42.0}
    for name, l1, meta in (("usa", 20.0, {}), ("jp", 30.0, {"target": japan, "target_country": "JPN"}),
                           ("jp2", 10.0, {"target": japan, "target_country": "Japan"})):
        _vsm13_usa_result(tmp_path / f"res/{name}", f"/m/{name}",
                          {"vsm13_usa": {"alias": "vsm13_usa", "vsm13_l1,none": l1, **indices}}, data_root, meta, hib=hib)
    l1 = "vsm13: vsm13_l1 (↓ lower is better)"
    data = _json(tmp_path, "--baseline", "usa")
    columns = {c["column"] for c in data["cells"] if c["table"] == l1}
    assert columns == {"vsm13_usa", "vsm13_usa → JPN"}
    assert _cell(data, "usa", "vsm13_usa", table=l1)["value"] == 20.0
    assert _cell(data, "jp", "vsm13_usa", table=l1)["value"] is None
    assert _cell(data, "jp2", "vsm13_usa", table=l1)["value"] is None
    jp, jp2 = (_cell(data, m, "vsm13_usa → JPN", table=l1) for m in ("jp", "jp2"))
    assert (jp["value"], jp["best"], jp2["value"], jp2["best"]) == (30.0, False, 10.0, True)
    assert _cell(data, "usa", "vsm13_usa → JPN", table=l1)["value"] is None
    # against the USA baseline: Japan's cells have nothing of the same country to compare with
    assert jp["diff"] is None and jp["diff_note"] == "not in both rows"
    # against a Japan baseline: the other Japan run is its pair (its test reads the per-sample logs), the USA not
    data = _json(tmp_path, "--baseline", "jp2")
    jp = _cell(data, "jp", "vsm13_usa → JPN", table=l1)
    base_id = _cell(data, "jp2", "vsm13_usa → JPN", table=l1)["row_id"]
    assert jp["diff_note"] == f"no paired test: no per-sample logs for vsm13_usa in row {base_id}"
    assert _cell(data, "usa", "vsm13_usa", table=l1)["diff_note"] == "not in both rows"
    titles = {c["table"] for c in data["cells"]}
    jp_indices = "vsm13_usa → JPN: the six VSM13 indices (measurements: no better or worse)"
    usa_indices = "vsm13_usa: the six VSM13 indices (measurements: no better or worse)"
    assert {usa_indices, jp_indices} <= titles
    assert {c["label"] for c in data["cells"] if c["table"] == usa_indices} == {"usa"}
    assert {c["label"] for c in data["cells"] if c["table"] == jp_indices} == {"jp", "jp2"}
    assert _cell(data, "jp", "pdi", table=jp_indices)["value"] == 10.0

    csv_out = tmp_path / "board.csv"
    assert main([str(tmp_path / "res"), "--format", "csv", "--output", str(csv_out)]) == 0
    rows = list(csv.DictReader(io.StringIO(csv_out.read_text())))
    assert {(r["label"], r["value"]) for r in rows if r["table"] == l1 and r["column"] == "vsm13_usa → JPN"
            and r["value"]} == {("jp", "30.0"), ("jp2", "10.0")}
    capsys.readouterr()
    assert main([str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out
    md = out.split(f"### {l1}")[1].split("###")[0]
    assert "| model | vsm13_usa | vsm13_usa → JPN |" in md
    assert next(line for line in md.splitlines() if line.startswith("| jp [")).split(" | ")[1] == "–"
    assert f"### {jp_indices}" in out
    html = tmp_path / "page.html"
    assert main([str(tmp_path / "res"), "--format", "html", "--output", str(html)]) == 0
    page = html.read_text()
    assert "vsm13_usa → JPN" in page and "vsm13_usa → JPN: the six VSM13 indices" in page


def test_a_wvs_group_resamples_questions_not_each_country_apart(tmp_path):
    # wvs_usa and wvs_china ask the same 10 questions and the model scores 1 - JSD alike in both on each one
    # (0 on questions 10-14, 1 on 15-19): the group mean 0.5 varies with the questions drawn exactly as one
    # country's mean does, so its interval is that of the mean over the 10 questions, and a rerun of both
    # countries with every answer right moves by +0.5 with the paired interval of that mean. Resampling each
    # country's questions on its own averages two independent draws: about 1/sqrt(2) as wide as that.
    from culture_tasks import stats

    values = [0.0] * 5 + [1.0] * 5
    logged = {t: [{"wvs_jsd": v, "doc": {"q_id": str(10 + k)}} for k, v in enumerate(values)]
              for t in ("wvs_usa", "wvs_china")}
    right = {t: [{"wvs_jsd": 1.0, "doc": {"q_id": str(10 + k)}} for k in range(10)] for t in logged}
    for model, rows, value in (("/m/base", logged, 0.5), ("/m/good", right, 1.0)):
        _result(tmp_path / "res" / model[3:], model, {}, extra={
            "wvs": {"wvs_jsd,none": value}, "wvs_usa": {"wvs_jsd,none": value}, "wvs_china": {"wvs_jsd,none": value}},
            samples=rows, groups={"wvs": ["wvs_usa", "wvs_china"]}, hib={"wvs": {"wvs_jsd": True}})
    data = _json(tmp_path, "--baseline", "base")
    table = "wvs: wvs_jsd (higher is better)"
    group = _cell(data, "base", "wvs", table=table)
    assert (group["ci_low"], group["ci_high"]) == pytest.approx(stats.bootstrap_ci(stats.mean, values))
    assert (group["ci_low"], group["ci_high"]) == pytest.approx((0.2, 0.8))
    good = _cell(data, "good", "wvs", table=table)
    paired = stats.paired_bootstrap(stats.mean, values, [1.0] * 10)
    assert (good["diff"], good["diff_low"], good["diff_high"]) == pytest.approx((0.5, paired["low"], paired["high"]))
    assert good["p_value"] == pytest.approx(paired["p_value"])


def test_a_limit_above_every_task_s_size_is_a_complete_run(tmp_path, capsys):
    # --limit 100 on a task of 40 documents scores all 40 (n-samples: 40 of 40): a complete run, best with 0.7;
    # --limit 5 (5 of 40) is partial, and so is a --limit run whose file has no n-samples to say what it cut
    task = "culturellm_english_x"
    _result(tmp_path / "res/full", "/m/full", {task: 0.5}, n_samples={task: {"original": 40, "effective": 40}})
    _result(tmp_path / "res/capped", "/m/capped", {task: 0.7}, limit=100,
            n_samples={task: {"original": 40, "effective": 40}})
    _result(tmp_path / "res/cut", "/m/cut", {task: 0.9}, limit=5, n_samples={task: {"original": 40, "effective": 5}})
    _result(tmp_path / "res/old", "/m/old", {task: 0.8}, limit=100)
    data = _json(tmp_path)
    runs = {r["model"]: r for r in data["runs"]}
    assert {m: r["is_partial"] for m, r in runs.items()} == {"/m/full": False, "/m/capped": False, "/m/cut": True,
                                                             "/m/old": True}
    assert runs["/m/capped"]["partial"] == "" and runs["/m/capped"]["limit"] == "100"
    assert runs["/m/cut"]["partial"] == "partial run (--limit 5; documents per task: 5 of 40)"
    assert runs["/m/old"]["partial"] == "partial run (--limit 100)"
    assert [m for m in ("full", "capped", "cut", "old") if _cell(data, m, "english")["best"]] == ["capped"]


def test_overwrite_leaves_no_plot_of_the_report_it_replaced(tmp_path, capsys):
    # the first report draws a heatmap; the second, over WVS totals only, draws no plot: its plots folder
    # must not keep the first report's heatmap as if it were its own
    _result(tmp_path / "res/a", "/m/a", {"culturellm_english_x": 0.5})
    out = tmp_path / "board.md"
    assert main([str(tmp_path / "res/a"), "--output", str(out)]) == 0
    assert (tmp_path / "board_plots/culturellm_heatmap.png").is_file()
    _result(tmp_path / "res/b", "/m/a", {}, extra={"wvs_usa": {"wvs_jsd,none": 0.5}})
    assert main([str(tmp_path / "res/b"), "--output", str(out), "--overwrite"]) == 0
    assert "culturellm" not in out.read_text() and not (tmp_path / "board_plots").exists()


def test_a_result_file_named_by_output_path_finds_its_logs(tmp_path):
    # lm_eval --output_path res/board.json writes res/board_<date>.json and res/samples_<task>_<date>.jsonl:
    # the folder holds a result file, and the logs beside it give the english mean its interval ([1, 1]: one-class
    # tasks answered right every time)
    right = [{"f1_macro": [0, 0, 1]}] * MIN_DOCS
    tasks = ("culturellm_english_x", "culturellm_english_y")
    _result(tmp_path / "res", "/m/a", dict.fromkeys(tasks, 1.0), samples=dict.fromkeys(tasks, right))
    named = next((tmp_path / "res").glob("results_*.json"))
    named = named.rename(named.with_name("board_" + named.name.removeprefix("results_")))
    alone = tmp_path / "alone.json"
    assert main([str(named), "--format", "json", "--output", str(alone)]) == 0
    for data in (_json(tmp_path), json.loads(alone.read_text())):
        english = _cell(data, "a", "english")
        assert (english["value"], english["ci_low"], english["ci_high"]) == (1.0, 1.0, 1.0)
        assert [r["files"] for r in data["runs"]] == [[str(named)]]


def test_a_file_named_twice_is_read_once(tmp_path, capsys):
    # the folder and a file in it: one file, not a file that repeats its own tasks
    _result(tmp_path / "res/a", "/m/a", {"culturellm_english_x": 0.5})
    named = next((tmp_path / "res/a").glob("results_*.json"))
    assert main([str(tmp_path / "res"), str(named), str(tmp_path / "res/a"), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["runs"][0]["files"] == [str(named)] and "repeats" not in err


def test_a_date_that_is_not_a_time_stamp_is_a_one_line_error(tmp_path, capsys):
    # the date orders a row's files (the newest number wins): a date that is no number cannot, and says so
    _result(tmp_path / "res", "/m/a", {"culturellm_english_x": 0.5})
    path = next((tmp_path / "res").glob("results_*.json"))
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "date": "2026-01-01 10:00"}))
    assert main([str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err
    assert err == (f"culture-leaderboard: {path}: `date` must be the run's start time in seconds, as lm-eval writes "
                   "it (it orders the files of a row); got '2026-01-01 10:00'\n")


def test_a_run_whose_score_is_not_a_number_shows_no_value_and_is_not_ranked(tmp_path, capsys):
    # lm-eval reports NaN for a task with a document whose log-likelihoods were NaN (a float16 overflow);
    # its log has that document without a prediction
    task = "culturellm_english_x"
    right = [{"f1_macro": [i % 2, i % 2, 2]} for i in range(4)]
    _result(tmp_path / "res/a", "/m/fp16", {task: float("nan")}, ci={task: (float("nan"), float("nan"))},
            samples={task: [{"f1_macro": [0, None, 2]}] + right[1:]})
    _result(tmp_path / "res/b", "/m/fp32", {task: 1.0}, ci={task: (1.0, 1.0)}, samples={task: right})
    _result(tmp_path / "res/c", "/m/other", {task: 0.5}, ci={task: (0.0, 1.0)})
    data = _json(tmp_path, "--baseline", "fp16")
    nan_cell = _cell(data, "fp16", "english")
    assert nan_cell["value"] is None and nan_cell["best"] is False
    assert nan_cell["interval_note"].startswith("not a number: too few documents, or NaN log-likelihoods")
    fp32 = _cell(data, "fp32", "english")
    assert fp32["diff"] is None and fp32["diff_note"] == "no paired test: the baseline row's value is not a number"
    assert fp32["best"] is True and _cell(data, "other", "english")["diff_note"].startswith("no paired test")
    assert main([str(tmp_path / "res")]) == 0
    md = capsys.readouterr().out
    rows = [line for line in md.splitlines() if line.startswith("| fp") or line.startswith("| other")]
    assert [r.split(" [")[0] for r in rows[-3:]] == ["| fp32", "| other", "| fp16"]  # ranked last
    assert "| – (not a number: too few documents" in rows[-1]
    # a table whose only numbers are one run's: that run is not bold, the NaN run ranks nothing
    (tmp_path / "res/c").joinpath(next((tmp_path / "res/c").glob("results_*.json")).name).unlink()
    data = _json(tmp_path)
    assert _cell(data, "fp32", "english")["best"] is False and _cell(data, "fp16", "english")["value"] is None


def test_output_help_says_which_formats_write_plots(tmp_path, capsys):
    # --help said "plots go to <output stem>_plots/" for every format; csv and json write none
    _result(tmp_path / "res/a", "/m/a", {"culturellm_english_x": 0.5})
    for fmt in ("csv", "json"):
        assert main([str(tmp_path / "res/a"), "--format", fmt, "--output", str(tmp_path / f"board.{fmt}")]) == 0
    assert not (tmp_path / "board_plots").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert ("--output OUTPUT write here instead of standard output; md and html also write their plots as PNG files "
            "to <output stem>_plots/") in help_text


def test_a_wvs_group_against_a_baseline_that_is_not_a_number_says_so(tmp_path):
    # the baseline's wvs_usa and wvs_china have a question whose log-likelihoods were NaN: its group is NaN, so the
    # other row's group cell has no difference to show; it printed "+nan (no interval: one document), p = nan"
    nan = float("nan")
    countries = ("wvs_usa", "wvs_china")
    base = {t: [{"wvs_jsd": nan if k == 0 else 0.5, "doc": {"q_id": str(10 + k)}} for k in range(6)] for t in countries}
    good = {t: [{"wvs_jsd": 0.9, "doc": {"q_id": str(10 + k)}} for k in range(6)] for t in countries}
    for model, rows, value in (("/m/base", base, nan), ("/m/good", good, 0.9)):
        _result(tmp_path / "res" / model[3:], model, {}, extra={t: {"wvs_jsd,none": value} for t in ("wvs", *countries)},
                samples=rows, groups={"wvs": list(countries)}, hib={"wvs": {"wvs_jsd": True}})
    data = _json(tmp_path, "--baseline", "base")
    group = _cell(data, "good", "wvs", table="wvs: wvs_jsd (higher is better)")
    assert group["value"] == pytest.approx(0.9)
    assert group["diff"] is None and group["p_value"] is None and group["significant"] is None
    assert group["diff_note"] == "no paired test: the baseline row's value is not a number"


def test_a_group_of_targets_with_fewer_dimensions_says_so(tmp_path, capsys):
    # lm-eval's vsm13_partial group (Iraq, Jordan: 2 of 6 dimensions each) reports vsm13_l1 but no vsm13_dims of its
    # own: its column read as a full-coverage loss beside vsm13_usa's; it is marked like its tasks
    extra = {"vsm13_usa": {"vsm13_l1,none": 300.0, "vsm13_dims,none": 6},
             "vsm13_iraq": {"vsm13_l1,none": 100.0, "vsm13_dims,none": 2},
             "vsm13_jordan": {"vsm13_l1,none": 120.0, "vsm13_dims,none": 2},
             "vsm13_partial": {"vsm13_l1,none": 110.0}, "vsm13": {"vsm13_l1,none": 300.0}}
    _result(tmp_path / "res", "/m/base", {}, extra=extra, hib={t: {"vsm13_l1": False} for t in extra},
            groups={"vsm13_partial": ["vsm13_iraq", "vsm13_jordan"], "vsm13": ["vsm13_usa"]})
    assert main([str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out
    assert ("| model | vsm13 | vsm13_iraq (2 of 6 dims) | vsm13_jordan (2 of 6 dims) | vsm13_partial (2 of 6 dims) | "
            "vsm13_usa |") in out


def test_the_culture_heatmap_writes_each_value_with_its_interval(tmp_path, monkeypatch):
    # the heatmap showed each culture's macro-F1 alone: it now writes the table's interval under it ("no interval"
    # where the table has none), and ‡ after a mean over fewer of the column's tasks
    from culture_tasks import leaderboard, plots

    right = [{"f1_macro": [0, 0, 1]}] * MIN_DOCS
    _result(tmp_path / "res/a", "/m/logged", {"culturellm_english_x": 1.0, "culturellm_english_y": 1.0},
            samples={"culturellm_english_x": right, "culturellm_english_y": right})
    _result(tmp_path / "res/b", "/m/other", {"culturellm_english_x": 0.5})
    drawn = {}
    real = plots.score_heatmap
    monkeypatch.setattr(plots, "score_heatmap", lambda *a, **k: drawn.setdefault("fig", real(*a, **k)))
    runs = leaderboard.load_runs(leaderboard.find_result_files([str(tmp_path / "res")]))
    leaderboard.culture_heatmap(leaderboard.build_tables(runs))
    texts = [t.get_text() for t in drawn["fig"].axes[0].texts]
    assert texts == ["1.00\n[1.00, 1.00]", "1.00\n[1.00, 1.00]", "0.50‡\nno interval (1)", "0.50‡\nno interval (1)"]
    assert [t.get_text() for t in drawn["fig"].texts] == ["(1) the result file reports none for this metric"]
    assert "95 % intervals" in drawn["fig"].axes[0].get_title()
    plots.pyplot().close(drawn["fig"])


def test_a_task_of_one_document_says_why_it_has_no_interval(tmp_path):
    # lm_eval --limit 1: the task's interval is NaN in its result file (one document resampled is itself); the
    # cell said the file "reports none for this metric", as for a file without interval keys
    task = "culturellm_english_x"
    nan = float("nan")
    _result(tmp_path / "res/a", "/m/one", {task: 1.0}, ci={task: (nan, nan)}, limit=1,
            n_samples={task: {"original": 40, "effective": 1}})
    _result(tmp_path / "res/b", "/m/old", {task: 0.5})
    data = _json(tmp_path)
    assert _cell(data, "one", "english")["interval_note"] == (
        f"no interval: 1 document in a task; an interval of f1_macro needs {MIN_DOCS} in each (fewer do not hold "
        "the complete run's value: docs/interval_calibration.md)")
    assert _cell(data, "old", "english")["interval_note"] == "no interval: the result file reports none for this metric"


def test_macro_f1_over_too_few_documents_per_task_has_no_interval(tmp_path):
    # A bootstrap of macro-F1 over a few documents does not hold the complete run's value (a resample drops a label,
    # which scores F1 = 0; benchmarks/interval_calibration.py): with fewer than MIN_DOCS documents in a task, neither
    # the task's interval (even one an earlier version wrote into the result file) nor a mean's over it is shown.
    few = MIN_DOCS - 1
    right = [{"f1_macro": [0, 0, 1], "acc": 1.0}]
    x, y = "culturellm_english_x", "culturellm_english_y"
    for model, counts in {"/m/few": {x: few, y: MIN_DOCS}, "/m/one": {x: few}, "/m/enough": {x: MIN_DOCS}}.items():
        _result(tmp_path / "res" / model[3:], model, dict.fromkeys(counts, 1.0), ci=dict.fromkeys(counts, (1.0, 1.0)),
                samples={t: right * n for t, n in counts.items()},
                n_samples={t: {"original": 40, "effective": n} for t, n in counts.items()})
    data = _json(tmp_path)
    note = (f"no interval: {few} documents in a task; an interval of f1_macro needs {MIN_DOCS} in each (fewer do not "
            "hold the complete run's value: docs/interval_calibration.md)")
    for model in ("few", "one"):  # a mean over two tasks, one of them short; one short task with a stored interval
        cell = _cell(data, model, "english")
        assert (cell["value"], cell["ci_low"], cell["ci_high"], cell["interval_note"]) == (1.0, None, None, note)
    enough = _cell(data, "enough", "english")
    assert (enough["value"], enough["ci_low"], enough["ci_high"]) == (1.0, 1.0, 1.0)


def test_a_task_whose_file_does_not_count_its_documents_has_no_interval_under_the_minimum(tmp_path):
    # A result file without n-samples (an lm-eval that did not write it) does not say how many documents a task
    # scored: its per-sample log does, and so does a --limit under MIN_DOCS; an interval the file holds over fewer
    # documents is not shown, and a NaN one is NaN for want of MIN_DOCS documents, not of 2.
    right = [{"f1_macro": [0, 0, 1], "acc": 1.0}]
    x = "culturellm_english_x"
    _result(tmp_path / "res/a", "/m/logged", {x: 1.0}, ci={x: (1.0, 1.0)}, samples={x: right * (MIN_DOCS - 1)})
    _result(tmp_path / "res/b", "/m/enough", {x: 1.0}, ci={x: (1.0, 1.0)}, samples={x: right * MIN_DOCS})
    _result(tmp_path / "res/c", "/m/limited", {x: 1.0}, ci={x: (1.0, 1.0)}, limit=5)
    _result(tmp_path / "res/d", "/m/nan", {x: 1.0}, ci={x: (float("nan"), float("nan"))})
    data = _json(tmp_path)
    need = (f"an interval of f1_macro needs {MIN_DOCS} in each (fewer do not hold the complete run's value: "
            "docs/interval_calibration.md)")
    notes = {"logged": f"no interval: {MIN_DOCS - 1} documents in a task; {need}",
             "limited": f"no interval: --limit 5 scored at most 5 documents in a task; {need}",
             "nan": f"no interval: the result file's is not a number (fewer than {MIN_DOCS} documents)"}
    for model, note in notes.items():
        cell = _cell(data, model, "english")
        assert (cell["value"], cell["ci_low"], cell["ci_high"], cell["interval_note"]) == (1.0, None, None, note)
    enough = _cell(data, "enough", "english")
    assert (enough["ci_low"], enough["ci_high"], enough["interval_note"]) == (1.0, 1.0, "")


def test_a_paired_difference_without_an_interval_says_why_in_csv_and_json(tmp_path):
    # english: x with 5 documents, y with 25. The base answers 0 everywhere: x (gold 0 1 0 1 0) F1 of 0 = 2*3/(3+5),
    # of 1 = 0, macro 0.375; y (13 zeros, 12 ones) 26/38 / 2 = 0.342105. The other row is right everywhere: 1.0 each.
    # The difference (0.625 + 0.657895) / 2 = 0.641447 keeps its randomisation p-value (only no swap, or all, reaches
    # it: 1 / 1001); its bootstrap interval is absent (x has fewer than MIN_DOCS), and the cell says why.
    x, y = "culturellm_english_x", "culturellm_english_y"
    base = [{"f1_macro": [i % 2, 0, 2]} for i in range(25)]
    good = [{"f1_macro": [i % 2, i % 2, 2]} for i in range(25)]
    counts = {x: {"original": 40, "effective": 5}, y: {"original": 40, "effective": 25}}
    _result(tmp_path / "res/a", "/m/base", {x: 0.375, y: 13 / 38}, samples={x: base[:5], y: base}, n_samples=counts)
    _result(tmp_path / "res/b", "/m/good", {x: 1.0, y: 1.0}, samples={x: good[:5], y: good}, n_samples=counts)
    cell = _cell(_json(tmp_path, "--baseline", "base"), "good", "english")
    assert cell["diff"] == pytest.approx((0.625 + 1 - 13 / 38) / 2) and cell["p_value"] == pytest.approx(1 / 1001)
    note = (f"no interval: 5 documents in a task; an interval of f1_macro needs {MIN_DOCS} in each (fewer do not hold "
            "the complete run's value: docs/interval_calibration.md)")
    assert (cell["diff_low"], cell["diff_high"], cell["diff_note"]) == (None, None, note)
    out = tmp_path / "board.csv"
    assert main([str(tmp_path / "res"), "--format", "csv", "--output", str(out), "--baseline", "base"]) == 0
    row = next(r for r in csv.DictReader(io.StringIO(out.read_text()))
               if r["label"] == "good" and r["column"] == "english")
    assert (row["diff_low"], row["diff_high"], row["diff_note"]) == ("", "", note)  # as JSON's null, not "nan"
    # the page's heatmap numbers the reason on each cell without an interval and gives it under the figure
    page = tmp_path / "board.html"
    assert main([str(tmp_path / "res"), "--format", "html", "--output", str(page)]) == 0
    html = page.read_text()
    assert "no interval (1)" in html and "(1) 5 documents in a task; an interval of f1_macro needs" in html


def test_a_paired_difference_over_tasks_that_share_texts_keeps_the_document_minimum(tmp_path):
    # two tasks of 6 documents labelling the same texts: the rows' own cells had no interval (6 < MIN_DOCS), but
    # the paired test, pairing documents by text across the tasks, printed one
    x, y = "culturellm_spanish_x", "culturellm_spanish_y"
    base = [{"f1_macro": [i % 2, 0, 2], "doc": {"text": f"text {i}"}} for i in range(6)]
    good = [{"f1_macro": [i % 2, i % 2, 2], "doc": {"text": f"text {i}"}} for i in range(6)]
    # the base answers 0 everywhere: F1 of class 0 = 2 * 3 / (3 + 6) = 2/3, of class 1 = 0: macro 1/3
    _result(tmp_path / "res/a", "/m/base", {x: 1 / 3, y: 1 / 3}, samples={x: base, y: base})
    _result(tmp_path / "res/b", "/m/good", {x: 1.0, y: 1.0}, samples={x: good, y: good})
    cell = _cell(_json(tmp_path, "--baseline", "base"), "good", "spanish")
    assert cell["diff"] == pytest.approx(2 / 3)
    assert (cell["diff_low"], cell["diff_high"]) == (None, None)
    assert cell["diff_note"].startswith(f"no interval: 6 documents in a task; an interval of f1_macro needs {MIN_DOCS}")


def _vsm13_logged(data_root, country: str, persona: str, shift: int, **metadata) -> list[tuple]:
    """A VSM13 task's per-document results (``process_results_vsm13`` on made-up log-likelihoods that differ by
    ``shift``: a persona prompt per country answers differently; ``metadata``: the task's ``--metadata``)."""
    from culture_tasks.survey.tasks import load_vsm13, process_results_vsm13

    docs = load_vsm13(str(data_root), vsm13_country=country, persona=persona, **metadata)["test"]
    return [process_results_vsm13(doc, [(-((doc["item"] * (j + 1) + shift) % 7) / 2, False)
                                        for j in range(len(doc["order"]))])["vsm13_l1"] for doc in docs]


def _vsm13_group_result(tmp_path, data_root, logged: dict[str, list[tuple]], model="/m/base",
                        metrics=("vsm13_l1", "vsm13_margin")):
    """lm-eval's output of the group vsm13_persona over vsm13_usa_persona and vsm13_germany_persona: each task's
    ``metrics`` with their intervals (the task's aggregation of ``logged``), the group the mean of its tasks, and
    each task's per-sample log as ``--log_samples`` writes it."""
    from culture_tasks.survey.tasks import summarise_vsm13, vsm13_intervals

    members = ("vsm13_usa_persona", "vsm13_germany_persona")
    extra = {"vsm13_persona": {}}
    for task in members:
        items = logged[task]
        summary, ci = summarise_vsm13(items), vsm13_intervals(items)
        extra[task] = {f"{m}{s},none": v for m in metrics
                       for s, v in (("", summary[m]), ("_ci_low", ci[m][0]), ("_ci_high", ci[m][1]))}
    for m in metrics:
        extra["vsm13_persona"][f"{m},none"] = sum(extra[t][f"{m},none"] for t in members) / 2
    samples = {t: [{m: list(item) for m in metrics} for item in logged[t]] for t in members}
    _result(tmp_path / "res", model, {}, extra=extra, samples=samples, groups={"vsm13_persona": list(members)},
            hib={t: {"vsm13_l1": False, "vsm13_mae": False, "vsm13_margin": True} for t in extra},
            n_samples={t: {"original": 24, "effective": 24} for t in members})
    return extra


def test_a_vsm13_group_has_the_interval_of_the_mean_over_its_countries_of_one_seeded_bootstrap(tmp_path, data_root):
    # Each task's interval surveys 50 simulated respondents per item, 1,000 resamples drawn from numpy's Generator
    # with seed 1234 (tasks.vsm13_intervals). The group's resample b is the mean over its countries of each
    # country's resample b under that seed; its interval the 2.5 / 97.5 % percentiles of those means.
    import numpy as np

    from culture_tasks.survey import compare
    from culture_tasks.survey.vsm13 import DIMENSIONS, Target, load_hofstede, vsm13_indices

    logged = {"vsm13_usa_persona": _vsm13_logged(data_root, "USA", "the United States", 0),
              "vsm13_germany_persona": _vsm13_logged(data_root, "GER", "Germany", 3)}
    extra = _vsm13_group_result(tmp_path, data_root, logged)
    hofstede = {t.code: t for t in load_hofstede(str(data_root))}
    reference = compare.hofstede_reference(str(data_root))
    l1, margin = [], []
    for task, code in (("vsm13_usa_persona", "USA"), ("vsm13_germany_persona", "GER")):
        rng = np.random.default_rng(1234)
        sampled = {}
        for number, _, _, _, dist, values, *_ in sorted(logged[task]):
            p = np.asarray(dist) / np.sum(dist)
            sampled[number] = rng.multinomial(50, p, size=1000) @ np.asarray(values) / 50
        indices = vsm13_indices(sampled)
        target = hofstede[code].scores
        l1.append(sum(np.abs(indices[d] - target[d]) for d in DIMENSIONS))
        margin.append(compare.margin_and_rank(indices, Target(hofstede[code].name, code, dict(target)),
                                              reference)["margin"])
    data = _json(tmp_path)
    for metric, replicates in (("vsm13_l1", l1), ("vsm13_margin", margin)):
        direction = "(↓ lower is better)" if metric == "vsm13_l1" else "(higher is better)"
        table = f"vsm13: {metric} {direction}"
        group = _cell(data, "base", "vsm13_persona", table=table)
        mean = (replicates[0] + replicates[1]) / 2
        assert group["value"] == pytest.approx(extra["vsm13_persona"][f"{metric},none"])
        assert (group["ci_low"], group["ci_high"]) == pytest.approx(tuple(np.percentile(mean, [2.5, 97.5])))
        assert group["ci_low"] < group["ci_high"]
        for task, reps in zip(("vsm13_usa_persona", "vsm13_germany_persona"), replicates):  # the tasks' own: unchanged
            cell = _cell(data, "base", task, table=table)
            assert (cell["ci_low"], cell["ci_high"]) == (extra[task][f"{metric}_ci_low,none"],
                                                         extra[task][f"{metric}_ci_high,none"])
            assert (cell["ci_low"], cell["ci_high"]) == pytest.approx(tuple(np.percentile(reps, [2.5, 97.5])))


VSM13_TABLES = {"vsm13_l1": "vsm13: vsm13_l1 (↓ lower is better)", "vsm13_mae": "vsm13: vsm13_mae (↓ lower is better)",
                "vsm13_margin": "vsm13: vsm13_margin (higher is better)"}
PERSONA_TASKS = (("vsm13_usa_persona", "USA", "the United States"), ("vsm13_germany_persona", "GER", "Germany"))


def _vsm13_rows(tmp_path, data_root, shifts: dict[str, tuple[int, int]]) -> dict[str, dict[str, list[tuple]]]:
    """One row per model of ``shifts`` (model -> the USA's and Germany's shift), each with the group
    vsm13_persona and its two countries' logs; the logs by model and task."""
    logs = {}
    for model, pair in shifts.items():
        logs[model] = {task: _vsm13_logged(data_root, code, persona, shift)
                       for (task, code, persona), shift in zip(PERSONA_TASKS, pair)}
        _vsm13_group_result(tmp_path, data_root, logs[model], model=f"/m/{model}", metrics=tuple(VSM13_TABLES))
    return logs


# what a cell says where its paired interval (excludes 0: True) and its test disagree
DISAGREE = {True: "interval excludes 0 but the test does not reject: few differing items; the mark follows the test",
            False: "the test rejects but the interval covers 0; the mark follows the test"}


def test_a_vsm13_cell_against_the_baseline_has_an_item_pair_interval_and_an_item_swap_p_value(tmp_path, data_root,
                                                                                           capsys):
    # Each row's item means (one document per item) give its metrics as the task computes them. The interval of
    # row - baseline: both rows' item-pair bootstraps under one seed (compare.replicate_indices, seed 1234, 1000
    # resamples: resample b draws the same item pairs in both rows and both countries), the 2.5 / 97.5 %
    # percentiles of the per-resample differences (a group: of the mean over its countries). The p-value: 1000
    # rounds from Generator((1234, 1)), each swapping each item's mean between the rows with probability 1/2
    # (the item swapped in both countries), p = (1 + rounds with |difference| >= |observed|) / 1001.
    import numpy as np

    from culture_tasks.survey import compare
    from culture_tasks.survey.vsm13 import DIMENSIONS, Target, load_hofstede, vsm13_indices

    logs = _vsm13_rows(tmp_path, data_root, {"base": (0, 3), "other": (2, 6)})
    hofstede = {t.code: t for t in load_hofstede(str(data_root))}
    reference = compare.hofstede_reference(str(data_root))
    targets = {task: Target(hofstede[code].name, code, dict(hofstede[code].scores)) for task, code, _ in PERSONA_TASKS}

    def means(items):
        by_item = {}
        for number, score, *_ in items:
            by_item.setdefault(number, []).append(score)
        return {k: float(np.mean(v)) for k, v in by_item.items()}

    def scores(indices, target):  # the three metrics of one profile or of arrays of resamples
        errors = [np.abs(indices[d] - target.scores[d]) for d in DIMENSIONS]
        return {"vsm13_l1": sum(errors), "vsm13_mae": sum(errors) / 6,
                "vsm13_margin": compare.margin_and_rank(indices, target, reference)["margin"]}

    item_means = {m: {task: means(logs[m][task]) for task, _, _ in PERSONA_TASKS} for m in logs}
    observed = {task: {k: scores(vsm13_indices(item_means["other"][task]), targets[task])[k]
                       - scores(vsm13_indices(item_means["base"][task]), targets[task])[k] for k in VSM13_TABLES}
                for task, _, _ in PERSONA_TASKS}
    replicates = {task: {k: scores(compare.replicate_indices(item_means["other"][task]), targets[task])[k]
                         - scores(compare.replicate_indices(item_means["base"][task]), targets[task])[k]
                         for k in VSM13_TABLES} for task, _, _ in PERSONA_TASKS}
    swap = np.random.default_rng((1234, 1)).integers(0, 2, size=(1000, 24))
    rounds = {task: {k: [] for k in VSM13_TABLES} for task, _, _ in PERSONA_TASKS}
    for r in range(1000):
        for task, _, _ in PERSONA_TASKS:
            a, b = item_means["base"][task], item_means["other"][task]
            a_swapped = {k: b[k] if swap[r, k - 1] else a[k] for k in range(1, 25)}
            b_swapped = {k: a[k] if swap[r, k - 1] else b[k] for k in range(1, 25)}
            got_a, got_b = (scores(vsm13_indices(m), targets[task]) for m in (a_swapped, b_swapped))
            for k in VSM13_TABLES:
                rounds[task][k].append(float(got_b[k] - got_a[k]))

    def p_value(diffs, diff):
        reached = sum(abs(d) >= abs(diff) - 1e-12 * max(1.0, abs(diff)) for d in diffs)
        return (1 + reached) / (1 + len(diffs))

    data = _json(tmp_path, "--baseline", "base")
    usa, ger = (task for task, _, _ in PERSONA_TASKS)
    for metric, table in VSM13_TABLES.items():
        expected = {task: (observed[task][metric], replicates[task][metric], rounds[task][metric]) for task in (usa, ger)}
        expected["vsm13_persona"] = tuple(
            (x + y) / 2 for x, y in zip((observed[usa][metric], replicates[usa][metric], np.array(rounds[usa][metric])),
                                        (observed[ger][metric], replicates[ger][metric], np.array(rounds[ger][metric]))))
        for column, (diff, reps, swapped) in expected.items():
            cell = _cell(data, "other", column, table=table)
            assert cell["diff"] == pytest.approx(diff, rel=1e-9, abs=1e-12), (metric, column)
            assert cell["diff"] == pytest.approx(cell["value"] - _cell(data, "base", column, table=table)["value"])
            assert (cell["diff_low"], cell["diff_high"]) == pytest.approx(tuple(np.percentile(reps, [2.5, 97.5])))
            assert cell["diff_low"] < cell["diff_high"]
            assert cell["p_value"] == pytest.approx(p_value(swapped, diff)), (metric, column)
            assert cell["significant"] is (cell["p_value"] < 0.05)
            excludes = cell["diff_low"] > 0 or cell["diff_high"] < 0  # the mark follows the test, and says so
            assert cell["diff_note"] == ("" if excludes is cell["significant"] else DISAGREE[excludes])
    # the group's margin: its item-pair interval excludes 0 while the item swaps do not reject, and it says so
    assert _cell(data, "other", "vsm13_persona", table=VSM13_TABLES["vsm13_margin"])["diff_note"] == DISAGREE[True]
    # the p-values are not all 1 or all tiny: the test above reads real swaps
    assert {_cell(data, "other", "vsm13_persona", table=t)["p_value"] for t in VSM13_TABLES.values()} != {1.0}

    group = _cell(data, "other", "vsm13_persona", table=VSM13_TABLES["vsm13_l1"])
    assert main([str(tmp_path / "res"), "--baseline", "base"]) == 0
    md = capsys.readouterr().out.split(f"### {VSM13_TABLES['vsm13_l1']}")[1].split("###")[0]
    line = next(line for line in md.splitlines() if line.startswith("| other"))
    verdict = ("significant" if group["significant"] else "not significant") + (
        f"; {group['diff_note']}" if group["diff_note"] else "")
    assert (f"vs baseline: {group['diff']:+.4f} [{group['diff_low']:+.4f}, {group['diff_high']:+.4f}], "
            f"p = {group['p_value']:.3f} ({verdict})") in line


def test_a_vsm13_row_like_the_baseline_differs_by_0_and_a_row_on_another_target_is_not_compared(tmp_path, data_root):
    from culture_tasks.survey.vsm13 import DIMENSIONS

    _vsm13_rows(tmp_path, data_root, {"base": (0, 3), "same": (0, 3)})
    # Germany scored against other scores (--metadata target): the same documents' numbers, but not the same target
    other = {"vsm13_usa_persona": _vsm13_logged(data_root, "USA", "the United States", 0),
             "vsm13_germany_persona": _vsm13_logged(data_root, "GER", "Germany", 3, target=[50.0] * len(DIMENSIONS),
                                                    target_source="made up")}
    _vsm13_group_result(tmp_path, data_root, other, model="/m/retargeted", metrics=tuple(VSM13_TABLES))
    data = _json(tmp_path, "--baseline", "base")
    for table in VSM13_TABLES.values():
        for column in ("vsm13_persona", "vsm13_usa_persona", "vsm13_germany_persona"):
            same = _cell(data, "same", column, table=table)
            assert (same["diff"], same["diff_low"], same["diff_high"], same["p_value"], same["significant"]) == \
                (0.0, 0.0, 0.0, 1.0, False)
        assert _cell(data, "retargeted", "vsm13_usa_persona", table=table)["p_value"] == 1.0
        for column in ("vsm13_persona", "vsm13_germany_persona"):
            cell = _cell(data, "retargeted", column, table=table)
            assert cell["diff"] is None and cell["diff_note"] == (
                "no paired test: vsm13_germany_persona was scored against another target (or with other constants) "
                "in the two rows")


def test_a_vsm13_group_whose_country_has_no_log_names_it(tmp_path, data_root):
    logged = {"vsm13_usa_persona": _vsm13_logged(data_root, "USA", "the United States", 0),
              "vsm13_germany_persona": _vsm13_logged(data_root, "GER", "Germany", 3)}
    _vsm13_group_result(tmp_path, data_root, logged)  # the same numbers, the German log gone
    for path in (tmp_path / "res").glob("samples_vsm13_germany_persona_*.jsonl"):
        path.unlink()
    group = _cell(_json(tmp_path), "base", "vsm13_persona", table="vsm13: vsm13_l1 (↓ lower is better)")
    assert group["value"] is not None and group["ci_low"] is None and group["ci_high"] is None
    assert group["interval_note"] == ("no interval: no per-sample log for vsm13_germany_persona "
                                      "(samples_vsm13_germany_persona_<date>.jsonl is not beside its result file)")


def test_a_vsm13_group_whose_logs_name_a_data_root_not_here_says_so(tmp_path, data_root):
    # the logged documents carry the data root of the Hofstede file the tasks ranked in, moved away since: the
    # group's cell keeps its value and says why it has no interval, instead of stopping the leaderboard
    logged = {"vsm13_usa_persona": _vsm13_logged(data_root, "USA", "the United States", 0),
              "vsm13_germany_persona": _vsm13_logged(data_root, "GER", "Germany", 3)}
    _vsm13_group_result(tmp_path, data_root, logged)
    for path in (tmp_path / "res").glob("samples_vsm13_*.jsonl"):
        path.write_text(path.read_text().replace(str(data_root.resolve()), str(tmp_path / "gone")))
    group = _cell(_json(tmp_path), "base", "vsm13_persona", table="vsm13: vsm13_l1 (↓ lower is better)")
    assert group["value"] is not None and group["ci_low"] is None
    assert group["interval_note"] == (f"no interval: The data root {tmp_path / 'gone'} does not exist or is not a "
                                      "folder: the per-sample logs rank the countries in the Hofstede file of the "
                                      "data_dir the tasks ran with")


def test_a_vsm13_group_log_of_another_run_is_a_one_line_error(tmp_path, data_root, capsys):
    # Germany's log holds the answers of another prompt than its result file's numbers: an error naming the log
    usa, germany = (_vsm13_logged(data_root, c, p, k) for c, p, k in (("USA", "the United States", 0),
                                                                      ("GER", "Germany", 3)))
    _vsm13_group_result(tmp_path, data_root, {"vsm13_usa_persona": usa, "vsm13_germany_persona": germany})
    [log] = (tmp_path / "res").glob("samples_vsm13_germany_persona_*.jsonl")
    other = _vsm13_logged(data_root, "GER", "Germany", 5)
    log.write_text("".join(json.dumps({**json.loads(line), "vsm13_l1": list(item)}) + "\n"
                           for line, item in zip(log.read_text().splitlines(), other)))
    assert main([str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"culture-leaderboard: {log}: the logged documents give vsm13_l1 ")
    assert len(err.splitlines()) == 1


def test_the_legend_names_what_the_baseline_test_pairs():
    # a WVS group's test pairs questions and VSM13's metrics pair the 24 items, not documents
    from culture_tasks.leaderboard import LEGEND

    assert "paired randomisation test over the same documents (a WVS group: its questions; VSM13: its 24 items)" \
        in LEGEND
    assert "the difference's interval is a paired bootstrap of the same units (VSM13: its item pairs)" in LEGEND


def test_a_vsm13_board_computes_each_log_s_resamples_once(tmp_path, data_root, monkeypatch):
    # 3 rows x a group of 6 countries, 3 metrics, --baseline: 18 logs. Each log's item-pair resamples
    # (compare.term_replicates) and respondent resamples (tasks.vsm13_replicates) are computed once for the
    # whole board, not per metric, per column and per compared row (144 item-pair bootstraps before).
    import numpy as np

    from culture_tasks.survey import compare, tasks
    from culture_tasks.survey.tasks import summarise_vsm13, vsm13_intervals

    countries = (("vsm13_usa", "USA"), ("vsm13_germany", "GER"), ("vsm13_china", "CHN"), ("vsm13_india", "IND"),
                 ("vsm13_brazil", "BRA"), ("vsm13_turkey", "TUR"))
    metrics = tuple(VSM13_TABLES)
    for model, shift in (("base", 0), ("a", 2), ("b", 5)):
        extra, samples = {"vsm13": {}}, {}
        for task, code in countries:
            items = _vsm13_logged(data_root, code, "", shift)
            summary, ci = summarise_vsm13(items), vsm13_intervals(items)
            extra[task] = {f"{m}{s},none": v for m in metrics
                           for s, v in (("", summary[m]), ("_ci_low", ci[m][0]), ("_ci_high", ci[m][1]))}
            samples[task] = [{m: list(item) for m in metrics} for item in items]
        for m in metrics:
            extra["vsm13"][f"{m},none"] = float(np.mean([extra[t][f"{m},none"] for t, _ in countries]))
        _result(tmp_path / "res", f"/m/{model}", {}, extra=extra, samples=samples,
                groups={"vsm13": [t for t, _ in countries]},
                hib={t: {"vsm13_l1": False, "vsm13_mae": False, "vsm13_margin": True} for t in extra},
                n_samples={t: {"original": 24, "effective": 24} for t, _ in countries})
    calls = []
    term_replicates = compare.term_replicates
    monkeypatch.setattr(compare, "term_replicates", lambda *a, **k: calls.append(1) or term_replicates(*a, **k))
    tasks.vsm13_replicates.cache.clear()
    data = _json(tmp_path, "--baseline", "base")
    assert len(calls) <= 18
    assert len(tasks.vsm13_replicates.cache) == 18
    cell = _cell(data, "a", "vsm13", table=VSM13_TABLES["vsm13_margin"])
    assert cell["diff"] is not None and cell["p_value"] is not None and cell["ci_low"] is not None


def _vsm13_hand_log(data_root, scores: dict[int, float], **metadata) -> list[tuple]:
    """vsm13_usa's per-document results (one document per item, as ``process_results_vsm13`` logs them) with
    each item's score set by hand: 3 unless ``scores`` says otherwise, all the answer's mass on that value
    (``metadata``: the task's ``--metadata``)."""
    from culture_tasks.survey.tasks import load_vsm13

    out = []
    for doc in load_vsm13(str(data_root), vsm13_country="USA", **metadata)["test"]:
        score = float(scores.get(doc["item"], 3.0))
        dist = tuple(float(v == score) for v in doc["values"])
        out.append((doc["item"], score, doc["target"], doc["constants"], dist, tuple(doc["values"]), doc["comparison"]))
    return out


def _vsm13_hand_result(tmp_path, data_root, model: str, scores: dict[int, float], **metadata) -> None:
    """An lm-eval result file of model ``/m/<model>`` on vsm13_usa alone, answered as ``_vsm13_hand_log``
    says, with every VSM13 metric, its interval and the per-sample log."""
    from culture_tasks.survey.tasks import VSM13_METRICS, summarise_vsm13, vsm13_intervals

    items = _vsm13_hand_log(data_root, scores, **metadata)
    summary, ci = summarise_vsm13(items), vsm13_intervals(items)
    extra = {"vsm13_usa": {f"{m}{s},none": v for m in VSM13_METRICS
                           for s, v in (("", summary[m]), ("_ci_low", ci[m][0]), ("_ci_high", ci[m][1]))}}
    _result(tmp_path / "res", f"/m/{model}", {}, extra=extra,
            samples={"vsm13_usa": [{m: list(item) for m in VSM13_METRICS} for item in items]},
            hib={"vsm13_usa": {"vsm13_l1": False, "vsm13_mae": False, "vsm13_margin": True, "vsm13_rank": False}},
            n_samples={"vsm13_usa": {"original": 24, "effective": 24}})


def test_the_vsm13_rank_and_indices_against_the_baseline_have_an_interval_and_a_p_value(tmp_path, data_root):
    # base answers 3 to every item: every index is 0 (constants 0). other answers item 7 with 2 and item 2 with 4:
    # PDI = 35 (m07 - m02) + 25 (m20 - m23) = 35 (2 - 4) = -70, the other indices 0. The U.S.A. among Hofstede's
    # countries (z-space, offset removed): rank 28 at PDI 0, 12 at PDI -70, 13 at PDI -140.
    # Interval (item-pair bootstrap, 1,000 resamples): PDI's two pairs have the changes -70 and 0, a resample
    # draws two of them: -140, -70 or 0 (about 1/4, 1/2, 1/4 of the resamples), so the PDI difference lies in
    # [-140, 0] and the rank's in {13 - 28, 12 - 28, 0}: [-16, 0]; an index that did not move: [0, 0].
    # p-value (1,000 rounds of Generator((1234, 1)), 1 = the item's means swapped): items 7 and 2 both swapped or
    # both kept give -70 or +70 (rank -16 or +16), one of them swapped PDI -35 in both rows (difference 0), so
    # p = (1 + rounds swapping both or neither) / 1001. Row "retargeted" answers as base but its task ranked other
    # scores for the U.S.A. (--metadata target): its indices are compared (difference 0), its rank is not.
    import numpy as np

    from culture_tasks.survey.vsm13 import DIMENSIONS

    made_up = {"target": [50.0] * len(DIMENSIONS), "target_source": "made up"}
    for model, scores, metadata in (("base", {}, {}), ("other", {7: 2.0, 2: 4.0}, {}), ("retargeted", {}, made_up)):
        _vsm13_hand_result(tmp_path, data_root, model, scores, **metadata)
    swap = np.random.default_rng((1234, 1)).integers(0, 2, size=(1000, 24))
    p = (1 + int((swap[:, 7 - 1] == swap[:, 2 - 1]).sum())) / 1001
    data = _json(tmp_path, "--baseline", "base")
    rank_table = "vsm13: vsm13_rank (↓ lower is better)"
    assert (_cell(data, "base", "vsm13_usa", table=rank_table)["value"],
            _cell(data, "other", "vsm13_usa", table=rank_table)["value"]) == (28.0, 12.0)
    rank = _cell(data, "other", "vsm13_usa", table=rank_table)
    assert (rank["diff"], rank["diff_low"], rank["diff_high"]) == (-16.0, -16.0, 0.0)
    assert rank["p_value"] == pytest.approx(p) and rank["significant"] is False and rank["diff_note"] == ""
    indices = "vsm13_usa: the six VSM13 indices (measurements: no better or worse)"
    pdi = _cell(data, "other", "pdi", table=indices)
    assert (pdi["value"], pdi["diff"], pdi["diff_low"], pdi["diff_high"]) == (-70.0, -70.0, -140.0, 0.0)
    assert pdi["p_value"] == pytest.approx(p) and pdi["significant"] is False and pdi["diff_note"] == ""
    for dim in DIMENSIONS[1:]:
        cell = _cell(data, "other", dim, table=indices)
        assert (cell["diff"], cell["diff_low"], cell["diff_high"], cell["p_value"]) == (0.0, 0.0, 0.0, 1.0), dim
    for dim in DIMENSIONS:
        cell = _cell(data, "retargeted", dim, table=indices)
        assert (cell["diff"], cell["diff_low"], cell["diff_high"], cell["p_value"]) == (0.0, 0.0, 0.0, 1.0), dim
    assert _cell(data, "retargeted", "vsm13_usa", table=rank_table)["diff_note"] == (
        "no paired test: vsm13_usa was scored against another target (or with other constants) in the two rows")
    # an index uses 4 items: of the 16 ways to swap them two give its observed difference or its negative, so
    # p is about 1/8 or more; with these 1,000 rounds at least (1 + 108) / 1001 (PDI's items 7, 2, 20, 23)
    floor = min((1 + int((swap[:, [i - 1 for i in items]] == swap[:, [items[0] - 1]]).all(axis=1).sum())) / 1001
                for items in ((7, 2, 20, 23), (4, 1, 9, 6), (5, 3, 8, 10), (18, 15, 21, 24), (13, 14, 19, 22),
                              (12, 11, 17, 16)))
    assert floor == pytest.approx(109 / 1001)
    from culture_tasks.leaderboard import LEGEND

    assert "a VSM13 index uses 4 items, so its swap test's p-value is at least 0.109 (about 1/8: 2 of the 16 " \
           "ways to swap them give the observed difference or its negative) and never marks it" in LEGEND


@pytest.mark.parametrize("partial_first", [True, False])
def test_a_sampled_run_and_a_complete_run_of_one_model_are_two_rows(tmp_path, partial_first):
    # lm_eval --samples (no --limit: only n-samples says 5 of 40 documents) and a complete run of the same model
    # and settings: each keeps its own number in its own row, whichever is newer; the sampled row is marked and
    # says how many documents it scored
    task = "culturellm_english_x"
    sampled = dict(n_samples={task: {"original": 40, "effective": 5}})
    complete = dict(n_samples={task: {"original": 40, "effective": 40}})
    for score, counts in ((0.9, sampled), (0.5, complete))[::1 if partial_first else -1]:
        _result(tmp_path / "res", "/m/base", {task: score}, **counts)
    data = _json(tmp_path)
    rows = {r["is_partial"]: r for r in data["runs"]}
    assert len(data["runs"]) == 2 and set(rows) == {True, False}
    assert rows[True]["partial"] == "partial run (documents per task: 5 of 40)" and rows[False]["partial"] == ""
    assert rows[True]["limit"] == rows[False]["limit"] == "none" and rows[True]["row_id"] != rows[False]["row_id"]
    cells = {c["row_id"]: c for c in data["cells"] if c["column"] == "english"}
    assert (cells[rows[True]["row_id"]]["value"], cells[rows[True]["row_id"]]["partial"]) == (0.9, True)
    assert (cells[rows[False]["row_id"]]["value"], cells[rows[False]["row_id"]]["best"]) == (0.5, True)


def test_vsm13_constants_named_two_ways_are_one_setting_for_the_paired_test(tmp_path, data_root):
    # base gave PDI's constant as "pdi": 20, other as the manual's "C_pd": 20 (both accepted by the task, the same
    # indices); other answers item 7 with 2 and item 2 with 4: PDI 20 + 35 (2 - 4) = -50 against base's 20, so the
    # difference is -70 in [-140, 0] as without constants (the item-pair changes -70 and 0, drawn twice)
    for model, scores, constants in (("base", {}, {"pdi": 20.0}), ("other", {7: 2.0, 2: 4.0}, {"C_pd": 20.0})):
        _vsm13_hand_result(tmp_path, data_root, model, scores, constants=constants)
    data = _json(tmp_path, "--baseline", "base")
    pdi = _cell(data, "other", "pdi", table="vsm13_usa: the six VSM13 indices (measurements: no better or worse)")
    assert (pdi["value"], pdi["diff"], pdi["diff_low"], pdi["diff_high"], pdi["diff_note"]) == (-50.0, -70.0, -140.0,
                                                                                                 0.0, "")
    l1 = _cell(data, "other", "vsm13_usa", table="vsm13: vsm13_l1 (↓ lower is better)")
    assert l1["diff"] == pytest.approx(l1["value"] - _cell(data, "base", "vsm13_usa",
                                                           table="vsm13: vsm13_l1 (↓ lower is better)")["value"])


@pytest.mark.parametrize("field, value, reason", [
    (3, '{"bogus": 1}', "its VSM13 constants are not valid (constants: unknown name(s) 'bogus'; use the dimensions "
                        "pdi, idv, mas, uai, lto, ivr or the manual's names C_pd, C_ic, C_mf, C_ua, C_ls, C_ir)"),
    (3, '{"C_pd": "x"}', "its VSM13 constants are not valid (constants: C_pd must be a finite number, got 'x')"),
    (3, "[1]", "its VSM13 constants are not valid (constants must be a mapping such as {\"pdi\": 20}, got [1])"),
    (3, "xx", "its VSM13 constants are not valid (not JSON: 'xx')"),
    (2, '{"pdi": "x"}', "its VSM13 target is not valid (pdi must be a number, got 'x')"),
    (2, '{"bogus": 1}', "its VSM13 target is not valid (unknown dimension(s) 'bogus'; the dimensions are pdi, idv, "
                        "mas, uai, lto, ivr)"),
    (2, "[1]", "its VSM13 target is not valid (not a mapping of dimensions to scores: [1])"),
    (2, '{"pdi": null}', "its VSM13 target is not valid (no dimension has a score: {'pdi': None})"),
])
def test_a_vsm13_log_with_invalid_constants_or_target_is_a_one_line_error(field, value, reason, tmp_path, data_root,
                                                                          capsys):
    # a hand-edited samples_vsm13_usa_*.jsonl: the paired test reads the logs back, and their constants and target
    # stopped the board with a ValueError (or AttributeError) traceback
    _vsm13_hand_result(tmp_path, data_root, "base", {})
    _vsm13_hand_result(tmp_path, data_root, "other", {7: 2.0, 2: 4.0})
    log = sorted((tmp_path / "res").glob("samples_vsm13_usa_*.jsonl"))[-1]
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    for row in rows:
        for metric in row:
            if isinstance(row[metric], list) and len(row[metric]) == 7:
                row[metric][field] = value
    log.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main([str(tmp_path / "res"), "--baseline", "base"]) == 2
    assert capsys.readouterr().err == (
        f"culture-leaderboard: {log}: {reason}: a cut or foreign per-sample log; rerun with --log_samples, or remove "
        "the log (the row then shows no interval)\n")


def _sampled_log(preds):
    return [{"f1_macro": [p, g, 2]} for p, g in zip(preds, [0, 1, 0, 1, 0])]


def test_two_samples_of_equal_size_are_two_rows_and_the_same_sample_twice_is_one(tmp_path, capsys):
    # three --samples files of one model and settings, each 5 of the task's 40 documents, with their per-sample
    # logs: seed 0 drew documents 1 3 5 7 9 and scored every one right (macro-F1 1.0); seed 1 drew 0 2 4 6 8 and
    # answered 0 throughout (gold 0 1 0 1 0: F1 of label 0 = 2*3/(2*3+2) = 0.75, of label 1 = 0: macro 0.375);
    # then seed 0's sample again (a rerun, 0.6 with two wrong: label 0 tp 2 fp 1 fn 1 -> 2/3, label 1 tp 1 fp 1
    # fn 1 -> 1/2: macro 7/12). Two samples: two rows, each with its own number, marked partial with its counts
    # and its sample; the rerun replaces the older run of its sample.
    task = "culturellm_english_x"
    counts = {task: {"original": 40, "effective": 5}}
    seed0, seed1 = [1, 3, 5, 7, 9], [0, 2, 4, 6, 8]
    _result(tmp_path / "res", "/m/base", {task: 1.0}, n_samples=counts,
            samples={task: _sampled_log([0, 1, 0, 1, 0])}, doc_ids={task: seed0})
    _result(tmp_path / "res", "/m/base", {task: 0.375}, n_samples=counts,
            samples={task: _sampled_log([0, 0, 0, 0, 0])}, doc_ids={task: seed1})
    data = _json(tmp_path)
    assert len(data["runs"]) == 2 and all(r["is_partial"] for r in data["runs"])
    notes = [r["partial"] for r in data["runs"]]
    assert all(re.fullmatch(r"partial run \(documents per task: 5 of 40; sample [0-9a-f]{6}\)", n) for n in notes)
    assert notes[0] != notes[1] and data["runs"][0]["row_id"] != data["runs"][1]["row_id"]
    values = sorted(c["value"] for c in data["cells"] if c["column"] == "english")
    assert values == [0.375, 1.0]
    capsys.readouterr()
    _result(tmp_path / "res", "/m/base", {task: 7 / 12}, n_samples=counts,
            samples={task: _sampled_log([1, 1, 0, 0, 0])}, doc_ids={task: seed0})
    again = _json(tmp_path)
    assert "repeats culturellm_english_x of row base" in capsys.readouterr().err
    assert [r["partial"] for r in again["runs"]] == notes  # the same two samples
    by_row = {c["row_id"]: c["value"] for c in again["cells"] if c["column"] == "english"}
    assert by_row == {data["runs"][0]["row_id"]: pytest.approx(7 / 12), data["runs"][1]["row_id"]: 0.375}
    md = tmp_path / "board.md"
    assert main([str(tmp_path / "res"), "--format", "md", "--output", str(md)]) == 0
    labels = [line.split(" | ")[0] for line in md.read_text().splitlines() if line.startswith("| base [")]
    assert len(set(labels)) == 2 and all(re.search(r"† partial, sample [0-9a-f]{6}$", x) for x in labels)
    html = tmp_path / "page.html"
    assert main([str(tmp_path / "res"), "--format", "html", "--output", str(html)]) == 0
    shown = re.findall(r'<span class="partial" title="[^"]*">(† partial[^<]*)</span>', html.read_text())
    assert sorted(set(shown)) == sorted(f"† partial, sample {n[-7:-1]}" for n in notes)


def test_files_of_one_sampled_run_fill_one_row(tmp_path):
    # one --samples run split over three lm_eval calls (arabic and korean on 5 of 40 documents each, in parallel,
    # with their logs; WVS USA complete): no task in two files, so one row, partial, holding all three files'
    # numbers; a complete run of the arabic task (other documents) is a row of its own
    counts = {"culturellm_arabic_x": {"original": 40, "effective": 5}}
    _result(tmp_path / "res", "/m/base", {"culturellm_arabic_x": 1.0}, n_samples=counts,
            samples={"culturellm_arabic_x": _sampled_log([0, 1, 0, 1, 0])}, doc_ids={"culturellm_arabic_x": [1, 3, 5, 7, 9]})
    _result(tmp_path / "res", "/m/base", {"culturellm_korean_x": 0.375},
            n_samples={"culturellm_korean_x": {"original": 40, "effective": 5}},
            samples={"culturellm_korean_x": _sampled_log([0, 0, 0, 0, 0])}, doc_ids={"culturellm_korean_x": [2, 4, 6, 8, 10]})
    _result(tmp_path / "res", "/m/base", {}, extra={"wvs_usa": {"wvs_jsd,none": 0.7}},
            hib={"wvs_usa": {"wvs_jsd": True}}, n_samples={"wvs_usa": {"original": 50, "effective": 50}})
    data = _json(tmp_path)
    assert len(data["runs"]) == 1 and data["runs"][0]["is_partial"] and len(data["runs"][0]["files"]) == 3
    assert (_cell(data, "base", "arabic")["value"], _cell(data, "base", "korean")["value"]) == (1.0, 0.375)
    assert _cell(data, "base", "wvs_usa", table="wvs: wvs_jsd (higher is better)")["value"] == 0.7
    _result(tmp_path / "res", "/m/base", {"culturellm_arabic_x": 0.9},
            n_samples={"culturellm_arabic_x": {"original": 40, "effective": 40}})
    data = _json(tmp_path)
    rows = sorted(data["runs"], key=lambda r: len(r["files"]))
    assert [len(r["files"]) for r in rows] == [1, 3] and not rows[0]["is_partial"] and rows[1]["is_partial"]
    by_row = {c["row_id"]: c["value"] for c in data["cells"] if c["column"] == "arabic"}
    assert by_row == {rows[0]["row_id"]: 0.9, rows[1]["row_id"]: 1.0}


def test_samples_of_equal_size_without_logs_share_a_row_and_say_why(tmp_path, capsys):
    # without --log_samples nothing tells which documents were scored: two 5-of-40 files are one row (the newest
    # file's number), and the warning says that two samples of one size cannot be told apart without the logs
    task = "culturellm_english_x"
    counts = {task: {"original": 40, "effective": 5}}
    _result(tmp_path / "res", "/m/base", {task: 1.0}, n_samples=counts)
    _result(tmp_path / "res", "/m/base", {task: 0.375}, n_samples=counts)
    data = _json(tmp_path)
    err = capsys.readouterr().err
    assert len(data["runs"]) == 1 and data["runs"][0]["partial"] == "partial run (documents per task: 5 of 40)"
    assert [c["value"] for c in data["cells"] if c["column"] == "english"] == [0.375]
    assert ("without per-sample logs, two samples of one size (--samples) cannot be told apart: "
            "run lm_eval with --log_samples") in err


def test_a_sampled_log_with_other_counts_than_its_file_is_refused(tmp_path, capsys):
    # the log beside a 5-of-40 file holds 4 documents: it cannot name the file's sample
    task = "culturellm_english_x"
    _result(tmp_path / "res", "/m/base", {task: 1.0}, n_samples={task: {"original": 40, "effective": 5}},
            samples={task: _sampled_log([0, 1, 0, 1])})
    assert main([str(tmp_path / "res"), "--format", "json", "--output", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err
    assert "4 logged documents, but its result file reports 5 (n-samples.culturellm_english_x.effective)" in err
    assert not (tmp_path / "b.json").exists()


def test_an_ambiguous_baseline_lists_each_rows_sample(tmp_path, capsys):
    # --baseline base matches a complete row and two samples of it: the refusal must say which id is which
    task = "culturellm_english_x"
    counts = {task: {"original": 40, "effective": 5}}
    _result(tmp_path / "res", "/m/base", {task: 1.0}, n_samples=counts,
            samples={task: _sampled_log([0, 1, 0, 1, 0])}, doc_ids={task: [1, 3, 5, 7, 9]})
    _result(tmp_path / "res", "/m/base", {task: 0.375}, n_samples=counts,
            samples={task: _sampled_log([0, 0, 0, 0, 0])}, doc_ids={task: [0, 2, 4, 6, 8]})
    _result(tmp_path / "res", "/m/base", {task: 0.5}, n_samples={task: {"original": 40, "effective": 40}})
    runs = _json(tmp_path)["runs"]
    assert main([str(tmp_path / "res"), "--baseline", "base"]) == 2
    err = capsys.readouterr().err
    listing = "; ".join(f"{r['row_id']} = base" + (f" ({r['partial']})" if r["partial"] else "") for r in runs)
    assert f"--baseline 'base' matches 3 rows; give one row id ({listing})" in err
    assert err.count("partial run (documents per task: 5 of 40; sample ") == 2


def test_a_culture_whose_tasks_share_texts_resamples_the_texts(tmp_path):
    # culturellm_spanish_x and _y label the same 20 texts (as DETOXIS's six tasks do) and the model answers
    # them alike: the culture's interval draws texts, each with its document in both tasks, and is as wide as
    # one task's; resampling each task alone (the interval before) treated them as independent, too narrow.
    # A --baseline comparison pairs and resamples whole texts the same way.
    from culture_tasks import stats
    from culture_tasks.classification import f1_macro, f1_macro_weighted

    x, y = "culturellm_spanish_x", "culturellm_spanish_y"
    items = [(i % 2, 0 if i < 10 else i % 2, 2) for i in range(20)]
    base_items = [(i % 2, 0, 2) for i in range(20)]
    rows = lambda its: [{"f1_macro": list(it), "doc": {"text": f" text {i:02d} "}} for i, it in enumerate(its)]
    value, base_value = f1_macro(items), f1_macro(base_items)
    _result(tmp_path / "res/a", "/m/model", {x: value, y: value}, samples={x: rows(items), y: rows(items)})
    _result(tmp_path / "res/b", "/m/base", {x: base_value, y: base_value},
            samples={x: rows(base_items), y: rows(base_items)})
    clusters = lambda its: [(x, f"text {i:02d}", ((x, it), (y, it))) for i, it in enumerate(its)]
    together = stats.bootstrap_ci(stats.ClusteredTaskMean(f1_macro, f1_macro_weighted), clusters(items))
    apart = stats.bootstrap_ci(stats.TaskMean(f1_macro, f1_macro_weighted), [(t, it) for t in (x, y) for it in items])
    assert (apart[1] - apart[0]) < 0.85 * (together[1] - together[0])
    cell = _cell(_json(tmp_path, "--baseline", "base"), "model", "spanish")
    assert cell["value"] == pytest.approx(value)
    assert (cell["ci_low"], cell["ci_high"]) == pytest.approx(together)
    paired = stats.paired_bootstrap(stats.ClusteredTaskMean(f1_macro, f1_macro_weighted), clusters(base_items),
                                    clusters(items))
    assert (cell["diff"], cell["diff_low"], cell["diff_high"], cell["p_value"]) == pytest.approx(
        (paired["diff"], paired["low"], paired["high"], paired["p_value"]))


def test_a_radar_labels_each_profile_by_how_its_items_were_asked():
    from culture_tasks.leaderboard import _variant

    assert _variant({"dataset_kwargs": {"persona": "China", "both_orders": True}}) == "persona prompt, both option orders"
    assert _variant({"dataset_kwargs": {"persona": "", "reversed_options": True}}) == "reversed options"
    assert _variant({"dataset_kwargs": {"persona": ""}}) == ""


def _drop_from_logs(folder, *keys):
    """The per-sample logs under ``folder`` without ``keys`` (an lm-eval that logs no doc_hash)."""
    for log in Path(folder).rglob("samples_*.jsonl"):
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        log.write_text("".join(json.dumps({k: v for k, v in r.items() if k not in keys}) + "\n" for r in rows))


def test_logs_without_doc_hash_pair_by_their_text_or_not_at_all(tmp_path):
    # 30 documents; base wrong on all (macro-F1 0), good right on all (1): +1, p = 1/1001, were they the same
    # documents. Without doc_hash the texts say which documents a doc_id is: other texts are other documents
    task = "culturellm_english_x"
    texts = {"base": "old", "good": "NEW", "same": "old", "blind": None}
    for model, right in (("base", False), ("good", True), ("same", True), ("blind", True)):
        rows = [{"f1_macro": [i % 2, i % 2 if right else 1 - i % 2, 2],
                 **({"doc": {"text": f"{texts[model]} text {i}"}} if texts[model] else {})} for i in range(30)]
        _result(tmp_path / "res" / model, f"/m/{model}", {task: float(right)}, samples={task: rows})
    _drop_from_logs(tmp_path / "res", "doc_hash")
    data = _json(tmp_path, "--baseline", "base")
    good, same, blind = (_cell(data, m, "english") for m in ("good", "same", "blind"))
    assert good["diff"] is None and good["significant"] is None
    assert good["diff_note"] == (f"no paired test: {task}: the runs scored different documents under the same "
                                 "doc_id (30 of 30, first doc_id 0)")
    assert (same["diff"], same["p_value"], same["significant"]) == (1.0, pytest.approx(1 / 1001), True)
    assert blind["diff"] is None and blind["diff_note"].startswith(
        f"no paired test: {task}: a per-sample log holds neither lm-eval's doc_hash nor the document's text "
        "(doc_id 0)")


def test_rows_of_other_task_versions_or_settings_are_neither_paired_nor_ranked(tmp_path):
    # 30 documents; base wrong on all (macro-F1 0), the others right on all (1). "good" ran version 2.0 of the
    # task: another task, so no paired test and no best in its column; "same" ran 1.0, as base: +1, p = 1/1001
    task, gen = "culturellm_english_x", "culturellm_gen_english_x"
    wrong = [{"f1_macro": [i % 2, 1 - i % 2, 2]} for i in range(30)]
    right = [{"f1_macro": [i % 2, i % 2, 2]} for i in range(30)]
    _result(tmp_path / "res/a", "/m/base", {task: 0.0}, samples={task: wrong}, versions={task: 1.0})
    _result(tmp_path / "res/b", "/m/good", {task: 1.0}, samples={task: right}, versions={task: 2.0})
    _result(tmp_path / "res/c", "/m/same", {task: 1.0}, samples={task: right}, versions={task: 1})
    # generation: another data_dir is no other setting (the documents' hashes pair them); other gen_kwargs are
    for model, score, data_dir, kwargs in (("base", 0.0, "/data/a", "temperature=0"), ("good", 1.0, "/data/b", "temperature=0"),
                                           ("hot", 1.0, "/data/a", "temperature=1")):
        _result(tmp_path / "res" / f"gen_{model}", f"/m/{model}", {gen: score}, samples={gen: right if score else wrong},
                metadata={"data_dir": data_dir}, gen_kwargs=kwargs)
    data = _json(tmp_path, "--baseline", "base")
    ids = {r["model"]: r["row_id"] for r in data["runs"]}
    good, same, base = (_cell(data, m, "english") for m in ("good", "same", "base"))
    assert good["diff"] is None and good["significant"] is None and good["diff_note"] == (
        f"no paired test: {task} is version 1.0 in row {ids['/m/base']}, 2.0 in row {ids['/m/good']}; rerun both "
        "with the same tasks")
    assert (same["diff"], same["p_value"], same["significant"]) == (1.0, pytest.approx(1 / 1001), True)
    assert not any(c["best"] for c in (good, same, base))
    generative = "CultureLLM (generative), macro-F1"
    gen_good, hot = (_cell(data, m, "english", generative) for m in ("good", "hot"))
    assert (gen_good["diff"], gen_good["p_value"]) == (1.0, pytest.approx(1 / 1001))
    assert hot["diff"] is None and hot["diff_note"] == (
        f"no paired test: {gen} ran with gen_kwargs=temperature=0 in row {ids['/m/base']}, gen_kwargs=temperature=1 "
        f"in row {ids['/m/hot']}; compare rows run with the same settings")
    out = tmp_path / "board.md"  # the table's note says why its column has no best
    assert main([str(tmp_path / "res"), "--baseline", "base", "--output", str(out)]) == 0
    assert (f"english: no best marked: {task} is version 1.0 in row {ids['/m/base']}, 2.0 in row "
            f"{ids['/m/good']}; rerun both with the same tasks.") in out.read_text()


def test_a_row_without_recorded_settings_does_not_let_rows_of_other_settings_share_a_best(tmp_path):
    # "old" recorded no task configs (no settings to compare); "cold" and "hot" ran the task with other gen_kwargs:
    # each agrees with "old", but not with each other, so no best is marked (hot's 0.9 was marked best over cold's)
    gen = "culturellm_gen_english_x"
    _result(tmp_path / "res/old", "/m/old", {gen: 0.2})
    _result(tmp_path / "res/cold", "/m/cold", {gen: 0.5}, metadata={}, gen_kwargs="temperature=0")
    _result(tmp_path / "res/hot", "/m/hot", {gen: 0.9}, metadata={}, gen_kwargs="temperature=1")
    out = tmp_path / "board.md"
    assert main([str(tmp_path / "res"), "--output", str(out)]) == 0
    data = _json(tmp_path)
    cells = [_cell(data, m, "english", "CultureLLM (generative), macro-F1") for m in ("old", "cold", "hot")]
    assert [(c["value"], c["best"]) for c in cells] == [(0.2, False), (0.5, False), (0.9, False)]
    ids = {r["model"]: r["row_id"] for r in data["runs"]}
    assert (f"english: no best marked: {gen} ran with gen_kwargs=temperature=0 in row {ids['/m/cold']}, "
            f"gen_kwargs=temperature=1 in row {ids['/m/hot']}; compare rows run with the same settings.") \
        in out.read_text()


@pytest.mark.parametrize("other, what", [
    ({"target": [50.0] * 6, "target_source": "made up"}, "made-up target"),
    ({"constants": {"pdi": 20.0}}, "a PDI constant"),
])
def test_vsm13_rows_scored_against_other_targets_or_constants_share_no_best(tmp_path, data_root, other, what):
    # vsm13_usa's losses, margins and ranks measure the indices against the target profile with the constants: "hof"
    # ranked Hofstede's U.S.A. (l1 20), "same" that profile given by hand with a zero constant under the manual's
    # name (l1 30): one measurement, hof is best. "other" (l1 10) was scored with a made-up target or a constant:
    # its 10 is no distance to what hof's 20 is one to, so the column marks no best (other's was marked best)
    hib = {"vsm13_usa": {"vsm13_l1": False}}
    usa = [40.0, 91.0, 62.0, 46.0, 26.0, 68.0]  # Hofstede's U.S.A. row: pdi, idv, mas, uai, lto, ivr
    table = "vsm13: vsm13_l1 (↓ lower is better)"
    rows = (("hof", 20.0, {}), ("same", 30.0, {"target": usa, "target_source": "Hofstede 2015",
                                               "constants": {"C_pd": 0.0}}), ("other", 10.0, other))
    for model, l1, meta in rows[:2]:
        _vsm13_usa_result(tmp_path / "res" / model, f"/m/{model}", {"vsm13_usa": {"vsm13_l1,none": l1}}, data_root,
                          meta, hib=hib)
    data = _json(tmp_path)
    assert [_cell(data, m, "vsm13_usa", table=table)["best"] for m in ("hof", "same")] == [True, False]
    model, l1, meta = rows[2]
    _vsm13_usa_result(tmp_path / "res" / model, f"/m/{model}", {"vsm13_usa": {"vsm13_l1,none": l1}}, data_root, meta,
                      hib=hib)
    data = _json(tmp_path)
    cells = [_cell(data, m, "vsm13_usa", table=table) for m in ("hof", "same", "other")]
    assert [(c["value"], c["best"]) for c in cells] == [(20.0, False), (30.0, False), (10.0, False)], what
    ids = {r["model"]: r["row_id"] for r in data["runs"]}
    out = tmp_path / "board.md"
    assert main([str(tmp_path / "res"), "--output", str(out)]) == 0
    assert (f"vsm13_usa: no best marked: vsm13_usa was scored against another target (or with other constants) in "
            f"row {ids['/m/hof']} and row {ids['/m/other']}; compare rows scored against the same target.") \
        in out.read_text()


def test_complete_rows_over_other_numbers_of_documents_share_no_best(tmp_path):
    # the same task and version, each run complete (effective = original), but over 40 documents in "a" and 30 in
    # "b" (another copy of the data): b's 0.9 is no better score on a's documents, so the column marks no best (b's
    # was marked best); "c", over a's 40, alone with a: a's 0.5 is best over c's 0.4
    task = "culturellm_english_x"
    for model, score, docs in (("a", 0.5, 40), ("c", 0.4, 40)):
        _result(tmp_path / "res" / model, f"/m/{model}", {task: score},
                n_samples={task: {"original": docs, "effective": docs}})
    data = _json(tmp_path)
    assert [(_cell(data, m, "english")["best"], _cell(data, m, "english")["best_note"]) for m in ("a", "c")] == [
        (True, ""), (False, "")]
    _result(tmp_path / "res/b", "/m/b", {task: 0.9}, n_samples={task: {"original": 30, "effective": 30}})
    data = _json(tmp_path)
    cells = [_cell(data, m, "english") for m in ("a", "b", "c")]
    assert [(c["value"], c["best"], c["partial"]) for c in cells] == [(0.5, False, False), (0.9, False, False),
                                                                      (0.4, False, False)]
    ids = {r["model"]: r["row_id"] for r in data["runs"]}
    out = tmp_path / "board.md"
    assert main([str(tmp_path / "res"), "--output", str(out)]) == 0
    why = (f"{task} scored 40 documents in row {ids['/m/a']}, 30 in row {ids['/m/b']}; compare rows run on the same "
           "documents")
    assert f"english: no best marked: {why}." in out.read_text()
    # the CSV and JSON say why beside best: false; a column that ranks says nothing
    assert [c["best_note"] for c in cells] == [f"no best marked: {why}"] * 3
    assert main([str(tmp_path / "res"), "--format", "csv", "--output", str(tmp_path / "board.csv")]) == 0
    notes = {(r["row_id"], r["column"]): r["best_note"] for r in csv.DictReader((tmp_path / "board.csv").open())}
    assert notes[(ids["/m/b"], "english")] == f"no best marked: {why}"


def test_a_cell_whose_interval_and_test_disagree_says_the_mark_follows_the_test(tmp_path, capsys):
    # 30 documents, labels alternate; base wrong on the first 5 (3 of class 0, 2 of class 1): F1 class 0 =
    # 2·12/(2·12 + 2 + 3) = 24/29, class 1 = 26/31, macro 0.83315; good right on all: +0.16685. A resample
    # misses all 5 with chance (25/30)^30 = 0.4 %, so the 95 % interval excludes 0, but 5 swapped pairs give
    # p about 2/2^5 = 1/16: not significant, and the cell says which one the mark follows
    from culture_tasks.classification import f1_macro
    from culture_tasks.leaderboard import Cell

    task = "culturellm_english_x"
    base = [{"f1_macro": [i % 2, i % 2 if i >= 5 else 1 - i % 2, 2]} for i in range(30)]
    good = [{"f1_macro": [i % 2, i % 2, 2]} for i in range(30)]
    _result(tmp_path / "res/a", "/m/base", {task: f1_macro([tuple(r["f1_macro"]) for r in base])}, samples={task: base})
    _result(tmp_path / "res/b", "/m/good", {task: 1.0}, samples={task: good})
    cell = _cell(_json(tmp_path, "--baseline", "base"), "good", "english")
    assert cell["diff"] == pytest.approx(1 - (24 / 29 + 26 / 31) / 2) and cell["diff_low"] > 0
    assert cell["p_value"] == pytest.approx(1 / 16, abs=0.02) and cell["significant"] is False
    why = "interval excludes 0 but the test does not reject: few differing documents; the mark follows the test"
    assert cell["diff_note"] == why
    assert main([str(tmp_path / "res"), "--baseline", "base"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("| good"))
    assert f"(not significant; {why})" in line and "▲" not in line
    # Holm: raw p 0.03 under 0.05, adjusted 0.09 over it; and a test that rejects where the interval covers 0
    holm = Cell(0.5, diff={"diff": 0.1, "low": 0.01, "high": 0.2, "p_value": 0.03}, p_adjusted=0.09)
    assert holm.disagreement() == ("interval excludes 0 but the Holm-adjusted test does not reject: the adjustment "
                                   "for the row's other tests; the mark follows the test")
    covers = Cell(0.5, diff={"diff": 0.1, "low": -0.01, "high": 0.2, "p_value": 0.01})
    assert covers.disagreement() == "the test rejects but the interval covers 0; the mark follows the test"
    assert Cell(0.5, diff={"diff": 0.1, "low": 0.01, "high": 0.2, "p_value": 0.01}).disagreement() == ""


def test_a_result_of_another_version_than_the_installed_task_is_named_and_marked(tmp_path, capsys):
    # culturellm_arabic_spam is version 1.1 in the tasks folder (the multiple-choice template's metadata)
    task = "culturellm_arabic_spam"
    assert installed_version(task) == 1.1
    _result(tmp_path / "res/a", "/m/base", {task: 0.4}, versions={task: 1.0})
    _result(tmp_path / "res/b", "/m/good", {task: 0.9}, versions={task: "1.1"})  # 1.1 however it is written
    data = _json(tmp_path)
    old = next((tmp_path / "res/a").glob("results_*.json"))
    assert capsys.readouterr().err == (f"culture-leaderboard: {old}: {task} is version 1.0 there, 1.1 installed; its "
                                       "numbers are of the older task definition: rerun it with the current tasks\n")
    versions = {r["model"]: r["task_versions"] for r in data["runs"]}
    assert versions == {"/m/base": f"1.0; not the installed tasks: {task} 1.0 (installed 1.1)", "/m/good": "1.1"}
    assert not any(c["best"] for c in data["cells"] if c["column"] == "arabic")  # two versions: no best


@pytest.mark.parametrize("edit, key, got", [
    (lambda x: x["results"].__setitem__("culturellm_english_x", 0.5), "results.culturellm_english_x", "0.5"),
    (lambda x: x["results"]["culturellm_english_y"].__setitem__("f1_macro,none", "0.9"),
     "results.culturellm_english_y.f1_macro,none", "'0.9'"),
    (lambda x: x["results"]["culturellm_english_y"].__setitem__("acc,none", None), "results.culturellm_english_y.acc,none",
     "None"),
    (lambda x: x.__setitem__("n-shot", {"culturellm_english_x": "five"}), "n-shot.culturellm_english_x", "'five'"),
    (lambda x: x.__setitem__("higher_is_better", ["f1_macro"]), "higher_is_better", "['f1_macro']"),
    (lambda x: x.__setitem__("higher_is_better", {"culturellm_english_x": {"f1_macro": "yes"}}),
     "higher_is_better.culturellm_english_x", "{'f1_macro': 'yes'}"),
    (lambda x: x.__setitem__("versions", ["1.0"]), "versions", "['1.0']"),
    (lambda x: x.__setitem__("group_subtasks", ["culturellm_english_x"]), "group_subtasks", "['culturellm_english_x']"),
    (lambda x: x.__setitem__("group_subtasks", {"culturellm_english": "culturellm_english_x"}),
     "group_subtasks.culturellm_english", "'culturellm_english_x'"),
    (lambda x: x.__setitem__("configs", {"culturellm_english_x": {"metadata": ["data_dir"]}}),
     "configs.culturellm_english_x", "{'metadata': ['data_dir']}"),
    (lambda x: x["config"].__setitem__("model_args", ["pretrained=/m/base"]), "config.model_args",
     "['pretrained=/m/base']"),
])
def test_a_malformed_result_file_is_a_one_line_error_naming_the_key(tmp_path, capsys, edit, key, got):
    # each crashed with a traceback, or (a metric value that is a string) dropped the task without a word
    _result(tmp_path / "res/a", "/m/base", {"culturellm_english_x": 0.4, "culturellm_english_y": 0.9})
    path = next((tmp_path / "res/a").glob("results_*.json"))
    data = json.loads(path.read_text())
    data["results"]["culturellm_english_y"]["f1_macro_stderr,none"] = "N/A"  # lm-eval's stderr it did not compute
    path.write_text(json.dumps(data))
    assert main([str(tmp_path / "res"), "--format", "json"]) == 0
    capsys.readouterr()
    edit(data)
    path.write_text(json.dumps(data))
    assert main([str(tmp_path / "res"), "--format", "json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"culture-leaderboard: {path}: `{key}` must be ") and err.endswith(f"; got {got}\n")
    assert err.count("\n") == 1


def test_a_row_merging_files_of_other_lm_eval_or_transformers_versions_says_so(tmp_path, capsys):
    # one model's two tasks, run apart under lm-eval 0.4.13 / transformers 5.24.0 and 0.4.2 / 4.40.0: one row,
    # both versions in its provenance, and a line per library naming the files
    _result(tmp_path / "res/a", "/m/base", {"culturellm_english_x": 0.4})
    _result(tmp_path / "res/b", "/m/base", {"culturellm_english_y": 0.6})
    current, older = (next((tmp_path / "res" / f).glob("results_*.json")) for f in "ab")
    data = json.loads(older.read_text())
    data.update(lm_eval_version="0.4.2", transformers_version="4.40.0")
    older.write_text(json.dumps(data))
    board = _json(tmp_path)
    (run,) = board["runs"]
    assert (run["lm_eval_version"], run["transformers_version"], len(run["files"])) == ("0.4.13 / 0.4.2",
                                                                                        "5.24.0 / 4.40.0", 2)
    assert _cell(board, "base", "english")["value"] == 0.5
    label = f"row base [{run['row_id']}] merges result files of"
    assert capsys.readouterr().err.splitlines() == [
        f"culture-leaderboard: {label} lm-eval 0.4.13 ({current}) and 0.4.2 ({older}); a release may score a task "
        "otherwise: rerun them under one lm-eval where their numbers must agree",
        f"culture-leaderboard: {label} transformers 4.40.0 ({older}) and 5.24.0 ({current}); a release may score a task "
        "otherwise: rerun them under one transformers where their numbers must agree"]


def test_half_precision_runs_at_other_resolved_auto_batch_sizes_are_other_rows(tmp_path):
    # --batch_size auto resolved to 64 in one bfloat16 run and to 8 in another: their scores move with it, so two
    # rows, each naming its sizes; a third file at 64 joins its row. In float32 the sizes are provenance only
    half = {"model_dtype": "torch.bfloat16", "batch_size": "auto", "device": "cuda"}
    for name, sizes, task in (("a", [64], "culturellm_english_x"), ("b", [8], "culturellm_english_y"),
                              ("c", [64], "culturellm_english_y")):
        _result(tmp_path / "res" / name, "/m/half", {task: 0.5}, config={**half, "batch_sizes": sizes})
    for name, sizes in (("d", [64]), ("e", [8])):
        _result(tmp_path / "res" / name, "/m/full", {"culturellm_english_x": 0.5},
                config={"batch_size": "auto", "device": "cuda", "batch_sizes": sizes})
    for name, sizes in (("f", []), ("g", None)):  # a fixed size: lm-eval's [] and a file without the field, one row
        _result(tmp_path / "res" / name, "/m/fixed", {f"culturellm_english_{name}": 0.5},
                config={**half, "batch_size": 16, **({"batch_sizes": sizes} if sizes is not None else {})})
    data = _json(tmp_path)
    rows = sorted((r["model"], r["batch_size"], r["batch_sizes"], len(r["files"])) for r in data["runs"])
    assert rows == [("/m/fixed", "16", "fixed / ?", 2), ("/m/full", "auto", "64 / 8", 2),
                    ("/m/half", "auto", "64", 2), ("/m/half", "auto", "8", 1)]


def test_a_task_whose_file_reports_no_interval_takes_it_from_its_per_sample_log(tmp_path):
    # one task, 30 documents, wrong on the first 5; its file has no f1_macro_ci_*, its log is beside it: the
    # interval is the bootstrap of its macro-F1 over the logged documents, what the task's companion metrics give
    from culture_tasks.classification import f1_macro, f1_macro_ci_high, f1_macro_ci_low

    task = "culturellm_english_x"
    items = [(i % 2, i % 2 if i >= 5 else 1 - i % 2, 2) for i in range(30)]
    _result(tmp_path / "res/a", "/m/logged", {task: f1_macro(items)}, samples={task: [{"f1_macro": list(x)} for x in items]})
    _result(tmp_path / "res/b", "/m/bare", {task: f1_macro(items)})
    data = _json(tmp_path)
    expected = (f1_macro_ci_low(items), f1_macro_ci_high(items))
    assert expected[0] < (24 / 29 + 26 / 31) / 2 < expected[1]
    for column in ("english", "overall"):
        cell = _cell(data, "logged", column)
        assert (cell["ci_low"], cell["ci_high"], cell["interval_note"]) == (*expected, "")
        bare = _cell(data, "bare", column)
        assert bare["ci_low"] is None and bare["interval_note"] == "no interval: the result file reports none for this metric"


def test_the_same_documents_scored_against_other_answers_are_not_paired(tmp_path):
    # one doc_hash per doc_id in both rows, but lm-eval's target_hash of doc 3 differs (a relabelled document):
    # the two rows' macro-F1 are over other gold labels, so they are not paired
    task = "culturellm_english_x"
    for model, right, relabelled in (("base", False, False), ("good", True, True)):
        rows = [{"f1_macro": [i % 2, i % 2 if right else 1 - i % 2, 2],
                 "target_hash": f"t{i}" + ("x" if relabelled and i == 3 else "")} for i in range(30)]
        _result(tmp_path / "res" / model, f"/m/{model}", {task: float(right)}, samples={task: rows})
    good = _cell(_json(tmp_path, "--baseline", "base"), "good", "english")
    assert good["diff"] is None and good["diff_note"] == (
        f"no paired test: {task}: the runs scored the same documents against other answers (lm-eval's target_hash "
        "differs on 1 of 30, first doc_id 3)")


def test_plain_hf_rows_use_the_fingerprints_their_tasks_recorded(tmp_path, capsys):
    """lm-eval's hf records no local content, but the tasks record the model and adapter folders' fingerprints
    (loaded_fingerprints in their metadata): a rewritten adapter is named exactly, one only touched is not, and two
    runs of other content under one path are two rows."""
    from culture_tasks.fingerprints import loaded_fingerprint

    model, adapter = tmp_path / "model", tmp_path / "adapter"
    for folder, text in ((model, "w"), (adapter, "LORA")):
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps({"peft_type": text}))
    recorded = {"pretrained": loaded_fingerprint(model), "peft": loaded_fingerprint(adapter)}
    _result(tmp_path / "res" / "one", str(model), {"culturellm_english_x": 0.5}, peft=str(adapter),
            metadata={"loaded_fingerprints": recorded})
    later = 1767225600.0 + 2 * 86400
    os.utime(adapter / "adapter_config.json", (later, later))  # the same bytes, a later date: no change
    [row] = _json(tmp_path)["runs"]
    assert row["adapter_kind"] == "LoRA" and f"peft_sha={recorded['peft']}" in row["model_revision"]
    assert f"model_sha={recorded['pretrained']}" in row["model_revision"]
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 16}))
    [row] = _json(tmp_path)["runs"]
    assert row["adapter_kind"] == ("LoRA; changed since: adapter files differ from the fingerprint its run recorded "
                                   f"({recorded['peft'][:24]}...)")
    # the rewritten adapter evaluated again: another row, not one row whose newest file wins
    _result(tmp_path / "res" / "two", str(model), {"culturellm_english_x": 0.7}, peft=str(adapter),
            metadata={"loaded_fingerprints": {**recorded, "peft": loaded_fingerprint(adapter)}})
    runs = _json(tmp_path)["runs"]
    assert len(runs) == 2 and sorted(r["adapter_kind"] for r in runs)[0] == "LoRA"
    capsys.readouterr()


def test_runs_with_other_tokenizer_content_under_one_path_are_two_rows(tmp_path):
    """``tokenizer=`` names the folder lm-eval's hf loads the tokenizer from; the tasks record its fingerprint: a
    tokenizer rewritten under the same path and evaluated again is another row, not one whose newest file wins."""
    for name, digest, score in (("one", "sha256-full:" + "a" * 64, 0.5), ("two", "sha256-full:" + "b" * 64, 0.7)):
        _result(tmp_path / "res" / name, "/m/base", {"culturellm_english_x": score}, model_args={"tokenizer": "/t"},
                metadata={"loaded_fingerprints": {"tokenizer": digest}})
    runs = _json(tmp_path)["runs"]
    assert sorted(r["model_revision"] for r in runs) == [f"tokenizer_sha=sha256-full:{c * 64}" for c in "ab"]


def test_a_group_mean_over_one_question_says_why_it_has_no_interval(tmp_path, capsys):
    # lm_eval --tasks wvs --limit 1: both countries ask question 27 once; the group's mean 0.5 resamples its one
    # question (with both countries) to itself, so it has no interval, and its cell says why (it said only
    # "(no interval)")
    one = [{"wvs_jsd": 0.5, "doc": {"q_id": "27"}}]
    _result(tmp_path / "res", "/m/one", {}, extra={
        "wvs": {"wvs_jsd,none": 0.5}, "wvs_usa": {"wvs_jsd,none": 0.5}, "wvs_china": {"wvs_jsd,none": 0.5}},
        samples={"wvs_usa": one, "wvs_china": one}, groups={"wvs": ["wvs_usa", "wvs_china"]},
        hib={"wvs": {"wvs_jsd": True}}, limit=1,
        n_samples={t: {"original": 40, "effective": 1} for t in ("wvs_usa", "wvs_china")})
    why = "no interval: 1 question in the per-sample logs, and a resample of one is itself"
    data = _json(tmp_path)
    group = _cell(data, "one", "wvs", table="wvs: wvs_jsd (higher is better)")
    assert (group["value"], group["ci_low"], group["ci_high"], group["interval_note"]) == (0.5, None, None, why)
    # each country's own log of one document: it said "its per-sample log's bootstrap is not a number"
    usa = _cell(data, "one", "wvs_usa", table="wvs: wvs_jsd (higher is better)")
    assert usa["interval_note"] == "no interval: 1 document in the per-sample logs, and a resample of one is itself"
    assert main([str(tmp_path / "res")]) == 0
    assert f"| 0.5000 ({why}) |" in capsys.readouterr().out


def test_a_group_mean_over_one_document_per_task_has_no_interval(tmp_path):
    # --limit 1, the countries' first documents other questions: each task's one document is drawn again in every
    # resample, so the group's mean 0.5 had the interval [0.5, 0.5], where each task alone has none
    _result(tmp_path / "res", "/m/one", {}, extra={
        "wvs": {"wvs_jsd,none": 0.5}, "wvs_usa": {"wvs_jsd,none": 0.4}, "wvs_china": {"wvs_jsd,none": 0.6}},
        samples={"wvs_usa": [{"wvs_jsd": 0.4, "doc": {"q_id": "27"}}],
                 "wvs_china": [{"wvs_jsd": 0.6, "doc": {"q_id": "28"}}]},
        groups={"wvs": ["wvs_usa", "wvs_china"]}, hib={"wvs": {"wvs_jsd": True}}, limit=1,
        n_samples={t: {"original": 40, "effective": 1} for t in ("wvs_usa", "wvs_china")})
    group = _cell(_json(tmp_path), "one", "wvs", table="wvs: wvs_jsd (higher is better)")
    assert (group["value"], group["ci_low"], group["ci_high"], group["interval_note"]) == (
        0.5, None, None, "no interval: 1 document per task in the per-sample logs, and a resample of one is itself")


def test_every_figure_names_a_partial_row_in_words(tmp_path, data_root):
    # a plot is also a PNG of its own (<report>_plots/), without the page's legend: a --limit row was marked there
    # by a bare † in the heatmap's row, the radar's and the bars' legends
    from culture_tasks import leaderboard, plots

    extra = {"wvs_usa": {"alias": "wvs_usa", "wvs_jsd_social_values,none": 0.7,
                         "wvs_jsd_social_values_ci_low,none": 0.6, "wvs_jsd_social_values_ci_high,none": 0.8},
             "vsm13_usa": {"alias": "vsm13_usa", **{f"{d},none": 10.0 for d in ("pdi", "idv", "mas", "uai", "lto", "ivr")}}}
    _result(tmp_path / "res", "/m/lim", {"culturellm_english_x": 0.5}, extra=extra, limit=5,
            n_samples={t: {"original": 40, "effective": 5} for t in ("culturellm_english_x", "wvs_usa", "vsm13_usa")})
    path = next((tmp_path / "res").glob("results_*.json"))
    data = json.loads(path.read_text())
    data["configs"] = {"vsm13_usa": {"dataset_kwargs": {"vsm13_country": "USA"}, "output_type": "multiple_choice",
                                     "metadata": {"version": 1.0, "data_dir": str(data_root)}}}
    path.write_text(json.dumps(data))
    runs = leaderboard.load_runs([path])
    drawn = leaderboard.figures(runs, leaderboard.build_tables(runs))
    row = f"lim [{runs[0].row_id}] † partial"
    labels = {name: ([t.get_text() for t in fig.axes[0].get_yticklabels()] if name == "culturellm_heatmap" else
                     [t.get_text() for t in fig.axes[0].get_legend().get_texts()]) for name, _, fig in drawn}
    # (the file holds no interval for the indices: the radar says that too)
    assert labels == {"culturellm_heatmap": [row], "vsm13_radar_usa": [f"{row} (no interval)", "U.S.A. (Hofstede)"],
                      "wvs_topics_wvs_usa": [row]}
    for _, _, fig in drawn:
        plots.pyplot().close(fig)
