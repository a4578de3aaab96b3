"""WVS and VSM13 tasks end to end through lm-eval on the tiny model."""

from __future__ import annotations

import json
import math
import re

import pytest

from culture_tasks.metadata import TASK_SETTINGS, MetadataError
from culture_tasks.survey.tasks import DIRECTIONLESS, item_result, summarise_vsm13
from culture_tasks.paths import TASKS_DIR, task_manager
from tests.lm_eval_helpers import evaluate

VSM13_KEYS = ("vsm13_l1", "vsm13_mae", "pdi", "idv", "mas", "uai", "lto", "ivr")
WVS_KEYS = ("wvs_jsd", "wvs_w1", "wvs_majority", "wvs_jsd_social_values", "wvs_jsd_migration", "wvs_jsd_security",
            "wvs_jsd_science_technology", "wvs_jsd_religious_values", "wvs_jsd_ethical_values",
            "wvs_jsd_political_interest")


def _assert_intervals(res: dict, keys) -> None:
    for key in keys:
        low, value, high = (res[f"{key}{s},none"] for s in ("_ci_low", "", "_ci_high"))
        assert all(isinstance(v, float) and math.isfinite(v) for v in (low, value, high)), key
        assert low <= value <= high, key


def test_vsm13_and_wvs_tasks_report_finite_metrics(tiny_model, data_root):
    # model arguments arrive in the metadata from the lm_eval command line: accepted
    out = evaluate(tiny_model, ["vsm13_usa", "vsm13_usa_reversed", "wvs_usa", "wvs_china_persona", "vsm13_saudi_arabia"],
                   data_root, log_samples=True, metadata={"pretrained": str(tiny_model), "dtype": "float32"})
    res = out["results"]
    for key in VSM13_KEYS:
        assert math.isfinite(res["vsm13_usa"][f"{key},none"]), key
    for key in WVS_KEYS:
        assert 0.0 <= res["wvs_usa"][f"{key},none"] <= 1.0, key
    # every metric has a numeric 95 % bootstrap interval around it, printed by lm-eval itself
    _assert_intervals(res["vsm13_usa"], VSM13_KEYS)
    _assert_intervals(res["wvs_usa"], WVS_KEYS)
    assert res["vsm13_usa"]["vsm13_l1_ci_high,none"] > res["vsm13_usa"]["vsm13_l1_ci_low,none"]
    assert res["vsm13_usa"]["vsm13_dims,none"] == 6
    assert out["higher_is_better"]["vsm13_usa"]["vsm13_l1"] is False
    # the indices are measurements: lm-eval records no direction for them (and prints no arrow)
    assert {out["higher_is_better"]["vsm13_usa"][m] for m in ("pdi", "ivr_ci_low", "vsm13_dims")} == {None}
    assert set(VSM13_KEYS[2:]) <= DIRECTIONLESS
    # Hofstede's 2015 file has only LTO and IVR for Saudi Arabia: the loss says it covers 2 dimensions
    sau = res["vsm13_saudi_arabia"]
    assert sau["vsm13_dims,none"] == 2
    assert sau["vsm13_l1,none"] == pytest.approx(abs(sau["lto,none"] - 36) + abs(sau["ivr,none"] - 52))
    # the reported loss is the scoring core applied to the logged per-option log-likelihoods
    docs = out["samples"]["vsm13_usa"]
    items = [item_result(s["doc"], [r[0] for r in s["filtered_resps"]]) for s in docs]
    assert summarise_vsm13(items)["vsm13_l1"] == pytest.approx(res["vsm13_usa"]["vsm13_l1,none"], abs=1e-9)
    # reversed options: the first letter is the last option
    rev = out["samples"]["vsm13_usa_reversed"][0]["doc"]
    assert rev["options"][0] == "of very little or no importance"
    assert "typical person from China" in out["samples"]["wvs_china_persona"][0]["arguments"][0][0]


def test_a_balanced_task_cut_by_limit_47_reports_nan_and_names_the_item(tiny_model, data_root, caplog):
    # 47 of the 48 documents: item 24 is asked listed, never reversed; its indices were finite without a word
    import logging

    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        res = evaluate(tiny_model, ["vsm13_usa_balanced"], data_root, limit=47)["results"]["vsm13_usa_balanced"]
    assert all(math.isnan(res[f"{key}{s},none"]) for key in VSM13_KEYS for s in ("", "_ci_low", "_ci_high"))
    assert "item 24 asked in one option order only" in caplog.text


def test_vsm13_metadata_overrides_target_and_mode(tiny_model, data_root):
    target = [95, 25, 60, 80, 36, 52]
    out = evaluate(tiny_model, ["vsm13_saudi_arabia"], data_root,
                   metadata={"target": target, "answer_mode": "argmax", "constants": {"pdi": 52}})
    res = out["results"]["vsm13_saudi_arabia"]
    dims = ("pdi", "idv", "mas", "uai", "lto", "ivr")
    expected = sum(abs(res[f"{d},none"] - t) for d, t in zip(dims, target))
    assert res["vsm13_l1,none"] == pytest.approx(expected)
    # argmax answers are whole option values, so every index term is a multiple of 5: pdi is 52 plus such terms
    # (a constant that is itself a multiple of 5 would pass this with the constant ignored), the others 0 plus them
    assert res["pdi,none"] % 5 == pytest.approx(2.0, abs=1e-9)
    assert {d: res[f"{d},none"] % 5 for d in dims[1:]} == dict.fromkeys(dims[1:], pytest.approx(0.0, abs=1e-9))


def test_an_explicit_target_is_for_one_country(data_root):
    """lm-eval gives one --metadata to every task: a target reaching Iraq's and Jordan's VSM13 tasks
    would score both against the same profile. The variants of one country may share it."""
    target = [95, 25, 60, 80, 36, 52]
    manager = task_manager({"data_dir": str(data_root), "target": target, "target_source": "a survey of Iraq"})
    with pytest.raises(MetadataError, match=r"--metadata target reached vsm13 \(IRQ\) and vsm13 \(JOR\): one "
                                            "profile is the target of one country"):
        manager.load(["vsm13_iraq", "vsm13_jordan"])
    same = task_manager({"data_dir": str(data_root), "target": list(target)})
    assert set(same.load(["vsm13_iraq", "vsm13_iraq_persona"])["tasks"]) == {"vsm13_iraq", "vsm13_iraq_persona"}


@pytest.mark.parametrize("target, message", [
    ({"pdi": 40}, r"scores need at least 2 dimensions, got \['pdi'\]"),
    ({"pdi": None, "idv": None}, "scores need at least 2 dimensions, got none"),
    ([40, 91, 62, 46, 26, True], "score for ivr must be a finite number, got True"),
    ([40, 91, 62, 46, 26, "x"], "score for ivr must be a finite number, got 'x'"),
    ("404040", "scores must be six numbers or a mapping of dimensions, got '404040'"),
])
def test_a_bad_explicit_target_stops_loading_the_task(data_root, target, message):
    # these ran every request, then failed (or were read as ivr = 1, or digit by digit)
    with pytest.raises(MetadataError, match=r"vsm13 \(USA\): --metadata target: explicit target " + message):
        task_manager({"data_dir": str(data_root), "target": target}).load(["vsm13_usa"])


def _simple_evaluate(model_dir, task, metadata, **kwargs):
    import lm_eval

    return lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={model_dir},dtype=float32", tasks=[task],
                                   task_manager=task_manager(metadata),
                                   device="cpu", batch_size=8, bootstrap_iters=0, **kwargs)


def test_num_fewshot_on_a_survey_task_is_refused(tiny_model, data_root):
    with pytest.raises(ValueError, match=r"--num_fewshot 1: the wvs_\* and vsm13_\* survey tasks are zero-shot"):
        _simple_evaluate(tiny_model, "vsm13_usa", {"data_dir": str(data_root)}, num_fewshot=1, limit=2)
    wvs_template = (TASKS_DIR / "wvs" / "_wvs_template_yaml").read_text(encoding="utf-8")
    assert "sampler: !function culture_tasks.survey.tasks.NoFewShot" in wvs_template


def test_misspelled_metadata_key_stops_loading_the_task(data_root):
    manager = task_manager({"datadir": str(data_root)})
    with pytest.raises(MetadataError, match=r"wvs \(China\): unknown --metadata key\(s\) 'datadir'"):
        manager.load(["wvs_china"])


VALID_CONSTANTS = ("use the dimensions pdi, idv, mas, uai, lto, ivr or the manual's names "
                   "C_pd, C_ic, C_mf, C_ua, C_ls, C_ir")


def test_unknown_constant_names_are_errors_not_zero():
    from culture_tasks.survey.vsm13 import vsm13_indices

    means = dict.fromkeys(range(1, 25), 3.0)
    means[2] = 4.0  # PDI = 35 (m7 - m2) + 25 (m20 - m23) = 35 (3 - 4) = -35
    assert vsm13_indices(means, {"C_pd": 50})["pdi"] == pytest.approx(15.0)
    assert vsm13_indices(means, {"pdi": 50, "ivr": -2})["ivr"] == pytest.approx(-2.0)
    with pytest.raises(ValueError) as err:
        vsm13_indices(means, {"pdx": 50, "C_zz": 1})
    assert str(err.value) == f"constants: unknown name(s) 'pdx' (did you mean 'pdi'?), 'C_zz'; {VALID_CONSTANTS}"
    with pytest.raises(ValueError, match=r"^constants: pdi is given twice \('pdi' and 'C_pd'\); keep one$"):
        vsm13_indices(means, {"pdi": 50, "C_pd": 50})
    with pytest.raises(ValueError, match=r"^constants: uai must be a finite number, got '5'$"):
        vsm13_indices(means, {"uai": "5"})


def test_misspelt_constant_in_metadata_stops_loading_the_task(data_root):
    """``--metadata '{"constants": {"pdx": 50}}'`` used to score as if no constant was given."""
    from culture_tasks.survey.tasks import load_vsm13

    with pytest.raises(MetadataError) as err:
        load_vsm13(str(data_root), vsm13_country="USA", constants={"pdx": 50})
    assert str(err.value) == (f"vsm13 (USA): --metadata constants: unknown name(s) 'pdx' (did you mean 'pdi'?); "
                              f"{VALID_CONSTANTS}")
    manager = task_manager({"data_dir": str(data_root), "constants": {"pdx": 50}})
    with pytest.raises(MetadataError, match=r"vsm13 \(CHI\): --metadata constants: unknown name\(s\) 'pdx'"):
        manager.load(["vsm13_china"])
    docs = load_vsm13(str(data_root), vsm13_country="USA", constants={"C_pd": 50})["test"]
    assert json.loads(docs[0]["constants"]) == {"C_pd": 50}


@pytest.mark.parametrize("task, country, message", [
    # China has a task of its own: through vsm13_usa its row would sit in another task's column
    ("vsm13_usa", "China", r"vsm13 \(USA\): --metadata target_country 'China' is CHI, which has a task of its "
                           r"own: run vsm13_china with --metadata target, without target_country"),
    ("vsm13_china", "U.S.A.", r"vsm13 \(CHI\): --metadata target_country 'U.S.A.' is USA, which has a task of its "
                              r"own: run vsm13_usa with --metadata target, without target_country"),
    # the persona task asks as the task's country: its answers are not Japan's to rank
    ("vsm13_usa_persona", "JPN", r"vsm13 \(USA\): --metadata target_country 'JPN' on a persona task, which asks as "
                                 r"the United States: score JPN with the task without persona"),
    # blank: it was read as a country named "custom"
    ("vsm13_usa", "  ", r"vsm13 \(USA\): --metadata target_country '  ' names the country of an explicit target"),
])
def test_target_country_with_a_task_of_another_country_is_refused(data_root, task, country, message):
    meta = {"data_dir": str(data_root), "target": [95, 25, 60, 80, 36, 52], "target_country": country}
    with pytest.raises(MetadataError, match=message):
        task_manager(meta).load([task])


def test_target_country_naming_the_task_s_own_country_or_one_without_a_task_is_ranked_as_itself(data_root):
    import json

    for task, country, code in [("vsm13_usa", "usa", "USA"), ("vsm13_usa", "Japan", "JPN"),
                                ("vsm13_china", "Atlantis", "Atlantis"), ("vsm13_usa_reversed", "JPN", "JPN")]:
        meta = {"data_dir": str(data_root), "target": [95, 25, 60, 80, 36, 52], "target_country": country}
        doc = task_manager(meta).load([task])["tasks"][task].dataset["test"][0]
        assert json.loads(doc["comparison"])["code"] == code


def test_a_nan_loglikelihood_makes_only_the_survey_metrics_that_use_it_nan(data_root, caplog):
    import logging

    import numpy as np

    from culture_tasks.survey import tasks
    from culture_tasks.survey.tasks import load_vsm13, process_results_vsm13, process_results_wvs, vsm13_intervals

    nan = float("nan")
    # WVS: the document's scores are NaN (the old code stopped the whole run with scipy's ValueError);
    # the task's means and its topic's are NaN, another topic's is not
    doc = {"order": [0, 1, 2], "country_dist": [0.2, 0.3, 0.5], "topic": "ethical_values"}
    bad = process_results_wvs(doc, [(nan, False), (-1.0, False), (-2.0, False)])
    assert all(math.isnan(bad[k]) for k in ("wvs_jsd", "wvs_w1", "wvs_majority", "wvs_jsd_ci_low"))
    assert bad["wvs_jsd_migration"][0] == "ethical_values" and math.isnan(bad["wvs_jsd_migration"][1])
    good = process_results_wvs({**doc, "topic": "migration"}, [(-1.0, False), (-1.0, False), (-1.0, False)])
    items = [bad["wvs_jsd_ethical_values"], good["wvs_jsd_ethical_values"]] * 2
    assert math.isnan(tasks.wvs_jsd_ethical_values(items))
    assert tasks.wvs_jsd_migration(items) == pytest.approx(good["wvs_jsd"])
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        assert math.isnan(tasks.wvs_jsd_ci_low([bad["wvs_jsd"], good["wvs_jsd"]] * 2))
    warned = [r.getMessage() for r in caplog.records if "NaN or infinite" in r.getMessage()]
    assert len(warned) == 1 and "2 of 4 documents" in warned[0] and "wvs_jsd, wvs_w1, wvs_majority" in warned[0]

    # VSM13 item 1 (idv = 35 (m04 - m01) + 35 (m09 - m06)) without finite scores: idv and the losses and
    # ranking that use it are NaN, with no interval; the other five indices and their intervals are not
    caplog.clear()
    docs = load_vsm13(str(data_root), vsm13_country="USA")["test"]
    uniform = [(-1.0, False)] * 5
    results = [process_results_vsm13(d, [(nan, False)] + uniform[1:] if d["item"] == 1 else uniform)
               for d in docs]
    vsm = [r["vsm13_l1"] for r in results]
    first = next(r for r in vsm if r[0] == 1)
    assert math.isnan(first[1]) and all(math.isnan(p) for p in first[4])
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        summary = tasks.summarise_vsm13(vsm)
    assert all(math.isnan(summary[k]) for k in ("idv", "vsm13_l1", "vsm13_mae", "vsm13_margin", "vsm13_rank"))
    assert all(summary[k] == pytest.approx(0.0) for k in ("pdi", "mas", "uai", "lto", "ivr"))  # uniform answers
    intervals = vsm13_intervals(vsm)
    assert all(math.isnan(x) for k in ("idv", "vsm13_l1", "vsm13_rank") for x in intervals[k])
    assert all(np.isfinite(intervals[k]).all() and intervals[k][0] < 0 < intervals[k][1] for k in ("pdi", "ivr"))
    warned = [r.getMessage() for r in caplog.records if "NaN or infinite" in r.getMessage()]
    assert len(warned) == 1 and "1 of 24 documents" in warned[0]
    assert "vsm13_l1, vsm13_mae, idv, vsm13_margin, vsm13_rank (the metrics that use their items)" in warned[0]

    # argmax answers: a NaN is no answer, not the first option's value (the old code scored it as option A)
    argmax = load_vsm13(str(data_root), vsm13_country="USA", answer_mode="argmax")["test"][0]
    assert math.isnan(process_results_vsm13(argmax, [(nan, False)] + uniform[1:])["vsm13_l1"][1])
    assert math.isnan(process_results_vsm13(argmax, [(float("inf"), False)] + uniform[1:])["vsm13_l1"][1])


def test_lm_eval_gives_the_wvs_groups_no_standard_error_that_treats_countries_as_independent(tiny_model, data_root):
    # lm-eval combined the countries' standard errors as if they were independent samples, but every country
    # answers the same questions with the same prompt: its ± for the wvs group was about half the
    # question-clustered interval's (SmolLM2: 0.0060, a 95 % half-width of 0.012, against [0.324, 0.372]).
    # The group now says N/A (the leaderboard gives its interval), and each country keeps its _ci_ rows.
    out = evaluate(tiny_model, ["wvs"], data_root, bootstrap_iters=100)  # lm-eval computes its standard errors
    res = out["results"]
    assert {res["wvs"][f"{m}_stderr,none"] for m in WVS_KEYS[:3]} == {"N/A"}  # the three the group averages
    assert math.isfinite(res["wvs"]["wvs_jsd,none"])
    assert {res["wvs_usa"][f"{m}_stderr,none"] for m in WVS_KEYS} == {"N/A"}
    _assert_intervals(res["wvs_usa"], WVS_KEYS)


def _loader_settings(loader, family: str) -> set[str]:
    """A loader's named settings that only the task YAML gives (not data_dir, not a --metadata key)."""
    import inspect

    from culture_tasks.metadata import TASK_KEYS

    params = inspect.signature(loader).parameters.values()
    return {p.name for p in params if p.kind is not p.VAR_KEYWORD} - {"data_dir", *TASK_KEYS[family]}


def test_every_task_yaml_gives_every_setting_of_its_loader():
    # lm-eval calls the loader with --metadata, then dataset_kwargs: a setting a YAML leaves out is filled from
    # --metadata without a word (`{"both_orders": true}` made vsm13_usa the balanced task, 48 documents)
    import yaml

    from culture_tasks.classification import load_classification
    from culture_tasks.survey.tasks import load_vsm13, load_wvs

    loaders = {"vsm13": (load_vsm13, "vsm13"), "wvs": (load_wvs, "wvs"), "culturellm": (load_classification, "culturellm")}
    assert _loader_settings(load_vsm13, "vsm13") == {"vsm13_country", "persona", "reversed_options", "both_orders"}
    seen = 0
    for folder, (loader, family) in loaders.items():
        wanted = _loader_settings(loader, family)
        for path in sorted((TASKS_DIR / folder).glob("*.yaml")):
            config = yaml.safe_load(path.read_text(encoding="utf-8"))
            if "dataset_kwargs" not in config:
                continue  # a group
            assert set(config["dataset_kwargs"]) == wanted, path.name
            assert wanted <= set(TASK_SETTINGS)  # each has its fix, should --metadata give it too
            seen += 1
    assert seen > 58 + 2 * 65  # every CultureLLM set, every country's WVS and VSM13 tasks


@pytest.mark.parametrize("task, key, value, message", [
    # lm-eval called the loader with the key twice: a bare "got multiple values for keyword argument" TypeError
    ("vsm13_usa", "both_orders", True, "vsm13_usa: --metadata both_orders is fixed by the task: use "
                                       "vsm13_<country>_balanced to ask every item in both option orders; "
                                       "drop both_orders from --metadata"),
    ("wvs_usa", "persona", "China", "wvs_usa: --metadata persona is fixed by the task: use wvs_<country>_persona to "
                                    "ask as a typical person of that country, wvs_<country> to ask without a persona; "
                                    "drop persona from --metadata"),
    ("culturellm_english_jigsaw_toxic", "max_text_chars", 0,
     "culturellm_english_jigsaw_toxic: --metadata max_text_chars is fixed by the task: it comes from "
     "culture_tasks/culturellm/manifest.yaml: change it there and re-run culture_tasks/culturellm/_generate_configs.py"
     "; drop max_text_chars from --metadata"),
    ("culturellm_gen_english_jigsaw_toxic", "labels", {"0": "no"}, "--metadata labels is fixed by the task"),
])
def test_a_task_s_own_setting_given_in_metadata_stops_loading(data_root, task, key, value, message):
    with pytest.raises(MetadataError, match=re.escape(message)):
        task_manager({"data_dir": str(data_root), key: value}).load([task])
    balanced = task_manager({"data_dir": str(data_root)}).load(["vsm13_usa", "vsm13_usa_balanced"])["tasks"]
    assert (len(balanced["vsm13_usa"].dataset["test"]), len(balanced["vsm13_usa_balanced"].dataset["test"])) == (24, 48)


def test_a_key_only_another_family_reads_is_accepted_with_one_warning(data_root, monkeypatch, caplog):
    # `questions` keeps a subset of the WVS questions; vsm13 tasks scored all 24 items without a word
    import logging

    from culture_tasks import metadata

    monkeypatch.setattr(metadata, "_SAID_IGNORED", set())
    meta = {"data_dir": str(data_root), "questions": [27, 28]}
    with caplog.at_level(logging.WARNING, logger="culture_tasks.metadata"):
        tasks = task_manager(meta).load(["vsm13_usa", "vsm13_china", "wvs_usa"])["tasks"]
    said = [r.getMessage() for r in caplog.records if r.name == "culture_tasks.metadata"]
    assert said == ["--metadata questions is read by the wvs tasks only: the vsm13 tasks of this run ignore it"]
    assert len(tasks["vsm13_china"].dataset["test"]) == 24 and len(tasks["wvs_usa"].dataset["test"]) == 2
