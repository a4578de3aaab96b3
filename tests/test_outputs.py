"""Outputs: never over an input or an existing result unless asked, one run per output, resume only
the run that was started, clear errors for broken JSONL, the user's umask, no escaping names."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from aligners.align import AlignmentError, _check_output, run
from aligners.cli import main as align_main
from aligners.config import AlignConfig
from culture_tasks.atomic import write_text_atomic
from culture_tasks.jsonl import JsonlError, read_jsonl
from culture_tasks.outputs import LOCK_NAME, OutputError, OutputLock, claim_output, safe_join
from tests.synthetic_wvs import write_data_root
from tests.test_augment import REPLIES, BagOfWords, StandIn
from tests.test_augment import _config as augment_config
from tests.test_lora import _config as lora_config
from trainers.augment import AugmentError, run_augmentation
from trainers.cli import main as train_cli
from trainers.examples import build_examples
from trainers.lora import TrainingError, train

HOST = socket.gethostname()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ---- culture-train data ----------------------------------------------------------------------

def test_data_output_equal_to_its_questions_is_refused_and_the_input_kept(data_root, tmp_path, capsys):
    questions = tmp_path / "questions.jsonl"
    shutil.copy(data_root / "culturellm" / "new_WVQ_100.jsonl", questions)
    before = questions.read_bytes()
    code = train_cli(["data", "--culture", "english", "--questions", str(questions), "--output",
                      str(tmp_path / "." / "questions.jsonl"), "--data-dir", str(data_root)])
    assert code == 2
    assert f"output {tmp_path / 'questions.jsonl'} is also an input of this run" in capsys.readouterr().err
    assert questions.read_bytes() == before


def test_data_does_not_replace_an_existing_output_unless_asked(data_root, tmp_path, capsys):
    out = tmp_path / "english.jsonl"
    out.write_text("my earlier result\n")
    assert train_cli(["data", "--culture", "english", "--output", str(out), "--data-dir", str(data_root)]) == 2
    err = capsys.readouterr().err
    assert f"output file {out} already exists; pass --overwrite to replace it" in err and "--resume" not in err
    assert out.read_text() == "my earlier result\n"
    assert train_cli(["data", "--culture", "english", "--output", str(out), "--data-dir", str(data_root),
                      "--overwrite"]) == 0
    assert len(read_jsonl(out)) == 50  # the 50 seed questions, labelled with the USA's answers


# ---- the guard itself ------------------------------------------------------------------------

def test_claim_output_states_and_refusals(tmp_path):
    out = tmp_path / "run"
    assert claim_output(out) == "new"
    out.mkdir()
    (out / LOCK_NAME).write_text("{}")
    assert claim_output(out) == "new"  # only the lock file: empty
    (out / "x").write_text("1")
    with pytest.raises(OutputError, match="is not empty; pass --resume to continue the run there, --overwrite"):
        claim_output(out)
    assert claim_output(out, resume=True) == "resume" and claim_output(out, overwrite=True) == "replace"
    with pytest.raises(OutputError, match="give only one"):
        claim_output(out, resume=True, overwrite=True)
    with pytest.raises(OutputError, match="holds the input"):
        claim_output(out, overwrite=True, inputs=[out / "x"])
    assert (out / "x").read_text() == "1"


def test_an_output_inside_the_model_folder_is_refused(tmp_path):
    """The run's own files would change the model's fingerprint: its --resume would then say the model
    changed. An output beside the model, or a model given by hub id, is fine."""
    model = tmp_path / "tiny"
    model.mkdir()
    (model / "config.json").write_text("{}")
    for out in (model / "adapter", model / "a" / "b"):
        with pytest.raises(OutputError, match=rf"^output {out} lies inside the model folder {model}: .*"
                                              "choose an --output outside it$"):
            claim_output(out, models=[model])
    assert not (model / "adapter").exists()
    assert claim_output(tmp_path / "adapter", models=[model, None]) == "new"
    assert claim_output(tmp_path / "org" / "name" / "x", models=["org/name"]) == "new"  # no such folder: a hub id


def test_an_output_inside_an_input_folder_is_refused(tmp_path):
    """A folder the run reads (the data root): its files and the run's would mix, and --overwrite of a subfolder
    (``--output <root>/vsm13``) would move the data it reads aside. A file input is only refused as the output
    itself; a folder beside the input is fine."""
    root = tmp_path / "data"
    (root / "vsm13").mkdir(parents=True)
    (root / "vsm13" / "items.jsonl").write_text("{}\n")
    for out in (root / "vsm13", root / "new" / "run"):
        for flags in ({}, {"overwrite": True}, {"resume": True}):
            with pytest.raises(OutputError, match=rf"^output {out} lies inside the input folder {root}: the run's "
                                                  "files would mix with the ones it reads .*choose an --output "
                                                  "outside it$"):
                claim_output(out, inputs=[root], **flags)
    with pytest.raises(OutputError, match=rf"^output {root / 'x.jsonl'} lies inside the input folder {root}"):
        claim_output(root / "x.jsonl", inputs=[None, root], folder=False)
    assert (root / "vsm13" / "items.jsonl").read_text() == "{}\n" and not (root / "new").exists()
    assert claim_output(tmp_path / "out", inputs=[root, root / "vsm13" / "items.jsonl"]) == "new"
    assert claim_output(root / "vsm13" / "items.jsonl.out", inputs=[root / "vsm13" / "items.jsonl"],
                        folder=False) == "new"


def test_align_into_the_data_root_is_refused_before_the_model_loads(data_root, tiny_model, tmp_path, monkeypatch,
                                                                      capsys):
    """``--output <data root>/vsm13 --overwrite`` set the VSM13 items aside (to delete them once the run finished)
    before the run read them; a new folder inside the data root filled it with the run's files."""
    import aligners.align

    root = tmp_path / "root"
    for part in ("vsm13", "hofstede"):
        shutil.copytree(data_root / part, root / part)
    items = (root / "vsm13" / "items.jsonl").read_bytes()
    monkeypatch.setattr(aligners.align, "load_lm", lambda cfg: pytest.fail("the model was loaded"))
    for out, extra in ((root / "vsm13", ["--overwrite"]), (root / "runs" / "usa", [])):
        assert align_main(_align_args(tiny_model, out, "--data-dir", str(root), *extra)) == 2
        assert capsys.readouterr().err == (f"culture-align: output {out} lies inside the input folder {root}: the "
                                           "run's files would mix with the ones it reads (and --overwrite would move "
                                           "those away); choose an --output outside it\n")
    assert (root / "vsm13" / "items.jsonl").read_bytes() == items
    assert sorted(p.name for p in root.iterdir()) == ["hofstede", "vsm13"]
    assert sorted(p.name for p in (root / "vsm13").iterdir()) == ["items.jsonl"]


def test_data_into_the_data_root_is_refused(tmp_path, capsys):
    root = tmp_path / "root"
    write_data_root(root)
    out = root / "culturellm" / "english.jsonl"
    assert train_cli(["data", "--culture", "english", "--output", str(out), "--data-dir", str(root)]) == 2
    assert capsys.readouterr().err.startswith(f"culture-train data: output {out} lies inside the input folder {root}: ")
    assert not out.exists()


@pytest.mark.parametrize("name, value, least", [("RANK", "abc", 0), ("RANK", "-1", 0), ("WORLD_SIZE", "2 ", 1),
                                                ("WORLD_SIZE", "0", 1), ("LOCAL_WORLD_SIZE", "1_0", 1)])
def test_a_malformed_launcher_variable_is_an_error_naming_it(name, value, least, monkeypatch):
    """``int()`` read " 2" and "1_0" as numbers and named no variable for "abc" (culture-train's logging setup
    read RANK before its error handling: a traceback)."""
    from culture_tasks import outputs

    monkeypatch.setenv(name, value)
    with pytest.raises(OutputError, match=rf"^the environment variable {name}={value!r} is not a whole number from "
                                          rf"{least} on, as torchrun and accelerate launch set it; unset it"):
        (outputs.main_process if name == "RANK" else outputs.launched_on_node)()
    monkeypatch.setenv(name, "")  # empty: unset
    assert (outputs.main_process(), outputs.launched_world_size(), outputs.launched_on_node()) == (True, 1, 1)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert (outputs.main_process(), outputs.launched_world_size(), outputs.launched_on_node()) == (False, 4, 4)


def test_a_malformed_rank_stops_a_command_in_one_line(data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "abc")
    out = tmp_path / "english.jsonl"
    assert train_cli(["data", "--culture", "english", "--output", str(out), "--data-dir", str(data_root)]) == 2
    assert capsys.readouterr().err == ("culture-train data: the environment variable RANK='abc' is not a whole "
                                       "number from 0 on, as torchrun and accelerate launch set it; unset it, or "
                                       "launch through them\n")
    assert not out.exists()


def test_safe_join_refuses_names_that_leave_the_folder(tmp_path):
    assert safe_join(tmp_path, "united_states") == tmp_path / "united_states"
    for bad in ("../escape", "a/../../b", "/etc", "", "~user"):
        with pytest.raises(OutputError, match="not a plain name inside"):
            safe_join(tmp_path, bad)
    (tmp_path / "link").symlink_to(tmp_path.parent)
    with pytest.raises(OutputError, match="outside"):
        safe_join(tmp_path, "link/x")


def test_aligner_refuses_a_country_folder_outside_the_output(data_root, tmp_path, tiny_model):
    """A Hofstede file whose country name is a path: the per-country folder may not escape."""
    root = tmp_path / "root"
    shutil.copytree(data_root / "vsm13", root / "vsm13")
    (root / "hofstede").mkdir()
    csv = (data_root / "hofstede" / "6-dimensions-for-website-2015-08-16.csv").read_text(encoding="utf-8-sig")
    (root / "hofstede" / "6-dimensions-for-website-2015-08-16.csv").write_text(
        csv.rstrip("\n") + "\nEVL;../../evil;50;50;50;50;50;50\n", encoding="utf-8")
    out = tmp_path / "out"
    cfg = AlignConfig(model=str(tiny_model), countries=["USA", "../../evil"], output=str(out), data_dir=str(root))
    with pytest.raises(AlignmentError, match=r"'../../evil' is not a plain name inside"):
        run(cfg)
    assert not out.exists() and not (tmp_path / "evil").exists()


# ---- resume only with the settings of the run ------------------------------------------------

def _lora_config(model, data, out, **kw):
    return lora_config(model, data, out, **{"max_steps": 4, "save_steps": 2, **kw})


class Killed(BaseException):
    """Stands for the process dying: not an Exception, so nothing handles it."""


def _killed_before_first_checkpoint(monkeypatch, cfg):
    import trainers.lora as lora

    def die(cfg, out, rows, resume_from, start, *rest):
        start()  # the model is loaded and the examples are valid: the run has begun
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(lora, "_train", die)
        with pytest.raises(Killed):
            train(cfg)


def test_lora_resume_with_other_data_or_learning_rate_is_refused(data_root, tiny_model, tmp_path, monkeypatch):
    data = tmp_path / "english.jsonl"
    build_examples("english", data_dir=str(data_root)).write(data)
    out = tmp_path / "adapter"
    _killed_before_first_checkpoint(monkeypatch, _lora_config(tiny_model, data, out))
    assert (out / "checkpoints" / "run_settings.json").is_file() and not (out / LOCK_NAME).exists()

    with pytest.raises(TrainingError, match=r"other settings \(learning_rate: saved 0.02, given 0.01\)"):
        train(_lora_config(tiny_model, data, out, resume=True, learning_rate=1e-2))
    rows = data.read_text().splitlines()
    data.write_text("\n".join(rows[:-1]) + "\n")  # same path, other content
    with pytest.raises(TrainingError, match=r"other settings \(data_sha256: saved \['sha256:"):
        train(_lora_config(tiny_model, data, out, resume=True))
    with pytest.raises(TrainingError, match=r"is not empty; pass --resume to continue the run there, --overwrite"):
        train(_lora_config(tiny_model, data, out))


def test_lora_overwrite_replaces_only_after_every_check_passed(data_root, tiny_model, tmp_path):
    data = tmp_path / "english.jsonl"
    build_examples("english", data_dir=str(data_root)).write(data)
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "training.json").write_text("an earlier result")
    cfg = _lora_config(tiny_model, data, out, max_length=5)
    cfg.overwrite = True  # the field arrives with the settings parser
    with pytest.raises(TrainingError, match="every example is longer than max_length=5 tokens"):
        train(cfg)
    assert sorted(p.name for p in out.iterdir()) == ["training.json"]
    assert (out / "training.json").read_text() == "an earlier result"
    shutil.copy(data, out / "data.jsonl")
    cfg.data = [str(out / "data.jsonl")]
    with pytest.raises(TrainingError, match="output folder .* holds the input .*data.jsonl"):
        train(cfg)
    assert sorted(p.name for p in out.iterdir()) == ["data.jsonl", "training.json"]


def test_an_overwrite_keeps_the_old_output_until_the_new_run_has_finished(data_root, tiny_model, tmp_path,
                                                                          monkeypatch, caplog):
    """--overwrite moves the old adapter beside the output; a run killed after it began leaves it there (and
    says so), a second --overwrite is refused until it is moved back or deleted, and a run that finishes
    deletes it."""
    data = tmp_path / "english.jsonl"
    build_examples("english", data_dir=str(data_root)).write(data)
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "training.json").write_text("an earlier result")
    cfg = _lora_config(tiny_model, data, out)
    cfg.overwrite = True
    backup = tmp_path / ".adapter.replaced"
    _killed_before_first_checkpoint(monkeypatch, cfg)
    assert (backup / "training.json").read_text() == "an earlier result"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"]  # the killed run's settings, no result
    assert f"the output it was replacing stays in {backup}" in caplog.text
    with pytest.raises(TrainingError, match=rf"^{backup} holds the output an earlier --overwrite of {out} replaced "
                                            rf"and did not finish; move it back to {out} or delete it, then run again$"):
        train(cfg)
    assert (backup / "training.json").read_text() == "an earlier result"
    shutil.rmtree(backup)
    train(cfg)
    assert not backup.exists()
    assert json.loads((out / "training.json").read_text())["steps"] >= 1


def test_set_aside_outputs_go_when_the_outermost_lock_is_released_after_success(tmp_path, caplog):
    """A run nests locks (k-fold holds each fold's): an inner lock's release keeps what was set aside; the
    outermost one deletes it after success and keeps it after a failure. A file is set aside whole."""
    from culture_tasks.outputs import replaced_path, set_aside

    outer, inner, report = tmp_path / "run", tmp_path / "run" / "fold-1", tmp_path / "report.md"
    inner.mkdir(parents=True)
    (outer / "old.json").write_text("old run")
    (inner / "old.json").write_text("old fold")
    report.write_text("old report")
    assert replaced_path(report) == tmp_path / ".report.md.replaced"
    with OutputLock.for_folder(outer):
        set_aside(outer, keep=(LOCK_NAME, "fold-1"))
        with OutputLock.for_folder(inner):
            set_aside(inner)
            set_aside(report)
        assert (tmp_path / ".run.replaced" / "old.json").read_text() == "old run"
        assert (outer / ".fold-1.replaced" / "old.json").read_text() == "old fold"
        assert (tmp_path / ".report.md.replaced").read_text() == "old report"
        assert not report.exists() and not any(inner.iterdir())  # the inner lock is released
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["fold-1", "run"]
    report.write_text("old report")
    with pytest.raises(RuntimeError, match="failed"):
        with OutputLock.for_file(report):
            set_aside(report)
            raise RuntimeError("failed")
    assert (tmp_path / ".report.md.replaced").read_text() == "old report"
    assert "stays in" in caplog.text
    assert claim_output(report, overwrite=True, folder=False) == "new"  # the failed run wrote nothing
    assert "delete it once it is no longer needed" in caplog.text
    report.write_text("the failed run's report")
    with pytest.raises(OutputError, match="did not finish"):
        claim_output(report, overwrite=True, folder=False)
    assert claim_output(report, resume=True, folder=False) == "resume"
    assert "delete it once it is no longer needed" in caplog.text


def test_backups_inside_an_output_block_its_overwrite_and_a_finished_resume_deletes_them(tmp_path, caplog):
    """A country's (or a fold's) backup lies inside the run's folder: replacing the folder would sweep it away, so
    --overwrite is refused while it is there. A --resume that finishes the run deletes it; a run's own backup is not
    reported as an earlier run's; nothing is set aside without a lock to delete or report it."""
    from culture_tasks.outputs import set_aside

    out = tmp_path / "run"
    (out / "usa").mkdir(parents=True)
    (out / "usa" / "alignment.json").write_text("first run")
    with pytest.raises(RuntimeError, match="without an output lock held"):
        set_aside(out / "usa")
    with pytest.raises(RuntimeError, match="killed"):
        with OutputLock.for_folder(out), OutputLock.for_folder(out / "usa"):
            set_aside(out, keep=(LOCK_NAME, "usa"))
            set_aside(out / "usa")
            caplog.clear()
            assert claim_output(out / "usa", resume=True) == "new" and "kept because" not in caplog.text  # its own
            (out / "usa" / "state.json").write_text("the second run's first generation")
            raise RuntimeError("killed")
    assert (out / ".usa.replaced" / "alignment.json").read_text() == "first run"
    with pytest.raises(OutputError, match=r"\.usa\.replaced holds the output an earlier --overwrite of .*run/usa replaced"):
        claim_output(out, overwrite=True)
    with OutputLock.for_folder(out):
        assert claim_output(out / "usa", resume=True) == "resume"
        assert "it is deleted once this run has finished" in caplog.text
        claim_output(out, resume=True)  # the folder's own check adopts the same backup once
    assert not (out / ".usa.replaced").exists() and (out / "usa" / "state.json").exists()
    assert claim_output(out, overwrite=True) == "replace"


def test_an_overwrite_that_cannot_rename_the_old_output_beside_it_is_refused_before_any_work(tmp_path, monkeypatch):
    """Where the parent is not writable (or the output is another file system's mount point), moving the old
    output aside would fail, or be a long copy, after the model had loaded: --overwrite is refused at the claim."""
    import culture_tasks.outputs as outputs

    out = tmp_path / "run"
    out.mkdir()
    (out / "result.json").write_text("an earlier result")
    monkeypatch.setattr(outputs.os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(OutputError, match=rf"but {tmp_path} is not writable; move the old output away yourself"):
        claim_output(out, overwrite=True)
    assert (out / "result.json").read_text() == "an earlier result"


def test_lora_into_its_model_folder_is_refused_before_training(data_root, tiny_model, tmp_path):
    """An adapter written inside the base model's folder changes the model's fingerprint: the run's own
    --resume would then report another model. Refused before anything is written."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    data = tmp_path / "english.jsonl"
    build_examples("english", data_dir=str(data_root)).write(data)
    before = sorted(p.relative_to(model) for p in model.rglob("*"))
    with pytest.raises(TrainingError, match=rf"^output {model / 'adapter'} lies inside the model folder {model}: "):
        train(_lora_config(model, data, model / "adapter"))
    assert sorted(p.relative_to(model) for p in model.rglob("*")) == before


def _align_args(model, out, *extra):
    return ["--model", str(model), "--country", "USA", "--output", str(out), "--population", "6",
            "--generations", "2", "--subspace-dim", "4", "--seed", "3", "--no-baselines", *extra]


def _started_alignment(out, data_root, tiny_model):
    """The folder of an alignment run that stopped before its first generation finished."""
    cfg = AlignConfig(model=str(tiny_model), countries=["USA"], output=str(out), population=6, generations=2,
                      subspace_dim=4, seed=3, baselines=False, data_dir=str(data_root))
    _check_output(out, False, cfg.for_country("USA"), 32)


def test_align_resume_with_another_model_under_the_same_path_is_refused(data_root, tiny_model, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    out = tmp_path / "usa"
    _started_alignment(out, data_root, model)
    (model / "config.json").write_text((model / "config.json").read_text() + "\n")  # retrained, re-exported...
    assert align_main(_align_args(model, out, "--resume", "--data-dir", str(data_root))) == 2
    assert "other settings (model_fingerprint: saved 'sha256-full:" in capsys.readouterr().err


def test_align_resume_with_another_data_root_or_target_is_refused(data_root, tiny_model, tmp_path, capsys):
    out = tmp_path / "usa"
    _started_alignment(out, data_root, tiny_model)
    other = tmp_path / "other"
    shutil.copytree(data_root / "vsm13", other / "vsm13")
    (other / "hofstede").mkdir()
    name = "6-dimensions-for-website-2015-08-16.csv"
    csv = (data_root / "hofstede" / name).read_text(encoding="utf-8-sig")
    assert "\nUSA;U.S.A.;40;91;62;46;26;68\n" in csv
    (other / "hofstede" / name).write_text(csv.replace("\nUSA;U.S.A.;40;91;", "\nUSA;U.S.A.;41;91;"))
    before = sorted(p.name for p in out.iterdir())

    assert align_main(_align_args(tiny_model, out, "--resume", "--data-dir", str(other))) == 2
    err = capsys.readouterr().err
    assert "; hofstede_reference: saved 'sha256:" in err  # every reference country, by content
    saved, given = err.split("other settings (target_scores: saved ")[1].split(";")[0].split(", given ")
    assert "'pdi': 40.0" in saved and "'pdi': 41.0" in given and "'idv': 91.0" in given

    (other / "hofstede" / name).write_text(csv)
    items = (other / "vsm13" / "items.jsonl")
    text = items.read_text()
    assert "your personal or home life" in text
    items.write_text(text.replace("your personal or home life", "your private life", 1))
    assert align_main(_align_args(tiny_model, out, "--resume", "--data-dir", str(other))) == 2
    assert "other settings (vsm13_items: saved 'sha256:" in capsys.readouterr().err

    assert align_main(_align_args(tiny_model, out, "--resume", "--data-dir", str(data_root),
                                  "--target", "40,91,62,46,26,60")) == 2
    err = capsys.readouterr().err
    assert "target: saved None, given [40.0, 91.0, 62.0, 46.0, 26.0, 60.0]" in err and "ivr': 68.0" in err
    assert sorted(p.name for p in out.iterdir()) == before


def test_augment_resume_after_the_output_was_truncated_or_edited_is_refused(tmp_path):
    write_data_root(tmp_path / "root")
    cfg = augment_config(tmp_path)
    with pytest.raises(KeyboardInterrupt):  # dies in chunk 2, after chunk 1 was committed
        run_augmentation(cfg, StandIn(REPLIES, fail_on_call=3), BagOfWords())
    out = tmp_path / "aug.jsonl"
    committed = out.read_bytes()
    state = json.loads((tmp_path / "aug.jsonl.state.json").read_text())
    assert state["bytes"] == len(committed) > 0
    resume = augment_config(tmp_path, resume=True)

    out.write_bytes(committed[:-10])
    with pytest.raises(AugmentError, match=f"holds {len(committed) - 10} bytes but the run committed {len(committed)}"):
        run_augmentation(resume, StandIn(REPLIES), BagOfWords())
    assert out.read_bytes() == committed[:-10]  # no NUL padding

    out.write_bytes(committed.replace(b"key goal", b"KEY goal"))
    with pytest.raises(AugmentError, match=f"the first {len(committed)} bytes of .* differ from what the run wrote"):
        run_augmentation(resume, StandIn(REPLIES), BagOfWords())

    out.write_bytes(committed)
    run_augmentation(resume, StandIn(REPLIES), BagOfWords())
    assert b"\x00" not in out.read_bytes() and len(read_jsonl(out)) == 2


# ---- one run per output ----------------------------------------------------------------------

def test_a_second_run_into_a_locked_output_is_refused(data_root, tiny_model, tmp_path, capsys):
    held = f"in use by another run (process {os.getpid()} on host {HOST}"
    out = tmp_path / "align"
    with OutputLock.for_folder(out):
        assert align_main(_align_args(tiny_model, out, "--data-dir", str(data_root))) == 2
        assert held in capsys.readouterr().err
        data = tmp_path / "english.jsonl"
        build_examples("english", data_dir=str(data_root)).write(data)
        with OutputLock.for_folder(tmp_path / "adapter"), pytest.raises(TrainingError, match=held.replace("(", r"\(")):
            train(_lora_config(tiny_model, data, tmp_path / "adapter"))
        write_data_root(tmp_path / "root")
        with OutputLock.for_file(tmp_path / "aug.jsonl"), pytest.raises(AugmentError, match=r"lock file .*aug.jsonl.lock"):
            run_augmentation(augment_config(tmp_path), StandIn(REPLIES), BagOfWords())
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    assert not out.exists()  # the lock made the folder; releasing it leaves nothing
    assert not (tmp_path / "adapter" / "checkpoints").exists() and not (tmp_path / "aug.jsonl").exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    write_data_root(tmp_path / "root")
    pid = _dead_pid()
    lock = tmp_path / "aug.jsonl.lock"
    lock.write_text(json.dumps({"pid": pid, "host": HOST}))
    run_augmentation(augment_config(tmp_path), StandIn(REPLIES), BagOfWords())
    assert f"took over the lock of process {pid} on {HOST}, which no longer runs" in caplog.text
    assert not lock.exists() and len(read_jsonl(tmp_path / "aug.jsonl")) == 2
    lock.write_text(json.dumps({"pid": pid, "host": "another-host"}))  # cannot tell: refused
    with pytest.raises(AugmentError, match=f"process {pid} on host another-host"):
        run_augmentation(augment_config(tmp_path, resume=True), StandIn(REPLIES), BagOfWords())


# ---- JSONL -----------------------------------------------------------------------------------

def test_jsonl_errors_name_file_line_and_fix(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_bytes(b'{"a": 1}\n\n{"a": 2}\n{"a": 3, "b": "cut')
    with pytest.raises(JsonlError, match=r"x.jsonl:4: not valid JSON \(Unterminated string .*\); the file looks "
                                         r"truncated"):
        read_jsonl(f)
    f.write_bytes(b'{"a": 1}\n{"a": "caf\xe9"}\n')
    with pytest.raises(JsonlError, match=r"x.jsonl:2: invalid UTF-8 at byte offset 19 .*save the file as UTF-8"):
        read_jsonl(f)
    f.write_bytes(b"\n  \n")
    with pytest.raises(JsonlError, match=r"x.jsonl: the file is empty; expected one JSON object per line"):
        read_jsonl(f)
    f.write_bytes(b'{"a": 1}\n[1, 2]\n')
    with pytest.raises(JsonlError, match=r"x.jsonl:2: expected a JSON object \{...\}, got list"):
        read_jsonl(f)
    f.write_text('{"a": "line\u2028separator"}\n{"a": 2}\n', encoding="utf-8")
    assert read_jsonl(f) == [{"a": "line\u2028separator"}, {"a": 2}]


def test_jsonl_errors_reach_the_user_instead_of_tracebacks(tmp_path, data_root, capsys):
    from culture_tasks.classification import load_classification

    (tmp_path / "culturellm").mkdir()
    (tmp_path / "culturellm" / "empty.jsonl").write_bytes(b"")
    with pytest.raises(JsonlError, match="empty.jsonl: the file is empty"):  # was StopIteration
        load_classification(str(tmp_path), task_name="t", file="empty.jsonl", text_field="text",
                            labels={"0": "no"}, instruction="")
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes((data_root / "culturellm" / "new_WVQ_100.jsonl").read_bytes()[:1000])
    assert train_cli(["data", "--culture", "english", "--questions", str(cut), "--output", str(tmp_path / "o.jsonl"),
                      "--data-dir", str(data_root)]) == 2
    assert "cut.jsonl:" in capsys.readouterr().err
    from trainers.lora import read_examples

    with pytest.raises(JsonlError, match=r"cut.jsonl:\d+: not valid JSON .*; the file looks truncated"):
        read_examples([str(cut)])


# ---- permissions -----------------------------------------------------------------------------

@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        write_text_atomic(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_replacing_keeps_the_suffix_and_leaves_nothing_when_the_writer_fails(tmp_path):
    from culture_tasks.atomic import replacing

    (tmp_path / "plot.png").write_bytes(b"old")
    with pytest.raises(RuntimeError), replacing(tmp_path / "plot.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path  # matplotlib picks the format by suffix
        tmp.write_bytes(b"half")
        raise RuntimeError
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"] and (tmp_path / "plot.png").read_bytes() == b"old"
    with replacing(tmp_path / "plot.png") as tmp:
        tmp.write_bytes(b"new")
    assert (tmp_path / "plot.png").read_bytes() == b"new" and len(list(tmp_path.iterdir())) == 1


def test_recorded_lm_eval_commands_work_from_any_folder(tmp_path, monkeypatch, data_root):
    from aligners.align import country_tasks
    from culture_tasks.paths import TASKS_DIR, lm_eval_command
    from trainers.lora import adapter_tasks

    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "data").symlink_to(data_root)
    cfg = AlignConfig(model="model", countries=["USA"], output="o", data_dir="data")
    command = country_tasks("USA", None, cfg).lm_eval_command("model", "o", False)
    assert f"--include_path {TASKS_DIR} " in command and TASKS_DIR.is_absolute()
    assert (TASKS_DIR / "vsm13").is_dir()
    # the model folder, the checkpoint and the data root as absolute paths; a hub id as given
    assert command == (f"lm_eval --model hf --model_args pretrained={tmp_path}/model,peft={tmp_path}/o,dtype=float32 "
                       f"--include_path {TASKS_DIR} --tasks vsm13_usa --metadata "
                       f"'{{\"data_dir\": \"{tmp_path}/data\"}}'")
    lora = lm_eval_command("org/hub-model", adapter_tasks([{"culture": "english"}]), adapter=Path("o"), chat=True)
    assert lora == (f"lm_eval --model hf --model_args pretrained=org/hub-model,peft={tmp_path}/o "
                    f"--include_path {TASKS_DIR} --tasks culturellm_english,wvs_usa --apply_chat_template")


def test_settings_added_later_are_not_held_against_older_runs(tmp_path, caplog):
    from culture_tasks.fingerprints import model_fingerprint
    from culture_tasks.outputs import OutputError, check_settings

    old = {"seed": 0}
    check_settings(old, {"seed": 0, "model_fingerprint": "sha256:x"}, tmp_path, later=["model_fingerprint"])
    assert f"--resume: {tmp_path} was stored without model_fingerprint; that is not checked" in caplog.text
    with pytest.raises(OutputError, match="model_fingerprint: saved 'sha256:a', given 'sha256:x'"):
        check_settings({**old, "model_fingerprint": "sha256:a"}, {"seed": 0, "model_fingerprint": "sha256:x"},
                       tmp_path, later=["model_fingerprint"])
    with pytest.raises(OutputError, match="model_fingerprint: saved None"):  # not a later setting: compared
        check_settings(old, {"seed": 0, "model_fingerprint": "sha256:x"}, tmp_path)
    # the fingerprint: names, sizes and every byte; hidden files left out
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "w.bin").write_bytes(bytes(3 << 20))
    first = model_fingerprint(model)
    (model / ".lock").write_text("pid")
    assert model_fingerprint(model) == first
    with (model / "w.bin").open("r+b") as fh:
        fh.seek((3 << 20) - 1)
        fh.write(b"\x01")  # the last MiB
    assert model_fingerprint(model) != first
    assert model_fingerprint("org/hub-model") is None


def _lock_of(folder: Path) -> dict:
    return json.loads((folder / LOCK_NAME).read_text())


def test_a_lock_whose_pid_now_belongs_to_another_process_is_taken_over(tmp_path, caplog):
    """A container restarted under the same host name gives its run the same pid: the killed run's
    lock names a live process (this one), which started later than the lock's owner did."""
    folder = tmp_path / "out"
    with OutputLock.for_folder(folder):
        mine = _lock_of(folder)
    assert set(mine) == {"pid", "host", "token", "start"} and mine["pid"] == os.getpid()
    folder.mkdir()
    (folder / LOCK_NAME).write_text(json.dumps({**mine, "start": "another-boot:12", "token": "killed"}))
    with OutputLock.for_folder(folder) as lock:
        assert _lock_of(folder)["token"] == lock.token
    assert f"took over the lock of process {os.getpid()} on {HOST}, which no longer runs" in caplog.text
    (folder / LOCK_NAME).write_text(json.dumps({**mine, "token": "held"}))  # this very process holds it
    with pytest.raises(OutputError, match=f"in use by another run \\(process {os.getpid()} on host {HOST}"):
        OutputLock.for_folder(folder).acquire()
    (folder / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": HOST}))  # no start recorded: refused
    with pytest.raises(OutputError, match="in use by another run"):
        OutputLock.for_folder(folder).acquire()


def test_an_output_inside_a_folder_another_run_has_locked_is_refused(tmp_path):
    """A run into out/fold-1/adapter while another run held out/.lock (the k-fold run whose fold it is) went on: a
    lock looked at its own folder only. A live run's lock of an enclosing folder now refuses it with one line naming
    that lock, leaving nothing behind; this process's own locks (k-fold training its fold's adapter), a dead run's,
    and a .lock file that is no OutputLock's (pytest's holds a bare pid) do not count, and none is taken over."""
    out = tmp_path / "kfold"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": HOST, "token": "other"}))  # a live run
    inner = out / "fold-1" / "adapter"
    with pytest.raises(OutputError) as err:
        OutputLock.for_folder(inner).acquire()
    assert str(err.value) == (f"{inner} lies inside {out}, which is in use by another run (process {os.getpid()} on "
                              f"host {HOST}, lock file {out / LOCK_NAME}); wait for it to finish, or delete the lock file "
                              "if that run is gone")
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # fold-1/adapter, made for the lock, removed
    with pytest.raises(OutputError, match=f"^{out / 'table.md'} lies inside {out}, which is in use by another run"):
        OutputLock.for_file(out / "table.md").acquire()
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    for text in (json.dumps({"pid": _dead_pid(), "host": HOST, "token": "gone"}), str(os.getpid())):
        (out / LOCK_NAME).write_text(text)
        with OutputLock.for_folder(inner) as lock:
            assert _lock_of(inner)["token"] == lock.token
        assert (out / LOCK_NAME).read_text() == text
    (out / LOCK_NAME).unlink()
    with OutputLock.for_folder(out), OutputLock.for_folder(out / "fold-1"), OutputLock.for_folder(inner) as lock:
        assert _lock_of(inner)["token"] == lock.token
    assert sorted(p.name for p in out.iterdir()) == []


def test_two_runs_taking_over_one_stale_lock_do_not_both_hold_it(tmp_path, monkeypatch):
    """The second run takes the dead run's lock over and locks the folder between the first run's
    reading of the dead owner and its own takeover: the first must not move the second's lock away."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": HOST}))
    first, second = OutputLock.for_folder(folder), OutputLock.for_folder(folder)
    read = OutputLock._owner

    def second_run_locks_meanwhile(self):
        owner = read(self)
        if self is first and not second.held:
            second.acquire()
        return owner

    monkeypatch.setattr(OutputLock, "_owner", second_run_locks_meanwhile)
    with pytest.raises(OutputError, match="in use by another run"):
        first.acquire()
    assert second.held and not first.held and _lock_of(folder)["token"] == second.token
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME]
    second.release(finished=True)
    assert not (folder / LOCK_NAME).exists()


def test_the_empty_lock_of_a_run_killed_while_creating_it_is_taken_over_once_old(tmp_path, caplog):
    """A run SIGKILLed between creating its lock file and writing its pid into it leaves an empty lock:
    it was refused as 'an unreadable owner' for ever. A live run writes its pid within microseconds, so
    an empty lock older than LOCK_WRITE_GRACE seconds is a dead run's and is taken over; a younger one
    is still refused (its run may be writing it)."""
    import time

    from culture_tasks import outputs

    folder = tmp_path / "out"
    code = ("import json, os, signal\nimport culture_tasks.outputs as o\n"
            "o.json.dump = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
            f"o.OutputLock.for_folder({str(folder)!r}).acquire()\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == -9  # SIGKILL
    lock = folder / LOCK_NAME
    assert lock.read_bytes() == b""
    with pytest.raises(OutputError, match="in use by another run .*that has not yet written its pid"):
        OutputLock.for_folder(folder).acquire()
    old = time.time() - outputs.LOCK_WRITE_GRACE - 1
    os.utime(lock, (old, old))
    with OutputLock.for_folder(folder) as held:
        assert _lock_of(folder)["token"] == held.token
    assert "took over the empty lock file of a run killed while creating it" in caplog.text
    assert sorted(p.name for p in folder.iterdir()) == []


def test_an_empty_lock_replaced_by_a_new_run_meanwhile_is_not_taken_over(tmp_path, monkeypatch):
    """Two runs find one dead run's empty lock; the second takes it over and its own lock is still empty
    (created, pid not yet written) when the first moves the lock aside: the first must see another file
    (inode and time), put it back and be refused, so that the two never both hold the folder."""
    import time

    from culture_tasks import outputs

    folder = tmp_path / "out"
    folder.mkdir()
    lock = folder / LOCK_NAME
    lock.write_bytes(b"")
    old = time.time() - outputs.LOCK_WRITE_GRACE - 1
    os.utime(lock, (old, old))
    first = OutputLock.for_folder(folder)
    read = OutputLock._owner

    def a_new_run_creates_its_lock_meanwhile(self):
        owner = read(self)
        if self is first and owner.get("empty") and not (folder / "made").exists():
            (folder / "made").write_text("")
            lock.unlink()
            lock.write_bytes(b"")  # a live run's lock, pid not yet written
        return owner

    monkeypatch.setattr(OutputLock, "_owner", a_new_run_creates_its_lock_meanwhile)
    with pytest.raises(OutputError, match="in use by another run"):
        first.acquire()
    assert not first.held and lock.read_bytes() == b""


def test_a_local_folder_is_compared_by_its_recorded_content_not_by_how_its_path_was_written():
    from culture_tasks.outputs import settings_differences

    saved = {"model": "tiny", "model_fingerprint": "sha256-full:aa", "seed": 0}
    assert settings_differences(saved, {**saved, "model": "/runs/tiny"}) == []
    assert settings_differences(saved, {**saved, "model": "../tiny"}, ["model", "seed"]) == []
    # another content under either spelling is still a difference, named by its fingerprint
    assert settings_differences(saved, {**saved, "model": "/runs/tiny", "model_fingerprint": "sha256-full:bb"}) == [
        "model: saved 'tiny', given '/runs/tiny'", "model_fingerprint: saved 'sha256-full:aa', given 'sha256-full:bb'"]
    # a hub id (no fingerprint) or a run stored without one: the name is all there is to compare
    hub = {"model": "org/name", "model_fingerprint": None}
    assert settings_differences(hub, {**hub, "model": "org/other"}) == ["model: saved 'org/name', given 'org/other'"]
    assert settings_differences({"model": "tiny"}, {"model": "/runs/tiny", "model_fingerprint": "sha256-full:aa"},
                                ["model"]) == ["model: saved 'tiny', given '/runs/tiny'"]


def _full_disk(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device", "out/file.json")


def _fail_in(command: str, failure, tmp_path, monkeypatch) -> int:
    """Run ``command``'s main with ``failure`` raised where its work starts; its exit code."""
    from culture_tasks import harness, leaderboard, models, sampling, steering
    from trainers import cli

    if command == "culture-align":
        monkeypatch.setattr("aligners.align.run", failure)
        return align_main(["--model", "m", "--country", "usa", "--output", str(tmp_path / "o")])
    if command == "culture-train data":
        monkeypatch.setitem(cli.RUN, "data", failure)
        return train_cli(["data", "--culture", "english", "--questions", "q.jsonl", "--output", str(tmp_path / "o")])
    if command == "culture-steer":
        monkeypatch.setattr(steering, "parse_args", failure)
        return steering.main([])
    if command == "culture-leaderboard":
        monkeypatch.setattr(leaderboard, "find_result_files", failure)
        return leaderboard.main([str(tmp_path)])
    if command == "culture_tasks.sampling":
        monkeypatch.setattr(sampling, "suite_files", failure)
        return sampling.main(["--per_culture", "20", "--output", str(tmp_path / "s.json")])
    if command == "culture-model":
        monkeypatch.setattr(models, "convert_gguf", failure)
        gguf = tmp_path / "m.gguf"
        gguf.write_bytes(b"")
        return models.main(["from-gguf", "--gguf", str(gguf), "--output", str(tmp_path / "m")])
    assert command == "culture-eval"
    monkeypatch.setattr("lm_eval.__main__.cli_evaluate", failure)
    with pytest.raises(SystemExit) as stop:
        harness.main()
    return stop.value.code


@pytest.mark.parametrize("command", ["culture-align", "culture-train data", "culture-steer", "culture-leaderboard",
                                     "culture_tasks.sampling"])
def test_an_os_error_mid_run_is_one_line_naming_the_file(command, tmp_path, monkeypatch, capsys):
    """A full disk (or a folder that cannot be written) met mid-run: one line with the file and the fix, exit 2."""
    code = _fail_in(command, _full_disk, tmp_path, monkeypatch)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err == (f"{command}: [Errno 28] No space left on device: 'out/file.json'; "
                   "fix that (free space, permissions) and run again\n")


def _two_line_error(*args, **kwargs):
    raise OutputError("out/x.json: the first line\n    and a second, indented (a library's message)\n")


@pytest.mark.parametrize("command", ["culture-align", "culture-train data", "culture-steer", "culture-leaderboard",
                                     "culture_tasks.sampling", "culture-model", "culture-eval"])
def test_an_error_whose_message_spans_lines_is_printed_as_one_line(command, tmp_path, monkeypatch, capsys):
    """Each command prints its error as one line (exit 2) even where the message has several: its lines joined."""
    code = _fail_in(command, _two_line_error, tmp_path, monkeypatch)
    assert code == 2
    assert capsys.readouterr().err == (f"{command}: out/x.json: the first line and a second, indented (a library's "
                                       "message)\n")


def test_the_gathered_staging_folder_of_a_sharded_save_is_published_whole_or_removed_on_resume(tmp_path, caplog):
    """Under FSDP every process names the one staging folder the adapter is gathered into (the Trainer writes in
    place); published, its files are in the output and it is gone; left by a kill, the next run removes it."""
    import logging

    from culture_tasks.atomic import gathered_staging, publish_staged
    from culture_tasks.outputs import remove_killed_writes

    out = tmp_path / "adapter"
    staged = gathered_staging(out)
    assert staged == out / ".adapter.gathered"
    staged.mkdir(parents=True)
    (staged / "adapter_model.safetensors").write_bytes(b"weights")
    (staged / "adapter_config.json").write_text("{}")
    (out / "adapter_config.json").write_text("old")
    publish_staged(staged, out)
    staged.rmdir()  # empty: every file moved
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert (out / "adapter_config.json").read_text() == "{}" and (out / "adapter_model.safetensors").read_bytes() == b"weights"

    staged.mkdir()
    (staged / "adapter_model.safetensors").write_bytes(b"cut")  # killed mid-save
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        remove_killed_writes(out, ("training.json",), staged=True)
    assert not staged.exists() and (out / "adapter_model.safetensors").read_bytes() == b"weights"
    assert [r.getMessage() for r in caplog.records] == [
        f"removed .adapter.gathered from {out}, left by a run killed while writing it"]
