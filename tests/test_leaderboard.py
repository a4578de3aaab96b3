"""Leaderboard tables from synthetic lm-eval result files."""

from __future__ import annotations

import json

import pytest

from culture_tasks.leaderboard import main


def _result(path, model, scores, peft=None, extra=None, hib=None):
    args = {"pretrained": model, "dtype": "float32", **({"peft": peft} if peft else {})}
    results = {t: {"alias": t, "f1_macro,none": v, "f1_macro_stderr,none": "N/A", "acc,none": 0.5} for t, v in scores.items()}
    results.update(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"results": results, "config": {"model": "hf", "model_args": args},
                                "higher_is_better": hib or {}}))


def test_two_runs_side_by_side(tmp_path, capsys):
    _result(tmp_path / "a/results_1.json", "/m/base", {
        "culturellm_arabic_x": 0.2, "culturellm_arabic_y": 0.4, "culturellm_korean_z": 0.9,
        "culturellm_arabic": 0.3})
    _result(tmp_path / "b/results_2.json", "/m/base", {
        "culturellm_arabic_x": 0.6, "culturellm_arabic_y": 0.6, "culturellm_korean_z": 0.3},
        peft="/ckpt/arabic-lora")
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = [l for l in out.splitlines() if l.startswith("| base")]
    # base: arabic 0.3, korean 0.9, overall (0.2+0.4+0.9)/3 = 0.5
    # base + arabic-lora: arabic 0.6, korean 0.3, overall 0.5 -> a tie: both marked, file order kept
    assert lines[0] == "| base | 0.3000 | **0.9000** | **0.5000** | 3 |"
    assert lines[1] == "| base + arabic-lora | **0.6000** | 0.3000 | **0.5000** | 3 |"


def test_sorted_by_overall_and_html(tmp_path):
    _result(tmp_path / "results_a.json", "/m/weak", {"culturellm_english_x": 0.1})
    _result(tmp_path / "results_b.json", "/m/strong", {"culturellm_english_x": 0.7})
    html = tmp_path / "out/board.html"
    assert main([str(tmp_path), "--format", "html", "--output", str(html)]) == 0
    page = html.read_text()
    assert page.index("strong") < page.index("weak")
    assert '<td class="num best">0.7000</td>' in page
    assert page.lstrip().startswith("<!DOCTYPE html>")


def test_survey_metrics_get_their_own_table_with_direction(tmp_path, capsys):
    extra = {"vsm13_usa": {"vsm13_l1,none": 80.0, "pdi,none": 40.0}}
    _result(tmp_path / "results_a.json", "/m/a", {"culturellm_english_x": 0.5}, extra=extra,
            hib={"vsm13_usa": {"vsm13_l1": False, "pdi": True}})
    extra_b = {"vsm13_usa": {"vsm13_l1,none": 20.0, "pdi,none": 10.0}}
    _result(tmp_path / "results_b.json", "/m/b", {"culturellm_english_x": 0.4}, extra=extra_b,
            hib={"vsm13_usa": {"vsm13_l1": False, "pdi": True}})
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "### vsm13: vsm13_l1 (↓ lower is better)" in out
    assert "| b | **20.0000** |" in out.split("### vsm13: vsm13_l1")[1]  # lower L1 is best, sorted first
    assert "pdi" not in out  # indices are not a leaderboard score


def test_not_a_result_file(tmp_path, capsys):
    bad = tmp_path / "results_x.json"
    bad.write_text(json.dumps({"hello": 1}))
    assert main([str(bad)]) == 2
    assert "not an lm-eval result file" in capsys.readouterr().err
    assert main([str(tmp_path / "nothing")]) == 2
