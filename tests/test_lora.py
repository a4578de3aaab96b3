"""LoRA fine-tuning on the tiny model: harness tokenisation, loss, only LoRA weights, stock peft, lm-eval."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from culture_tasks.paths import task_manager
from tests.lm_eval_helpers import evaluate
from trainers.examples import build_examples
from trainers.lora import LoraTrainConfig, TrainingError, train


@pytest.fixture(scope="module")
def learnable_model(tmp_path_factory):
    """The tiny Llama with larger initial weights: at 0.02 its logits span under 1.5 nats, too
    little for an adapter to move an answer far."""
    from tests.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("learnable"), initializer_range=0.3)


@pytest.fixture(scope="module")
def english_examples(tmp_path_factory, data_root):
    path = tmp_path_factory.mktemp("data") / "english.jsonl"
    build_examples("english", data_dir=str(data_root)).write(path)
    return path


@pytest.mark.parametrize("chat", [False, True])
def test_training_tokens_are_the_tokens_lm_eval_scores(tiny_model, data_root, english_examples, chat):
    from lm_eval.models.huggingface import HFLM

    from aligners.scoring import TaskScorer
    from trainers.lora import encode_examples, read_examples

    lm = HFLM(pretrained=str(tiny_model), device="cpu", batch_size=1)
    scorer = TaskScorer(lm, "wvs_usa", task_manager({"data_dir": str(data_root)}),
                        chat_template=chat)
    rows = read_examples([str(english_examples)])
    encoded, too_long = encode_examples(lm, rows, chat, max_length=4096)
    assert too_long == 0 and len(encoded) == len(scorer.items) == 50
    for row, enc, item in zip(rows, encoded, scorer.items):
        assert row["q_id"] == item.doc["q_id"]
        answer = "ABCDEFGHIJ".index(row["messages"][1]["content"])
        assert enc["input_ids"] == item.context + [item.option_tokens[answer]]
        assert enc["labels"] == [-100] * len(item.context) + [item.option_tokens[answer]]


@pytest.mark.parametrize("chat", [False, True])
def test_a_system_message_is_trained_as_lm_eval_system_instruction_asks_it(tiny_model, data_root, english_examples,
                                                                            chat):
    """A row's system message is the context ``lm_eval --system_instruction`` scores: before the question with
    nothing between them without a chat template (lm-eval's plain text), its own turn under one."""
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import get_task_dict

    from trainers.lora import encode_examples, read_examples

    lm = HFLM(pretrained=str(tiny_model), device="cpu", batch_size=1)
    rows = [{**r, "messages": [{"role": "system", "content": "S."}, *r["messages"]]}
            for r in read_examples([str(english_examples)])[:3]]
    encoded, _ = encode_examples(lm, rows, chat, max_length=4096)
    task = get_task_dict(["wvs_usa"], task_manager({"data_dir": str(data_root)}))["wvs_usa"]
    task.build_all_requests(rank=0, world_size=1, limit=3, system_instruction="S.", apply_chat_template=chat,
                            chat_template=lm.apply_chat_template if chat else None,
                            tokenizer_name=lm.tokenizer_name if chat else "")
    for row, enc in zip(rows, encoded):
        answer = "ABCDEFGHIJ".index(row["messages"][-1]["content"])
        inst = next(i for i in task.instances if i.doc["q_id"] == row["q_id"] and i.idx == answer)
        context, continuation = lm._encode_pair(*inst.arguments)
        assert enc["input_ids"] == context + continuation
        assert enc["labels"] == [-100] * len(context) + continuation
        question = row["messages"][1]["content"]
        expected = ("<s><|system|>S.</s><|user|>" + question + "</s><|assistant|>") if chat else "<s>S." + question
        assert lm.tokenizer.decode(context) == expected


def test_the_lm_eval_command_asks_with_the_rows_system_message(caplog):
    from trainers.lora import adapter_command

    def rows(*systems):
        return [{"culture": "english", "messages": ([{"role": "system", "content": s}] if s else [])
                 + [{"role": "user", "content": "q"}, {"role": "assistant", "content": "A"}]} for s in systems]

    meta = "--metadata '{\"data_dir\": \"/d\"}'"
    assert adapter_command("m", rows("Be brief.", "Be brief."), Path("/o"), True, Path("/d")).endswith(
        f"--tasks culturellm_english,wvs_usa {meta} --apply_chat_template --system_instruction 'Be brief.'")
    assert adapter_command("m", rows(None), Path("/o"), False, Path("/d")).endswith(
        f"--tasks culturellm_english,wvs_usa {meta}")
    # no one command asks rows with several system messages as trained: none, and a warning says so
    assert "--system_instruction" not in adapter_command("m", rows("a", "b", None), Path("/o"), True, Path("/d"))
    assert "3 different system messages" in caplog.text


def _config(tiny_model, data, out, **kw):
    values = dict(model=str(tiny_model), data=[str(data)], output=str(out), rank=4, alpha=8, dropout=0.0,
                  learning_rate=2e-2, max_steps=30, batch_size=10, logging_steps=1, save_steps=1000, warmup=0,
                  chat_template=True, seed=0)
    values.update(kw)
    return LoraTrainConfig(**values)


def _answer_loglikelihoods(results):
    """Mean log-likelihood lm-eval gives the trained (majority) answer of each wvs_usa item."""
    values = []
    for s in results["samples"]["wvs_usa"]:
        doc = s["doc"]
        majority = max(range(len(doc["country_dist"])), key=lambda i: (doc["country_dist"][i], -i))
        presented = list(doc["order"]).index(majority)
        values.append(float(s["resps"][presented][0][0]))
    return sum(values) / len(values)


def test_lora_lowers_the_loss_changes_only_lora_and_scores_through_lm_eval(learnable_model, data_root, english_examples,
                                                                          tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "adapter"
    summary = train(_config(learnable_model, english_examples, out, merge=True, data_dir=str(data_root)))
    losses = [x["loss"] for x in summary["losses"]]
    assert len(losses) == 30 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    # hidden 32, MLP 64, 4 heads of 8 (2 for k/v): r * (in + out) summed over the 7 linear layers = 512 r per layer
    assert summary["trainable_parameters"] == 4 * 512 * 2
    assert summary["answer_tokens"] == summary["examples"] == 50
    assert summary["cultures"] == ["english"]  # what culture-steer checks a lora --target's country against
    assert (f"--tasks culturellm_english,wvs_usa --metadata '{{\"data_dir\": \"{data_root}\"}}' "
            "--apply_chat_template") in summary["lm_eval"]
    assert summary["environment"]["device"] == "cpu" and summary["environment"]["versions"]["peft"]
    assert not (out / "checkpoints").exists()
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors",
                                                     "merged", "training.json"]

    umask = os.umask(0)
    os.umask(umask)  # readable as any new file (safetensors alone writes 0600)
    for f in [out / "adapter_model.safetensors", out / "merged" / "model.safetensors"]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f
    adapter = load_file(out / "adapter_model.safetensors")
    assert adapter and all("lora_A" in k or "lora_B" in k for k in adapter)
    # the merged model is the base plus alpha/r * B @ A on the adapted layers and the base everywhere else
    base = AutoModelForCausalLM.from_pretrained(learnable_model).state_dict()
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").state_dict()
    assert merged.keys() == base.keys()
    adapted = 0
    for name, weight in base.items():
        a_key = "base_model.model." + name.replace(".weight", ".lora_A.weight")
        if a_key in adapter:
            delta = (8 / 4) * adapter[a_key.replace("lora_A", "lora_B")] @ adapter[a_key]
            torch.testing.assert_close(merged[name], weight + delta, rtol=1e-5, atol=1e-6)
            assert delta.abs().max() > 0
            adapted += 1
        else:
            torch.testing.assert_close(merged[name], weight, rtol=0, atol=0)
    assert adapted == 14

    # stock peft loads it
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(learnable_model), out)
    assert model.peft_config["default"].r == 4

    # lm-eval scores it: the trained answers gained log-likelihood under the harness itself
    before = evaluate(learnable_model, ["wvs_usa"], data_root, chat=True, log_samples=True)
    after = evaluate(learnable_model, ["wvs_usa"], data_root, chat=True, log_samples=True, peft=out)
    assert after["results"]["wvs_usa"]["wvs_jsd,none"] != before["results"]["wvs_usa"]["wvs_jsd,none"]
    assert _answer_loglikelihoods(after) > _answer_loglikelihoods(before) + 1.0


def test_a_bf16_run_merges_its_adapter_into_the_base_weights_as_stored(learnable_model, english_examples, tmp_path):
    """Trained in bfloat16 on a float32 base (the GPU default), --merge wrote the bf16 copy the run trained on: every
    weight rounded to bfloat16, the embeddings too, and config.json with the trainer's use_cache: false, so
    merged/ scored other log-likelihoods than ``lm_eval ... peft=`` on the base. It is the base as stored plus
    alpha/r * B @ A (alpha/r = 8/4 = 2), in the base's dtype and with its config."""
    from transformers import AutoModelForCausalLM

    out = tmp_path / "adapter"
    train(_config(learnable_model, english_examples, out, bf16=True, gradient_checkpointing=True, max_steps=2,
                  merge=True))
    stored = json.loads((learnable_model / "config.json").read_text())
    written = json.loads((out / "merged" / "config.json").read_text())
    assert (stored["dtype"], stored["use_cache"]) == ("float32", True)
    assert (written["dtype"], written["use_cache"]) == ("float32", True)
    adapter = load_file(out / "adapter_model.safetensors")
    base = AutoModelForCausalLM.from_pretrained(learnable_model).state_dict()
    merged = load_file(out / "merged" / "model.safetensors")
    assert merged.keys() == base.keys() and {t.dtype for t in merged.values()} == {torch.float32}
    adapted = 0
    for name, weight in base.items():
        a_key = "base_model.model." + name.replace(".weight", ".lora_A.weight")
        if a_key in adapter:
            delta = 2 * adapter[a_key.replace("lora_A", "lora_B")] @ adapter[a_key]
            torch.testing.assert_close(merged[name], weight + delta, rtol=1e-5, atol=1e-6)
            adapted += 1
        else:
            assert torch.equal(merged[name], weight), name
    assert adapted == 14


def _trained_steps(monkeypatch) -> list[int]:
    """One entry per optimisation step the Trainer runs from now on (``training_step`` counted; one micro-batch a
    step at grad_accum 1)."""
    from transformers import Trainer

    real, steps = Trainer.training_step, []

    def counted(self, *args, **kwargs):
        steps.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", counted)
    return steps


def _ticking_clock():
    """A stand-in for trainers.lora's ``time`` whose clock moves 10 s each time it is read."""
    import types

    ticks = iter(range(0, 10_000, 10))
    return types.SimpleNamespace(perf_counter=lambda: float(next(ticks)))


KEPT_RUN = dict(max_steps=4, save_steps=2, keep_checkpoints=True)


@pytest.fixture(scope="module")
def kept_run(learnable_model, english_examples, tmp_path_factory):
    """A finished run of 4 steps with its checkpoints (steps 2 and 4) kept, made under ``_ticking_clock``: its
    folder and summary. Read only: a test that changes it works on a copy (``_copy_of_kept_run``)."""
    import trainers.lora as lora

    out = tmp_path_factory.mktemp("kept_run") / "kept"
    with pytest.MonkeyPatch.context() as m:
        m.setattr(lora, "time", _ticking_clock())
        summary = train(_config(learnable_model, english_examples, out, **KEPT_RUN))
    return out, summary


def _copy_of_kept_run(kept_run, folder: Path) -> Path:
    """``kept_run``'s folder copied to ``folder``, for a test to change."""
    import shutil

    return Path(shutil.copytree(kept_run[0], folder))


def _as_if_killed_after_the_step_2_checkpoint(out: Path) -> None:
    """What a ``KEPT_RUN`` killed after its step-2 checkpoint leaves: no checkpoint-4, adapter or training.json."""
    import shutil

    shutil.rmtree(out / "checkpoints" / "checkpoint-4")
    for name in ("adapter_model.safetensors", "training.json"):
        (out / name).unlink()


def test_interrupted_training_resumes_from_the_trainer_checkpoint(kept_run, learnable_model, english_examples,
                                                                  tmp_path, monkeypatch):
    """A seeded run trained again from step 0 would end with the same adapter and losses: the resume must also
    train only the steps after its checkpoint."""
    full_out, full = kept_run
    out = _copy_of_kept_run(kept_run, tmp_path / "resumed")
    _as_if_killed_after_the_step_2_checkpoint(out)
    steps = _trained_steps(monkeypatch)
    resumed = train(_config(learnable_model, english_examples, out, resume=True, **KEPT_RUN))
    assert resumed["steps"] == 4 and len(steps) == 2  # steps 3-4; 1-2 come from checkpoint-2
    a, b = load_file(full_out / "adapter_model.safetensors"), load_file(out / "adapter_model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)
    assert [x["loss"] for x in resumed["losses"] if x["step"] > 2] == pytest.approx(
        [x["loss"] for x in full["losses"] if x["step"] > 2], rel=1e-4)


def test_a_resumed_run_records_the_training_time_of_every_session(kept_run, learnable_model, english_examples,
                                                                   tmp_path, monkeypatch):
    """training.json's seconds of a resumed run were the last session's alone (and k-fold summaries copied
    them as the fold's training time). The time so far is stored with each checkpoint and the resume adds
    it: under a clock that moves 10 s each time it is read, the run killed after its step-2 checkpoint and
    resumed records what the uninterrupted one does. Read at the start (0), at the step-2 checkpoint (10),
    at the step-4 one (20) and at the end (30): 30 s; resumed: 10 s stored at step 2, then start, step-4
    checkpoint, end: 10 + 20 = 30 s (the last session alone: 20 s, or 10 s as measured before)."""
    import trainers.lora as lora

    assert kept_run[1]["seconds"] == 30.0  # the uninterrupted run, under the same clock
    out = _copy_of_kept_run(kept_run, tmp_path / "resumed")
    carry = out / "checkpoints" / "checkpoint-2" / lora.LOSS_CARRY.format(0)
    assert json.loads(carry.read_text())["seconds"] == 10.0
    _as_if_killed_after_the_step_2_checkpoint(out)
    monkeypatch.setattr(lora, "time", _ticking_clock())
    resumed = train(_config(learnable_model, english_examples, out, resume=True, **KEPT_RUN))
    assert resumed["seconds"] == 30.0 == json.loads((out / "training.json").read_text())["seconds"]
    # a checkpoint stored before the time was kept: the total is unknown, recorded as null, not as the last session's
    data = json.loads(carry.read_text())
    del data["seconds"]
    carry.write_text(json.dumps(data))
    _as_if_killed_after_the_step_2_checkpoint(out)
    kw = {**KEPT_RUN, "keep_checkpoints": False}
    again = train(_config(learnable_model, english_examples, out, resume=True, **kw))
    assert again["seconds"] is None and json.loads((out / "training.json").read_text())["seconds"] is None
    assert again["steps"] == 4


def _killed_before_removing_checkpoints(monkeypatch):
    """shutil.rmtree of trainers.lora, as if the run were SIGKILLed just before it removed its checkpoints
    (training.json written): the first removal of a folder named checkpoints stops the run."""
    import types

    import trainers.lora as lora

    real = lora.shutil

    def rmtree(path, *args, **kwargs):
        if Path(path).name == "checkpoints":
            monkeypatch.setattr(lora, "shutil", real)
            raise KeyboardInterrupt
        return real.rmtree(path, *args, **kwargs)

    monkeypatch.setattr(lora, "shutil", types.SimpleNamespace(rmtree=rmtree))


def test_a_resume_of_a_finished_run_killed_before_removing_its_checkpoints_removes_them(
        learnable_model, english_examples, tmp_path, monkeypatch, caplog):
    """Killed after writing training.json, before removing checkpoints/: a --resume trained the finished run
    again from its last checkpoint and wrote its adapter and training.json anew, and the checkpoints stayed.
    The resume now removes them (the adapter is complete), names them, and says the run is complete."""
    out = tmp_path / "run"
    kw = dict(max_steps=4, save_steps=2)
    _killed_before_removing_checkpoints(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train(_config(learnable_model, english_examples, out, **kw))
    assert (out / "training.json").is_file() and (out / "checkpoints" / "checkpoint-4").is_dir()
    kept = {p: p.read_bytes() for p in (out / "training.json", out / "adapter_model.safetensors")}
    caplog.clear()
    with pytest.raises(TrainingError, match=r"the run in .* is complete \(training.json\); pass --overwrite"):
        train(_config(learnable_model, english_examples, out, resume=True, **kw))
    assert not (out / "checkpoints").exists() and {p: p.read_bytes() for p in kept} == kept
    assert [r.getMessage() for r in caplog.records if "removed" in r.getMessage()] == [
        f"{out}: removed {out / 'checkpoints'}, left by a finished run killed before it removed them"]


def test_a_resume_of_a_finished_run_that_kept_its_checkpoints_trains_nothing(kept_run, learnable_model,
                                                                            english_examples, tmp_path):
    """--keep-checkpoints leaves checkpoints/ beside training.json: a --resume trained the finished run again
    from its last checkpoint and wrote its adapter and training.json anew. It is refused, and nothing is written."""
    out = _copy_of_kept_run(kept_run, tmp_path / "kept")
    kept = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and p.name != ".lock"}
    assert out / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors" in kept
    with pytest.raises(TrainingError, match=r"the run in .* is complete \(training.json\); pass --overwrite"):
        train(_config(learnable_model, english_examples, out, resume=True, **KEPT_RUN))
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and p.name != ".lock"} == kept


def test_a_finished_run_s_checkpoints_are_kept_when_asked_or_when_its_adapter_is_not_complete(kept_run, tmp_path):
    """--keep-checkpoints (now or when the run was made) keeps them; so does an adapter that cannot be read."""
    from trainers.lora import remove_finished_checkpoints

    out = _copy_of_kept_run(kept_run, tmp_path / "kept")
    remove_finished_checkpoints(out, keep=False)  # the finished run's own keep_checkpoints
    assert (out / "checkpoints" / "checkpoint-4").is_dir()
    summary = json.loads((out / "training.json").read_text())
    summary["config"]["keep_checkpoints"] = False
    (out / "training.json").write_text(json.dumps(summary))
    remove_finished_checkpoints(out, keep=True)  # asked now
    assert (out / "checkpoints" / "checkpoint-4").is_dir()
    weights = (out / "adapter_model.safetensors").read_bytes()
    (out / "adapter_model.safetensors").write_bytes(weights[:100])
    remove_finished_checkpoints(out, keep=False)  # the adapter cut off: the checkpoints are all there is
    assert (out / "checkpoints" / "checkpoint-4").is_dir()
    (out / "adapter_model.safetensors").write_bytes(weights)
    remove_finished_checkpoints(out, keep=False)
    assert not (out / "checkpoints").exists()


def test_bad_training_input(learnable_model, english_examples, tmp_path):
    with pytest.raises(TrainingError, match="does not exist"):
        train(_config(learnable_model, tmp_path / "none.jsonl", tmp_path / "a"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n", encoding="utf-8")
    with pytest.raises(TrainingError, match=r"bad.jsonl:1: field 'messages' must be a list"):
        train(_config(learnable_model, bad, tmp_path / "b"))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("x")
    with pytest.raises(TrainingError, match="not empty; pass --resume"):
        train(_config(learnable_model, english_examples, tmp_path / "c"))
    assert (tmp_path / "c" / "keep.txt").read_text() == "x"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("x")
    with pytest.raises(TrainingError, match="holds no checkpoints/run_settings.json; pass --overwrite"):
        train(_config(learnable_model, english_examples, tmp_path / "d", resume=True))


def test_unknown_culture_in_the_data_is_refused_before_training(tmp_path, capsys):
    from trainers.cli import main as cli

    data = tmp_path / "rows.jsonl"
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "A"}], "culture": "english"}
    data.write_text(json.dumps(row) + "\n" + json.dumps({**row, "culture": "klingon"}) + "\n", encoding="utf-8")
    out = tmp_path / "adapter"
    # the base model folder does not exist: the culture error must come before any attempt to load it
    assert cli(["lora", "--model", str(tmp_path / "no-model"), "--data", str(data), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"culture-train lora: {data}:2: unknown culture 'klingon'; choose one of ['arabic', 'bengali', "
                   "'chinese', 'english', 'german', 'korean', 'portuguese', 'spanish', 'turkish'] or 'one'\n")
    assert not out.exists()
    with pytest.raises(TrainingError, match=r"rows.jsonl:2: unknown culture 'klingon'"):
        LoraTrainConfig(model="m", data=[str(data)], output=str(out))


def test_an_unknown_culture_on_the_first_row_after_a_byte_order_mark_is_refused_before_training(tmp_path):
    # the rows are read with the mark removed (read_examples), so the check must read that row too: it failed
    # only after training, when the lm_eval command was written
    data = tmp_path / "rows.jsonl"
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "A"}], "culture": "english"}
    text = json.dumps({**row, "culture": "klingon"}) + "\n" + json.dumps(row) + "\n"
    data.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    with pytest.raises(TrainingError, match=r"rows.jsonl:1: unknown culture 'klingon'"):
        LoraTrainConfig(model="m", data=[str(data)], output=str(tmp_path / "adapter"))


def test_bf16_without_dropout_skips_the_adapter_input_casts_and_trains_the_same(
        learnable_model, english_examples, tmp_path, monkeypatch):
    """peft casts each LoRA layer's bf16 input to the adapter's float32, and autocast casts it back for
    the matmul: with no dropout the trainer skips that exact round trip. The same run with peft's casts
    gives the same losses and the same adapter, bit for bit."""
    import trainers.lora as lora

    calls = []
    skip = lora._keep_lora_inputs_in_compute_dtype

    def recorded(model):
        skip(model)
        layers = [m for m in model.modules() if hasattr(m, "cast_input_dtype_enabled")]
        calls.append((len(layers), any(m.cast_input_dtype_enabled for m in layers)))

    monkeypatch.setattr(lora, "_keep_lora_inputs_in_compute_dtype", recorded)
    kw = dict(bf16=True, max_steps=3, batch_size=4, logging_steps=1)
    fast = train(_config(learnable_model, english_examples, tmp_path / "fast", **kw))
    assert calls == [(14, False)]  # 2 layers x 7 linear layers, casts off
    monkeypatch.setattr(lora, "_keep_lora_inputs_in_compute_dtype", lambda model: calls.append("peft"))
    casting = train(_config(learnable_model, english_examples, tmp_path / "casting", **kw))
    train(_config(learnable_model, english_examples, tmp_path / "dropout", dropout=0.1, **kw))
    assert calls == [(14, False), "peft"]  # with dropout the casts stay
    assert fast["bf16"] and [h["loss"] for h in fast["losses"]] == [h["loss"] for h in casting["losses"]]
    weights = [load_file(str(tmp_path / name / "adapter_model.safetensors")) for name in ("fast", "casting")]
    assert sorted(weights[0]) == sorted(weights[1]) and len(weights[0]) == 28
    for name, value in weights[0].items():
        assert value.dtype == torch.float32 and torch.equal(value, weights[1][name]), name
    assert any((value != 0).any() for name, value in weights[0].items() if "lora_B" in name)  # it trained


def test_collator_pads_right_with_label_minus_100_and_keeps_the_loss(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainers.lora import answer_only_collator

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    pad = tokenizer.pad_token_id
    examples = [{"input_ids": [1, 5, 6, 7], "labels": [-100, -100, -100, 7]},
                {"input_ids": [1, 8], "labels": [-100, 9]}]
    # by hand: right padding with the pad token, mask 0 and label -100 on the padding
    expected = {"input_ids": torch.tensor([[1, 5, 6, 7], [1, 8, pad, pad]]),
                "labels": torch.tensor([[-100, -100, -100, 7], [-100, 9, -100, -100]]),
                "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])}
    batch = answer_only_collator(tokenizer)([dict(e) for e in examples])
    assert {k: v.tolist() for k, v in batch.items()} == {k: v.tolist() for k, v in expected.items()}
    assert all(v.dtype == torch.long for v in batch.values())
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        assert model(**batch).loss.item() == model(**expected).loss.item()

    # a tokenizer that pads on the left and has no pad token: still right padding, with </s>,
    # and the tokenizer itself is left as it was
    tokenizer.padding_side, tokenizer.pad_token = "left", None
    batch = answer_only_collator(tokenizer)([dict(e) for e in examples])
    assert batch["input_ids"][1].tolist() == [1, 8, tokenizer.eos_token_id, tokenizer.eos_token_id]
    assert batch["labels"][1].tolist() == [-100, 9, -100, -100]
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is None


@pytest.mark.parametrize("extra, message", [
    ('{"bogus": 1}', "--extra: 'bogus' is not a TrainingArguments parameter of transformers"),
    ('{"lr_schedular_type": "cosine"}', "--extra: 'lr_schedular_type' (did you mean 'lr_scheduler_type'?) is not a "
                                        "TrainingArguments parameter"),
    ('{"learning_rate": 1}', "--extra: 'learning_rate' is set by the trainer from --learning-rate; remove it from "
                             "--extra and give --learning-rate instead"),
    ('{"report_to": ["wandb"]}', "--extra: 'report_to' is set by the trainer itself and cannot be changed"),
    ('{"lr_scheduler_type": "bogus"}', '--extra: TrainingArguments refuse {"lr_scheduler_type": "bogus"}: '
                                       "bogus is not a valid SchedulerType"),
    # TrainingArguments take any type: "false" turned the option on, "1.0" failed at the first step
    ('{"logging_first_step": "false"}', "--extra: 'logging_first_step' is a bool of TrainingArguments: give true or "
                                        'false without quotes, not "false"'),
    ('{"max_grad_norm": "1.0"}', "--extra: 'max_grad_norm' is a float of TrainingArguments: give a number without "
                                 'quotes, not "1.0"'),
    ('{"dataloader_num_workers": true}', "--extra: 'dataloader_num_workers' is an int of TrainingArguments: give a "
                                         "whole number without quotes, not true"),
    ('{"dataloader_num_workers": 2.0}', "is an int of TrainingArguments: give a whole number without quotes, not 2.0"),
    ('{"run_name": 5}', "--extra: 'run_name' is a str of TrainingArguments: give a quoted string (or null), not 5"),
    ('{"max_grad_norm": null}', "--extra: 'max_grad_norm' is a float of TrainingArguments: give a number without "
                                "quotes, not null"),
    # what the checkpoints and --resume rely on
    ('{"save_only_model": true}', "--extra: 'save_only_model' is set by the trainer itself (its checkpoints and "
                                  "--resume rely on it) and cannot be changed; remove it from --extra"),
    ('{"ignore_data_skip": true}', "--extra: 'ignore_data_skip' is set by the trainer itself (its checkpoints and "
                                   "--resume rely on it) and cannot be changed; remove it from --extra"),
    ('{"save_strategy": "no"}', "--extra: 'save_strategy' is set by the trainer from --save-steps; remove it from "
                                "--extra and give --save-steps instead"),
])
def test_extra_keys_are_refused_before_the_model_loads(tmp_path, capsys, extra, message):
    from trainers.cli import main as cli

    data = tmp_path / "rows.jsonl"
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "A"}], "culture": "english"}
    data.write_text(json.dumps(row) + "\n", encoding="utf-8")
    out = tmp_path / "adapter"
    # no model folder: the error must come before any attempt to load one, and write nothing
    assert cli(["lora", "--model", str(tmp_path / "no-model"), "--data", str(data), "--output", str(out),
                "--extra", extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("culture-train lora: --extra: ")
    assert not out.exists()
    assert LoraTrainConfig(model="m", data=[str(data)], output=str(out),
                           extra={"lr_scheduler_type": "cosine"}).extra == {"lr_scheduler_type": "cosine"}


def test_extra_values_of_the_field_types_pass_unchanged(tmp_path):
    """A real bool, an int where a float goes, null where the field is optional: given to TrainingArguments as
    they are."""
    extra = {"logging_first_step": False, "max_grad_norm": 1, "dataloader_num_workers": 0, "run_name": None}
    cfg = LoraTrainConfig(model="m", data=[str(tmp_path / "none.jsonl")], output="o", extra=dict(extra))
    assert cfg.extra == extra


@pytest.mark.parametrize("checkpointing", [False, True])
def test_every_argument_the_trainer_sets_is_barred_from_extra(tmp_path, checkpointing):
    import inspect

    from transformers import TrainingArguments

    from trainers.lora import SET_BY_TRAINER, _training_arguments

    for warmup in (0.1, 5):
        cfg = LoraTrainConfig(model="m", data=[str(tmp_path / "none.jsonl")], output="o", warmup=warmup)
        own = set(_training_arguments(cfg, False, checkpointing))
        assert own <= set(SET_BY_TRAINER), own - set(SET_BY_TRAINER)
        assert len(own & {"warmup_ratio", "warmup_steps"}) == 1 and "learning_rate" in own
    assert set(SET_BY_TRAINER) - set(inspect.signature(TrainingArguments.__init__).parameters) <= {
        "warmup_ratio", "activation_checkpointing", "gradient_checkpointing", "gradient_checkpointing_kwargs",
        "save_safetensors"}  # transformers 4 (False wrote checkpoints the resume reads as incomplete)


def test_a_transformers_whose_trainer_lacks_a_hook_the_trainer_overrides_is_refused(monkeypatch):
    """The trainer overrides Trainer hooks (_run_epoch: a run resumed from its last checkpoint trains no step more;
    _finalize_training, _save_checkpoint: the loss carried across a resume). transformers 4 has no _run_epoch (its
    loop is _inner_training_loop), where the override would silently never run: refused by name instead."""
    from transformers import Trainer

    import trainers.lora as lora

    trainer = lora._trainer_class()  # the installed transformers has every hook
    overridden = {n for n in vars(trainer) if n.startswith("_") and not n.startswith("__")}
    assert {"_run_epoch", "_finalize_training", "_save_checkpoint"} <= overridden
    assert all(callable(getattr(Trainer, n, None)) for n in overridden)
    monkeypatch.delattr(Trainer, "_run_epoch")
    with pytest.raises(TrainingError, match=r"its Trainer has no _run_epoch, .*transformers>=5\.18"):
        lora._trainer_class()


def test_training_rows_with_unknown_keys_are_refused(tmp_path):
    from tests.synthetic_wvs import write_data_root
    from trainers.lora import read_examples

    written = tmp_path / "english.jsonl"
    build_examples("english", data_dir=str(write_data_root(tmp_path / "root"))).write(written)
    rows = read_examples([str(written)])  # every key `culture-train data` writes is read back
    assert sorted(rows[0]) == ["answer_code", "country", "culture", "messages", "q_id", "rule", "step"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(written.read_text(encoding="utf-8") + json.dumps({**rows[0], "qid": "27"}) + "\n",
                   encoding="utf-8")
    with pytest.raises(TrainingError, match=r"bad.jsonl:3: unknown key\(s\) 'qid' \(did you mean 'q_id'\?\) "
                                            r"in a training row"):
        read_examples([str(bad)])


@pytest.mark.parametrize("messages, message", [
    (["q", "A"], "field 'messages' must be a list of chat messages"),
    ([{"role": "user", "content": "q"}, "A"], "field 'messages' must be a list of chat messages"),
    # an empty answer has no token to train: the example would count without any loss (or a NaN loss)
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}], "the assistant's answer is empty"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": " \n"}], "the assistant's answer is empty"),
    # a misspelt key or role was read as absent; an earlier assistant turn trained as context the harness never asks
    ([{"rol": "user", "content": "q"}, {"role": "assistant", "content": "A"}],
     "field 'messages', message 1: unknown key(s) 'rol' (did you mean 'role'?); a chat message has only role and "
     "content: rename or remove them"),
    ([{"role": "usr", "content": "q"}, {"role": "assistant", "content": "A"}],
     "field 'messages', message 1: unknown role 'usr' (did you mean 'user'?); the trainer takes a system message "
     "(first, optional), user messages and the assistant's answer (last)"),
    ([{"content": "q"}, {"role": "assistant", "content": "A"}], "field 'messages', message 1: no role; the trainer"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "B"}, {"role": "assistant", "content": "A"}],
     "field 'messages', message 2: an assistant turn before the answer (the last message), which the harness never "
     "asks with; the trainer takes a system message (first, optional)"),
    ([{"role": "user", "content": "q"}, {"role": "system", "content": "s"}, {"role": "assistant", "content": "A"}],
     "field 'messages', message 2: a system message after the first message; the trainer takes"),
])
def test_training_rows_whose_messages_cannot_train_name_their_line(tmp_path, capsys, messages, message):
    from trainers.cli import main as cli

    data = tmp_path / "rows.jsonl"
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "A"}]}
    data.write_text(json.dumps(good) + "\n" + json.dumps({"messages": messages}) + "\n", encoding="utf-8")
    out = tmp_path / "adapter"
    assert cli(["lora", "--model", str(tmp_path / "no-model"), "--data", str(data), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"culture-train lora: {data}:2: {message}") and err.count("\n") == 1
    assert not out.exists()


def test_a_system_message_before_the_question_is_read(tmp_path):
    from trainers.lora import read_examples

    data = tmp_path / "rows.jsonl"
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "A"}]
    data.write_text(json.dumps({"messages": messages}) + "\n", encoding="utf-8")
    assert read_examples([str(data)]) == [{"messages": messages}]


def test_a_misfit_target_module_stops_before_the_weights_load_and_keeps_the_old_adapter(
        learnable_model, english_examples, tmp_path, monkeypatch, capsys):
    import transformers

    from trainers.cli import main as cli

    out = tmp_path / "adapter"
    train(_config(learnable_model, english_examples, out, max_steps=2))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: pytest.fail("weights loaded before the settings were checked"))
    assert cli(["lora", "--model", str(learnable_model), "--data", str(english_examples), "--output", str(out),
                "--overwrite", "--target-modules", "q_prj"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"culture-train lora: --target-modules ['q_prj'] does not fit {learnable_model}: ")
    assert "q_prj" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing replaced
    assert cli(["lora", "--model", str(tmp_path / "no-model"), "--data", str(english_examples),
                "--output", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err.startswith(f"culture-train lora: --model {tmp_path / 'no-model'}: no model config "
                                              "could be read (")
    assert not (tmp_path / "b").exists()


def test_a_chat_template_the_tokenizer_lacks_stops_before_the_weights_load(tiny_model, english_examples, tmp_path,
                                                                         monkeypatch, capsys):
    import shutil

    import transformers

    from trainers.cli import main as cli

    plain = tmp_path / "plain"  # the tiny model without its chat template
    shutil.copytree(tiny_model, plain)
    (plain / "chat_template.jinja").unlink()
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: pytest.fail("weights loaded before the settings were checked"))
    out = tmp_path / "adapter"
    assert cli(["lora", "--model", str(plain), "--data", str(english_examples), "--output", str(out),
                "--chat-template", "true"]) == 2
    assert capsys.readouterr().err == (f"culture-train lora: {plain}: the tokenizer has no chat template; set "
                                       "chat_template: false\n")
    assert not out.exists() or not any(p.name != ".lock" for p in out.iterdir())


@pytest.mark.parametrize("flag, value, message", [
    ("--dropout", "1.5", "dropout must lie in [0, 1), got 1.5"),
    ("--learning-rate", "-0.5", "learning_rate must be positive, got -0.5"),
    ("--learning-rate", "0", "learning_rate must be positive, got 0.0"),
    ("--weight-decay", "-1", "weight_decay must not be negative, got -1.0"),
    ("--warmup", "2.7", "warmup 2.7: from 1 up it is a number of steps, so give a whole number"),
    # not finite: an infinite learning rate or a NaN weight decay trained an adapter of NaN weights without a word
    ("--learning-rate", "inf", "learning_rate must be a finite number, got inf"),
    ("--weight-decay", "nan", "weight_decay must be a finite number, got nan"),
    ("--warmup", "nan", "warmup must be a finite number, got nan"),
    ("--epochs", "inf", "epochs must be a finite number, got inf"),
    ("--dropout", "nan", "dropout must be a finite number, got nan"),
    # transformers' set_seed refused these only once training started, in a line naming no flag
    ("--seed", "-1", "--seed must be a whole number from 0 to 4294967295, got -1"),
    ("--seed", "4294967296", "--seed must be a whole number from 0 to 4294967295, got 4294967296"),
])
def test_out_of_range_settings_are_refused_at_once(tmp_path, capsys, flag, value, message):
    from trainers.cli import main as cli

    data = tmp_path / "rows.jsonl"
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "A"}], "culture": "english"}
    data.write_text(json.dumps(row) + "\n", encoding="utf-8")
    assert cli(["lora", "--model", str(tmp_path / "m"), "--data", str(data), "--output", str(tmp_path / "o"),
                flag, value]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
    assert LoraTrainConfig(model="m", data=[str(data)], output="o", warmup=3.0, dropout=0.0).warmup == 3.0


def test_a_resume_under_another_process_count_is_refused(kept_run, learnable_model, english_examples, tmp_path,
                                                         monkeypatch):
    # batch x accumulation x processes is the global batch: two processes would continue another training
    out = _copy_of_kept_run(kept_run, tmp_path / "adapter")
    stored = json.loads((out / "checkpoints" / "run_settings.json").read_text())
    assert stored["world_size"] == 1
    (out / "training.json").unlink()  # as if killed after its last checkpoint: a run to resume
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TrainingError, match=r"other settings \(world_size: saved 1, given 2\)"):
        train(_config(learnable_model, english_examples, out, resume=True, **KEPT_RUN))


def test_checkpoints_of_several_processes_and_of_fsdp_are_found_complete(kept_run, tmp_path, monkeypatch):
    """Under torchrun the Trainer writes one RNG file per process (rng_state_<rank>.pth, no rng_state.pth),
    under FSDP the optimizer as optimizer.bin: such a checkpoint is complete and is resumed from, not removed;
    one that lacks a process's RNG file is incomplete."""
    import shutil

    from trainers.lora import latest_complete_checkpoint

    out = _copy_of_kept_run(kept_run, tmp_path / "adapter")
    checkpoints = out / "checkpoints"
    assert latest_complete_checkpoint(checkpoints, remove=False) == checkpoints / "checkpoint-4"
    for step in (2, 4):  # the layout of a two-process run
        folder = checkpoints / f"checkpoint-{step}"
        (folder / "rng_state.pth").rename(folder / "rng_state_0.pth")
        shutil.copy(folder / "rng_state_0.pth", folder / "rng_state_1.pth")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert latest_complete_checkpoint(checkpoints, remove=False) == checkpoints / "checkpoint-4"
    (checkpoints / "checkpoint-4" / "rng_state_1.pth").unlink()  # rank 1 died before writing its RNG state
    assert latest_complete_checkpoint(checkpoints) == checkpoints / "checkpoint-2"
    assert not (checkpoints / "checkpoint-4").exists()
    (checkpoints / "checkpoint-2" / "optimizer.pt").rename(checkpoints / "checkpoint-2" / "optimizer.bin")  # FSDP
    assert latest_complete_checkpoint(checkpoints, remove=False) == checkpoints / "checkpoint-2"
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process needs rng_state.pth
    assert latest_complete_checkpoint(checkpoints, remove=False) is None


def test_training_json_names_the_content_of_the_model_and_data_it_was_made_from(learnable_model, english_examples,
                                                                                 tmp_path):
    """Paths alone do not say what produced an adapter: the data file may be rebuilt and the model folder
    replaced afterwards. training.json holds the data's SHA-256 and the model folder's fingerprint, the
    values a --resume compares."""
    import hashlib

    from culture_tasks.fingerprints import model_fingerprint

    summary = train(_config(learnable_model, english_examples, tmp_path / "adapter", max_steps=1))
    assert summary["data_sha256"] == ["sha256:" + hashlib.sha256(english_examples.read_bytes()).hexdigest()]
    assert summary["model_fingerprint"] == model_fingerprint(learnable_model) and summary["model_fingerprint"]
    assert json.loads((tmp_path / "adapter" / "training.json").read_text())["data_sha256"] == summary["data_sha256"]


def test_training_json_names_each_culture_as_countries_yaml_spells_it(learnable_model, english_examples, tmp_path):
    """Rows naming "English" (and " english") are of the english culture: training.json recorded ["English"],
    which culture-steer refused for a usa=lora target (the United States stands for 'english')."""
    rows = [json.loads(line) for line in english_examples.read_text(encoding="utf-8").splitlines()]
    data = tmp_path / "English.jsonl"
    data.write_text("".join(json.dumps({**r, "culture": "English" if i else " english"}) + "\n"
                            for i, r in enumerate(rows)), encoding="utf-8")
    summary = train(_config(learnable_model, data, tmp_path / "adapter", max_steps=1))
    assert json.loads((tmp_path / "adapter" / "training.json").read_text())["cultures"] == ["english"]
    assert " --tasks culturellm_english,wvs_usa " in summary["lm_eval"]


def test_a_resume_that_would_train_in_another_precision_is_refused(learnable_model, english_examples, tmp_path,
                                                                   monkeypatch):
    """bf16 left to its default is decided by the machine: a run begun on CPU (float32) and resumed where
    a GPU supports bfloat16 would continue in bfloat16. The precision the run trains in is a stored setting."""
    out = tmp_path / "adapter"
    train(_config(learnable_model, english_examples, out, max_steps=2, save_steps=1, keep_checkpoints=True,
                  bf16=None))
    assert json.loads((out / "checkpoints" / "run_settings.json").read_text())["training_dtype"] == "float32"
    (out / "training.json").unlink()  # as if killed after its last checkpoint: a run to resume
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    with pytest.raises(TrainingError, match=r"other settings \(training_dtype: saved 'float32', given 'bfloat16'\)"):
        train(_config(learnable_model, english_examples, out, max_steps=2, save_steps=1, resume=True, bf16=None))


def test_a_float32_run_under_a_mixed_precision_launch_is_refused_before_anything_loads(
        tiny_model, english_examples, tmp_path, monkeypatch, capsys):
    """``accelerate launch --mixed_precision bf16`` (or ``mixed_precision: bf16`` in its config file, as in
    configs/accelerate_fsdp_lora.yaml) sets ACCELERATE_MIXED_PRECISION, which TrainingArguments take where bf16 is
    off: on CPU a run trained under bfloat16 autocast (the learnable tiny model's losses 7.847, 7.032, 6.771, 6.182
    instead of 7.824, 7.020, 6.753, 6.196) while training.json said bf16: false."""
    from trainers.cli import main as cli
    from trainers.lora import check_launch_precision

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    out = tmp_path / "adapter"
    assert cli(["lora", "--model", str(tiny_model), "--data", str(english_examples), "--output", str(out),
                "--bf16", "false"]) == 2
    assert capsys.readouterr().err == (
        "culture-train lora: accelerate launch asks for mixed precision bf16 (its --mixed_precision, or "
        "mixed_precision in its config file), but this run trains in float32 (--bf16 false, or left to its default "
        "without a GPU that supports bfloat16): transformers would train under bf16 autocast while training.json "
        "recorded float32; pass --bf16 true, or launch with --mixed_precision no\n")
    assert not out.exists()
    check_launch_precision(True)  # bfloat16, as both say
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    check_launch_precision(False)


def test_a_lora_checkpoint_names_its_base_model_folder_absolutely(tiny_model, english_examples, tmp_path,
                                                                 monkeypatch):
    """``--model`` relative to the working directory: adapter_config.json names the folder absolutely."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainers.lora import make_trainer

    monkeypatch.chdir(tiny_model.parent)
    cfg = _config(tiny_model.name, english_examples, tmp_path / "out")
    model = AutoModelForCausalLM.from_pretrained(cfg.model)
    trainer = make_trainer(cfg, model, AutoTokenizer.from_pretrained(cfg.model), [])
    trainer.model.save_pretrained(tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model.resolve())


def test_a_diverged_training_stops_without_writing_an_adapter(tiny_model, english_examples, tmp_path, capsys):
    """At learning rate 1e3 the tiny model's adapter turns to NaN within 5 steps; the Trainer logs the NaN
    steps' loss as 0 and reports a finite train_loss, so the adapter and a training.json marking it done
    were written as from any run."""
    from trainers.cli import main

    out = tmp_path / "diverged"
    args = ["lora", "--model", str(tiny_model), "--data", str(english_examples), "--output", str(out),
            "--rank", "4", "--alpha", "8", "--dropout", "0", "--learning-rate", "1e3", "--max-steps", "5",
            "--batch-size", "10", "--logging-steps", "1", "--warmup", "0", "--chat-template", "true",
            "--bf16", "false"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars: one line
    assert err.startswith(f"culture-train lora: {out}: the training diverged (")
    assert "adapter tensors hold NaN or inf" in err
    assert err.endswith("and no adapter was written; train again with a lower --learning-rate (this run: 1000), "
                        "with --overwrite")
    assert not any((out / name).exists() for name in ("training.json", "adapter_model.safetensors",
                                                       "adapter_config.json", "README.md"))
    # the same run at a learning rate that converges writes its adapter
    assert main([*args[:-10], "--learning-rate", "2e-2", *args[-8:], "--overwrite", "true"]) == 0
    assert (out / "training.json").is_file()


def test_a_training_loss_that_is_not_a_number_stops_the_run(tmp_path):
    from trainers.lora import _check_converged

    cfg_like = LoraTrainConfig.__new__(LoraTrainConfig)
    cfg_like.learning_rate = 2e-4
    weights = {"a": torch.zeros(2)}
    _check_converged(cfg_like, tmp_path, False, 1.5, weights)  # finite: passes
    with pytest.raises(TrainingError, match=r"the training diverged \(train_loss nan\) and no adapter was written; "
                                            r"train again with a lower --learning-rate \(this run: 0.0002\) or train "
                                            r"in float32 \(--bf16 false\), with --overwrite"):
        _check_converged(cfg_like, tmp_path, True, float("nan"), weights)


def test_one_regular_expression_on_the_command_line_adapts_the_layers_it_matches(tiny_model, tmp_path):
    """--help: "all-linear, one regular expression, or several module names". On the command line a single
    value arrives as a list of one, which peft matches as a module name: '.*(q_proj|v_proj)' named no layer
    and was refused. A value that cannot be a module name (only word characters and dots are) is the one
    regular expression; a single plain name stays a name."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from trainers.cli import parser
    from trainers.lora import check_target_modules, lora_config

    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "A"}]})
                    + "\n", encoding="utf-8")

    def adapted(value):
        (cfg,) = parser("lora").parse(["--model", str(tiny_model), "--data", str(data), "--output",
                                       str(tmp_path / "o"), "--target-modules", value])
        check_target_modules(cfg)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), lora_config(cfg))
        return cfg.target_modules, sorted({n.split(".lora_A")[0].rsplit(".", 1)[1]
                                           for n, _ in model.named_parameters() if ".lora_A" in n})

    assert adapted(".*(q_proj|v_proj)") == (".*(q_proj|v_proj)", ["q_proj", "v_proj"])
    assert adapted("q_proj") == (["q_proj"], ["q_proj"])


def test_adapter_config_lists_the_adapted_layers_in_one_order_in_any_process(tiny_model, english_examples,
                                                                            tmp_path):
    """peft keeps target_modules as a set and writes it as a list in the set's order, which depends on
    PYTHONHASHSEED: the same command and seed wrote adapter_config.json differently in each process. The
    layers are written sorted, whatever the process."""
    import subprocess
    import sys

    script = ("import sys; from transformers import AutoModelForCausalLM, AutoTokenizer; "
              "from trainers.lora import LoraTrainConfig, make_trainer; "
              "cfg = LoraTrainConfig(model=sys.argv[1], data=[sys.argv[2]], output=sys.argv[3], rank=4, alpha=8, "
              "dropout=0.0, chat_template=True, seed=0); "
              "trainer = make_trainer(cfg, AutoModelForCausalLM.from_pretrained(cfg.model), "
              "AutoTokenizer.from_pretrained(cfg.model), []); trainer.model.save_pretrained(sys.argv[3])")
    layers = [f"model.layers.{i}.{m}" for i in (0, 1) for m in ("mlp.down_proj", "mlp.gate_proj", "mlp.up_proj",
              "self_attn.k_proj", "self_attn.o_proj", "self_attn.q_proj", "self_attn.v_proj")]
    seeds = ("0", "12345")
    # the two interpreters run side by side: neither waits for the other's imports
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tiny_model), str(english_examples),
                               str(tmp_path / f"hash{hash_seed}")], env={**os.environ, "PYTHONHASHSEED": hash_seed},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(__file__))) for hash_seed in seeds]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-4000:]
    written = [(tmp_path / f"hash{hash_seed}" / "adapter_config.json").read_bytes() for hash_seed in seeds]
    for text in written:
        assert json.loads(text)["target_modules"] == layers
    assert written[0] == written[1]


def test_the_lm_head_runs_only_where_a_label_is_and_gives_the_full_loss_and_gradients(tiny_model):
    """Two rows padded to 4 tokens; by hand, the positions whose next token is labelled are 2 (row 1:
    token 7 at 3) and 0 (row 2: token 9 at 1), so the LM head sees 2 of the 4 positions, and the loss and
    every gradient are those of the full logits."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainers.lora import answer_only_collator, answer_positions, keeps_chosen_logits, lora_config

    examples = [{"input_ids": [1, 5, 6, 7], "labels": [-100, -100, -100, 7]},
                {"input_ids": [1, 8], "labels": [-100, 9]}]
    batch = answer_only_collator(AutoTokenizer.from_pretrained(tiny_model))([dict(e) for e in examples])
    chosen = answer_positions(batch)
    assert chosen["logits_to_keep"].tolist() == [0, 2]
    assert chosen["shift_labels"].tolist() == [[-100, 7], [9, -100]]
    assert torch.equal(chosen["labels"], batch["labels"])  # what the Trainer counts its tokens from

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           lora_config(LoraTrainConfig(model=str(tiny_model), data=[], output="unused", rank=4, alpha=8,
                                                       dropout=0.0)))
    for name, param in model.named_parameters():
        if "lora_B" in name:  # peft starts B at 0: give the adapter a gradient path of its own
            torch.nn.init.normal_(param, std=0.1)
    assert keeps_chosen_logits(model)
    seen = []
    model.get_base_model().lm_head.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))

    def loss_and_grads(inputs):
        model.zero_grad()
        loss = model(**inputs, num_items_in_batch=torch.tensor(2)).loss
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    full, full_grads = loss_and_grads(batch)
    kept, kept_grads = loss_and_grads(chosen)
    assert seen == [(2, 4, 32), (2, 2, 32)]
    assert kept == pytest.approx(full, rel=1e-6)
    assert sorted(kept_grads) == sorted(full_grads) and len(full_grads) == 28
    for name, grad in full_grads.items():
        assert torch.allclose(kept_grads[name], grad, rtol=1e-5, atol=1e-7), name

    class NoChoice(torch.nn.Module):
        def forward(self, input_ids, labels=None):
            return input_ids

    assert not keeps_chosen_logits(NoChoice())


def test_training_with_the_lm_head_at_the_answers_trains_as_with_every_logit(learnable_model, english_examples,
                                                                               tmp_path, monkeypatch):
    """The same run with the full logits (answer_positions turned off) logs the same losses and writes
    the same adapter, to float rounding; each batch asks the LM head for fewer positions than it has."""
    import trainers.lora as lora

    asked = []
    chosen = lora.answer_positions

    def recorded(inputs):
        out = chosen(inputs)
        asked.append((len(out["logits_to_keep"]), inputs["input_ids"].shape[1]))
        return out

    monkeypatch.setattr(lora, "answer_positions", recorded)
    kw = dict(max_steps=3, batch_size=4, logging_steps=1)
    kept = train(_config(learnable_model, english_examples, tmp_path / "kept", **kw))
    assert len(asked) == 3 and all(0 < k < length for k, length in asked)
    monkeypatch.setattr(lora, "answer_positions", lambda inputs: inputs)
    full = train(_config(learnable_model, english_examples, tmp_path / "full", **kw))
    assert [h["loss"] for h in kept["losses"]] == pytest.approx([h["loss"] for h in full["losses"]], rel=1e-5)
    weights = [load_file(str(tmp_path / name / "adapter_model.safetensors")) for name in ("kept", "full")]
    assert sorted(weights[0]) == sorted(weights[1]) and len(weights[0]) == 28
    for name, value in weights[0].items():
        assert torch.allclose(value, weights[1][name], rtol=1e-4, atol=1e-6), name
    assert any((value != 0).any() for name, value in weights[0].items() if "lora_B" in name)  # it trained


def test_repeated_per_epoch_counts_what_accelerate_fills_the_last_round_with():
    # 23 examples, batch 5 on 2 processes: rounds of 10, the third holds 3 and accelerate fills it with 7 examples
    # from the epoch's start (rank 0 [20, 21, 22, 0, 1], rank 1 [2, ..., 6]); one process trains none twice
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler, SequentialSampler

    from trainers.lora import repeated_per_epoch

    batches = BatchSampler(SequentialSampler(range(23)), batch_size=5, drop_last=False)
    drawn = [i for rank in (0, 1) for batch in BatchSamplerShard(batches, num_processes=2, process_index=rank,
                                                                   even_batches=True) for i in batch]
    assert len(drawn) - 23 == repeated_per_epoch(23, 5, 2) == 7
    assert (repeated_per_epoch(23, 10, 1), repeated_per_epoch(20, 5, 2), repeated_per_epoch(255, 8, 2)) == (0, 0, 1)


def test_a_config_file_naming_no_data_file_is_refused_by_name(tiny_model, tmp_path, capsys):
    """``data: []`` in a --config file: the error said "no training example in " and named nothing."""
    from trainers.cli import main as cli

    config = tmp_path / "run.yaml"
    config.write_text(f"model: {tiny_model}\ndata: []\noutput: {tmp_path / 'o'}\n", encoding="utf-8")
    assert cli(["lora", "--config", str(config)]) == 2
    assert capsys.readouterr().err == ("culture-train lora: --data names no file; give the training JSONL file(s) "
                                       "`culture-train data` wrote\n")
    assert not (tmp_path / "o").exists()


def _metadata(command: str) -> dict:
    """The ``--metadata`` object of a recorded lm_eval command."""
    import shlex

    args = shlex.split(command)
    return json.loads(args[args.index("--metadata") + 1])


def test_the_recorded_command_names_the_data_root_in_full(tiny_model, tmp_path, monkeypatch):
    """training.json's lm_eval command named no data root: in a shell without $CULTURE_DATA_DIR it stopped ("No data
    root given"), and under another root it scored other answers. It names the run's root in full: the variable's
    (here relative, as CI sets ../shared/data), or --data-dir's; the command's metadata alone builds the task. With
    neither, the run stops before the model loads and nothing is written."""
    import transformers
    from lm_eval.tasks import get_task_dict

    from tests.synthetic_wvs import write_data_root

    root, other = write_data_root(tmp_path / "root"), write_data_root(tmp_path / "other")
    data = tmp_path / "english.jsonl"
    build_examples("english", data_dir=str(root)).write(data)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CULTURE_DATA_DIR", "root")
    summary = train(_config(tiny_model, data, tmp_path / "a", max_steps=1))
    assert _metadata(summary["lm_eval"]) == {"data_dir": str(root)}
    assert json.loads((tmp_path / "a" / "training.json").read_text(encoding="utf-8"))["lm_eval"] == summary["lm_eval"]
    summary = train(_config(tiny_model, data, tmp_path / "b", max_steps=1, data_dir="other"))
    assert _metadata(summary["lm_eval"]) == {"data_dir": str(other)}

    monkeypatch.delenv("CULTURE_DATA_DIR")
    task = get_task_dict(["wvs_usa"], task_manager(_metadata(summary["lm_eval"])))["wvs_usa"]
    assert [d["q_id"] for d in task.test_docs()] == ["27", "28"]  # Q29: no valid answer in the synthetic root
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(TrainingError, match=r"^the lm_eval command written to training.json names the data root it "
                                            r"scores on: No data root given\. Name the data root with --data-dir"):
        train(_config(tiny_model, data, tmp_path / "c", max_steps=1))
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("chat", [False, True])
def test_a_max_length_no_example_fits_is_refused_before_the_model_loads(tiny_model, tmp_path, monkeypatch, capsys,
                                                                        chat):
    """--max-length below every example's length was refused ("every example is longer than max_length") only
    after the model had loaded. The examples are tokenised on the tokenizer and the model's config alone, token
    for token as lm-eval's wrapper of the loaded model tokenises them; the shortest of the two synthetic seed
    examples (Q27's) has n tokens, so --max-length n - 1 stops before the model loads, naming n, and n trains it."""
    import transformers
    from lm_eval.models.huggingface import HFLM

    from tests.synthetic_wvs import write_data_root
    from trainers.cli import main as cli
    from trainers.lora import encode_examples, encode_for, read_examples

    root = write_data_root(tmp_path / "root")
    data = tmp_path / "english.jsonl"
    build_examples("english", data_dir=str(root)).write(data)
    rows = read_examples([str(data)])
    cfg = _config(tiny_model, data, tmp_path / "o", chat_template=chat, max_length=4096, data_dir=str(root))
    loaded = HFLM(pretrained=transformers.AutoModelForCausalLM.from_pretrained(tiny_model),
                  tokenizer=transformers.AutoTokenizer.from_pretrained(tiny_model), batch_size=1)
    expected, _ = encode_examples(loaded, rows, chat, 4096)
    n = min(len(e["input_ids"]) for e in expected)
    assert sorted(len(e["input_ids"]) for e in expected) == ([79, 82] if chat else [60, 63])  # Q27, Q28

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: pytest.fail("the model was loaded"))
    out = tmp_path / "o"
    capsys.readouterr()  # the loading above
    assert cli(["lora", "--model", str(tiny_model), "--data", str(data), "--output", str(out), "--data-dir",
                str(root), "--chat-template", str(chat).lower(), "--max-length", str(n - 1)]) == 2
    assert capsys.readouterr().err == (f"culture-train lora: every example is longer than max_length={n - 1} tokens "
                                       f"(the shortest has {n}); give --max-length {n} or more\n")
    assert not out.exists()
    assert encode_for(cfg, transformers.AutoTokenizer.from_pretrained(tiny_model), rows) == (expected, 0, chat)
    monkeypatch.undo()
    summary = train(_config(tiny_model, data, out, chat_template=chat, max_length=n, max_steps=1, data_dir=str(root)))
    assert (summary["examples"], summary["skipped_too_long"], summary["tokens"]) == (1, 1, n)
