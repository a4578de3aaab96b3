"""The benchmarks' own bookkeeping: the peak a % of peak is taken against, the tokens a generation counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.common import half_precision_peak


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989.0),  # SXM
    ("NVIDIA H200", 989.0),
    ("NVIDIA A100-SXM4-80GB", 312.0),
    ("NVIDIA A100-PCIE-40GB", 312.0),  # the A100's tensor-core peak is the same on PCIe
    ("NVIDIA H100 PCIe", None),  # 756 dense bf16, not the SXM part's 989
    ("NVIDIA H100 NVL", None),  # 835
    ("NVIDIA H200 NVL", None),
    ("NVIDIA L40S", None),
])
def test_the_peak_is_known_only_for_the_parts_it_was_taken_from(monkeypatch, name, peak):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert half_precision_peak("cuda", "bfloat16") == peak
    assert half_precision_peak("cuda", "float32") is None
    assert half_precision_peak("cpu", "bfloat16") is None


def test_gpu_checks_overhead_builds_its_small_model_from_the_tokenizer_it_is_given(data_root, tmp_path):
    """The overhead step times a model built from TOK's own config and tokenizer; another TOK must not reuse
    the first one's model (it timed the first tokenizer under the second's run)."""
    import json
    import os
    import re
    import subprocess

    from benchmarks.small_model import small_model
    from tests.conftest import REPO
    from tests.tiny_model import build_tiny_model

    tok48 = build_tiny_model(tmp_path / "tok48", hidden_size=48)
    out = tmp_path / "out"
    env = dict(os.environ, STEPS="overhead", MODEL=str(tok48), TOK=str(tok48), DEVICE="cpu", DTYPE="float32",
               SMOKE="1", OUT=str(out), TMPDIR=str(tmp_path), CULTURE_DATA_DIR=str(data_root))
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_checks.sh")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = (out / "summary.txt").read_text()
    assert "== overhead: rc 0" in summary, summary
    used = Path(re.search(r"bench_suite_overhead\.py --model (\S+)", summary).group(1))
    assert used == small_model(tok48, tmp_path) and json.loads((used / "config.json").read_text())["hidden_size"] == 48
    # the same keying in-process: another tokenizer folder gets its own model, the same one is reused
    tok40 = build_tiny_model(tmp_path / "tok40", hidden_size=40)
    other = small_model(tok40, tmp_path)
    assert other != used and json.loads((other / "config.json").read_text())["hidden_size"] == 40
    assert small_model(tok40, tmp_path) == other
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".gpu_checks_small_")]  # nothing half-built left


def test_small_model_names_a_missing_tokenizer_folder_in_one_line(tmp_path, capsys):
    from benchmarks.small_model import main

    assert main([str(tmp_path / "missing"), str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"small_model: {tmp_path / 'missing'}: no such folder; give the folder of a "
                                       "local tokenizer\n")
    assert list(tmp_path.iterdir()) == []  # nothing built, nothing left


def test_quickstart_intervals_answers_help_and_a_wrong_folder_in_one_line(tmp_path, capsys):
    # README's `python -m benchmarks.quickstart_intervals <run folder>`: --help was read as a folder and a
    # missing or empty folder ended in a traceback from the leaderboard's file search
    from benchmarks.quickstart_intervals import main

    assert main(["--help"]) == 0
    assert "python -m benchmarks.quickstart_intervals runs/quickstart/<time>" in capsys.readouterr().out
    assert main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err == f"quickstart_intervals: {tmp_path / 'missing'}: no such file or folder\n"
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"quickstart_intervals: {tmp_path}: no lm-eval result file") and err.count("\n") == 1


def test_quickstart_intervals_prints_why_a_culture_has_no_interval(tmp_path, monkeypatch, capsys):
    # a culture with a task under MIN_DOCS documents has no interval: the table says why instead of stopping
    # with "run lm_eval with --log_samples" (which the run had done)
    from benchmarks import quickstart_intervals

    note = "no interval: 2 documents in a task; an interval of f1_macro needs 20 in each"
    rows = {"arabic": (0.5, None, None, note), "chinese": (0.4, 0.3, 0.55, "")}
    monkeypatch.setattr(quickstart_intervals, "culture_cells", lambda folder: ("run r000000: pretrained=/m", rows))
    assert quickstart_intervals.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"| arabic | 0.500 | {note} | – |" in out and "| chinese | 0.400 | [0.300, 0.550] | 0.250 |" in out
    assert "width: median 0.250, range 0.250-0.250 (1 of 2 cultures have an interval)" in out
    rows["chinese"] = (0.4, None, None, "no interval: no per-sample logs (run lm_eval with --log_samples)")
    with pytest.raises(SystemExit, match="run lm_eval with --log_samples"):
        quickstart_intervals.main([str(tmp_path)])


def test_quickstart_intervals_prints_a_culture_whose_macro_f1_is_not_a_number(tmp_path, capsys):
    # a culture whose task is NaN (a document without finite scores) has no value: its line says so, as the
    # report's cell does, beside the other cultures (it was a TypeError formatting the missing value)
    from benchmarks import quickstart_intervals
    from culture_tasks.leaderboard import NOT_A_NUMBER, find_result_files, load_runs
    from tests.test_leaderboard import _result

    right = [{"f1_macro": [0, 0, 1]}] * 20
    tasks = ("culturellm_arabic_x", "culturellm_english_y")
    _result(tmp_path / "res", "/m/a", {tasks[0]: 1.0, tasks[1]: float("nan")}, ci={tasks[0]: (1.0, 1.0)},
            samples={tasks[0]: right, tasks[1]: right[1:] + [{"f1_macro": [0, None, 1]}]},
            n_samples=dict.fromkeys(tasks, {"original": 40, "effective": 20}))
    assert quickstart_intervals.main([str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out
    # the numbers are of a sample (20 of 40 documents): the first line names the run and says so, as the report does
    (run,) = load_runs(find_result_files([str(tmp_path / "res")]))
    assert out.splitlines()[:2] == [f"run {run.row_id}: dtype=float32,pretrained=/m/a; † partial run (documents per "
                                    f"task: 20 of 40; sample {run.sample})", ""]
    # arabic: a one-class task right on all 20 documents, 1.0 in every resample: [1, 1] in its result file
    assert "| arabic | 1.000 | [1.000, 1.000] | 0.000 |" in out
    assert f"| english | – | {NOT_A_NUMBER} | – |" in out
    assert "width: median 0.000, range 0.000-0.000 (1 of 2 cultures have an interval)" in out


def test_quickstart_intervals_refuses_a_folder_of_several_runs_naming_them(tmp_path, capsys):
    # the widths are one run's: a folder mixing two models stopped with a bare "expected ... one run" (exit 1)
    from benchmarks import quickstart_intervals
    from culture_tasks.leaderboard import find_result_files, load_runs
    from tests.test_leaderboard import _result

    _result(tmp_path / "res/a", "/m/a", {"culturellm_arabic_x": 0.5})
    _result(tmp_path / "res/b", "/m/b", {"culturellm_arabic_x": 0.6}, limit=5)
    a, b = sorted(load_runs(find_result_files([str(tmp_path / "res")])), key=lambda r: r.label)
    assert quickstart_intervals.main([str(tmp_path / "res")]) == 2
    assert capsys.readouterr().err == (
        f"quickstart_intervals: {tmp_path / 'res'}: CultureLLM results of 2 runs (run {a.row_id}: "
        f"dtype=float32,pretrained=/m/a | run {b.row_id}: dtype=float32,pretrained=/m/b; † partial run (--limit 5)); "
        "give the folder of one\n")  # in the report's order: the complete run first


def test_interval_calibration_counts_coverage_by_hand():
    # the figures behind classification.MIN_DOCS: coverage is over the intervals there are, "shown" over those the
    # rule lets through; a task with every document right has the complete value 1 in every sample
    from benchmarks import interval_calibration as ic

    tally = ic.Tally()
    tally.add(0.5, 0.4, 0.6, 0.55, shown=True)   # held, shown
    tally.add(0.5, 0.4, 0.6, 0.70, shown=False)  # missed, not shown
    tally.add(0.3, float("nan"), float("nan"), 0.3, shown=True)  # no interval: counted as a case only
    # errors -0.05, -0.2, 0: mean -0.0833, population sd sqrt((0.0333² + 0.1167² + 0.0833²) / 3) = 0.0850
    assert tally.line("x") == "| x | 3 | 0.500 | -0.083 | 0.085 | 0.200 | 1 | 1.000 |"
    suite = {"t_a": ("c", ["p", "q"] * 15), "t_b": ("c", ["p", "q", "r"] * 10)}
    model = {t: [(i % len(set(labels)),) * 2 + (len(set(labels)),) for i in range(len(labels))]
             for t, (_, labels) in suite.items()}
    tallies = ic.per_culture(suite, [model], reps=2, sizes=[10, 40])
    assert tallies[10, "c"].count == 2 and tallies[10, "c"].shown == 0  # 5 documents a task: none shown
    assert tallies[40, "c"].shown == 2 and tallies[40, "c"].hits == 2   # 20 each: shown, and [1, 1] holds 1
    assert ic.per_task(suite, [model], reps=1, sizes=[20])[20].hits == 2


def test_train_real_run_reports_an_adapter_whose_training_time_is_unknown(monkeypatch, tmp_path, capsys):
    # a LoRA run resumed from a checkpoint stored without the training time records seconds as null in
    # training.json; the run goes on to the next adapter and says the time is unknown instead of a TypeError
    from benchmarks import train_real_run

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "english.jsonl").write_text("")
    (tmp_path / "q.jsonl").write_text("{}\n")
    trained = []

    def fake_train(cfg):
        trained.append(cfg["seed"])
        return {"examples": 8, "steps": 2, "train_loss": 1.25, "seconds": None if cfg["seed"] == 0 else 12.4}

    monkeypatch.setattr(train_real_run, "LoraTrainConfig", lambda **kw: kw)
    monkeypatch.setattr(train_real_run, "train", fake_train)
    train_real_run.main(["--model", "m", "--questions", str(tmp_path / "q.jsonl"), "--out", str(tmp_path),
                         "--cultures", "english", "--seeds", "0", "1", "--stage", "train"])
    assert trained == [0, 1]
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["trained english-s0: 8 examples, 2 steps, loss 1.250, training time unknown",
                     "trained english-s1: 8 examples, 2 steps, loss 1.250, 12 s"]


def test_train_real_run_continues_only_with_the_settings_it_was_started_with(monkeypatch, tmp_path):
    # every step is skipped when its output exists: with other settings the old adapters and result files
    # were reported as if made with the new ones
    from benchmarks import train_real_run
    from culture_tasks.outputs import LOCK_NAME, OutputLock

    out, questions = tmp_path / "run", tmp_path / "q.jsonl"
    questions.write_text("{}\n")
    monkeypatch.setattr(train_real_run, "run", lambda args, out: None)
    base = ["--model", "m", "--questions", str(questions), "--out", str(out), "--stage", "train"]
    train_real_run.main([*base, "--epochs", "2"])
    saved = json.loads((out / "run_settings.json").read_text())
    assert (saved["epochs"], saved["limit"], saved["questions_sha256"][:7]) == (2.0, 300, "sha256:")
    train_real_run.main([*base, "--epochs", "2", "--seeds", "5", "--cultures", "german"])  # more of the same run
    with pytest.raises(SystemExit) as err:
        train_real_run.main([*base, "--epochs", "3", "--limit", "50"])
    assert str(err.value) == (f"{out}/run_settings.json: the run in {out} was made with other settings (epochs: "
                              "saved 2.0, given 3.0; limit: saved 300, given 50); continue it with those, or choose "
                              "another --out")
    questions.write_text("{}\n{}\n")  # other questions under the same name
    with pytest.raises(SystemExit, match=r"questions_sha256: saved 'sha256:"):
        train_real_run.main([*base, "--epochs", "2"])
    with pytest.raises(SystemExit, match=r"--questions .*missing.jsonl: no such file"):
        train_real_run.main([*base[:2], "--questions", str(tmp_path / "missing.jsonl"), *base[4:]])
    questions.write_text("{}\n")
    with OutputLock.for_folder(out):  # a second run into the same folder
        with pytest.raises(SystemExit, match="is in use by another run"):
            train_real_run.main([*base, "--epochs", "2"])
    assert not (out / LOCK_NAME).exists()


def test_a_restarted_half_precision_run_scores_with_the_stored_batch_size_and_device(monkeypatch, tmp_path, caplog):
    """bfloat16 scores move with the batch size and the device: a restart at --eval-batch-size 32 or on
    --device cpu scored the remaining adapters otherwise than the stored base. In float32 they may differ."""
    from benchmarks import train_real_run

    questions = tmp_path / "q.jsonl"
    questions.write_text("{}\n")
    monkeypatch.setattr(train_real_run, "run", lambda args, out: None)
    base = ["--model", "m", "--questions", str(questions), "--stage", "eval"]
    half = [*base, "--out", str(tmp_path / "half")]
    train_real_run.main(half)  # bfloat16, batch 64, cuda by default
    saved = json.loads((tmp_path / "half" / "run_settings.json").read_text())
    assert (saved["dtype"], saved["eval_batch_size"], saved["eval_device"]) == ("bfloat16", 64, "cuda")
    assert saved["eval_kernels"]["torch"] == torch.__version__
    with pytest.raises(SystemExit, match=r"other settings \(eval_batch_size: saved 64, given 32\)"):
        train_real_run.main([*half, "--eval-batch-size", "32"])
    with pytest.raises(SystemExit, match=r"other settings \(eval_device: saved 'cuda', given 'cpu'\)"):
        train_real_run.main([*half, "--device", "cpu"])
    full = [*base, "--out", str(tmp_path / "full"), "--dtype", "float32"]
    train_real_run.main(full)
    assert "eval_batch_size" not in json.loads((tmp_path / "full" / "run_settings.json").read_text())
    train_real_run.main([*full, "--eval-batch-size", "32", "--device", "cpu"])
    # a run stored before these were settings continues, unchecked on them, with a warning
    stored = tmp_path / "half" / "run_settings.json"
    stored.write_text(json.dumps({k: v for k, v in saved.items() if not k.startswith("eval_")}))
    train_real_run.main([*half, "--eval-batch-size", "32"])
    assert "stored without eval_batch_size, eval_device, eval_kernels" in caplog.text


def _fake_simple_evaluate(calls):
    """lm_eval.simple_evaluate as train_real_run calls it: one document per task, logged."""
    def evaluate(**kw):
        calls.append(kw)
        sample = {"doc_id": 0, "doc": {"text": "a text"}, "target": 1, "arguments": [("context", " A")],
                  "resps": [[(-0.5, False)]], "filtered_resps": [(-0.5, False)], "filter": "none",
                  "doc_hash": "h0", "f1_macro": [1, 1, 2, 4]}
        return {"results": {t: {"alias": t, "f1_macro,none": 1.0} for t in kw["tasks"]},
                "n-samples": {t: {"original": 400, "effective": 1} for t in kw["tasks"]},
                "config": {"model": "hf", "model_args": kw["model_args"], "limit": kw["limit"],
                           "batch_size": kw["batch_size"], "device": kw["device"]},
                "samples": {t: [dict(sample)] for t in kw["tasks"]}}
    return evaluate


def _evaluate_base(monkeypatch, tmp_path, calls):
    """train_real_run.evaluate of the base model on a CultureLLM task (--limit 300) and a WVS task."""
    import argparse

    import lm_eval

    from benchmarks import train_real_run

    monkeypatch.setattr(lm_eval, "simple_evaluate", _fake_simple_evaluate(calls))
    monkeypatch.setattr(train_real_run, "task_manager", lambda metadata: None)
    args = argparse.Namespace(dtype="bfloat16", limit=300, eval_batch_size=64, device="cpu", data_dir=None)
    train_real_run.evaluate("m", None, ["culturellm_english_x", "wvs_usa"], tmp_path, args)
    return tmp_path / "results" / "base"


def test_train_real_run_records_the_limit_its_culturellm_tasks_ran_with(monkeypatch, tmp_path):
    """The result file took the last evaluation's config (the WVS tasks', limit null), so the leaderboard's row
    of CultureLLM tasks cut to --limit 300 read as a run without --limit."""
    from culture_tasks.leaderboard import load_runs

    calls = []
    folder = _evaluate_base(monkeypatch, tmp_path, calls)
    assert [(c["tasks"], c["limit"]) for c in calls] == [(["culturellm_english_x"], 300), (["wvs_usa"], None)]
    data = json.loads((folder / "results_base.json").read_text())
    assert data["config"]["limit"] == 300 and data["limits"] == {"culturellm_english_x": 300, "wvs_usa": None}
    run = load_runs([folder / "results_base.json"])[0]
    assert run.key["limit"] == 300 and run.partial_text().startswith("partial run (--limit 300;")


def test_train_real_run_keeps_the_per_sample_logs(monkeypatch, tmp_path):
    """No per-sample log was kept, so base and adapter could not be paired document by document. A log a
    killed run left is replaced, not appended to."""
    folder = tmp_path / "results" / "base"
    folder.mkdir(parents=True)
    (folder / "samples_culturellm_english_x_base.jsonl").write_text('{"doc_id": 7, "cut off')
    calls = []
    _evaluate_base(monkeypatch, tmp_path, calls)
    assert [c["log_samples"] for c in calls] == [True, True]
    for task in ("culturellm_english_x", "wvs_usa"):
        rows = [json.loads(line) for line in (folder / f"samples_{task}_base.jsonl").read_text().splitlines()]
        assert [(r["doc_id"], r["doc_hash"], r["f1_macro"]) for r in rows] == [(0, "h0", [1, 1, 2, 4])]


def test_design_weights_compares_each_culture_with_and_without_the_weights(tmp_path, capsys):
    # one Arabic task of 10 documents (label 0: 8 in the task, label 1: 2), sampled 2 + 2; the model answers 0
    # everywhere. Weighted (4, 4, 1, 1): label 0 gold 8 TP 8 predicted 10 -> F1 16/18, label 1 -> 0: macro 4/9;
    # accuracy 8 / 10. Unweighted: label 0 gold 2 TP 2 predicted 4 -> 2/3, macro 1/3; accuracy 2 / 4.
    from benchmarks import design_weights
    from tests.test_leaderboard import _result

    task = "culturellm_arabic_x"
    logged = [{"f1_macro": [g, 0, 2, c], "acc": [float(g == 0), g, c]} for g, c in ((0, 8), (0, 8), (1, 2), (1, 2))]
    _result(tmp_path / "res", "/m/a", {task: 4 / 9}, samples={task: logged},
            extra={task: {"alias": task, "f1_macro,none": 4 / 9, "acc,none": 0.8}},  # the result file's (weighted)
            n_samples={task: {"original": 10, "effective": 4}})
    assert design_weights.main([str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("run r") and out[0].endswith("pretrained=/m/a; † partial run (documents per task: 4 of 10; "
                                                          "sample 920002)")
    assert out[4] == "| arabic | 1 | 4 | 0.444 | 0.333 | +0.111 – | 0.800 | 0.500 | +0.300 – |"
    assert out[6] == ("–: no interval: 4 documents in a task; an interval of acc needs 20 in each (fewer do not hold the "
                      "complete run's value: docs/interval_calibration.md)")
    assert design_weights.main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith(f"design_weights: {tmp_path / 'missing'}")


def test_design_weights_change_has_the_paired_interval_zero_where_every_weight_is_alike(tmp_path, capsys):
    # 40 documents (label 0: 30, label 1: 10) sampled 15 + 5: every document weighs 2, so weighted and unweighted are
    # one number in every resample: change 0 [0, 0]. Label 1 answered right 3 of 5 times, 0 always: class 0 TP 15
    # FP 2 -> F1 30/32, class 1 TP 3 FN 2 -> 6/8; macro 0.84375; accuracy 18/20
    from benchmarks import design_weights
    from tests.test_leaderboard import _result

    task = "culturellm_arabic_x"
    answers = [(0, 0, 30)] * 15 + [(1, 1, 10)] * 3 + [(1, 0, 10)] * 2
    logged = [{"f1_macro": [g, p, 2, c], "acc": [float(g == p), g, c]} for g, p, c in answers]
    _result(tmp_path / "res", "/m/a", {task: 0.84375}, samples={task: logged},
            extra={task: {"alias": task, "f1_macro,none": 0.84375, "acc,none": 0.9}},
            n_samples={task: {"original": 40, "effective": 20}})
    assert design_weights.main([str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[4] == ("| arabic | 1 | 20 | 0.844 | 0.844 | +0.000 [+0.000, +0.000] | 0.900 | 0.900 | "
                      "+0.000 [+0.000, +0.000] |") and len(out) == 5


def test_vsm13_item_pair_calibration_without_item_noise_observes_the_truth(data_root):
    # with no item pair deviating from its share of the true index, the observed profile is the truth (every error
    # 0), and each index's interval, the range of its two pairs' doubled terms, holds it
    from benchmarks import interval_calibration as ic

    tallies = ic.vsm13_item_pairs(str(data_root), reps=3, spread=0.0)
    assert tallies["index"].count == 18 and tallies["index"].hits == 18
    for key in ("index", "rank", "margin"):
        assert max(abs(e) for e in tallies[key].errors) < 1e-9, key


def test_vsm13_order_counts_which_interval_holds_the_other_orders_value_by_hand():
    # two prompts, pdi. Prompt 1: 10 listed, 20 reversed; prompt 2: 0 and -4. Respondents: (5, 15) misses 20,
    # (12, 30) misses 10, (-10, 10) holds -4, (-8, 0) holds 0 (bounds included): 2 of 4; half-widths 5, 9, 10, 4,
    # median 7. Item pairs (8, 12), (18, 22), (-1, 1), (-5, -3) hold none; half-widths 2, 2, 1, 1, median 1.5.
    # Shifts +10 and -4: median |shift| 7, mean +3, sd sqrt(49 + 49) = 9.9.
    from benchmarks import vsm13_order

    prompts = [{"pdi": {"values": (10.0, 20.0), "respondents": ((5, 15), (12, 30)), "item pairs": ((8, 12), (18, 22))}},
               {"pdi": {"values": (0.0, -4.0), "respondents": ((-10, 10), (-8, 0)), "item pairs": ((-1, 1), (-5, -3))}}]
    s = vsm13_order.summary(prompts, "pdi")
    assert s["respondents"] == (0.5, 7.0) and s["item pairs"] == (0.0, 1.5)
    assert s["median |shift|"] == 7.0 and s["shift"] == pytest.approx((3.0, 98 ** 0.5))


def test_vsm13_order_reads_both_orders_of_each_prompt_from_the_logs(tmp_path, data_root, capsys):
    # one prompt asked in both orders: each value is its task's, read back from its per-sample log, and the shift
    # is the reversed order's minus the listed order's
    from benchmarks import vsm13_order
    from culture_tasks.survey.tasks import summarise_vsm13
    from tests.test_leaderboard import _result, _vsm13_logged

    logged = {"vsm13_usa": _vsm13_logged(data_root, "USA", "", 0),
              "vsm13_usa_reversed": _vsm13_logged(data_root, "USA", "", 0, reversed_options=True)}
    values = {t: summarise_vsm13(items) for t, items in logged.items()}
    assert values["vsm13_usa"]["pdi"] != values["vsm13_usa_reversed"]["pdi"]
    _result(tmp_path / "res", "/m/a", {}, samples={t: [{"vsm13_l1": list(i)} for i in items] for t, items in logged.items()},
            extra={t: {"vsm13_l1,none": v["vsm13_l1"]} for t, v in values.items()},
            n_samples={t: {"original": 24, "effective": 24} for t in logged})
    [prompt] = vsm13_order.read(tmp_path / "res")
    assert prompt["pdi"]["values"] == (values["vsm13_usa"]["pdi"], values["vsm13_usa_reversed"]["pdi"])
    assert vsm13_order.main([str(tmp_path / "res")]) == 0
    shift = values["vsm13_usa_reversed"]["pdi"] - values["vsm13_usa"]["pdi"]
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| pdi |")]
    assert row.endswith(f"| {abs(shift):.1f} | {shift:+.1f} ± 0.0 |")
    only = {"vsm13_usa": logged["vsm13_usa"]}  # one order only: nothing to compare
    _result(tmp_path / "one", "/m/a", {}, samples={t: [{"vsm13_l1": list(i)} for i in items] for t, items in only.items()},
            extra={"vsm13_usa": {"vsm13_l1,none": values["vsm13_usa"]["vsm13_l1"]}},
            n_samples={"vsm13_usa": {"original": 24, "effective": 24}})
    assert vsm13_order.main([str(tmp_path / "one")]) == 2
    assert "no run with both vsm13_usa and vsm13_usa_reversed" in capsys.readouterr().err


def test_vsm13_order_ranks_each_fitted_prompt_for_its_own_target_in_each_order(tmp_path, data_root):
    # a prompt answering with the USA's own Hofstede profile when listed ranks the USA first there (margin as
    # compare gives it); reversed it answers all 0, as the plain model does in both orders, so its reversed gain is 0
    from benchmarks import vsm13_order
    from culture_tasks.outputs import file_digest
    from culture_tasks.survey import compare
    from culture_tasks.survey.vsm13 import DIMENSIONS, find_target

    usa = find_target("USA", str(data_root)).scores
    ckpt = tmp_path / "contrastive" / "USA"
    ckpt.mkdir(parents=True)
    (ckpt / "adapter_model.safetensors").write_bytes(b"prompt")
    (ckpt / "alignment.json").write_text(json.dumps({
        "objective": "contrastive", "settings": {"country": "USA", "target": None, "population": 8},
        "history": [{"generation": 3}], "report": {"comparison": {"de": {"margin": 1.0}}}}))
    zero = dict.fromkeys(DIMENSIONS, 0.0)
    half = {d: usa[d] / 2 for d in DIMENSIONS}
    indices = {None: {"listed": zero, "reversed": zero, "balanced": zero},
               file_digest(ckpt / "adapter_model.safetensors"): {"listed": dict(usa), "reversed": zero, "balanced": half}}
    [row] = vsm13_order.aligned_rows(indices, [tmp_path], str(data_root))
    reference = compare.hofstede_reference(str(data_root))
    own = compare.margin_and_rank(usa, "USA", reference)
    assert row["budget"] == "8 x 3" and row["target"] == "USA"
    assert row["prompt", "listed"] == (1.0, pytest.approx(float(own["margin"])))
    assert row["prompt", "reversed"] == row["plain", "reversed"] == row["plain", "listed"]
    table = vsm13_order.render_aligned([row]).splitlines()
    assert table[3].startswith("| contrastive | 8 x 3 | 1 | reversed | ") and table[3].endswith("| +0.000 ± 0.000 | – | 0 of 1 |")
    assert table[2].endswith(" | 1 of 1 |")
    # the worse order: listed ranks the USA first, reversed as the plain model does, so the worse is reversed's
    assert row["prompt", vsm13_order.WORSE] == row["plain", "reversed"]
    assert table[5].startswith(f"| contrastive | 8 x 3 | 1 | {vsm13_order.WORSE} | ") and table[5].endswith(
        "| +0.000 ± 0.000 | – | 0 of 1 |")  # one target: no interval
    # the other way round (the USA's profile reversed, all 0 listed): the worse is then the listed order's
    swapped = {**indices, file_digest(ckpt / "adapter_model.safetensors"): {"listed": zero, "reversed": dict(usa),
                                                                             "balanced": half}}
    [row] = vsm13_order.aligned_rows(swapped, [tmp_path], str(data_root))
    assert row["prompt", "reversed"][0] == 1.0 and row["prompt", vsm13_order.WORSE] == row["plain", "listed"]
    # a balanced search is its own group, never pooled with the listed order's
    (ckpt / "alignment.json").write_text(json.dumps({
        "objective": "contrastive", "settings": {"country": "USA", "target": None, "population": 8,
                                                 "option_order": "balanced"},
        "history": [{"generation": 3}], "report": {"comparison": {"de": {"margin": 1.0}}}}))
    assert vsm13_order.aligned_rows(indices, [tmp_path], str(data_root))[0]["objective"] == "contrastive, balanced search"
    del indices[file_digest(ckpt / "adapter_model.safetensors")]
    with pytest.raises(ValueError, match="its prompt was not asked"):
        vsm13_order.aligned_rows(indices, [tmp_path], str(data_root))


def test_vsm13_order_render_aligned_averages_by_hand():
    # two rows of one objective and budget (the USA, China), listed order: plain ranks 10 and 20 (margins 0.1,
    # 0.3), the prompts 2 and 30 (margins 0.5, 0.2): mean ranks 15 -> 16, margins +0.200 -> +0.350, gains +0.4
    # and -0.1: +0.150 ± sd 0.354, one of two ranked closer. Over the 2 targets: +0.150 ± t(1) 12.706 x 0.354 / √2
    # = ± 3.177
    from benchmarks import vsm13_order

    rows = []
    for target, plain, prompt in (("USA", (10.0, 0.1), (2.0, 0.5)), ("CHN", (20.0, 0.3), (30.0, 0.2))):
        row = {"objective": "l1", "budget": "8 x 3", "target": target}
        for order in (*vsm13_order.ORDER_NAMES, vsm13_order.WORSE):
            row["plain", order], row["prompt", order] = plain, prompt
        rows.append(row)
    line = vsm13_order.render_aligned(rows).splitlines()[2]
    assert line == ("| l1 | 8 x 3 | 2 | listed | 15.0 → 16.0 | +0.200 → +0.350 | +0.150 ± 0.354 | "
                    "+0.150 [-3.027, +3.327] (2) | 1 of 2 |")


def test_vsm13_order_gain_interval_counts_targets_not_prompts():
    # per-target means 1 (the USA's two seeds), 2 (China's one) and 3 (India's three): the mean over targets is 2
    # (the mean over the six prompts would be 13/6), sd 1, standard error 1/√3, t(2) 4.303: 2 ± 2.484
    from benchmarks.vsm13_order import gain_interval

    centre, low, high = gain_interval(["USA", "USA", "CHN", "IND", "IND", "IND"], [0.5, 1.5, 2.0, 3.0, 3.0, 3.0])
    assert (centre, low, high) == pytest.approx((2.0, 2.0 - 2.48414, 2.0 + 2.48414), abs=1e-5)
    centre, low, high = gain_interval(["USA", "USA"], [1.0, 0.5])  # one target: its seeds are no sample of targets
    assert centre == 0.75 and np.isnan(low) and np.isnan(high)


def test_text_clusters_compares_drawing_texts_with_drawing_each_task_apart(tmp_path, capsys):
    # two Spanish tasks label the same 20 texts and are answered alike: drawing texts draws each text with its
    # document in both tasks (the leaderboard's interval), drawing each task apart treats 40 documents as
    # independent and is narrower
    from benchmarks import text_clusters
    from culture_tasks import stats
    from culture_tasks.leaderboard import clustered_mean, task_mean
    from tests.test_leaderboard import _result

    x, y = "culturellm_spanish_x", "culturellm_spanish_y"
    f1 = [(i % 2, 0 if i < 10 else i % 2, 2) for i in range(20)]
    acc = [(float(g == p), g, 1) for g, p, _ in f1]
    rows = [{"f1_macro": list(a), "acc": list(b), "doc": {"text": f"text {i:02d}"}} for i, (a, b) in enumerate(zip(f1, acc))]
    value = task_mean("f1_macro")([(x, it) for it in f1])
    _result(tmp_path / "res", "/m/model", {x: value, y: value}, samples={x: rows, y: rows},
            extra={t: {"alias": t, "f1_macro,none": value, "acc,none": 0.75} for t in (x, y)})
    [row] = text_clusters.culture_rows(tmp_path / "res")
    assert (row["culture"], row["tasks"], row["documents"], row["shared"]) == ("spanish", 2, 40, 20)
    for metric, items in (("f1_macro", f1), ("acc", acc)):
        mean, together, apart = row[metric]
        clusters = [(x, f"text {i:02d}", ((x, it), (y, it))) for i, it in enumerate(items)]
        assert together == pytest.approx(stats.bootstrap_ci(clustered_mean(metric), clusters))
        assert apart == pytest.approx(stats.bootstrap_ci(task_mean(metric), [(t, it) for t in (x, y) for it in items]))
        assert apart[1] - apart[0] < together[1] - together[0]
    assert row["acc"][0] == pytest.approx(15 / 20)  # answers 0 on texts 0-9 (5 right), right on 10-19
    assert text_clusters.main([str(tmp_path / "res")]) == 0
    assert capsys.readouterr().out.splitlines()[2].startswith("| spanish | 2 | 40 | 20 | ")


def test_wvs_order_pairs_each_question_in_both_orders(tmp_path, capsys):
    # a model that always answers the first option shown, four USA questions of four options: the country leans to
    # the first code (Q0, Q3), the last (Q1), or splits between both ends (Q2). Majority: listed 1, 0, 1, 1 (Q2's tie
    # holds code 0) = 0.75, reversed 0, 1, 1, 0 = 0.5, shift -0.25 (per question -1, +1, 0, -1); both orders put half
    # on each end, a tie of two answers: 1/2, 1/2, 1, 1/2 = 0.625. JSD similarity: s(first, lean first) = hi, s(first,
    # lean last) = lo, s(first, split) = m: listed hi, lo, m, hi; reversed lo, hi, m, lo: shift (lo - hi) / 4; both
    # orders (half on each end) score Q2 exactly 1 and Q0, Q1, Q3 alike (b): (3b + 1) / 4.
    from benchmarks import wvs_order
    from culture_tasks.leaderboard import find_result_files, load_runs
    from culture_tasks.survey.metrics import jsd_similarity
    from tests.test_leaderboard import _result

    first, last = [1.0, 0, 0, 0], [0, 0, 0, 1.0]
    lean_first, lean_last, split = [0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7], [0.5, 0, 0, 0.5]
    countries = [lean_first, lean_last, split, lean_first]
    hi, lo, m = jsd_similarity(first, lean_first), jsd_similarity(first, lean_last), jsd_similarity(first, split)
    b = jsd_similarity([0.5, 0, 0, 0.5], lean_first)
    assert hi > m > lo and jsd_similarity(last, lean_last) == pytest.approx(hi)

    def rows(order):
        out = []
        for i, q in enumerate(countries):
            doc = {"q_id": f"Q{i}", "order": order, "country_dist": q}
            answer = first if order == [0, 1, 2, 3] else last  # the first option shown, in the scale's order
            lls = [[str(0.0 if k == 0 else -60.0), "False"] for k in range(4)]
            out.append({"doc": doc, "filtered_resps": lls, **{metric: wvs_order.SCORES[metric](answer, q)
                                                               for metric in wvs_order.METRICS}})
        return out

    samples = {"wvs_usa": rows([0, 1, 2, 3]), "wvs_usa_reversed": rows([3, 2, 1, 0])}

    def write(folder):
        """The result file reports each log's means; intervals [0, 1], the listed majority's [0.6, 1]."""
        extra = {task: {f"{metric}{suffix},none": value for metric in wvs_order.METRICS
                        for suffix, value in zip(("", "_ci_low", "_ci_high"),
                                                 (float(np.mean([r[metric] for r in logged])), 0.0, 1.0))}
                 for task, logged in samples.items()}
        extra["wvs_usa"]["wvs_majority_ci_low,none"] = 0.6  # leaves out the reversed 0.5
        _result(tmp_path / folder, "/m/a", {}, samples=samples, extra=extra,
                n_samples={t: {"original": 4, "effective": 4} for t in samples})

    write("res")
    [run] = load_runs(find_result_files([str(tmp_path / "res")]))
    rows_ = {r["metric"]: r for r in wvs_order.country_rows(run)}
    assert sorted(rows_) == sorted(wvs_order.METRICS) and rows_["wvs_jsd"]["country"] == "usa"
    majority = rows_["wvs_majority"]
    assert majority["values"] == pytest.approx((0.75, 0.5)) and majority["shift"][0] == pytest.approx(-0.25)
    assert majority["both"][0] == pytest.approx(0.625) and majority["held"] == (False, True)
    jsd = rows_["wvs_jsd"]
    assert jsd["values"] == pytest.approx(((2 * hi + lo + m) / 4, (2 * lo + hi + m) / 4))
    assert jsd["shift"][0] == pytest.approx((lo - hi) / 4) and jsd["both"][0] == pytest.approx((3 * b + 1) / 4)
    assert wvs_order.main([str(tmp_path / "res")]) == 0
    assert "wvs_majority: the paired interval of the shift leaves out 0 for " in capsys.readouterr().out
    # a log whose answers do not give its metric is not this task's
    samples["wvs_usa"][1]["wvs_jsd"] = 0.123
    write("bad")
    assert wvs_order.main([str(tmp_path / "bad")]) == 2
    assert "the logged answers of wvs_usa do not give its logged wvs_jsd" in capsys.readouterr().err
    # the reversed task asked other questions: not comparable
    samples["wvs_usa"][1]["wvs_jsd"] = lo
    samples["wvs_usa_reversed"][0]["doc"]["q_id"] = "Q9"
    write("other")
    assert wvs_order.main([str(tmp_path / "other")]) == 2
    assert "logged other questions" in capsys.readouterr().err


def test_wvs_order_rank_agreement_by_hand():
    # three countries ranked 1, 2, 3 listed and 3, 2, 1 reversed: Spearman -1; the same ranks: +1; two: no correlation
    from benchmarks import wvs_order

    rows = [{"metric": "wvs_jsd", "values": v} for v in ((0.1, 0.9), (0.2, 0.5), (0.3, 0.4))]
    assert wvs_order.rank_agreement(rows, "wvs_jsd") == pytest.approx(-1.0)
    rows = [{"metric": "wvs_jsd", "values": (a, a + 1)} for a in (0.3, 0.1, 0.2)]
    assert wvs_order.rank_agreement(rows, "wvs_jsd") == pytest.approx(1.0)
    assert np.isnan(wvs_order.rank_agreement(rows[:2], "wvs_jsd"))
