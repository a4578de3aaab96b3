"""The benchmarks' own bookkeeping: the peak a % of peak is taken against, the tokens a generation counts."""

from __future__ import annotations

from pathlib import Path

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
    """The overhead step times a model built from TOK's own config and tokenizer; a second run with another
    TOK must not reuse the first one's model (it timed the first tokenizer under the second's run)."""
    import json
    import os
    import re
    import subprocess

    from tests.conftest import REPO
    from tests.tiny_model import build_tiny_model

    used = []
    for hidden in (48, 40):
        tok = build_tiny_model(tmp_path / f"tok{hidden}", hidden_size=hidden)
        out = tmp_path / f"out{hidden}"
        env = dict(os.environ, STEPS="overhead", MODEL=str(tok), TOK=str(tok), DEVICE="cpu", DTYPE="float32",
                   SMOKE="1", OUT=str(out), TMPDIR=str(tmp_path), CULTURE_DATA_DIR=str(data_root))
        proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_checks.sh")], env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        summary = (out / "summary.txt").read_text()
        assert "== overhead: rc 0" in summary, summary
        model = re.search(r"bench_suite_overhead\.py --model (\S+)", summary).group(1)
        used.append(json.loads((Path(model) / "config.json").read_text())["hidden_size"])
    assert used == [48, 40]


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


def test_train_real_run_reports_an_adapter_whose_training_time_is_unknown(monkeypatch, tmp_path, capsys):
    # a LoRA run resumed from a checkpoint stored without the training time records seconds as null in
    # training.json; the run goes on to the next adapter and says the time is unknown instead of a TypeError
    from benchmarks import train_real_run

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "english.jsonl").write_text("")
    trained = []

    def fake_train(cfg):
        trained.append(cfg["seed"])
        return {"examples": 8, "steps": 2, "train_loss": 1.25, "seconds": None if cfg["seed"] == 0 else 12.4}

    monkeypatch.setattr(train_real_run, "LoraTrainConfig", lambda **kw: kw)
    monkeypatch.setattr(train_real_run, "train", fake_train)
    train_real_run.main(["--model", "m", "--questions", "q.jsonl", "--out", str(tmp_path), "--cultures", "english",
                         "--seeds", "0", "1", "--stage", "train"])
    assert trained == [0, 1]
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["trained english-s0: 8 examples, 2 steps, loss 1.250, training time unknown",
                     "trained english-s1: 8 examples, 2 steps, loss 1.250, 12 s"]
