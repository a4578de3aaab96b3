"""``culture-eval`` (``culture_tasks.harness``): lm-eval's command line, with an ``--use_cache`` file that is reused
only with the model and settings its answers are of."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from culture_tasks.fingerprints import loaded_fingerprint
from culture_tasks.harness import main
from culture_tasks.paths import TASKS_DIR
from tests.tiny_model import build_tiny_model


def _run(monkeypatch, model, cache, data_root, out, batch_size=4, dtype="float32"):
    monkeypatch.setattr(sys, "argv", [
        "culture-eval", "--model", "hf-prompt", "--model_args", f"pretrained={model},dtype={dtype}",
        "--include_path", str(TASKS_DIR), "--tasks", "wvs_usa", "--limit", "3", "--device", "cpu",
        "--batch_size", str(batch_size),
        "--metadata", json.dumps({"data_dir": str(data_root)}), "--use_cache", str(cache), "--output_path", str(out)])
    main()


class Evaluated(Exception):
    """Raised by the stand-in for lm-eval's evaluation: the run got past the checks."""


def _stand_in(monkeypatch) -> list[dict]:
    """lm-eval's ``simple_evaluate`` replaced by one that records its call and opens the cache file as lm-eval does."""
    import lm_eval

    calls: list[dict] = []

    def evaluate(**kwargs):
        calls.append(kwargs)
        if kwargs.get("use_cache"):
            Path(f"{kwargs['use_cache']}_rank0.db").touch()
        raise Evaluated

    monkeypatch.setattr(lm_eval, "simple_evaluate", evaluate)
    return calls


def test_a_request_cache_is_reused_only_with_its_own_model(tiny_model, data_root, tmp_path, monkeypatch, capsys):
    # lm-eval keys --use_cache by the request alone: a second tiny model run with the first one's cache reported the
    # first model's numbers (wvs_jsd 0.6443 for a model whose own is 0.6082) and recorded its own name beside them
    calls = _stand_in(monkeypatch)
    cache = tmp_path / "cache" / "answers"
    for batch_size in (4, 2):  # the first run stores its settings, the second resumes (float32: at any batch size)
        with pytest.raises(Evaluated):
            _run(monkeypatch, tiny_model, cache, data_root, tmp_path / "a", batch_size)
    stored = {"model": "hf-prompt", "model_args": {"dtype": "float32", "pretrained": str(tiny_model)},
              "folders": {"pretrained": loaded_fingerprint(tiny_model)}}
    assert json.loads((tmp_path / "cache" / "answers.settings.json").read_text()) == stored
    other = build_tiny_model(tmp_path / "other", seed=1)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        _run(monkeypatch, other, cache, data_root, tmp_path / "b")
    assert (stop.value.code, len(calls)) == (2, 2)
    assert capsys.readouterr().err.splitlines()[-1] == (  # after lm-eval's own log lines
        f"culture-eval: --use_cache {cache}: its answers are of other settings (folders: saved "
        f"{stored['folders']!r}, given {{'pretrained': {loaded_fingerprint(other)!r}}}; model_args: saved "
        f"{stored['model_args']!r}, given {{'pretrained': {str(other)!r}, 'dtype': 'float32'}}); run with those, or "
        "give another --use_cache path")


def test_a_request_cache_without_a_record_is_refused(tiny_model, data_root, tmp_path, monkeypatch, capsys):
    # a cache made by plain lm_eval (or by another model) says nothing of whose answers it holds
    (tmp_path / "answers_rank0.db").write_bytes(b"")
    with pytest.raises(SystemExit) as stop:
        _run(monkeypatch, tiny_model, tmp_path / "answers", data_root, tmp_path / "out")
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"culture-eval: --use_cache {tmp_path / 'answers'}: {tmp_path / 'answers_rank0.db'} holds answers without a "
        f"record of the model and settings that gave them ({tmp_path / 'answers.settings.json'}); delete it, or give "
        "another --use_cache path")
    assert not (tmp_path / "answers.settings.json").exists()


def test_a_record_whose_cache_is_gone_is_replaced(tiny_model, data_root, tmp_path, monkeypatch):
    # the answers were deleted, their record left: nothing of the old run can be read, so nothing binds the new one
    (tmp_path / "answers.settings.json").write_text(json.dumps({"model": "hf", "model_args": {"pretrained": "/old"}}))
    _stand_in(monkeypatch)
    with pytest.raises(Evaluated):
        _run(monkeypatch, tiny_model, tmp_path / "answers", data_root, tmp_path / "out")
    assert json.loads((tmp_path / "answers.settings.json").read_text())["model_args"] == {
        "dtype": "float32", "pretrained": str(tiny_model)}


def test_a_half_precision_cache_is_reused_only_at_its_batch_size(tiny_model, data_root, tmp_path, monkeypatch, capsys):
    # bfloat16 scores move with the batch (the leaderboard makes such runs other rows): a resume keeps the batch size
    calls = _stand_in(monkeypatch)
    with pytest.raises(Evaluated):
        _run(monkeypatch, tiny_model, tmp_path / "answers", data_root, tmp_path / "out", 4, "bfloat16")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        _run(monkeypatch, tiny_model, tmp_path / "answers", data_root, tmp_path / "out", 2, "bfloat16")
    assert len(calls) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"culture-eval: --use_cache {tmp_path / 'answers'}: its answers are of other settings (batch_size: saved '4', "
        "given '2'); run with those, or give another --use_cache path")


def test_boolean_model_args_of_any_model_parse_strictly(tiny_model, data_root, tmp_path, monkeypatch, capsys):
    # lm-eval's `hf` took add_bos_token=no as the string "no" (true to Python); culture-eval reads it as false, and
    # refuses a word that is no boolean, for lm-eval's models as for hf-prompt
    calls = _stand_in(monkeypatch)

    def run(value):
        monkeypatch.setattr(sys, "argv", ["culture-eval", "--model", "hf", "--model_args",
                                          f"pretrained={tiny_model},add_bos_token={value}", "--tasks", "wvs_usa",
                                          "--include_path", str(TASKS_DIR), "--device", "cpu",
                                          "--metadata", json.dumps({"data_dir": str(data_root)})])
        main()

    with pytest.raises(Evaluated):
        run("no")
    assert calls[0]["model_args"] == {"pretrained": str(tiny_model), "add_bos_token": False}
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        run("flase")
    assert (stop.value.code, len(calls)) == (2, 1)
    assert capsys.readouterr().err.splitlines()[-1] == (
        "culture-eval: --model hf: add_bos_token= takes true or false (or yes/no/1/0), got 'flase'")


def test_an_adapter_of_another_base_model_is_refused_before_the_model_loads(tiny_model, data_root, tmp_path,
                                                                            monkeypatch, capsys):
    # a LoRA made on a wider model failed with a traceback of size mismatches once the model had loaded; a soft
    # prompt of one loaded without a word and failed at the first request (torch.cat of 64 and 32 values)
    import torch
    from transformers import AutoModelForCausalLM

    from aligners.soft_prompt import save_prompt_tuning_adapter
    from tests.tiny_model import save_random_lora

    calls = _stand_in(monkeypatch)
    wider = build_tiny_model(tmp_path / "wider", hidden_size=64)
    lora = save_random_lora(wider, tmp_path / "lora64", seed=3)
    prompt = tmp_path / "prompt64"
    save_prompt_tuning_adapter(AutoModelForCausalLM.from_pretrained(str(wider)), torch.zeros(4, 64), prompt,
                               str(wider), init="vocab")
    own = save_random_lora(tiny_model, tmp_path / "lora32", seed=3)

    def run(peft):
        monkeypatch.setattr(sys, "argv", [
            "culture-eval", "--model", "hf-prompt", "--model_args", f"pretrained={tiny_model},peft={peft}",
            "--include_path", str(TASKS_DIR), "--tasks", "wvs_usa", "--device", "cpu",
            "--metadata", json.dumps({"data_dir": str(data_root)})])
        main()

    fix = f"(an adapter of another base model); give peft= an adapter made on {tiny_model}"
    refusals = {lora: f"{lora} does not fit pretrained={tiny_model}: base_model.model.model.layers.0.self_attn.q_proj."
                      f"lora_A.weight has shape [4, 64] there, [4, 32] in the model {fix}",
                prompt: f"{prompt} holds a PROMPT_TUNING prompt of token_dim 64, but pretrained={tiny_model} has "
                        f"hidden size 32 {fix}"}
    capsys.readouterr()
    for peft, refusal in refusals.items():
        with pytest.raises(SystemExit) as stop:
            run(peft)
        assert (stop.value.code, len(calls)) == (2, 0)
        assert capsys.readouterr().err.splitlines()[-1] == f"culture-eval: --model_args peft=: {refusal}"
    with pytest.raises(Evaluated):  # an adapter of the model itself goes on to the evaluation
        run(own)
    assert calls[0]["model_args"] == {"pretrained": str(tiny_model), "peft": str(own)}


def test_a_request_cache_is_reused_only_with_its_own_tokenizer(tiny_model, data_root, tmp_path, monkeypatch, capsys):
    # lm-eval keys answers by the request text: a tokenizer= folder edited under the same path (the BOS it adds
    # dropped) gave the first run's wvs_jsd (0.66170) where its own is 0.66159
    import shutil

    tokenizer = tmp_path / "tokenizer"
    tokenizer.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tiny_model / name).is_file():
            shutil.copy(tiny_model / name, tokenizer)
    calls = _stand_in(monkeypatch)
    cache = tmp_path / "answers"
    with pytest.raises(Evaluated):
        _run(monkeypatch, f"{tiny_model},tokenizer={tokenizer}", cache, data_root, tmp_path / "out")
    before = loaded_fingerprint(tokenizer)
    assert json.loads((tmp_path / "answers.settings.json").read_text())["folders"] == {
        "pretrained": loaded_fingerprint(tiny_model), "tokenizer": before}
    data = json.loads((tokenizer / "tokenizer.json").read_text())
    (tokenizer / "tokenizer.json").write_text(json.dumps({**data, "post_processor": None}))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        _run(monkeypatch, f"{tiny_model},tokenizer={tokenizer}", cache, data_root, tmp_path / "out")
    assert len(calls) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"culture-eval: --use_cache {cache}: its answers are of other settings (folders: saved "
        f"{{'pretrained': {loaded_fingerprint(tiny_model)!r}, 'tokenizer': {before!r}}}, given "
        f"{{'pretrained': {loaded_fingerprint(tiny_model)!r}, 'tokenizer': {loaded_fingerprint(tokenizer)!r}}}); run "
        "with those, or give another --use_cache path")


def test_a_request_cache_sees_the_subfolder_the_model_loads(tiny_model, tmp_path):
    # pretrained=ROOT,subfolder=ckpt loads ROOT/ckpt: its fingerprint, not ROOT's top level (no file: the same for
    # every checkpoint put there), is what the answers are of
    import shutil

    from culture_tasks.harness import cache_settings

    shutil.copytree(tiny_model, tmp_path / "root" / "ckpt")
    settings = cache_settings("hf-prompt", f"pretrained={tmp_path / 'root'},subfolder=ckpt,dtype=float32", 4, "cpu")
    assert settings["folders"] == {"pretrained": loaded_fingerprint(tiny_model)}


def test_a_request_cache_in_use_by_another_run_is_refused(tiny_model, data_root, tmp_path, monkeypatch, capsys):
    # lm-eval creates its answer file only once the model has loaded: a run of another model started meanwhile found
    # no answers, replaced the record with its own settings, and went on to read the first run's answers
    import os
    import socket

    import lm_eval

    other = build_tiny_model(tmp_path / "other", seed=1)
    cache = tmp_path / "answers"
    calls: list[str] = []
    stops: list[int] = []

    def evaluate(**kwargs):  # the first run, still loading its model, when the second starts
        calls.append(kwargs["model_args"]["pretrained"])
        if len(calls) == 1:
            with pytest.raises(SystemExit) as stop:
                _run(monkeypatch, other, cache, data_root, tmp_path / "b")
            stops.append(stop.value.code)
        Path(f"{kwargs['use_cache']}_rank0.db").touch()
        raise Evaluated

    monkeypatch.setattr(lm_eval, "simple_evaluate", evaluate)
    with pytest.raises(Evaluated):
        _run(monkeypatch, tiny_model, cache, data_root, tmp_path / "a")
    assert (calls, stops) == ([str(tiny_model)], [2])
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"culture-eval: {cache} is in use by another run (process {os.getpid()} on host {socket.gethostname()}, lock "
        f"file {cache}.lock); wait for it to finish, or delete the lock file if that run is gone")
    assert json.loads((tmp_path / "answers.settings.json").read_text())["model_args"]["pretrained"] == str(tiny_model)
    assert not (tmp_path / "answers.lock").exists()  # released when the run ended


def test_a_request_cache_named_like_a_pattern_is_found(tmp_path):
    # the answer files were looked up by a glob pattern made of the path: "answers[1]" matched answers1_rank0.db, so
    # another model's run found no answers, replaced the record and read them as its own
    from culture_tasks.harness import HarnessError, check_cache

    cache = str(tmp_path / "answers[1]")
    check_cache(cache, {"model": "hf-prompt", "model_args": {"pretrained": "/m/a"}})
    Path(cache + "_rank0.db").touch()  # lm-eval wrote the first model's answers
    with pytest.raises(HarnessError) as stop:
        check_cache(cache, {"model": "hf-prompt", "model_args": {"pretrained": "/m/b"}})
    assert str(stop.value) == (
        f"--use_cache {cache}: its answers are of other settings (model_args: saved {{'pretrained': '/m/a'}}, given "
        "{'pretrained': '/m/b'}); run with those, or give another --use_cache path")
