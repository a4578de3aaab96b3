"""Every CultureLLM task runs through lm-eval on a tiny local model and reports finite metrics."""

from __future__ import annotations

import math
import statistics

from tests.lm_eval_helpers import evaluate


def test_all_58_tasks_score(tiny_model, data_root):
    out = evaluate(tiny_model, ["culturellm"], data_root, limit=3)
    results = out["results"]
    leaves = [t for t in results if t.count("_") >= 2 and not t.startswith("culturellm_gen")]
    assert len(leaves) == 58
    for task in leaves:
        assert math.isfinite(results[task]["f1_macro,none"]), task
        assert math.isfinite(results[task]["acc,none"]), task
        assert 0.0 <= results[task]["f1_macro,none"] <= 1.0
    korean = [results[t]["f1_macro,none"] for t in leaves if t.startswith("culturellm_korean_")]
    assert abs(results["culturellm_korean"]["f1_macro,none"] - statistics.mean(korean)) < 1e-12
    overall = [results[t]["f1_macro,none"] for t in leaves]
    assert abs(results["culturellm"]["f1_macro,none"] - statistics.mean(overall)) < 1e-12


def test_generative_variant_with_chat_template(tiny_model, data_root):
    out = evaluate(tiny_model, ["culturellm_gen_chinese"], data_root, limit=2, chat=True, log_samples=True)
    group = out["results"]["culturellm_gen_chinese"]
    assert 0.0 <= group["parse_fail_rate,none"] <= 1.0
    assert math.isfinite(group["f1_macro,none"])
    sample = out["samples"]["culturellm_gen_chinese_camouflage_spam"][0]
    prompt = sample["arguments"][0][0]
    assert prompt.startswith("<|user|>") and prompt.endswith("<|assistant|>")


def test_multiple_choice_with_chat_template(tiny_model, data_root):
    out = evaluate(tiny_model, ["culturellm_chinese_camouflage_spam"], data_root, limit=2, chat=True, log_samples=True)
    sample = out["samples"]["culturellm_chinese_camouflage_spam"][0]
    assert [a[1].strip() for a in sample["arguments"]] == ["A", "B"]
    assert sample["arguments"][0][0].startswith("<|user|>")
