"""The steering matrix end to end on the tiny model: its numbers are compare.py's on the profiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from culture_tasks import provenance, stats
from culture_tasks.steering import SteeringConfig, SteeringError, check_output, main
from culture_tasks.survey import compare
from culture_tasks.survey.vsm13 import DIMENSIONS
from culture_tasks.paths import task_manager
from tests.tiny_model import save_random_lora


def write_alignment(folder, country, data_root, **settings):
    """The part of culture-align's alignment.json culture-steer reads, for a prompt fitted to ``country``."""
    from culture_tasks.survey.vsm13 import resolve_target

    scores = resolve_target(country, settings.get("target"), str(data_root)).scores
    settings = {"country": country, "target": None, "chat_template": False, "answer_mode": "expected",
                "option_order": "listed", **settings}
    (folder / "alignment.json").write_text(json.dumps({"target": {"country": country, "scores": scores},
                                                       "settings": settings}))
    return folder


@pytest.fixture(scope="module")
def prompt_checkpoint(tiny_model, data_root, tmp_path_factory):
    from transformers import AutoModelForCausalLM

    from aligners.soft_prompt import save_prompt_tuning_adapter

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    out = tmp_path_factory.mktemp("prompt_de")
    save_prompt_tuning_adapter(model, torch.randn(4, 32, generator=torch.Generator().manual_seed(7)), out,
                               str(tiny_model), init="vocab")
    return write_alignment(out, "DEU", data_root)  # fitted to Germany, as the matrix steers it


@pytest.fixture(scope="module")
def lora_checkpoint(tiny_model, tmp_path_factory):
    return save_random_lora(tiny_model, tmp_path_factory.mktemp("lora_tr"), seed=11)


@pytest.fixture(scope="module")
def matrix(tiny_model, prompt_checkpoint, lora_checkpoint, data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("steer") / "run"
    rc = main(["--model", str(tiny_model), "--output", str(out), "--data-dir", str(data_root),
               "--target", "usa=plain", "--target", "China=persona", "--target", f"DEU=prompt:{prompt_checkpoint}",
               "--target", "saudi_arabia=persona", "--target", f"turkey=lora:{lora_checkpoint}",
               "--iters", "20", "--batch-size", "16"])  # resamples: what the tests compare is the same at 20
    assert rc == 0
    return out, json.loads((out / "steering.json").read_text())


def test_matrix_numbers_are_compare_applied_to_the_profiles(matrix, data_root):
    out, result = matrix
    ref = compare.hofstede_reference(str(data_root))
    v = result["vsm13"]
    assert v["rows"] == ["usa:plain", "china:persona", "germany:prompt", "saudi_arabia:persona", "turkey:lora"]
    assert v["columns"] == ["USA", "CHI", "GER", "SAU", "TUR"]
    assert v["column_dims"] == [list(DIMENSIONS)] * 3 + [["lto", "ivr"], list(DIMENSIONS)]
    for i, label in enumerate(v["rows"]):
        profile = result["profiles"][label]["indices"]
        for j, code in enumerate(v["columns"]):
            cell = compare.compare_vsm13(profile, code, ref)
            assert v["distance"][i][j] == pytest.approx(cell["distance"], abs=1e-12)
            assert v["raw_l1"][i][j] == pytest.approx(cell["raw_l1"][code], abs=1e-9)
        own = compare.compare_vsm13(profile, v["columns"][i], ref)
        row = v["per_row"][i]
        assert row["distance"] == pytest.approx(v["distance"][i][i])  # the diagonal is the own target
        assert (row["rank"], row["margin"]) == (own["rank"], pytest.approx(own["margin"]))
        lo, hi = row["margin_ci"]
        assert lo <= hi
        # the tasks' own aggregation gives the same indices (the numbers lm-eval prints)
        assert result["profiles"][label]["lm_eval"]["pdi"] == pytest.approx(profile["pdi"], abs=1e-9)
    tau = compare.kendall_tau(list(zip(v["columns"], [result["profiles"][r]["indices"] for r in v["rows"]])), ref)
    assert v["kendall_tau"] == pytest.approx(tau, nan_ok=True)
    # six-dimension and two-dimension rows are summarised apart, never pooled
    assert set(v["summary_by_coverage"]) == {",".join(DIMENSIONS), "lto,ivr"}
    assert v["summary_by_coverage"]["lto,ivr"]["rows"] == ["saudi_arabia:persona"]
    six = v["summary_by_coverage"][",".join(DIMENSIONS)]
    assert six["mrr"] == pytest.approx(sum(v["per_row"][i]["reciprocal_rank"] for i in (0, 1, 2, 4)) / 4)
    assert (out / "steering.png").stat().st_size > 5000
    assert "raw L1 (C=0)" in (out / "steering.md").read_text()
    # the VSM13 intervals say what they are: the two item pairs' spread, not a 95 % interval for the dimension
    assert "a lower bound on the uncertainty" in (out / "steering.md").read_text()
    # each row's checkpoint and the answering settings, in the report itself
    assert (f"Steered models: usa = plain; China = persona; DEU = prompt:{result['config']['targets'][2][len('DEU=prompt:'):]}"
            f"; saudi_arabia = persona; turkey = lora:") in (out / "steering.md").read_text()
    assert ("Answered with dtype float32, batch size 16, device cpu, chat template none, option order listed."
            in (out / "steering.md").read_text())
    assert result["environment"]["device"] == "cpu"
    assert provenance.describe(result["environment"])[0] in (out / "steering.md").read_text()


def test_a_tau_without_variation_reads_undefined(matrix):
    import copy
    import math

    from culture_tasks.steering import markdown

    _, result = matrix
    tied = copy.deepcopy(result)  # as when one prompt was fitted for every target
    tied["vsm13"]["kendall_tau"] = dict.fromkeys(tied["vsm13"]["kendall_tau"], math.nan)
    tied["vsm13"]["kendall_tau_ci"] = dict.fromkeys(tied["vsm13"]["kendall_tau"], [math.nan, math.nan])
    line = next(x for x in markdown(tied).splitlines() if x.startswith("Kendall tau"))
    assert "nan" not in line and line.count("undefined (steered indices tied across targets)") == 7


def test_off_target_control_is_relative_to_the_plain_model(matrix):
    _, result = matrix
    v = result["vsm13"]
    assert v["plain_distance"] == pytest.approx(v["distance"][0])  # usa:plain is the plain model
    assert v["change_vs_plain"][0] == pytest.approx([0.0] * 5, abs=1e-12)
    assert result["profiles"]["plain"]["indices"] == result["profiles"]["usa:plain"]["indices"]
    for i in range(5):
        assert v["change_vs_plain"][i] == pytest.approx([d - p for d, p in zip(v["distance"][i], v["plain_distance"])])
    german = v["per_row"][2]["control"]
    assert german["change_to_target"] == pytest.approx(v["change_vs_plain"][2][2])
    assert german["change_to_target"] != pytest.approx(0.0, abs=1e-6)  # the soft prompt moved the answers
    assert german["specificity"] == pytest.approx(german["change_to_target"] - german["mean_change_to_others"])


def test_wvs_part(matrix, data_root):
    _, result = matrix
    w = result["wvs"]
    ref = compare.wvs_reference(str(data_root))
    assert w["rows"] == ["usa:plain", "china:persona", "germany:prompt", "turkey:lora"]  # Saudi Arabia: no WVS
    assert w["columns"] == ["usa", "china", "germany", "turkey"] and w["questions"] == 31
    for i, label in enumerate(w["rows"]):
        _, per_q = compare.wvs_similarities(result["profiles"][label]["wvs_answers"], ref)
        assert w["similarity"][i] == pytest.approx([float(per_q[c].mean()) for c in w["columns"]])
        assert w["per_row"][i]["rank"] == compare.wvs_scores(per_q, w["columns"][i])["rank"]
    assert w["change_vs_plain"][0] == pytest.approx([0.0] * 4, abs=1e-12)
    assert w["plain_similarity"] == pytest.approx(w["similarity"][0])
    assert w["mrr"] == pytest.approx(sum(r["reciprocal_rank"] for r in w["per_row"]) / 4)


@pytest.mark.parametrize("row", ["germany:prompt", "turkey:lora"])
def test_checkpoint_rows_agree_with_lm_eval(matrix, tiny_model, prompt_checkpoint, lora_checkpoint, data_root, row):
    import lm_eval
    _, result = matrix
    slug, method = row.split(":")
    peft = prompt_checkpoint if method == "prompt" else lora_checkpoint
    tm = task_manager({"data_dir": str(data_root)})
    out = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={tiny_model},dtype=float32,peft={peft}",
                                  tasks=[f"vsm13_{slug}"], task_manager=tm, device="cpu", batch_size=8,
                                  bootstrap_iters=0)["results"][f"vsm13_{slug}"]
    profile = result["profiles"][row]["indices"]
    plain = result["profiles"]["plain"]["indices"]
    for d in DIMENSIONS:
        assert out[f"{d},none"] == pytest.approx(profile[d], abs=1e-4)
    assert max(abs(profile[d] - plain[d]) for d in DIMENSIONS) > 1e-3  # the checkpoint does change the answers


def _run_recorded_command(command: str, output, monkeypatch) -> tuple[dict, dict]:
    """A command steering.json records, as the shell hands it to ``lm_eval``, run by lm-eval's own command line
    in this process (``<results>`` filled in, ``--device cpu`` as every test scores): its results and, per task,
    the logged documents."""
    import shlex
    import sys

    from lm_eval.__main__ import cli_evaluate

    argv = shlex.split(command.replace("<results>", str(output)))
    assert argv[0] == "lm_eval"
    monkeypatch.setattr(sys, "argv", [*argv, "--device", "cpu"])
    cli_evaluate()
    results = json.loads(next(output.rglob("results_*.json")).read_text())["results"]
    samples = {task: [json.loads(line) for path in output.rglob(f"samples_{task}_*.jsonl")
                      for line in path.read_text().splitlines()] for task in results}
    return results, samples


@pytest.mark.parametrize("row", ["plain", "china:persona", "germany:prompt", "turkey:lora"])
def test_each_row_s_recorded_command_gives_its_indices_and_wvs_similarity(matrix, data_root, tmp_path, monkeypatch,
                                                                          row):
    """steering.json named the tasks a row answered but no command: the recorded one, run from another folder
    without $CULTURE_DATA_DIR, gives the row's VSM13 indices and, over the matrix's common questions, its WVS
    similarity to its own country."""
    _, result = matrix
    monkeypatch.delenv("CULTURE_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    profile = result["profiles"][row]
    results, samples = _run_recorded_command(result["lm_eval_commands"][row], tmp_path / "lm_eval", monkeypatch)
    for d in DIMENSIONS:
        assert results[profile["vsm13_task"]][f"{d},none"] == pytest.approx(profile["indices"][d], abs=1e-4)
    w = result["wvs"]
    jsd = {str(s["doc"]["q_id"]): s["wvs_jsd"] for s in samples[profile["wvs_task"]]}
    common, _ = compare.wvs_similarities(profile["wvs_answers"], compare.wvs_reference(str(data_root)))
    own = sum(jsd[q] for q in common) / len(common)
    if row == "plain":
        assert own == pytest.approx(w["plain_similarity"][0], abs=1e-6)
    else:
        i = w["rows"].index(row)
        assert own == pytest.approx(w["similarity"][i][w["columns"].index(row.split(":")[0])], abs=1e-6)


@pytest.mark.parametrize("spec", ["usa=persona:", "usa=plain:", "usa=persona:runs/usa"])
def test_a_checkpoint_separator_after_a_method_without_checkpoint_is_refused(spec, tmp_path, capsys):
    """``usa=persona:`` (a checkpoint path left out, or a slip) ran as ``usa=persona``, the ``:`` dropped unseen."""
    assert main(["--model", str(tmp_path / "m"), "--output", str(tmp_path / "o"), "--target", spec]) == 2
    method = spec.split("=")[1].split(":")[0]
    assert capsys.readouterr().err == (f"culture-steer: --target {spec!r}: method {method} takes no checkpoint; "
                                       f"write usa={method}\n")
    assert not (tmp_path / "o").exists()


def test_bad_inputs_stop_before_the_model_loads(tiny_model, prompt_checkpoint, tmp_path, capsys):
    base = ["--model", str(tiny_model), "--output", str(tmp_path / "o")]
    assert main([*base, "--target", "atlantis=persona"]) == 2
    assert "unknown country 'atlantis'" in capsys.readouterr().err
    assert main([*base, "--target", "usa=prompt:" + str(tmp_path / "none")]) == 2
    assert "adapter_config.json does not exist" in capsys.readouterr().err
    assert main([*base, "--target", "usa=lora:" + str(prompt_checkpoint)]) == 2
    assert "PROMPT_TUNING checkpoint, method lora needs LORA" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    config = json.loads((prompt_checkpoint / "adapter_config.json").read_text())
    (other / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "someone/else"}))
    (other / "adapter_model.safetensors").write_bytes((prompt_checkpoint / "adapter_model.safetensors").read_bytes())
    assert main([*base, "--target", f"usa=prompt:{other}"]) == 2
    assert "made for base model someone/else" in capsys.readouterr().err
    assert main([*base, "--target", "usa=dpo"]) == 2
    assert "unknown method 'dpo'" in capsys.readouterr().err
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "steering.json").write_text("{}")
    assert main([*base, "--target", "usa=persona"]) == 2
    assert "pass --resume to continue the run there, --overwrite to replace it" in capsys.readouterr().err
    check_output(tmp_path / "o", overwrite=True)  # allowed when asked
    with pytest.raises(SteeringError, match="wvs must be true or false"):
        SteeringConfig(model="m", targets=["usa=plain"], output="o", wvs="yes")
    with pytest.raises(SteeringError, match=r"steers usa more than once \(usa:plain, usa:plain\)"):
        SteeringConfig(model="m", targets=["usa=plain", "USA=plain"], output="o")
    # one country by two methods: its column twice, and MRR / margin / tau counting it twice
    with pytest.raises(SteeringError, match=r"steers usa more than once \(usa:persona, usa:plain\)"):
        SteeringConfig(model="m", targets=["usa=persona", "china=persona", "USA=plain"], output="o")


def _copy_checkpoint(source, into):
    into.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors", "alignment.json"):
        if (source / name).is_file():
            (into / name).write_bytes((source / name).read_bytes())
    return into


def test_output_that_is_or_holds_an_input_is_refused_even_with_overwrite(tiny_model, prompt_checkpoint, tmp_path,
                                                                         capsys):
    ckpt = _copy_checkpoint(prompt_checkpoint, tmp_path / "runs" / "de")
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    target = ["--target", f"DEU=prompt:{ckpt}", "--overwrite"]
    cases = [(ckpt, f"output {ckpt} is also an input"), (tmp_path / "runs", f"holds the input {ckpt}"),
             (tiny_model, f"output {tiny_model} is also an input")]
    for out, message in cases:
        assert main(["--model", str(tiny_model), "--output", str(out), *target]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "choose another --output" in err
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before  # no lock file put in it either
    assert not (tiny_model / ".lock").exists()


def test_a_second_run_into_a_locked_output_is_refused(tiny_model, tmp_path, monkeypatch, capsys):
    import os
    import socket

    from culture_tasks import steering
    from culture_tasks.outputs import OutputLock

    def no_model(*_, **__):
        raise AssertionError("loaded the model into a locked output")

    monkeypatch.setattr(steering, "_load_lm", no_model)
    out = tmp_path / "o"
    args = ["--model", str(tiny_model), "--output", str(out), "--target", "usa=persona"]
    with OutputLock.for_folder(out):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"{out} is in use by another run (process {os.getpid()} on host {socket.gethostname()}" in err
        assert sorted(p.name for p in out.iterdir()) == [".lock"]

    held = []

    def fake_run(cfg, mode):  # the run itself: the lock is this run's own while it works
        held.append(json.loads((out / ".lock").read_text())["pid"])
        return {"vsm13": {"summary_by_coverage": {}}}

    monkeypatch.setattr(steering, "_run", fake_run)
    assert main(args) == 0
    assert held == [os.getpid()] and not out.exists()  # released; the folder it made is removed again


@pytest.mark.parametrize("method", ["lora", "prompt"])
def test_corrupt_adapter_config_names_the_file(tiny_model, prompt_checkpoint, tmp_path, capsys, method):
    bad = _copy_checkpoint(prompt_checkpoint, tmp_path / "badck")
    (bad / "adapter_config.json").write_text('{"peft_type": "LORA",}')
    assert main(["--model", str(tiny_model), "--output", str(tmp_path / "o"), "--target", f"usa={method}:{bad}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"culture-steer: --target usa:{method}: {bad / 'adapter_config.json'} is not readable JSON")
    assert err.count("\n") == 1 and err.endswith("; save the checkpoint again or give another folder\n")
    (bad / "adapter_config.json").write_text("[]")
    assert main(["--model", str(tiny_model), "--output", str(tmp_path / "o"), "--target", f"usa={method}:{bad}"]) == 2
    assert f"{bad / 'adapter_config.json'} holds a JSON list, not an object" in capsys.readouterr().err


def test_corrupt_model_config_names_the_file(tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{'hidden_size': 32}")
    assert main(["--model", str(model), "--output", str(tmp_path / "o"), "--target", "usa=persona"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"culture-steer: --model: {model / 'config.json'} is not readable JSON (Expecting property")
    assert err.count("\n") == 1 and err.endswith("; restore the model folder or give another --model\n")
    assert not (tmp_path / "o").exists()


def test_every_matrix_number_has_its_interval(data_root):
    # no model: the metrics of three made-up answer sets; each matrix cell's interval is the
    # percentile interval of compare_vsm13's distance on the paired item-pair replicates
    from types import SimpleNamespace

    import numpy as np

    from culture_tasks.steering import markdown, parse_target, vsm13_metrics
    from culture_tasks.survey.vsm13 import vsm13_indices

    ref = compare.hofstede_reference(str(data_root))
    rows = [parse_target(t) for t in ("usa=persona", "china=persona", "saudi_arabia=persona")]

    def answers(shift):
        means = {k: 1.0 + ((shift * k) % 5) * 0.8 for k in range(1, 25)}
        return {"item_means": means, "indices": vsm13_indices(means)}

    plain, steered = answers(2), [answers(3), answers(7), answers(4)]
    cfg = SimpleNamespace(iters=20, seed=5, norm=2, level=0.95)
    v = vsm13_metrics(rows, steered, plain, ref, cfg)
    assert np.shape(v["distance_ci"]) == (3, 3, 2) and np.shape(v["plain_distance_ci"]) == (3, 2)
    reps = compare.term_replicates(steered[1]["item_means"], iters=20, seed=5)
    cell = [compare.compare_vsm13(r, "SAU", ref)["distance"] for r in reps]
    assert v["distance_ci"][1][2] == pytest.approx(list(stats.percentile_interval(cell)))
    reps = compare.term_replicates(plain["item_means"], iters=20, seed=5)
    cell = [compare.compare_vsm13(r, "USA", ref)["distance"] for r in reps]
    assert v["plain_distance_ci"][0] == pytest.approx(list(stats.percentile_interval(cell)))
    for r in v["per_row"]:
        assert all(f"{k}_ci" in r["plain"] for k in ("distance", "rank", "reciprocal_rank", "margin"))
    for s in v["summary_by_coverage"].values():
        assert len(s["top1_ci"]) == 2 and s["top1_ci"][0] <= s["top1_ci"][1]
        assert len(s["plain_mrr_ci"]) == 2
    text = markdown({"vsm13": v, "config": {"model": "m", "level": 0.95, "iters": 20, "seed": 5}})
    assert "Intervals: 95 % percentile bootstrap (20 resamples, seed 5)" in text
    # the level as given: 0.975 was printed rounded to "98 %"
    assert "Intervals: 97.5 % percentile bootstrap" in markdown(
        {"vsm13": v, "config": {"model": "m", "level": 0.975, "iters": 20, "seed": 5}})
    lo, hi = v["distance_ci"][0][0]
    assert f"{v['distance'][0][0]:.3f} [{lo:.3f}, {hi:.3f}]" in text
    # raw L1 (C=0): |index - Hofstede's score| summed over the target's dimensions, per replicate
    reps = compare.term_replicates(steered[1]["item_means"], iters=20, seed=5)
    sau = ref.profiles["SAU"]
    raw = [abs(r["lto"] - sau["lto"]) + abs(r["ivr"] - sau["ivr"]) for r in reps]
    assert v["raw_l1_ci"][1][2] == pytest.approx(list(stats.percentile_interval(raw)))
    assert v["per_row"][2]["raw_l1_ci"] == pytest.approx(
        list(stats.percentile_interval([abs(r["lto"] - sau["lto"]) + abs(r["ivr"] - sau["ivr"])
                                          for r in compare.term_replicates(steered[2]["item_means"], iters=20,
                                                                           seed=5)])))
    # change vs plain: the steered and the plain replicate of the same resample, subtracted
    plain_reps = compare.term_replicates(plain["item_means"], iters=20, seed=5)
    moved = [compare.compare_vsm13(r, "CHI", ref)["distance"] - compare.compare_vsm13(q, "CHI", ref)["distance"]
             for r, q in zip(reps, plain_reps)]
    assert v["change_vs_plain_ci"][1][1] == pytest.approx(list(stats.percentile_interval(moved)))
    china = v["per_row"][1]["control"]
    assert china["change_to_target_ci"] == pytest.approx(v["change_vs_plain_ci"][1][1])
    others = []
    for r, q in zip(reps, plain_reps):
        d, e = compare.compare_vsm13(r, "CHI", ref)["distances"], compare.compare_vsm13(q, "CHI", ref)["distances"]
        others.append(np.mean([d[c] - e[c] for c in d if c != "CHI"]))
    assert china["mean_change_to_others_ci"] == pytest.approx(list(stats.percentile_interval(others)))
    assert len(china["specificity_ci"]) == 2
    lo, hi = v["change_vs_plain_ci"][1][1]
    assert f"| china:persona | {v['change_vs_plain'][1][0]:.3f} [" in text
    assert f"{v['change_vs_plain'][1][1]:.3f} [{lo:.3f}, {hi:.3f}]" in text
    lo, hi = v["per_row"][0]["raw_l1_ci"]
    assert f"{v['per_row'][0]['raw_l1']:.1f} [{lo:.1f}, {hi:.1f}]" in text


def test_a_model_equal_to_the_plain_one_has_a_zero_change_interval(data_root):
    # the paired replicates of two identical answer sets are identical: no change in any resample
    from types import SimpleNamespace

    from culture_tasks.steering import parse_target, vsm13_metrics
    from culture_tasks.survey.vsm13 import vsm13_indices

    means = {k: 1.0 + (k % 4) * 0.9 for k in range(1, 25)}
    same = {"item_means": means, "indices": vsm13_indices(means)}
    v = vsm13_metrics([parse_target("usa=persona")], [same], same, compare.hofstede_reference(str(data_root)),
                      SimpleNamespace(iters=30, seed=3, norm=2, level=0.95))
    assert v["change_vs_plain_ci"] == [[[0.0, 0.0]]]
    control = v["per_row"][0]["control"]
    for key in ("change_to_target", "mean_change_to_others", "specificity"):
        assert control[key] == 0.0 and control[f"{key}_ci"] == [0.0, 0.0]


def test_every_wvs_matrix_number_has_its_interval():
    from types import SimpleNamespace

    import numpy as np

    from culture_tasks.stats import bootstrap_ci
    from culture_tasks.steering import parse_target, wvs_metrics

    rng = np.random.default_rng(0)
    ref = {c: {str(q): rng.dirichlet([1, 1, 1]) for q in range(8)} for c in ("usa", "china", "x")}
    rows = [parse_target(t) for t in ("usa=persona", "china=persona")]
    answers = [{"wvs_answers": {str(q): list(rng.dirichlet([1, 1, 1])) for q in range(8)}} for _ in range(3)]
    cfg = SimpleNamespace(iters=50, seed=2, level=0.95)
    w = wvs_metrics(rows, answers[:2], answers[2], ref, cfg)
    assert np.shape(w["similarity_ci"]) == (2, 2, 2) and np.shape(w["plain_similarity_ci"]) == (2, 2)
    _, per_q = compare.wvs_similarities(answers[1]["wvs_answers"], ref)
    by_hand = bootstrap_ci(lambda rows_: float(np.mean(per_q["usa"][list(rows_)])), list(range(8)),
                           iters=50, seed=2)
    assert w["similarity_ci"][1][0] == pytest.approx(list(by_hand))
    _, plain_q = compare.wvs_similarities(answers[2]["wvs_answers"], ref)
    diff = per_q["usa"] - plain_q["usa"]
    by_hand = bootstrap_ci(lambda rows_: float(np.mean(diff[list(rows_)])), list(range(8)), iters=50, seed=2)
    assert w["change_vs_plain_ci"][1][0] == pytest.approx(list(by_hand))
    assert w["change_vs_plain"][1][0] == pytest.approx(float(diff.mean()))
    assert len(w["top1_ci"]) == 2 and all("rank_ci" in r and "top1_ci" in r for r in w["per_row"])


def test_the_matrix_names_the_content_of_its_model_and_checkpoints(matrix, tiny_model, prompt_checkpoint,
                                                                  lora_checkpoint):
    """Paths can be reused for other weights: the run records each folder's fingerprint, in the JSON
    and in steering.md."""
    from culture_tasks.fingerprints import model_fingerprint

    out, result = matrix
    expected = {"model_fingerprint": model_fingerprint(tiny_model),
                "checkpoints": {"germany:prompt": model_fingerprint(prompt_checkpoint),
                                "turkey:lora": model_fingerprint(lora_checkpoint)},
                "dtype_loaded": "float32"}
    assert result["identity"] == expected and None not in expected["checkpoints"].values()
    assert f"model {expected['model_fingerprint']}; germany:prompt " in (out / "steering.md").read_text()
    assert "Weights loaded in float32." in (out / "steering.md").read_text()


def test_the_heatmap_names_its_model_and_each_row_s_checkpoint(matrix, tiny_model, prompt_checkpoint,
                                                              lora_checkpoint, tmp_path, monkeypatch):
    """steering.png is read without steering.md: it named neither the model nor which checkpoint filled a row, so two
    runs' images could not be told apart."""
    from culture_tasks import plots, steering

    drawn = []
    monkeypatch.setattr(plots, "save", lambda fig, path: drawn.append(fig))
    _, result = matrix
    with steering.OutputLock.for_folder(tmp_path / "again", SteeringError):
        steering._write(result, tmp_path / "again")
    fig = drawn[0]
    assert fig._suptitle.get_text() == f"Steering matrix: {tiny_model}"
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [
        "usa:plain", "china:persona", f"germany:prompt ({prompt_checkpoint.name})", "saudi_arabia:persona",
        f"turkey:lora ({lora_checkpoint.name})", "plain model"]
    plots.pyplot().close(fig)


def test_rescore_gives_the_stored_numbers_without_a_model(matrix, data_root, tmp_path, monkeypatch, capsys):
    import culture_tasks.steering as steering

    source, result = matrix
    monkeypatch.setattr(steering, "_load_lm", lambda *a, **k: pytest.fail("--rescore loaded a model"))
    out = tmp_path / "again"
    assert main(["--rescore", str(source), "--output", str(out), "--data-dir", str(data_root), "--iters", "20"]) == 0
    again = json.loads((out / "steering.json").read_text())
    # the same answers, the same settings: every number and interval as the run that stored them
    assert again["vsm13"] == result["vsm13"] and again["wvs"] == result["wvs"]
    assert again["profiles"] == result["profiles"] and again["environment"] == result["environment"]
    assert again["identity"] == result["identity"]  # what the stored answers were computed with
    assert again["config"]["model"] == result["config"]["model"] and again["config"]["targets"] == result["config"]["targets"]
    assert again["rescored_from"]["path"] == str(source)
    assert again["rescored_from"]["sha256"].startswith("sha256:")
    assert f"`culture-steer --rescore`) from the answers stored in {source}" in (out / "steering.md").read_text()
    # other interval settings: the same point values, other intervals
    other = tmp_path / "other"
    assert main(["--rescore", str(source), "--output", str(other), "--data-dir", str(data_root), "--iters", "10",
                 "--seed", "9"]) == 0
    v = json.loads((other / "steering.json").read_text())["vsm13"]
    assert v["distance"] == result["vsm13"]["distance"] and v["distance_ci"] != result["vsm13"]["distance_ci"]
    assert v["per_row"][2]["control"]["change_to_target"] == result["vsm13"]["per_row"][2]["control"]["change_to_target"]


def test_rescore_refuses_before_writing(matrix, tiny_model, data_root, tmp_path, capsys):
    source, _ = matrix
    before = (source / "steering.json").read_bytes()
    # into its own folder, even with --overwrite: the stored answers are the input
    assert main(["--rescore", str(source), "--output", str(source), "--overwrite", "--data-dir", str(data_root)]) == 2
    assert "is also an input of this run" in capsys.readouterr().err
    assert (source / "steering.json").read_bytes() == before
    assert main(["--rescore", str(source), "--model", str(tiny_model), "--output", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == (f"culture-steer: --rescore takes the model and targets from {source}/steering.json; "
                                       "drop --model and --target\n")
    assert main(["--rescore", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == (f"culture-steer: --rescore: {tmp_path / 'steering.json'} does not exist; "
                                       "give the folder of a finished culture-steer run\n")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "steering.json").write_text('{"config": {"targets": ["usa=persona"]}, "profiles": {}}')
    assert main(["--rescore", str(broken), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"culture-steer: --rescore: {broken / 'steering.json'} lacks the stored config or answers")
    assert main(["--output", str(tmp_path / "o"), "--target", "usa=persona"]) == 2
    assert "give --model (the base model folder), or --rescore <earlier output>" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_rescore_says_when_its_reference_data_differ_from_the_stored_run(matrix, data_root, tmp_path):
    # the run records the reference files it compared with by content; a rescore against another
    # Hofstede file is not presented as the stored run's numbers recomputed
    from culture_tasks.outputs import file_digest
    from culture_tasks.survey.vsm13 import HOFSTEDE_FILE

    source, result = matrix
    assert result["reference"][HOFSTEDE_FILE] == file_digest(data_root / HOFSTEDE_FILE)
    assert set(result["reference"]) >= {"culturellm/WVQ.jsonl", "culturellm/English/United States.csv"}
    other = tmp_path / "data"
    for part in ("culturellm", "vsm13"):
        (other / part).parent.mkdir(parents=True, exist_ok=True)
        (other / part).symlink_to(data_root / part)
    (other / HOFSTEDE_FILE).parent.mkdir(parents=True)
    text = (data_root / HOFSTEDE_FILE).read_text(encoding="utf-8")
    (other / HOFSTEDE_FILE).write_text(text.replace("\nUSA;U.S.A.;40;", "\nUSA;U.S.A.;41;"), encoding="utf-8")
    out = tmp_path / "again"
    assert main(["--rescore", str(source), "--output", str(out), "--data-dir", str(other), "--iters", "10"]) == 0
    again = json.loads((out / "steering.json").read_text())
    assert again["reference"][HOFSTEDE_FILE] == file_digest(other / HOFSTEDE_FILE) != result["reference"][HOFSTEDE_FILE]
    assert again["rescored_from"]["reference"] == result["reference"]
    assert again["rescored_from"]["reference_changed"] == [HOFSTEDE_FILE]
    assert f"compared with other reference data than that run: {HOFSTEDE_FILE}" in (out / "steering.md").read_text()
    same = tmp_path / "same"
    assert main(["--rescore", str(source), "--output", str(same), "--data-dir", str(data_root), "--iters", "10"]) == 0
    assert json.loads((same / "steering.json").read_text())["rescored_from"]["reference_changed"] == []
    assert "other reference data" not in (same / "steering.md").read_text()


def test_rescore_of_half_precision_answers_says_their_commands_do_not_give_them(matrix, data_root, tmp_path, caplog):
    """A run made in bfloat16 before half precision was refused keeps its answers on --rescore, and with them the
    lm_eval commands it recorded, which give other numbers: said in a warning, not passed on unannounced. A float32
    run rescores without it."""
    import logging

    source, result = matrix
    half = tmp_path / "half"
    half.mkdir()
    stored = {**result, "config": {**result["config"], "dtype": "bfloat16"},
              "identity": {**result["identity"], "dtype_loaded": "bfloat16"}}
    (half / "steering.json").write_text(json.dumps(stored))
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        assert main(["--rescore", str(source), "--output", str(tmp_path / "a"), "--data-dir", str(data_root),
                     "--iters", "10"]) == 0
        assert "not float32" not in caplog.text
        assert main(["--rescore", str(half), "--output", str(tmp_path / "b"), "--data-dir", str(data_root),
                     "--iters", "20"]) == 0  # the matrix's: the same numbers
    assert (f"--rescore: the answers in {half / 'steering.json'} were computed in bfloat16, not float32: lm_eval "
            "rounds half precision otherwise, so the lm_eval_commands it records need not give them again; run "
            "culture-steer again (it scores in float32) for answers they give") in caplog.text
    again = json.loads((tmp_path / "b" / "steering.json").read_text())
    assert again["lm_eval_commands"] == result["lm_eval_commands"] and again["vsm13"] == result["vsm13"]


def test_the_plain_model_s_wvs_numbers_have_their_intervals():
    # plain MRR over the targets and each row's plain similarity, rank and margin: the same question resamples
    # (the seed pairs them with the steered rows' intervals), and steering.md prints the MRR's interval
    from types import SimpleNamespace

    import numpy as np

    from culture_tasks.stats import bootstrap_ci
    from culture_tasks.steering import markdown, parse_target, vsm13_metrics, wvs_metrics

    rng = np.random.default_rng(1)
    ref = {c: {str(q): rng.dirichlet([1, 1, 1]) for q in range(8)} for c in ("usa", "china", "x")}
    rows = [parse_target(t) for t in ("usa=persona", "china=persona")]
    answers = [{"wvs_answers": {str(q): list(rng.dirichlet([1, 1, 1])) for q in range(8)}} for _ in range(3)]
    w = wvs_metrics(rows, answers[:2], answers[2], ref, SimpleNamespace(iters=50, seed=2, level=0.95))
    _, plain_q = compare.wvs_similarities(answers[2]["wvs_answers"], ref)

    def plain_mrr(sample):
        return float(np.mean([compare.wvs_scores(plain_q, c, sample)["reciprocal_rank"] for c in ("usa", "china")]))

    assert w["plain_mrr"] == pytest.approx(plain_mrr(list(range(8))))
    assert w["plain_mrr_ci"] == pytest.approx(list(bootstrap_ci(plain_mrr, list(range(8)), iters=50, seed=2)))
    margin = bootstrap_ci(lambda s: compare.wvs_scores(plain_q, "china", s)["margin"], list(range(8)), iters=50, seed=2)
    assert w["per_row"][1]["plain"]["margin_ci"] == pytest.approx(list(margin))
    assert all(f"{k}_ci" in r["plain"] for r in w["per_row"] for k in ("similarity", "rank", "reciprocal_rank"))
    v = vsm13_metrics([], [], {"item_means": {k: 1.0 for k in range(1, 25)}}, None, SimpleNamespace(iters=2, seed=0))
    lo, hi = w["plain_mrr_ci"]
    text = markdown({"vsm13": v, "wvs": w, "config": {"model": "m", "level": 0.95, "iters": 50, "seed": 2}})
    assert f"(plain {w['plain_mrr']:.3f} [{lo:.3f}, {hi:.3f}])" in text


def test_a_negative_seed_is_refused_before_the_model_loads(tmp_path, capsys):
    # the seed drives only the intervals, computed after every model has answered: a seed numpy refuses must
    # stop the run at once, naming the flag, not after the scoring (the model here does not even exist)
    out = tmp_path / "o"
    assert main(["--model", str(tmp_path / "no_model"), "--output", str(out), "--target", "usa=persona",
                 "--seed", "-1"]) == 2
    assert capsys.readouterr().err == "culture-steer: --seed must be a non-negative integer, got -1\n"
    assert main(["--rescore", str(tmp_path / "earlier"), "--output", str(out), "--seed", "-5"]) == 2
    assert capsys.readouterr().err == "culture-steer: --seed must be a non-negative integer, got -5\n"
    assert not out.exists()


def test_a_model_folder_that_is_missing_or_has_no_config_is_refused_before_loading(tmp_path, capsys):
    # both went on to the loader (after the reference data were read), which failed with an OSError traceback
    out = tmp_path / "o"
    assert main(["--model", str(tmp_path / "gone"), "--output", str(out), "--target", "usa=persona"]) == 2
    assert capsys.readouterr().err == (f"culture-steer: --model {tmp_path / 'gone'}: no such model folder; give a "
                                       "local model folder or a hub id\n")
    (tmp_path / "empty").mkdir()
    assert main(["--model", str(tmp_path / "empty"), "--output", str(out), "--target", "usa=persona"]) == 2
    assert capsys.readouterr().err == (f"culture-steer: --model {tmp_path / 'empty'}: the folder has no config.json; "
                                       "give a model folder (culture-model from-gguf builds one)\n")
    assert not out.exists()


@pytest.mark.parametrize("method", ["lora", "prompt"])
def test_a_cut_adapter_file_is_refused_before_the_model_loads(tiny_model, prompt_checkpoint, lora_checkpoint,
                                                              tmp_path, monkeypatch, capsys, method):
    """The existence of adapter_model.safetensors was all that was checked: a cut file failed with a
    safetensors traceback after the base model had loaded and answered."""
    from culture_tasks import steering

    monkeypatch.setattr(steering, "_load_lm", lambda *a, **k: pytest.fail("loaded the model"))
    bad = _copy_checkpoint(lora_checkpoint if method == "lora" else prompt_checkpoint, tmp_path / "cut")
    weights = bad / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    out = tmp_path / "o"
    assert main(["--model", str(tiny_model), "--output", str(out), "--target", "usa=persona",
                 "--target", f"china={method}:{bad}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"culture-steer: --target china:{method}: {weights} is not a "
                                                   "complete safetensors file (")
    assert err.endswith("it is truncated or damaged; save the checkpoint again or give another folder\n")
    assert not out.exists()


def test_the_margin_gain_is_stored_and_printed_beside_its_interval(data_root):
    from types import SimpleNamespace

    from culture_tasks.steering import markdown, parse_target, vsm13_metrics
    from culture_tasks.survey.vsm13 import vsm13_indices

    def answers(shift):
        means = {k: 1.0 + ((shift * k) % 5) * 0.8 for k in range(1, 25)}
        return {"item_means": means, "indices": vsm13_indices(means)}

    rows = [parse_target(t) for t in ("usa=persona", "china=persona")]
    v = vsm13_metrics(rows, [answers(3), answers(7)], answers(2), compare.hofstede_reference(str(data_root)),
                      SimpleNamespace(iters=40, seed=5, norm=2, level=0.95))
    text = markdown({"vsm13": v, "config": {"model": "m", "level": 0.95, "iters": 40, "seed": 5}})
    assert "| margin gain vs plain |" in text
    for r in v["per_row"]:
        assert r["margin_gain"] == pytest.approx(r["margin"] - r["plain"]["margin"])
        lo, hi = r["margin_gain_ci"]
        line = next(line for line in text.splitlines() if line.startswith(f"| {r['row']} | 6 |"))
        assert line.endswith(f"| {r['margin_gain']:.3f} [{lo:.3f}, {hi:.3f}] |")


def test_overwrite_keeps_the_earlier_run_s_files_until_all_new_ones_are_written(matrix, data_root, tmp_path,
                                                                                monkeypatch, capsys, caplog):
    """--overwrite unlinked the earlier steering.json, .md and .png before writing the new ones: a write that then
    failed (the heatmap, a full disk) lost the earlier result and left a new steering.json beside nothing, and an
    OSError ended in a traceback. Now the new files are written to temporary files first, the earlier ones are
    set aside (kept and named if the renames fail, deleted once the run has finished) and the new ones renamed
    into place; the temporary files of a killed write are removed, other files left and named."""
    import errno
    import logging

    from culture_tasks import plots, steering

    source, _ = matrix
    real_heatmap, real_set_aside = plots.steering_heatmap, steering.set_aside
    out = tmp_path / "out"
    out.mkdir()
    earlier = ("steering.json", "steering.md", "steering.png")
    for name in (*earlier, ".steering.png.k2j3.png", ".steering.json.x.json", "..steering.png.a.png.b.png"):
        (out / name).write_text("earlier run")
    (out / "notes.txt").write_text("mine")
    args = ["--rescore", str(source), "--output", str(out), "--data-dir", str(data_root), "--iters", "20",
            "--overwrite"]

    def names():
        return sorted(p.name for p in out.iterdir())

    def killed(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "steering_heatmap", killed)
    with caplog.at_level(logging.WARNING, logger="culture_tasks"), pytest.raises(KeyboardInterrupt):
        main(args)
    assert names() == ["notes.txt", *earlier]  # the earlier run whole, no file of this one
    assert all((out / n).read_text() == "earlier run" for n in earlier) and (out / "notes.txt").read_text() == "mine"
    assert any(f"{out} also holds notes.txt, not written by culture-steer" in r.getMessage() for r in caplog.records)

    def full(result, path, *names):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(plots, "steering_heatmap", full)
    capsys.readouterr()
    assert main(args) == 2  # one line, no traceback
    err = capsys.readouterr().err
    assert err.startswith("culture-steer: [Errno 28] No space left on device: ") and err.count("\n") == 1
    assert err.endswith("; fix that (free space, permissions) and run again\n")
    assert names() == ["notes.txt", *earlier] and (out / "steering.json").read_text() == "earlier run"

    monkeypatch.setattr(plots, "steering_heatmap", real_heatmap)

    def rename_fails(path):  # the earlier files set aside, then a rename into place fails
        real_set_aside(path)
        if path.name == "steering.png":
            raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(steering, "set_aside", rename_fails)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        assert main(args) == 2
    backups = [f".{n}.replaced" for n in earlier]
    assert names() == [*backups, "notes.txt"]  # nothing of this run, the earlier run kept beside
    assert all((out / b).read_text() == "earlier run" for b in backups)
    assert any(f"the output it was replacing stays in {out / backups[0]}" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(steering, "set_aside", real_set_aside)
    for b, n in zip(backups, earlier):  # moved back, as the message says
        (out / b).rename(out / n)
    assert main(args) == 0
    assert names() == ["notes.txt", *earlier] and json.loads((out / "steering.json").read_text())["config"]["iters"] == 20
    assert (out / "steering.png").read_bytes().startswith(b"\x89PNG")


def test_a_model_with_nan_answers_stops_before_writing_and_a_rerun_works(tiny_model, data_root, tmp_path, capsys):
    """A NaN weight made every profile, distance and rank of steering.json NaN (exit 0, with a warning to use
    float32 although the run was in float32); now the plain model's answers stop the run, naming it and the
    fix, before anything is written, and the corrected run fills the same output without --overwrite."""
    from tests.tiny_model import damaged_copy

    damaged = damaged_copy(tiny_model, tmp_path / "damaged")
    out = tmp_path / "o"
    args = ["--output", str(out), "--data-dir", str(data_root), "--target", "usa=plain", "--target", "china=persona",
            "--iters", "20", "--no-wvs"]
    assert main(["--model", str(damaged), *args]) == 2
    assert capsys.readouterr().err.endswith(
        "\nculture-steer: the plain model gives a NaN or infinite log-likelihood on 24 of 24 items of vsm13_usa in "
        "--dtype float32, so its answers would be NaN; nothing is written: its numbers are not finite even in float32; "
        "check the model's weights (a damaged file?)\n")
    assert not out.exists() or not any(out.iterdir())
    assert main(["--model", str(tiny_model), *args]) == 0
    assert (out / "steering.json").is_file()


def test_a_steered_target_with_nan_answers_is_named_with_its_checkpoint(tiny_model, prompt_checkpoint, data_root,
                                                                       tmp_path, capsys):
    """A soft prompt holding a NaN (a diverged search) gives NaN answers for its row only: the run stops
    naming the --target and its checkpoint, after the plain model, before anything is written."""
    from safetensors.torch import load_file, save_file

    bad = _copy_checkpoint(prompt_checkpoint, tmp_path / "nan_prompt")
    weights = load_file(str(bad / "adapter_model.safetensors"))
    for tensor in weights.values():
        tensor[0, 0] = float("nan")
    save_file(weights, str(bad / "adapter_model.safetensors"))
    out = tmp_path / "o"
    assert main(["--model", str(tiny_model), "--output", str(out), "--data-dir", str(data_root), "--no-wvs",
                 "--target", "usa=plain", "--target", f"DEU=prompt:{bad}", "--iters", "20"]) == 2
    assert capsys.readouterr().err.endswith(
        "\nculture-steer: --target germany:prompt gives a NaN or infinite log-likelihood on 24 of 24 items of "
        "vsm13_germany in --dtype float32, so its answers would be NaN; nothing is written: check its checkpoint "
        f"{bad} (a soft prompt that is not finite, or too large for the model)\n")
    assert not out.exists() or not any(out.iterdir())


def test_rescore_refuses_stored_answers_that_are_not_finite(matrix, data_root, tmp_path, capsys):
    """A run whose model gave NaN log-likelihoods stored NaN answers; rescored, they gave NaN metrics and exit 0."""
    source, result = matrix
    for where in ("item_means", "wvs_answers"):
        bad = tmp_path / where
        bad.mkdir()
        stored = json.loads((source / "steering.json").read_text())
        label = next(k for k in stored["profiles"] if k != "plain")
        answers = stored["profiles"][label][where]
        first = next(iter(answers))
        answers[first] = float("nan") if where == "item_means" else [float("nan")] * len(answers[first])
        (bad / "steering.json").write_text(json.dumps(stored))
        assert main(["--rescore", str(bad), "--output", str(tmp_path / f"o_{where}"), "--data-dir", str(data_root)]) == 2
        assert capsys.readouterr().err == (f"culture-steer: --rescore: {bad / 'steering.json'}: the stored answers of "
                                           f"{label} are not finite (the model gave NaN or infinite log-likelihoods); "
                                           "rerun culture-steer with the model in float32\n")
        assert not (tmp_path / f"o_{where}").exists()


def test_overwrite_keeps_a_killed_run_s_answers_until_it_has_finished(tiny_model, data_root, tmp_path, monkeypatch,
                                                                       capsys, caplog):
    """--overwrite deleted a killed run's stored answers before any work: a replacement that then failed (out of
    memory, a bad checkpoint) lost them. Now they are set aside, kept (and named) when it fails, deleted when it
    has finished."""
    import logging

    out = tmp_path / "run"
    args = ["--model", str(tiny_model), "--output", str(out), "--data-dir", str(data_root), "--target", "usa=plain",
            "--target", "China=persona", "--iters", "20", "--batch-size", "16", "--no-wvs"]
    _killed_at(monkeypatch, 2)  # the plain model stored, killed in china:persona
    with pytest.raises(KeyboardInterrupt):
        main(args)
    stored = (out / "steering.partial.json").read_bytes()
    backup = out / ".steering.partial.json.replaced"
    _killed_at(monkeypatch, 1)  # the replacement is killed in its first model
    with caplog.at_level(logging.WARNING, logger="culture_tasks"), pytest.raises(KeyboardInterrupt):
        main([*args, "--overwrite"])
    assert backup.read_bytes() == stored and not (out / "steering.partial.json").exists()
    assert any(f"the output it was replacing stays in {backup}" in r.getMessage() for r in caplog.records)
    capsys.readouterr()
    assert main([*args, "--overwrite"]) == 2  # a second replacement would sweep the backup away
    assert str(backup) in capsys.readouterr().err and backup.read_bytes() == stored
    backup.unlink()
    _killed_at(monkeypatch, 0)
    assert main([*args, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["steering.json", "steering.md", "steering.png"]


def _killed_at(monkeypatch, call: int):
    """``survey_answers`` counted; the ``call``-th one raises KeyboardInterrupt (a killed run); 0: never."""
    from culture_tasks import steering

    real, calls = steering.survey_answers, []

    def counted(lm, row, *args):
        calls.append(row.label)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(lm, row, *args)

    monkeypatch.setattr(steering, "survey_answers", counted)
    return calls


def test_resume_after_a_kill_reuses_the_stored_answers_and_writes_the_uninterrupted_run_s_files(
        matrix, tiny_model, prompt_checkpoint, lora_checkpoint, data_root, tmp_path, monkeypatch, capsys):
    """A run killed after the plain model and one steered row lost every answer it had computed; the next
    run started from zero. Now each answer set is stored as it is computed (steering.partial.json, with
    what answered it) and --resume computes only the rest: the same files as the uninterrupted run."""
    import tqdm.auto

    source, uninterrupted = matrix
    out = tmp_path / "run"
    args = ["--model", str(tiny_model), "--output", str(out), "--data-dir", str(data_root),
            "--target", "usa=plain", "--target", "China=persona", "--target", f"DEU=prompt:{prompt_checkpoint}",
            "--target", "saudi_arabia=persona", "--target", f"turkey=lora:{lora_checkpoint}",
            "--iters", "20", "--batch-size", "16"]  # the matrix's settings
    calls = _killed_at(monkeypatch, 3)  # the plain model (usa:plain is it), china:persona, killed in germany
    with pytest.raises(KeyboardInterrupt):
        main(args)
    assert calls == ["usa:plain", "china:persona", "germany:prompt"]
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["steering.partial.json"]
    stored = json.loads((out / "steering.partial.json").read_text())
    assert list(stored["profiles"]) == ["plain", "usa:plain", "china:persona"]
    assert stored["profiles"]["china:persona"] == uninterrupted["profiles"]["china:persona"]
    # without --resume the stored answers are neither overwritten nor ignored
    before = (out / "steering.partial.json").read_bytes()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass --resume to continue the run there, --overwrite to replace it" in err
    assert (out / "steering.partial.json").read_bytes() == before
    bars = []

    class Bar(tqdm.auto.tqdm):
        def __init__(self, *a, **k):
            if k.get("desc") == "steered models":
                bars.append((k.get("initial"), k.get("total")))
            super().__init__(*a, **k)

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    calls = _killed_at(monkeypatch, 0)
    assert main([*args, "--resume"]) == 0
    assert calls == ["germany:prompt", "saudi_arabia:persona", "turkey:lora"]  # the stored ones not again
    assert bars == [(2, 5)]  # the reused rows count as done
    assert sorted(p.name for p in out.iterdir()) == ["steering.json", "steering.md", "steering.png"]
    resumed = json.loads((out / "steering.json").read_text())
    for result in (resumed, uninterrupted):
        result.pop("environment")
        result["config"].pop("output")
        result["config"].pop("resume", None)
    assert resumed == uninterrupted
    assert (out / "steering.md").read_text() == (source / "steering.md").read_text()


def _fake_answers(lm, row, tm, cfg, fallback):
    """No model: an answer set that depends on the row only."""
    from culture_tasks.survey.vsm13 import vsm13_indices

    shift = sum(map(ord, row.label)) % 7 + 1
    means = {k: 1.0 + ((shift * k) % 5) * 0.8 for k in range(1, 25)}
    return {"vsm13_task": f"vsm13_{row.slug}", "item_means": means, "indices": vsm13_indices(means), "lm_eval": {},
            "wvs_task": None, "wvs_answers": None}


def test_resume_with_other_settings_or_other_checkpoint_content_is_refused(tiny_model, lora_checkpoint, data_root,
                                                                           tmp_path, monkeypatch, capsys):
    from culture_tasks import steering
    from culture_tasks.fingerprints import model_fingerprint

    ckpt = _copy_checkpoint(lora_checkpoint, tmp_path / "tr")
    out = tmp_path / "run"
    args = ["--model", str(tiny_model), "--output", str(out), "--data-dir", str(data_root), "--no-wvs",
            "--target", "usa=persona", "--target", f"turkey=lora:{ckpt}", "--target", "china=persona",
            "--iters", "20"]
    monkeypatch.setattr(steering, "_load_lm", lambda *a, **k: None)
    monkeypatch.setattr(steering, "survey_answers", _fake_answers)
    calls = []

    def killed(lm, row, *rest):
        calls.append(row.label)
        if row.label == "china:persona":
            raise KeyboardInterrupt
        return _fake_answers(lm, row, *rest)

    monkeypatch.setattr(steering, "survey_answers", killed)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    capsys.readouterr()
    before = (out / "steering.partial.json").read_bytes()
    monkeypatch.setattr(steering, "survey_answers", lambda *a: pytest.fail("answered in a refused resume"))

    def refused(extra, message, argv=args):
        assert main([*argv, *extra, "--resume"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
        assert err.endswith("pass --overwrite to start again, or choose another --output\n")
        assert (out / "steering.partial.json").read_bytes() == before

    refused(["--batch-size", "8"], "batch_size: saved 64, given 8")
    refused(["--chat-template"], "chat_template: saved False, given True")
    other = [a.replace("china=persona", "germany=persona") for a in args]
    refused([], "targets: saved ['usa:persona', 'turkey:lora', 'china:persona'], given ['usa:persona', "
            "'turkey:lora', 'germany:persona']", other)
    old = model_fingerprint(ckpt)
    save_random_lora(tiny_model, tmp_path / "other_lora", seed=12)
    capsys.readouterr()
    (ckpt / "adapter_model.safetensors").write_bytes((tmp_path / "other_lora" / "adapter_model.safetensors").read_bytes())
    refused([], f"checkpoint turkey:lora: saved '{old}', given '{model_fingerprint(ckpt)}'")
    assert main([*args, "--resume", "--overwrite"]) == 2
    assert "--resume continues the run there and --overwrite replaces it; give only one" in capsys.readouterr().err
    # --overwrite starts afresh: every answer computed again, the stored ones dropped
    monkeypatch.setattr(steering, "survey_answers", killed)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        main([*args, "--overwrite"])
    assert calls == ["usa:plain", "usa:persona", "turkey:lora", "china:persona"]
    assert json.loads((out / "steering.partial.json").read_text())["settings"]["checkpoint turkey:lora"] == \
        model_fingerprint(ckpt)


def test_a_killed_half_precision_run_is_not_resumed_in_float32(tiny_model, data_root, tmp_path, monkeypatch,
                                                               capsys):
    """A run killed in bfloat16 before half precision was refused stored its answers with the kernels: a resume,
    now in float32, would mix two roundings in one matrix, so it is refused, naming the dtype and --overwrite."""
    from culture_tasks import steering

    monkeypatch.setattr(steering, "_load_lm", lambda *a, **k: None)
    monkeypatch.setattr(steering, "survey_answers", _fake_answers)
    out = tmp_path / "o"
    args = ["--model", str(tiny_model), "--output", str(out), "--data-dir", str(data_root), "--no-wvs",
            "--target", "usa=persona", "--target", "china=persona", "--iters", "20"]
    _killed_at(monkeypatch, 3)  # the plain model and usa:persona stored, killed in china:persona
    with pytest.raises(KeyboardInterrupt):
        main(args)
    stored = json.loads((out / "steering.partial.json").read_text())
    assert stored["settings"]["dtype"] == "float32" and "kernels" not in stored["settings"]
    stored["settings"].update(dtype="bfloat16", kernels=provenance.kernels("cpu"))
    (out / "steering.partial.json").write_text(json.dumps(stored))
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "made with other settings (dtype: saved 'bfloat16', given 'float32'; kernels: " \
        "saved {'accelerator': None, " in err and "pass --overwrite to start again" in err
    calls = _killed_at(monkeypatch, 0)
    assert main([*args, "--overwrite"]) == 0 and calls == ["usa:plain", "usa:persona", "china:persona"]


def _finished_fake_run(tiny_model, data_root, tmp_path, monkeypatch) -> tuple[Path, list[str]]:
    """A finished two-country run on fake answers (no model loads): its output folder and command line."""
    from culture_tasks import steering

    out = tmp_path / "run"
    args = ["--model", str(tiny_model), "--output", str(out), "--data-dir", str(data_root), "--no-wvs",
            "--target", "usa=persona", "--target", "china=persona", "--iters", "20"]
    monkeypatch.setattr(steering, "_load_lm", lambda *a, **k: None)
    monkeypatch.setattr(steering, "survey_answers", _fake_answers)
    assert main(args) == 0
    return out, args


def test_resume_of_a_finished_run_does_nothing_and_other_intervals_point_to_rescore(tiny_model, data_root, tmp_path,
                                                                                    monkeypatch, capsys):
    from culture_tasks import steering

    out, args = _finished_fake_run(tiny_model, data_root, tmp_path, monkeypatch)
    capsys.readouterr()
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(files) == ["steering.json", "steering.md", "steering.png"]
    monkeypatch.setattr(steering, "survey_answers", lambda *a: pytest.fail("answered a finished run"))
    assert main([*args, "--resume"]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    assert main([*args, "--resume", "--iters", "30"]) == 2
    assert capsys.readouterr().err == (
        f"culture-steer: --resume: the run in {out} is finished, with other interval settings (iters: saved 20, "
        f"given 30); its files are kept: recompute them with --rescore {out} --output <new>, or pass --overwrite "
        "to run it again\n")
    assert main([*args, "--resume", "--batch-size", "8"]) == 2
    assert "made with other settings (batch_size: saved 64, given 8)" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("mine")
    assert main([*args[:3], str(tmp_path / "notes"), *args[4:], "--resume"]) == 2
    assert capsys.readouterr().err == (
        f"culture-steer: --resume: {tmp_path / 'notes'} holds neither steering.partial.json nor steering.json, so it "
        "is not a culture-steer run; pass --overwrite to start one there, or choose another --output\n")
    assert main(["--rescore", str(out), "--output", str(tmp_path / "r"), "--resume"]) == 2
    assert "--resume: no effect with --rescore" in capsys.readouterr().err


def test_the_matrix_names_the_vsm13_items_it_answered_by_content(tiny_model, data_root, tmp_path, monkeypatch,
                                                                  capsys):
    """steering.json recorded the reference files it compared with by content, but not the VSM13 items the model
    answered (checked on a resume, then dropped): it records them and the data root, steering.md says so, a rescore
    keeps them, and a resume of the finished run compares them."""
    from culture_tasks import steering
    from culture_tasks.outputs import file_digest

    out, args = _finished_fake_run(tiny_model, data_root, tmp_path, monkeypatch)
    result = json.loads((out / "steering.json").read_text())
    items = file_digest(Path(data_root) / "vsm13" / "items.jsonl")
    assert result["answered_data"] == {"vsm13/items.jsonl": items}
    assert result["data_root"] == str(Path(data_root).resolve())
    assert (f"Data root {Path(data_root).resolve()}: answered vsm13/items.jsonl {items}; compared with 1 reference "
            "files, by content in steering.json.") in (out / "steering.md").read_text()
    assert main(["--rescore", str(out), "--output", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "steering.json").read_text())
    assert (again["answered_data"], again["data_root"]) == (result["answered_data"], result["data_root"])
    capsys.readouterr()
    result["answered_data"]["vsm13/items.jsonl"] = "sha256:0"  # as if answered on other items
    (out / "steering.json").write_text(json.dumps(result))
    monkeypatch.setattr(steering, "survey_answers", lambda *a: pytest.fail("answered a finished run"))
    assert main([*args, "--resume"]) == 2
    assert f"(data vsm13/items.jsonl: saved 'sha256:0', given '{items}')" in capsys.readouterr().err


def test_answers_that_are_not_finite_drop_this_run_s_stored_answers_and_keep_earlier_ones(tiny_model, data_root,
                                                                                         tmp_path, monkeypatch, capsys):
    """A fresh run stopped by NaN answers leaves its folder as it found it (a fix changes the dtype, model or
    checkpoint, which a resume would refuse); a resumed one keeps the answers stored before it, and says so."""
    from culture_tasks import steering

    out = tmp_path / "run"
    args = ["--model", str(tiny_model), "--output", str(out), "--data-dir", str(data_root), "--no-wvs",
            "--target", "usa=persona", "--target", "china=persona", "--target", "india=persona", "--iters", "20"]
    monkeypatch.setattr(steering, "_load_lm", lambda *a, **k: None)

    def nan_at(label, kill=None):
        def answers(lm, row, *rest):
            if row.label == label:
                raise SteeringError(f"--target {label} gives a NaN ...; nothing is written: fix it")
            if row.label == kill:
                raise KeyboardInterrupt
            return _fake_answers(lm, row, *rest)
        monkeypatch.setattr(steering, "survey_answers", answers)

    nan_at("china:persona")
    assert main(args) == 2
    assert capsys.readouterr().err.endswith("nothing is written: fix it\n")
    assert not out.exists() or not any(out.iterdir())
    nan_at(None, kill="china:persona")
    with pytest.raises(KeyboardInterrupt):
        main(args)
    nan_at("india:persona")
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2
    assert capsys.readouterr().err.endswith(
        f"nothing is written: fix it (the answers stored before it stay in {out / 'steering.partial.json'})\n")
    stored = json.loads((out / "steering.partial.json").read_text())["profiles"]
    assert list(stored) == ["plain", "usa:persona", "china:persona"]


def test_resume_of_a_run_killed_while_storing_its_first_answers_starts_afresh(tiny_model, data_root, tmp_path,
                                                                             monkeypatch, capsys):
    """Killed inside the first atomic write of steering.partial.json, a run leaves only that write's temporary
    file (and its lock): --resume said the folder held no culture-steer run and named only --overwrite."""
    from culture_tasks import steering

    out = tmp_path / "run"
    out.mkdir()
    (out / ".steering.partial.json.k2j3.json").write_text('{"settings": {"mod')
    args = ["--model", str(tiny_model), "--output", str(out), "--data-dir", str(data_root), "--no-wvs",
            "--target", "usa=persona", "--target", "china=persona", "--iters", "20"]
    monkeypatch.setattr(steering, "_load_lm", lambda *a, **k: None)
    calls = []
    monkeypatch.setattr(steering, "survey_answers", lambda lm, row, *a: calls.append(row.label) or
                        _fake_answers(lm, row, *a))
    assert main(args) == 2
    assert "pass --resume to continue the run there" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    assert calls == ["usa:plain", "usa:persona", "china:persona"]
    assert sorted(p.name for p in out.iterdir()) == ["steering.json", "steering.md", "steering.png"]


def test_a_balanced_matrix_scores_the_balanced_tasks_as_lm_eval_does(tiny_model, prompt_checkpoint, data_root, tmp_path):
    # --option-order balanced: every profile from vsm13_<country>_balanced (the persona's from _persona_balanced),
    # whose indices lm_eval reports for the same checkpoint; a rescore keeps the order, a pre-option run reads listed
    import lm_eval

    out = tmp_path / "balanced"
    balanced = write_alignment(_copy_checkpoint(prompt_checkpoint, tmp_path / "de_balanced"), "DEU", data_root,
                               option_order="balanced")
    assert main(["--model", str(tiny_model), "--output", str(out), "--data-dir", str(data_root), "--option-order",
                 "balanced", "--target", "China=persona", "--target", f"DEU=prompt:{balanced}",
                 "--iters", "30", "--no-wvs"]) == 0
    result = json.loads((out / "steering.json").read_text())
    assert [result["profiles"][k]["vsm13_task"] for k in ("plain", "china:persona", "germany:prompt")] == [
        "vsm13_china_balanced", "vsm13_china_persona_balanced", "vsm13_germany_balanced"]
    tm = task_manager({"data_dir": str(data_root)})
    lm_out = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={tiny_model},dtype=float32,peft={prompt_checkpoint}",
                                     tasks=["vsm13_germany_balanced"], task_manager=tm, device="cpu", batch_size=8,
                                     bootstrap_iters=0)["results"]["vsm13_germany_balanced"]
    for d in DIMENSIONS:
        assert lm_out[f"{d},none"] == pytest.approx(result["profiles"]["germany:prompt"]["indices"][d], abs=1e-4)
    assert "both option orders" in (out / "steering.md").read_text()
    assert main(["--rescore", str(out), "--output", str(tmp_path / "again"), "--data-dir", str(data_root),
                 "--iters", "30"]) == 0
    again = json.loads((tmp_path / "again" / "steering.json").read_text())
    assert again["config"]["option_order"] == "balanced" and again["vsm13"] == result["vsm13"]
    from culture_tasks.steering import _answered
    assert _answered({}, "option_order") == "listed" and _answered({"option_order": "balanced"}, "option_order") == "balanced"


def test_a_lora_adapter_trained_on_another_culture_is_refused_before_the_model_loads(
        tiny_model, lora_checkpoint, data_root, tmp_path, monkeypatch, capsys, caplog):
    """--target turkey=lora:<the korean adapter> would fill the turkey:lora row: culture-train records the rows'
    cultures in training.json and culture-steer checks the country's culture against them; an adapter
    without the record is used, with a warning that names what was not checked."""
    from culture_tasks import steering

    monkeypatch.setattr(steering, "_load_lm", lambda *a, **k: pytest.fail("loaded the model"))
    ckpt = _copy_checkpoint(lora_checkpoint, tmp_path / "korean")
    record, out = ckpt / "training.json", tmp_path / "o"

    def validate(target):
        steering.validate(SteeringConfig(model=str(tiny_model), targets=[f"{target}=lora:{ckpt}"], output=str(out),
                                         data_dir=str(data_root)))

    with caplog.at_level("WARNING", logger="culture_tasks"):
        validate("turkey")  # no training.json: not checked, said
    assert f"--target turkey:lora: {record} names no cultures the adapter was trained on, so that it was " \
           "trained for Turkey (culture turkish) is not checked" in caplog.text
    record.write_text(json.dumps({"cultures": ["korean"]}))
    assert main(["--model", str(tiny_model), "--output", str(out), "--data-dir", str(data_root), "--no-wvs",
                 "--target", f"turkey=lora:{ckpt}"]) == 2
    assert capsys.readouterr().err == (
        f"culture-steer: --target turkey:lora: {record} has cultures ['korean'], and Turkey stands for the culture "
        "'turkish'; give an adapter trained on its culture, or steer this one toward a country of 'korean'\n")
    assert not out.exists()
    validate("south_korea")
    with pytest.raises(SteeringError, match="India stands for no CultureLLM culture"):
        validate("india")
    record.write_text(json.dumps({"cultures": ["arabic", "korean"]}))  # CultureLLM-One-like: any of them
    validate("jordan")
    record.write_text(json.dumps({"cultures": ["Korean"]}))  # an adapter trained on "Korean" rows before they were
    validate("south_korea")                                      # recorded as korean: the same culture
    record.write_text(json.dumps({"cultures": "nonkorean"}))  # hand-edited: "korean" is in it as a substring
    with pytest.raises(SteeringError) as err:
        validate("south_korea")
    assert str(err.value) == (f"--target south_korea:lora: {record} has cultures 'nonkorean', which is no list of "
                              "culture names; train the adapter again or give another folder")


def test_a_prompt_fitted_to_another_country_or_asked_otherwise_is_refused_before_the_model_loads(
        tiny_model, prompt_checkpoint, data_root, tmp_path, monkeypatch, capsys):
    """--target china=prompt:<a prompt fitted to the USA> ran and reported a china:prompt row: only
    adapter_config.json was read. The alignment.json beside the adapter names the country and settings of the fit."""
    from culture_tasks import steering

    monkeypatch.setattr(steering, "_load_lm", lambda *a, **k: pytest.fail("loaded the model"))
    ckpt = _copy_checkpoint(prompt_checkpoint, tmp_path / "fitted")
    record, out = ckpt / "alignment.json", tmp_path / "o"

    def refused(target, message, *extra):
        assert main(["--model", str(tiny_model), "--output", str(out), "--data-dir", str(data_root), "--no-wvs",
                     "--target", f"{target}=prompt:{ckpt}", *extra]) == 2
        assert capsys.readouterr().err == f"culture-steer: --target {message}\n"
        assert not out.exists()

    def taken(target, *flags):
        cfg = SteeringConfig(model=str(tiny_model), targets=[f"{target}=prompt:{ckpt}"], output=str(out),
                             data_dir=str(data_root), **dict(flags))
        steering.validate(cfg)  # every check before the model: nothing refused

    write_alignment(ckpt, "USA", data_root)
    refused("china", f"china:prompt: {record} has settings.country 'USA' (USA), the --target China (CHI); give a "
                     "prompt fitted to China, or steer this one toward USA")
    taken("usa")
    write_alignment(ckpt, "the United States", data_root)  # any spelling culture-align takes
    taken("U.S.A.")
    write_alignment(ckpt, "USA", data_root, target=[40, 91, 62, 46, 26, 60])  # explicit scores: not Hofstede's ivr 68
    refused("usa", f"usa:prompt: {record} has target.scores {{'pdi': 40.0, 'idv': 91.0, 'mas': 62.0, 'uai': 46.0, "
                   "'lto': 26.0, 'ivr': 60.0}, this run Hofstede's {'pdi': 40.0, 'idv': 91.0, 'mas': 62.0, "
                   "'uai': 46.0, 'lto': 26.0, 'ivr': 68.0} for USA; give a prompt fitted to Hofstede's scores for USA")
    write_alignment(ckpt, "USA", data_root, chat_template=True)
    refused("usa", f"usa:prompt: {record} has settings.chat_template True, this run False; pass --chat-template")
    taken("usa", ("chat_template", True))
    write_alignment(ckpt, "USA", data_root, option_order="worst")  # searched on the balanced task's documents
    refused("usa", f"usa:prompt: {record} has settings.option_order 'worst', this run 'listed'; pass --option-order "
                   "balanced")
    taken("usa", ("option_order", "balanced"))
    write_alignment(ckpt, "USA", data_root, answer_mode="argmax")
    refused("usa", f"usa:prompt: {record} has settings.answer_mode 'argmax', this run 'expected' (culture-steer reads "
                   "every answer as its expected value); give a prompt fitted with --answer-mode expected")
    record.unlink()
    refused("usa", f"usa:prompt: {record} does not exist, so the country and settings the prompt was fitted with "
                   "cannot be checked; give the folder culture-align wrote, holding its alignment.json")


def test_a_checkpoint_made_on_another_model_is_refused_before_the_model_loads(
        tiny_model, prompt_checkpoint, lora_checkpoint, data_root, tmp_path, monkeypatch, capsys, caplog):
    """Only adapter_config.json's base model path was compared with --model, so a checkpoint made on the model
    that folder held before (a new download, another fine-tune of the same shape) was scored on this one. The
    fingerprint culture-align and culture-train record is compared, in the scheme it was made in; a record
    without one is used with a warning. A prompt fitted on other VSM13 items is refused."""
    import logging

    from culture_tasks import fingerprints, steering
    from culture_tasks.outputs import file_digest

    monkeypatch.setattr(steering, "_load_lm", lambda *a, **k: pytest.fail("loaded the model"))
    monkeypatch.setattr(fingerprints, "_WARNED", set())
    prompt = write_alignment(_copy_checkpoint(prompt_checkpoint, tmp_path / "usa"), "USA", data_root)
    lora = _copy_checkpoint(lora_checkpoint, tmp_path / "turkish")
    out, record, trained = tmp_path / "o", prompt / "alignment.json", lora / "training.json"
    full, sampled = fingerprints.model_fingerprint(tiny_model), fingerprints.model_fingerprint(tiny_model, "sha256:")
    other_full, other_sampled = "sha256-full:" + "0" * 64, "sha256:" + "0" * 64
    items_file = data_root / "vsm13" / "items.jsonl"
    items = file_digest(items_file)

    def record_inputs(**inputs):
        data = json.loads(record.read_text())
        record.write_text(json.dumps({**data, "inputs": inputs}))

    def refused(target, message):
        assert main(["--model", str(tiny_model), "--output", str(out), "--data-dir", str(data_root), "--no-wvs",
                     "--target", target]) == 2
        assert capsys.readouterr().err == f"culture-steer: --target {message}\n"
        assert not out.exists()

    def taken(target):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="culture_tasks"):
            steering.validate(SteeringConfig(model=str(tiny_model), targets=[target], output=str(out),
                                             data_dir=str(data_root)))
        return caplog.text

    record_inputs(model_fingerprint=other_full, vsm13_items=items)
    refused(f"usa=prompt:{prompt}", f"usa:prompt: {record} has inputs.model_fingerprint {other_full}, but --model "
            f"{tiny_model} is {full}: the checkpoint was made on another model; give --model the base model it was "
            f"made on, or a checkpoint made on {tiny_model}")
    record_inputs(model_fingerprint=other_sampled, vsm13_items=items)  # a record of the earlier scheme, in its own
    refused(f"usa=prompt:{prompt}", f"usa:prompt: {record} has inputs.model_fingerprint {other_sampled}, but --model "
            f"{tiny_model} is {sampled}: the checkpoint was made on another model; give --model the base model it was "
            f"made on, or a checkpoint made on {tiny_model}")
    record_inputs(model_fingerprint=full, vsm13_items=items)
    assert "not checked" not in taken(f"usa=prompt:{prompt}")
    record_inputs(model_fingerprint=sampled, vsm13_items=items)
    monkeypatch.setattr(fingerprints, "_WARNED", set())  # warned once per folder: the refusal above warned too
    assert "recorded its fingerprint in the earlier scheme" in taken(f"usa=prompt:{prompt}")
    record_inputs(model_fingerprint=full, vsm13_items="sha256:" + "1" * 64, data_dir="/data/then")
    refused(f"usa=prompt:{prompt}", f"usa:prompt: {record} has inputs.vsm13_items sha256:{'1' * 64}, this run's "
            f"{items_file} is {items}: the prompt was fitted on other VSM13 items; pass "
            "--data-dir /data/then, or give a prompt fitted on these items")
    record_inputs()  # a record made before culture-align stored them: used, and said
    said = taken(f"usa=prompt:{prompt}")
    assert (f"--target usa:prompt: {record} records no inputs.model_fingerprint, so that the checkpoint was made on "
            f"the model in --model {tiny_model} is not checked (only adapter_config.json's base model "
            f"'{tiny_model}' is compared)") in said
    assert f"--target usa:prompt: {record} records no inputs.vsm13_items, so that the prompt was fitted on" in said
    config = json.loads((prompt / "adapter_config.json").read_text())
    (prompt / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": None}))
    assert "is not checked (and adapter_config.json names no base model)" in taken(f"usa=prompt:{prompt}")

    trained.write_text(json.dumps({"cultures": ["turkish"], "model_fingerprint": other_full}))
    refused(f"turkey=lora:{lora}", f"turkey:lora: {trained} has model_fingerprint {other_full}, but --model "
            f"{tiny_model} is {full}: the checkpoint was made on another model; give --model the base model it was "
            f"made on, or a checkpoint made on {tiny_model}")
    trained.write_text(json.dumps({"cultures": ["turkish"], "model_fingerprint": full}))
    assert "not checked" not in taken(f"turkey=lora:{lora}")
    trained.unlink()  # an adapter made elsewhere
    assert f"--target turkey:lora: {trained} records no model_fingerprint" in taken(f"turkey=lora:{lora}")


def test_culture_align_s_own_record_is_what_culture_steer_checks(tiny_model, data_root, tmp_path, monkeypatch, capsys):
    """The checks read alignment.json as culture-align writes it, not only as the test above writes it."""
    from aligners.cli import main as align_main
    from culture_tasks import steering

    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    fitted = tmp_path / "usa"
    assert align_main(["--model", str(tiny_model), "--country", "United States", "--output", str(fitted),
                       "--population", "4", "--generations", "1", "--subspace-dim", "4", "--no-baselines"]) == 0
    monkeypatch.setattr(steering, "_load_lm", lambda *a, **k: pytest.fail("loaded the model"))
    assert main(["--model", str(tiny_model), "--output", str(tmp_path / "o"), "--target",
                 f"china=prompt:{fitted}"]) == 2
    assert capsys.readouterr().err.endswith(f"culture-steer: --target china:prompt: {fitted / 'alignment.json'} has "
                                            "settings.country 'United States' (USA), the --target China (CHI); give a "
                                            "prompt fitted to China, or steer this one toward USA\n")
    steering.validate(SteeringConfig(model=str(tiny_model), targets=[f"usa=prompt:{fitted}"],
                                     output=str(tmp_path / "o")))


def test_a_model_published_in_bfloat16_is_scored_and_recorded_in_float32(tiny_model, data_root, tmp_path, caplog):
    """--dtype auto loaded a model published in bfloat16 in half precision; it is refused now (above), and such a
    model answers in float32, as its recorded command loads it, without the half-precision warning."""
    import logging

    from tests.tiny_model import bfloat16_copy

    half = bfloat16_copy(tiny_model, tmp_path / "bf16")
    out = tmp_path / "o"
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        assert main(["--model", str(half), "--output", str(out), "--data-dir", str(data_root), "--no-wvs",
                     "--target", "usa=persona", "--iters", "20"]) == 0
    assert "half-precision rounding" not in caplog.text
    result = json.loads((out / "steering.json").read_text())
    assert result["config"]["dtype"] == "float32" and result["identity"]["dtype_loaded"] == "float32"
    assert {p["dtype"] for p in result["profiles"].values()} == {"float32"}
    assert all(f"pretrained={half},dtype=float32 " in c for c in result["lm_eval_commands"].values())
    assert "Weights loaded in float32." in (out / "steering.md").read_text()


def test_both_clis_take_and_refuse_the_same_country_names(data_root):
    """culture-steer took "South Korea" and "the United States", culture-align refused them (and took Hofstede's
    "Korea South", which culture-steer refused): one lookup (countries.find_listed, then Hofstede's file) now."""
    from aligners.align import check_countries
    from aligners.config import AlignConfig
    from culture_tasks.survey.vsm13 import UnknownCountryError, resolve_target

    def steer(name):
        try:
            cfg = SteeringConfig(model="m", targets=[f"{name}=persona"], output="o", data_dir=str(data_root))
        except SteeringError:
            return None
        return cfg.rows[0].hofstede

    def align(name):
        try:
            check_countries(AlignConfig(model="m", countries=[name], output="o", data_dir=str(data_root)))
        except (ValueError, UnknownCountryError):
            return None
        return resolve_target(name, None, str(data_root)).code

    names = {"South Korea": "KOR", "south_korea": "KOR", "Korea South": "KOR", "kor": "KOR",
             "the United States": "USA", "United States": "USA", "U.S.A.": "USA", "usa": "USA",
             "China": "CHI", "CHN": "CHI", "DEU": "GER", "saudi_arabia": "SAU",
             "Atlantis": None, "Korea": None, "the USA": None}
    assert {n: steer(n) for n in names} == names
    assert {n: align(n) for n in names} == names
    # a Hofstede country without survey tasks: culture-align scores it through vsm13_usa, culture-steer cannot
    assert align("Chile") == "CHL"
    with pytest.raises(SteeringError, match="'Chile' in --target is CHL in Hofstede's file, but countries.yaml lists "
                                            "no survey tasks for it"):
        SteeringConfig(model="m", targets=["Chile=persona"], output="o", data_dir=str(data_root))


def test_a_lora_adapter_of_another_base_model_without_a_record_is_refused_before_the_model_loads(
        tiny_model, data_root, tmp_path, monkeypatch, capsys):
    """A LoRA adapter made elsewhere (no training.json, no base model in adapter_config.json) on a model of another
    hidden size passed every check with warnings: the plain model was scored, then loading the adapter failed with
    a traceback of size mismatches. Its tensor shapes are now compared with --model's layers first."""
    from culture_tasks import steering
    from tests.tiny_model import build_tiny_model

    monkeypatch.setattr(steering, "_load_lm", lambda *a, **k: pytest.fail("loaded the model"))
    lora = save_random_lora(build_tiny_model(tmp_path / "wider", hidden_size=64), tmp_path / "lora64", seed=3)
    config = json.loads((lora / "adapter_config.json").read_text())
    (lora / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": None}))
    out = tmp_path / "o"
    capsys.readouterr()  # building the wider model's progress bars
    assert main(["--model", str(tiny_model), "--output", str(out), "--data-dir", str(data_root), "--no-wvs",
                 "--target", f"usa=lora:{lora}"]) == 2
    assert capsys.readouterr().err == (
        f"culture-steer: --target usa:lora: {lora} does not fit --model {tiny_model}: "
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight has shape [4, 64] there, [4, 32] in the "
        f"model (an adapter of another base model); give a LoRA checkpoint made on {tiny_model}\n")
    assert not out.exists()


def test_steering_md_rounds_rank_intervals_outward():
    """steering.md shows a rank interval in whole ranks that hold it: the VSM13 rank 26 [6.6, 51.3] reads [6, 52]
    (to the nearest rank, [7, 51], narrower than computed), a plain rank [7.0000000001, 51.0] float noise off
    whole ranks reads [7, 51], the WVS rank [1.0, 10.025] reads [1, 11]."""
    from pathlib import Path

    from culture_tasks.steering import markdown

    docs = Path(__file__).resolve().parents[1] / "docs"
    result = json.loads((docs / "steering_qwen25coder_persona" / "steering.json").read_text(encoding="utf-8"))
    row = result["vsm13"]["per_row"][0]
    row.update(rank=26, rank_ci=[6.6, 51.3], countries=66)
    row["plain"].update(rank=30, rank_ci=[7.0000000001, 51.0])
    result["wvs"]["per_row"][0].update(rank=4, rank_ci=[1.0, 10.024999999999977])
    text = markdown(result)
    assert "| usa:persona | 6 | 26 [6, 52] of 66 | " in text and " | 30 [7, 51] | " in text
    assert " | 4 [1, 11] of 11 | " in text


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "auto"])
def test_half_precision_is_refused_before_anything_loads(tiny_model, data_root, tmp_path, monkeypatch, capsys, dtype):
    """--dtype bfloat16 wrote steering.json with indices up to 0.31 apart from what its recorded lm_eval command gives
    (the tiny model: pdi -0.0130 there, 0.1573 by the command), as lm_eval rounds half precision otherwise (the test
    below). Half precision, and auto (the model's own dtype), are refused before the model loads or a file is written,
    naming the flag and the fix; so is a --config that names them."""
    from culture_tasks import steering

    monkeypatch.setattr(steering, "_load_lm", lambda *a, **k: pytest.fail("loaded a model"))
    out = tmp_path / "o"
    args = ["--model", str(tiny_model), "--output", str(out), "--data-dir", str(data_root), "--no-wvs",
            "--target", "usa=persona", "--iters", "20"]
    config = tmp_path / "steer.yaml"
    config.write_text(f"dtype: {dtype}\n")
    for given in (["--dtype", dtype], ["--config", str(config)]):
        assert main([*args, *given]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"culture-steer: --dtype {dtype}: culture-steer scores in float32 only: in half "
                              "precision its answers are not what lm_eval gives")
        assert err.endswith("; drop --dtype (float32 is the default; a model too large for float32 on the GPU runs "
                            "with --device cpu)\n") and err.count("\n") == 1
        assert not out.exists()


def test_half_precision_answers_are_not_what_lm_eval_gives_at_the_same_batch_size(tiny_model, data_root, tmp_path,
                                                                                 monkeypatch):
    """Why half precision is refused rather than recorded with its batch size and device: the scorer's bfloat16
    answers of the plain model are not what lm_eval gives in bfloat16 even at the scorer's batch size and device
    (lm_eval rounds its log-softmax to bfloat16); in float32 they are
    (``test_each_row_s_recorded_command_gives_its_indices_and_wvs_similarity``)."""
    from aligners.scoring import load_hflm
    from culture_tasks.paths import lm_eval_command
    from culture_tasks.steering import Steered, survey_answers

    row = Steered("usa", "the United States", "USA", True, "plain", None)
    cfg = SteeringConfig(output=str(tmp_path / "o"), model=str(tiny_model), targets=["usa=plain"],
                         data_dir=str(data_root), wvs=False, batch_size=16)
    lm = load_hflm(str(tiny_model), device="cpu", dtype="bfloat16", batch_size=16)
    answers = survey_answers(lm, row, task_manager({"data_dir": str(data_root)}), cfg, None)
    command = lm_eval_command(tiny_model, ["vsm13_usa"], metadata={"data_dir": str(data_root)}, dtype="bfloat16",
                              batch_size=16) + " --output_path <results>"
    monkeypatch.chdir(tmp_path)
    results, _ = _run_recorded_command(command, tmp_path / "lm_eval", monkeypatch)
    gap = max(abs(results["vsm13_usa"][f"{d},none"] - answers["indices"][d]) for d in DIMENSIONS)
    assert answers["dtype"] == "bfloat16" and gap > 0.1  # 0.31 here


def test_a_prompt_adapter_of_another_hidden_size_is_refused_before_the_model_loads(
        tiny_model, prompt_checkpoint, data_root, tmp_path, monkeypatch, capsys):
    """A soft prompt of another base model (token_dim 48 against --model's hidden size 32) is refused in one line by
    the check culture-eval makes too (``models.check_adapter_fits``), before the model loads."""
    from culture_tasks import steering

    monkeypatch.setattr(steering, "_load_lm", lambda *a, **k: pytest.fail("loaded the model"))
    ckpt = _copy_checkpoint(prompt_checkpoint, tmp_path / "p48")
    config = json.loads((ckpt / "adapter_config.json").read_text())
    assert config["token_dim"] == 32
    (ckpt / "adapter_config.json").write_text(json.dumps({**config, "token_dim": 48}))
    out = tmp_path / "o"
    assert main(["--model", str(tiny_model), "--output", str(out), "--data-dir", str(data_root), "--no-wvs",
                 "--target", f"usa=prompt:{ckpt}"]) == 2
    assert capsys.readouterr().err == (
        f"culture-steer: --target usa:prompt: {ckpt} holds a PROMPT_TUNING prompt of token_dim 48, but --model "
        f"{tiny_model} has hidden size 32 (an adapter of another base model); give a prompt checkpoint made on "
        f"{tiny_model}\n")
    assert not out.exists()
