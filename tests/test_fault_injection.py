"""Kill the aligner, the LoRA trainer and the augmentation at seeded random points (also halfway
through writing a checkpoint or state file), resume, and get the uninterrupted run's result.

A kill is a ``Killed`` exception (a BaseException, so nothing in the code handles it) raised at
the chosen point; a write that is cut off first leaves the part already written on disk, as a
process killed mid-write would. A SIGKILLed process also leaves its lock file behind: each test
puts a lock of a dead process there before resuming, which the resumed run must take over.
"""

from __future__ import annotations

import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aligners.cli import main as align_main
from culture_tasks.outputs import LOCK_NAME
from tests.synthetic_wvs import write_data_root
from tests.test_aligner import _scored_generations
from tests.test_augment import REPLIES, BagOfWords, StandIn
from tests.test_augment import _config as augment_config
from tests.test_lora import _config as lora_config
from tests.test_lora import _trained_steps
from trainers.augment import run_augmentation
from trainers.examples import build_examples
from trainers.lora import train


class Killed(BaseException):
    """The process dies here."""


def _leave_stale_lock(lock: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"pid": child.pid, "host": socket.gethostname()}))


def _cut_write(path, data: bytes, fraction: float):
    """Write the first part of ``data`` to ``path``, then die."""
    Path(path).write_bytes(data[: int(len(data) * fraction)])
    raise Killed(str(path))


def _cut_atomic_write(path, text: str, fraction: float):
    """What ``write_text_atomic(path, text)`` killed mid-write leaves: part of ``text`` in its temporary file
    (named as ``atomic.replacing`` names it), which a SIGKILL leaves behind, and ``path`` as it was."""
    path = Path(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    _cut_write(temporary, text.encode(), fraction)


def _files(folder: Path) -> list[str]:
    """Everything in ``folder`` but its lock: a resumed run ends with the uninterrupted run's files, no more."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.name != LOCK_NAME)


# ---- aligner ---------------------------------------------------------------------------------

ALIGN = ["--country", "USA", "--population", "4", "--generations", "3", "--subspace-dim", "4", "--seed", "3",
         "--no-baselines"]


@pytest.fixture(scope="module")
def aligned_full(tiny_model, data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "usa"
    assert align_main(["--model", str(tiny_model), "--output", str(out), "--data-dir", str(data_root), *ALIGN]) == 0
    return out


@pytest.mark.parametrize("seed", [0, 5])  # killed scoring generation 2; writing the state of generation 3
def test_aligner_killed_anywhere_resumes_to_the_uninterrupted_run(aligned_full, tiny_model, data_root, tmp_path,
                                                                  monkeypatch, seed):
    import aligners.align as align

    rng = random.Random(seed)
    where = ["scoring", "state write"][seed % 2]
    generation = rng.randint(1, 3)  # the generation during which the process dies
    out = tmp_path / "usa"
    args = ["--model", str(tiny_model), "--output", str(out), "--data-dir", str(data_root), *ALIGN]
    with monkeypatch.context() as m:
        if where == "scoring":
            calls = []
            real = align.TaskScorer.option_loglikelihoods

            def scoring(self, *a, **kw):
                calls.append(1)
                if len(calls) == generation:
                    raise Killed
                return real(self, *a, **kw)

            m.setattr(align.TaskScorer, "option_loglikelihoods", scoring)
        else:
            from culture_tasks.atomic import write_text_atomic as real_write

            writes = []
            fraction = rng.uniform(0.1, 0.9)

            def write(path, text):
                writes.append(path)
                if len(writes) == generation:
                    _cut_atomic_write(path, text, fraction)
                return real_write(path, text)

            m.setattr(align, "write_text_atomic", write)
        with pytest.raises(Killed):
            align_main(args)
    state = out / "state.json"
    done = len(json.loads(state.read_text())["fitness"]) if state.exists() else 0
    assert done == generation - 1  # the generations finished before the kill, and only those
    _leave_stale_lock(out / LOCK_NAME)
    assert align_main(args) == 2  # not empty: the run is not silently restarted
    scored = _scored_generations(monkeypatch)
    assert align_main([*args, "--resume"]) == 0
    assert scored == [4] * (3 - done)  # only the generations state.json lacks, population 4 (a restart: 3)
    a, b = (json.loads((p / "alignment.json").read_text()) for p in (aligned_full, out))
    assert a["history"] == b["history"] and a["loss"] == b["loss"] and a["final"] == b["final"]
    wa, wb = (load_file(str(p / "adapter_model.safetensors")) for p in (aligned_full, out))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert _files(out) == _files(aligned_full) and not (out / LOCK_NAME).exists()


# ---- LoRA trainer ----------------------------------------------------------------------------

def _lora(model, data, out, **kw):
    # checkpoints at steps 3 and 6, losses logged every 2 steps: a resume from step 3 is off a logging step
    return lora_config(model, data, out, **{"max_steps": 8, "logging_steps": 2, "save_steps": 3, **kw})


@pytest.fixture(scope="module")
def lora_data(data_root, tmp_path_factory):
    path = tmp_path_factory.mktemp("lora") / "english.jsonl"
    build_examples("english", data_dir=str(data_root)).write(path)
    return path


@pytest.fixture(scope="module")
def lora_full(tiny_model, lora_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora_full") / "adapter"
    return out, train(_lora(tiny_model, lora_data, out))


def _same_training(full, out, summary):
    out_full, reference = full
    assert summary["steps"] == reference["steps"] == 8
    assert [x["step"] for x in summary["losses"]] == [2, 4, 6, 8]
    assert summary["losses"] == reference["losses"]
    assert summary["train_loss"] == reference["train_loss"]
    a, b = load_file(out_full / "adapter_model.safetensors"), load_file(out / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lora_killed_before_its_first_checkpoint_resumes_from_scratch(lora_full, tiny_model, lora_data, tmp_path,
                                                                      monkeypatch, caplog):
    import trainers.lora as lora

    step = random.Random(0).randint(1, 2)
    real = lora._trainer_class

    def dying():
        class Dying(real()):
            def training_step(self, *a, **kw):
                if self.state.global_step == step:
                    raise Killed
                return super().training_step(*a, **kw)

        return Dying

    out = tmp_path / "adapter"
    with monkeypatch.context() as m:
        m.setattr(lora, "_trainer_class", dying)
        with pytest.raises(Killed):
            train(_lora(tiny_model, lora_data, out))
    assert not list((out / "checkpoints").glob("checkpoint-*"))
    with pytest.raises(lora.TrainingError, match="is not empty; pass --resume to continue the run there, --overwrite"):
        train(_lora(tiny_model, lora_data, out))
    _leave_stale_lock(out / LOCK_NAME)
    steps = _trained_steps(monkeypatch)
    summary = train(_lora(tiny_model, lora_data, out, resume=True))
    assert "has no complete checkpoint yet; training starts at step 0" in caplog.text
    _same_training(lora_full, out, summary)
    assert len(steps) == 8  # no checkpoint to start from: all 8 steps


@pytest.mark.parametrize("seed", [1, 2, 5])  # cuts off optimizer.pt, adapter_model.safetensors, trainer_state.json
def test_lora_killed_while_writing_a_checkpoint_falls_back_to_the_previous_one(lora_full, tiny_model, lora_data,
                                                                                tmp_path, monkeypatch, caplog, seed):
    """Killed while checkpoint-6 is written: resume from checkpoint-3 (off a logging step) and log
    the same losses as the uninterrupted run."""
    import peft.peft_model
    import safetensors.torch
    from transformers import TrainerState

    rng = random.Random(seed)
    victim = rng.choice(["adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth",
                         "trainer_state.json"])
    fraction = rng.uniform(0.05, 0.95)
    real_torch_save, real_safe_save = torch.save, peft.peft_model.safe_save_file
    real_state_save = TrainerState.save_to_json

    def hit(path) -> bool:
        return Path(path).parent.name == "checkpoint-6" and Path(path).name == victim

    def torch_save(obj, f, *a, **kw):
        if isinstance(f, (str, Path)) and hit(f):
            buffer = io.BytesIO()
            real_torch_save(obj, buffer, *a, **kw)
            _cut_write(f, buffer.getvalue(), fraction)
        return real_torch_save(obj, f, *a, **kw)

    def safe_save(tensors, filename, metadata=None):
        if hit(filename):
            _cut_write(filename, safetensors.torch.save(tensors, metadata=metadata), fraction)
        return real_safe_save(tensors, filename, metadata=metadata)

    def state_save(self, json_path):
        if hit(json_path):
            real_state_save(self, json_path)
            _cut_write(json_path, Path(json_path).read_bytes(), fraction)
        return real_state_save(self, json_path)

    out = tmp_path / "adapter"
    with monkeypatch.context() as m:
        m.setattr(torch, "save", torch_save)
        m.setattr(peft.peft_model, "safe_save_file", safe_save)
        m.setattr(TrainerState, "save_to_json", state_save)
        with pytest.raises(Killed):
            train(_lora(tiny_model, lora_data, out))
    assert (out / "checkpoints" / "checkpoint-6" / victim).exists()
    _leave_stale_lock(out / LOCK_NAME)
    steps = _trained_steps(monkeypatch)
    summary = train(_lora(tiny_model, lora_data, out, resume=True))
    assert "checkpoint-6 is incomplete" in caplog.text and "took over the lock" in caplog.text
    _same_training(lora_full, out, summary)
    assert len(steps) == 5  # steps 4-8 after checkpoint-3 (training again from step 0 would also end the same)


def test_lora_killed_after_its_last_checkpoint_trains_no_step_more(lora_full, tiny_model, lora_data, tmp_path,
                                                                    monkeypatch):
    """Every run checkpoints its last step (8); killed after it, before its adapter was written, the run resumed
    there and transformers' loop trained a 9th step (step 8 ends mid-epoch: 5 steps an epoch), which training.json
    counted (steps 9, another train_loss). Resumed from its last step, a run trains nothing more."""
    import trainers.lora as lora

    def killed(*args):
        raise Killed

    out = tmp_path / "adapter"
    with monkeypatch.context() as m:
        m.setattr(lora, "_check_converged", killed)  # between the end of training and the adapter's write
        with pytest.raises(Killed):
            train(_lora(tiny_model, lora_data, out))
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == ["checkpoint-6", "checkpoint-8"]
    _leave_stale_lock(out / LOCK_NAME)
    steps = _trained_steps(monkeypatch)
    _same_training(lora_full, out, train(_lora(tiny_model, lora_data, out, resume=True)))
    assert steps == []  # resumed at checkpoint-8: not one step (training again from step 0 would end the same)


def test_lora_killed_while_writing_training_json_resumes_to_the_uninterrupted_files(lora_full, tiny_model, lora_data,
                                                                                    tmp_path, monkeypatch):
    """Killed inside the atomic write of training.json (the run's last file), the run left that write's temporary
    file, and the resumed run kept it for good beside the training.json it wrote. The resume removes it: the
    folder holds the uninterrupted run's files."""
    import trainers.lora as lora

    real = lora.write_text_atomic

    def write(path, text):
        if Path(path).name == "training.json":
            _cut_atomic_write(path, text, random.Random(3).uniform(0.1, 0.9))
        return real(path, text)

    out = tmp_path / "adapter"
    with monkeypatch.context() as m:
        m.setattr(lora, "write_text_atomic", write)
        with pytest.raises(Killed):
            train(_lora(tiny_model, lora_data, out))
    assert [p.name for p in out.glob(".training.json.*.json")] and not (out / "training.json").exists()
    _leave_stale_lock(out / LOCK_NAME)
    steps = _trained_steps(monkeypatch)
    summary = train(_lora(tiny_model, lora_data, out, resume=True))
    _same_training(lora_full, out, summary)
    assert _files(out) == _files(lora_full[0]) and steps == []  # resumed at checkpoint-8, the run's last step


@pytest.mark.parametrize("merge", [False, True])
def test_lora_killed_while_saving_its_result_leaves_no_file_cut_short(lora_full, tiny_model, lora_data, tmp_path,
                                                                      monkeypatch, caplog, merge):
    """save_pretrained wrote the adapter (and the merged model) straight into the output: a run killed while saving
    left adapter_model.safetensors (merged/model.safetensors) cut short there, for any reader to load. Each is now
    saved into a staging folder and renamed into place: a SIGKILL leaves only that folder, holding the cut file,
    and the resume removes it, naming it, and ends with the uninterrupted run's files."""
    import types

    import peft.peft_model
    import safetensors.torch
    import transformers.modeling_utils

    import culture_tasks.atomic

    full = lora_full
    if merge:
        out_full = tmp_path / "full"
        full = out_full, train(_lora(tiny_model, lora_data, out_full, merge=True))
    module = transformers.modeling_utils if merge else peft.peft_model
    real = module.safe_save_file
    fraction = random.Random(4).uniform(0.1, 0.9)
    result = "merged/model.safetensors" if merge else "adapter_model.safetensors"

    def safe_save(tensors, filename, metadata=None):
        if not Path(filename).parent.name.startswith("checkpoint-"):  # the run's result, not a Trainer checkpoint
            _cut_write(filename, safetensors.torch.save(tensors, metadata=metadata), fraction)
        return real(tensors, filename, metadata=metadata)

    out = tmp_path / "adapter"
    with monkeypatch.context() as m:
        m.setattr(module, "safe_save_file", safe_save)
        # a SIGKILL skips the cleanup of the staging folder it dies in (one whose files were all moved is removed)
        m.setattr(culture_tasks.atomic, "shutil", types.SimpleNamespace(
            rmtree=lambda path, **kw: None if any(Path(path).iterdir()) else Path(path).rmdir()))
        with pytest.raises(Killed):
            train(_lora(tiny_model, lora_data, out, merge=merge))
    assert not (out / result).exists() and not (out / "training.json").exists()
    (staged,) = (out / result).parent.glob(".adapter.*")
    assert 0 < (staged / Path(result).name).stat().st_size < (full[0] / result).stat().st_size
    _leave_stale_lock(out / LOCK_NAME)
    caplog.clear()
    summary = train(_lora(tiny_model, lora_data, out, merge=merge, resume=True))
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("removed ")] == [
        f"removed {staged.name} from {staged.parent}, left by a run killed while writing it"]
    _same_training(full, out, summary)
    assert _files(out) == _files(full[0])


# ---- augmentation ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_augmentation_killed_anywhere_resumes_to_the_uninterrupted_output(tmp_path, monkeypatch, seed):
    import os

    import trainers.augment as augment

    write_data_root(tmp_path / "root")
    run_augmentation(augment_config(tmp_path, output=str(tmp_path / "full.jsonl")), StandIn(REPLIES), BagOfWords())
    rng = random.Random(seed)
    where = ["generation", "output append", "state write"][seed]
    chunk = rng.randint(1, 3)  # questions_per_chunk=1: three chunks (Q27, Q28, Q29)
    cfg = augment_config(tmp_path)
    generator = StandIn(REPLIES)
    with monkeypatch.context() as m:
        if where == "generation":
            generator = StandIn(REPLIES, fail_on_call=2 * chunk - rng.randint(0, 1))  # paraphrase or synonym call
        elif where == "output append":
            appends = []
            real_fsync = os.fsync

            def fsync(fd):
                appends.append(fd)
                if len(appends) == chunk:  # only part of the chunk's rows reached the disk
                    committed = json.loads((tmp_path / "aug.jsonl.state.json").read_text())["bytes"]
                    os.ftruncate(fd, committed + (os.fstat(fd).st_size - committed) // 2)
                    raise Killed
                return real_fsync(fd)

            m.setattr(os, "fsync", fsync)
        else:
            writes = []
            real_write = augment.write_text_atomic

            def write(path, text):
                writes.append(path)
                if len(writes) == chunk + 1:  # the first write is the new run's empty state
                    _cut_atomic_write(path, text, 0.5)
                return real_write(path, text)

            m.setattr(augment, "write_text_atomic", write)
        with pytest.raises((Killed, KeyboardInterrupt)):
            run_augmentation(cfg, generator, BagOfWords())
    _leave_stale_lock(tmp_path / "aug.jsonl.lock")
    run_augmentation(augment_config(tmp_path, resume=True), StandIn(REPLIES), BagOfWords())
    assert (tmp_path / "aug.jsonl").read_bytes() == (tmp_path / "full.jsonl").read_bytes()
    assert (tmp_path / "aug.jsonl.state.json").read_bytes() == (tmp_path / "full.jsonl.state.json").read_bytes()
    # no temporary file of a killed state write, no lock: beside the uninterrupted run's files, only the same two
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aug.jsonl", "aug.jsonl.state.json", "full.jsonl",
                                                          "full.jsonl.state.json", "root"]


def test_augmentation_sigkilled_in_a_subprocess_resumes_to_the_uninterrupted_output(tmp_path, tiny_model, data_root):
    """A real SIGKILL of `culture-train augment` with the tiny LM, at a seeded chunk: the lock file
    stays behind, the resumed run takes it over and writes the uninterrupted run's bytes."""
    import os
    import signal
    import threading
    import time

    from tests.test_augment import _tiny_sentence_model
    from trainers.cli import main as cli

    seed_questions = tmp_path / "seed_questions.jsonl"
    seed_questions.write_text("".join(line + "\n" for line in
                             (data_root / "culturellm" / "WVQ.jsonl").read_text(encoding="utf-8").splitlines()[:6]))
    args = ["augment", "--generator", str(tiny_model), "--embedding-model",
            str(_tiny_sentence_model(tiny_model, tmp_path / "st")), "--seed-questions", str(seed_questions),
            "--data-dir", str(data_root), "--threshold", "-1", "--paraphrases", "2", "--keep", "2",
            "--questions-per-chunk", "1", "--max-new-tokens", "8", "--seed", "5", "--batch-size", "4"]
    out = tmp_path / "aug.jsonl"
    state = tmp_path / "aug.jsonl.state.json"
    chunk = random.Random(0).randint(1, 4)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "trainers.cli", *args, "--output", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill_after_the_chunk():
        """SIGKILL the run once its state counts ``chunk`` chunks done."""
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if len(json.loads(state.read_text())["done"]) >= chunk:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)

    killer = threading.Thread(target=kill_after_the_chunk)
    killer.start()
    try:  # the uninterrupted run in this process while the other one starts and runs
        assert cli([*args, "--output", str(tmp_path / "full.jsonl")]) == 0
    finally:
        killer.join()
    assert proc.wait() == -signal.SIGKILL  # killed mid-run, not finished
    assert (tmp_path / "aug.jsonl.lock").exists()
    assert cli([*args, "--output", str(out), "--resume"]) == 0
    assert out.read_bytes() == (tmp_path / "full.jsonl").read_bytes()
    assert not (tmp_path / "aug.jsonl.lock").exists()
