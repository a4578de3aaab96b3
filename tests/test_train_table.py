"""benchmarks.train_table: base vs fine-tuned per culture, and what part of the tasks the cells rest on."""

from __future__ import annotations

import json

from benchmarks.train_table import table

ENGLISH = ["culturellm_english_mlma_hate", "culturellm_english_hate_offensive"]


def _write(folder, name, f1s, effective, original):
    run = folder / "results" / name
    run.mkdir(parents=True)
    peft = "" if name == "base" else f",peft=/runs/adapters/{name}"
    data = {"results": {t: {"f1_macro,none": f} for t, f in zip(ENGLISH, f1s)},
            "n-samples": {t: {"original": o, "effective": e} for t, e, o in zip(ENGLISH, effective, original)},
            "config": {"model": "hf", "model_args": f"pretrained=/models/m,dtype=bfloat16{peft}", "limit": None}}
    (run / f"results_{name}.json").write_text(json.dumps(data))


def test_a_table_of_limited_runs_says_how_many_documents_its_cells_rest_on(tmp_path):
    """Base and two seeds scored on at most 100 documents per task (lm-eval --limit 100): 100 + 80 of
    2000 + 80 documents; macro-F1 means 0.4 (base) and 0.3, 0.5 over seeds: 40.0 ± 14.1, and with two seeds
    t(1) 12.706 × 14.142 / √2 = 127.1, so the interval [-87.1, 167.1] is cut to the metric's range: two
    seeds say almost nothing."""
    _write(tmp_path, "base", [0.3, 0.5], [100, 80], [2000, 80])
    _write(tmp_path, "english-s0", [0.2, 0.4], [100, 80], [2000, 80])
    _write(tmp_path, "english-s1", [0.4, 0.6], [100, 80], [2000, 80])
    out = table(tmp_path)
    assert "| english | base |  | 40.0 (no interval: no per-sample logs) | – | – | – |" in out
    assert ("| english | CultureLLM-english | 2 | 40.0 ± 14.1 [0.0, 100.0] | no paired interval: no per-sample logs | "
            "– | – |") in out
    assert out.splitlines()[-1] == ("CultureLLM macro-F1 from part of the tasks (lm-eval --limit): at most 100 "
                                    "documents per task, 180 of 2080 (base, english-s0, english-s1).")


def test_three_seeds_give_the_t_interval_of_their_mean(tmp_path):
    """Macro-F1 means 0.3, 0.4, 0.5 over three seeds: mean 40.0, sd 10.0, standard error 10 / √3 = 5.774,
    t(2) 4.303: 40.0 ± 24.8, [15.2, 64.8]."""
    _write(tmp_path, "base", [0.3, 0.5], [2000, 80], [2000, 80])
    for seed, f1s in enumerate(([0.2, 0.4], [0.3, 0.5], [0.4, 0.6])):
        _write(tmp_path, f"english-s{seed}", f1s, [2000, 80], [2000, 80])
    out = table(tmp_path)
    assert ("| english | CultureLLM-english | 3 | 40.0 ± 10.0 [15.2, 64.8] | no paired interval: no per-sample logs | "
            "– | – |") in out
    assert out.splitlines()[0] == (
        "Fine-tuned cells: mean ± sd over seeds [95 % t-interval over seeds, cut to 0-100]; a single run's value (or "
        "that of seeds alike) with the interval its file records, where it records one (macro-F1: or its per-sample "
        "logs give). macro-F1 − base: each seed's adapter minus the base model on the same documents, in points, "
        "[95 % paired bootstrap interval], randomisation p (culture-leaderboard's paired test).")


def test_a_single_run_shows_its_recorded_interval_and_seeds_alike_no_zero_width_one(tmp_path):
    """A base file recording wvs_usa's intervals showed 64.4 and 18.0 without them; three seeds with the same
    majority (it moves in steps of 1/50) printed 58.0 ± 0.0 [58.0, 58.0], a t-interval of width 0."""
    def write(name, jsd, majority, ci):
        _write(tmp_path, name, [0.3, 0.5], [2000, 80], [2000, 80])
        path = next((tmp_path / "results" / name).glob("results_*.json"))
        data = json.loads(path.read_text())
        data["results"]["wvs_usa"] = {"wvs_jsd,none": jsd, "wvs_majority,none": majority,
                                      **({"wvs_jsd_ci_low,none": 0.60, "wvs_jsd_ci_high,none": 0.68,
                                          "wvs_majority_ci_low,none": 0.08, "wvs_majority_ci_high,none": 0.30}
                                         if ci else {})}
        path.write_text(json.dumps(data))

    write("base", 0.644, 0.18, True)
    for seed, jsd in enumerate((0.60, 0.62, 0.64)):
        write(f"english-s{seed}", jsd, 0.58, False)
    out = table(tmp_path)
    assert "| english | base |  | 40.0 (no interval: no per-sample logs) | – | 64.4 [60.0, 68.0] | 18.0 [8.0, 30.0] |" in out
    # sd 2.0, t(2) 4.303 × 2 / √3 = 4.97: [57.0, 67.0]; macro-F1 and majority alike at every seed, no interval recorded
    assert ("| english | CultureLLM-english | 3 | 40.0 (3 seeds alike; no interval: no per-sample logs) | "
            "no paired interval: no per-sample logs | 62.0 ± 2.0 [57.0, 67.0] | "
            "58.0 (3 seeds alike; no interval: the result file records none) |") in out
    from benchmarks.train_table import wvs_no_interval

    assert wvs_no_interval("arabic") == "no interval: the mean of 2 countries"  # Iraq and Jordan


def test_a_table_of_whole_tasks_has_no_note(tmp_path):
    _write(tmp_path, "base", [0.3, 0.5], [2000, 80], [2000, 80])
    _write(tmp_path, "english-s0", [0.2, 0.4], [2000, 80], [2000, 80])
    assert table(tmp_path).splitlines()[-1].startswith("| english | CultureLLM-english |")


def test_a_folder_without_the_base_run_is_one_line_naming_it_and_help_prints_the_usage(tmp_path, capsys):
    """An empty folder printed an empty table; runs without `base` ended in a KeyError; `--help` was read
    as a folder name."""
    import pytest

    from benchmarks.train_table import main

    with pytest.raises(SystemExit, match=r"results/base holds no results_\*\.json"):
        table(tmp_path)
    _write(tmp_path, "english-s0", [0.2, 0.4], [2000, 80], [2000, 80])
    with pytest.raises(SystemExit, match="give the folder of a benchmarks/train_real_run.py run"):
        table(tmp_path)
    main(["--help"])
    assert "python -m benchmarks.train_table runs/smollm2" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="python -m benchmarks.train_table"):
        main([])


def _add_wvs(folder, name, jsd, majority):
    path = folder / "results" / name / f"results_{name}.json"
    data = json.loads(path.read_text())
    data["results"]["wvs_usa"] = {"wvs_jsd,none": jsd, "wvs_majority,none": majority}
    path.write_text(json.dumps(data))


def test_seeds_that_scored_other_tasks_are_refused_not_averaged_over_fewer_seeds(tmp_path):
    """A row's mean ± std is over its seeds: english-s1 without wvs_usa made the WVS cells of the
    '2 seeds' row english-s0's alone (60.0, 50.0, no ±); english-s1 with one of the two CultureLLM tasks
    made its macro-F1 that task's (40.0), averaged with english-s0's mean of two tasks."""
    import pytest

    _write(tmp_path, "base", [0.3, 0.5], [2000, 80], [2000, 80])
    _add_wvs(tmp_path, "base", 0.7, 0.2)
    _write(tmp_path, "english-s0", [0.2, 0.4], [2000, 80], [2000, 80])
    _add_wvs(tmp_path, "english-s0", 0.6, 0.5)
    _write(tmp_path, "english-s1", [0.4, 0.6], [2000, 80], [2000, 80])
    with pytest.raises(SystemExit, match=r"english: english-s0 and english-s1 .*wvs_usa"):
        table(tmp_path)
    _add_wvs(tmp_path, "english-s1", 0.8, 0.7)
    assert ("| english | CultureLLM-english | 2 | 40.0 ± 14.1 [0.0, 100.0] | no paired interval: no per-sample logs | "
            "70.0 ± 14.1 [0.0, 100.0] | 60.0 ± 14.1 [0.0, 100.0] |") in table(tmp_path)
    _write(tmp_path / "other", "base", [0.3, 0.5], [2000, 80], [2000, 80])
    _write(tmp_path / "other", "english-s0", [0.2, 0.4], [2000, 80], [2000, 80])
    _write(tmp_path / "other", "english-s1", [0.4], [2000], [2000])
    with pytest.raises(SystemExit, match=r"english: english-s0 and english-s1 .*culturellm_english_hate_offensive"):
        table(tmp_path / "other")


def _logged(folder, name, preds):
    """A run of the two English tasks with per-sample logs (as train_real_run keeps them): 20 documents each, gold
    labels 0 × 10 then 1 × 10; ``preds[task]`` the predictions. Its result file's macro-F1 is the logged one."""
    from culture_tasks.classification import f1_macro

    _write(folder, name, [0.0, 0.0], [20, 20], [20, 20])
    path = folder / "results" / name / f"results_{name}.json"
    data = json.loads(path.read_text())
    samples = {}
    for task in ENGLISH:
        items = [(0 if i < 10 else 1, p, 2, 10) for i, p in enumerate(preds[task])]
        data["results"][task]["f1_macro,none"] = f1_macro(items)
        samples[task] = [{"doc_id": i, "doc_hash": f"{task}-{i}", "doc": {"text": f"{task} text {i}"}, "filter": "none",
                          "f1_macro": list(item)} for i, item in enumerate(items)]
        (path.parent / f"samples_{task}_{name}.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples[task]))
    path.write_text(json.dumps(data))
    return samples


def test_base_and_adapter_macro_f1_have_intervals_and_a_paired_difference_from_the_logs(tmp_path):
    """The base row's macro-F1 had no interval and base vs adapter no paired difference: the logs were not kept.
    Hate (mlma_hate): the base answers 0 everywhere, F1 of label 0 = 2 × 0.5 × 1 / 1.5 = 2/3, of label 1 = 0:
    macro 1/3; s0 is right everywhere: 1; s1 gets 5 of the 1s: label 0 P 10/15 R 1 F1 0.8, label 1 P 1 R 0.5 F1 2/3:
    macro 0.7333. hate_offensive: all right, 1. Culture means 66.7, 100.0 and 86.7: differences +33.3 and +20.0.
    Intervals: the paired bootstrap of stats.paired_task_mean on the same logs; the base's level interval its
    TaskMean bootstrap."""
    from culture_tasks import stats
    from culture_tasks.classification import f1_macro, f1_macro_weighted

    right = [0] * 10 + [1] * 10
    base = _logged(tmp_path, "base", {ENGLISH[0]: [0] * 20, ENGLISH[1]: right})
    s0 = _logged(tmp_path, "english-s0", {ENGLISH[0]: right, ENGLISH[1]: right})
    s1 = _logged(tmp_path, "english-s1", {ENGLISH[0]: [0] * 10 + [1] * 5 + [0] * 5, ENGLISH[1]: right})
    out = table(tmp_path)

    def paired(run):
        d = stats.paired_task_mean(f1_macro, base, run, weighted=f1_macro_weighted)
        return f"{100 * d['diff']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}], p {d['p_value']:.3f}"

    low, high = stats.bootstrap_ci(stats.TaskMean(f1_macro, f1_macro_weighted),
                                   [(t, tuple(s["f1_macro"])) for t in ENGLISH for s in base[t]])
    assert paired(s0).startswith("+33.3 [") and paired(s1).startswith("+20.0 [")
    assert f"| english | base |  | 66.7 [{100 * low:.1f}, {100 * high:.1f}] | – | – | – |" in out
    # two seeds: mean 93.3, sd 9.4, t(1) 12.706 × 9.428 / √2 = 84.7: [8.6, 100.0]
    assert (f"| english | CultureLLM-english | 2 | 93.3 ± 9.4 [8.6, 100.0] | s0: {paired(s0)}; s1: {paired(s1)} | "
            "– | – |") in out
    (tmp_path / "results" / "english-s1" / f"samples_{ENGLISH[1]}_english-s1.jsonl").unlink()
    assert (f"| s0: {paired(s0)}; s1: no paired interval: no per-sample logs |") in table(tmp_path)
