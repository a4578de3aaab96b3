"""WVS and VSM13 tasks end to end through lm-eval on the tiny model."""

from __future__ import annotations

import math

import pytest

from culture_tasks.survey.tasks import item_result, summarise_vsm13
from tests.lm_eval_helpers import evaluate


def test_vsm13_and_wvs_tasks_report_finite_metrics(tiny_model, data_root):
    out = evaluate(tiny_model, ["vsm13_usa", "vsm13_usa_reversed", "wvs_usa", "wvs_china_persona"], data_root,
                   log_samples=True)
    res = out["results"]
    for key in ("vsm13_l1", "vsm13_mae", "pdi", "idv", "mas", "uai", "lto", "ivr"):
        assert math.isfinite(res["vsm13_usa"][f"{key},none"]), key
    for key in ("wvs_jsd", "wvs_w1", "wvs_majority", "wvs_jsd_migration"):
        assert 0.0 <= res["wvs_usa"][f"{key},none"] <= 1.0, key
    assert out["higher_is_better"]["vsm13_usa"]["vsm13_l1"] is False
    # the reported loss is the scoring core applied to the logged per-option log-likelihoods
    docs = out["samples"]["vsm13_usa"]
    items = [item_result(s["doc"], [r[0] for r in s["filtered_resps"]]) for s in docs]
    assert summarise_vsm13(items)["vsm13_l1"] == pytest.approx(res["vsm13_usa"]["vsm13_l1,none"], abs=1e-9)
    # reversed options: the first letter is the last option
    rev = out["samples"]["vsm13_usa_reversed"][0]["doc"]
    assert rev["options"][0] == "of very little or no importance"
    assert "typical person from China" in out["samples"]["wvs_china_persona"][0]["arguments"][0][0]


def test_vsm13_metadata_overrides_target_and_mode(tiny_model, data_root):
    target = [95, 25, 60, 80, 36, 52]
    out = evaluate(tiny_model, ["vsm13_saudi_arabia"], data_root,
                   metadata={"target": target, "answer_mode": "argmax", "constants": {"pdi": 50}})
    res = out["results"]["vsm13_saudi_arabia"]
    dims = ("pdi", "idv", "mas", "uai", "lto", "ivr")
    expected = sum(abs(res[f"{d},none"] - t) for d, t in zip(dims, target))
    assert res["vsm13_l1,none"] == pytest.approx(expected)
    # argmax answers are whole option values, so every index term is a multiple of 5 (+ constant)
    assert (res["pdi,none"] - 50) % 5 == pytest.approx(0.0, abs=1e-9)
