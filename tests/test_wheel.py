"""A wheel built from the repository ships every file the tasks read (no install: see scripts/check_wheel.sh)."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("culture_tasks", "aligners", "trainers")


def _tracked(*paths: str) -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the tracked-file list is unknown")
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--", *paths],
                         check=True, capture_output=True, text=True).stdout
    return [p for p in out.split("\0") if p]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """Built from a copy of the tracked files, so that nothing untracked or stale can slip in."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for rel in _tracked():
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(src)],
                   check=True, capture_output=True)
    (built,) = (tmp / "dist").glob("*.whl")
    return zipfile.ZipFile(built)


def test_wheel_ships_every_task_file(wheel):
    names = set(wheel.namelist())
    tracked = _tracked(*PACKAGES)
    task_files = [p for p in tracked if p.startswith("culture_tasks/") and (
        p.endswith((".yaml", ".j2", ".md")) or fnmatch.fnmatch(Path(p).name, "_*_template_yaml"))]
    templates = [p for p in task_files if p.endswith("_template_yaml")]
    assert len(templates) == 4  # _mc_, _gen_ (culturellm), _wvs_, _vsm13_
    assert "culture_tasks/survey/countries.yaml" in task_files
    assert "culture_tasks/culturellm/manifest.yaml" in task_files
    assert "culture_tasks/templates/leaderboard.html.j2" in task_files
    assert sorted(set(task_files) - names) == []
    # and every other tracked file of the packages (the code the YAMLs point to)
    assert sorted(set(tracked) - names) == []


def test_wheel_declares_the_command_and_true_dependency_floors(wheel):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    shipped = dict(line.split(" = ") for line in wheel.read(entry_points).decode().split("[console_scripts]")[1]
                   .split("\n[")[0].strip().splitlines())
    assert shipped == declared and shipped["culture-tasks-path"] == "culture_tasks.paths:main"
    assert len(shipped) == 7
    # the licence as an SPDX expression, its text inside the wheel
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    assert "License-Expression: Apache-2.0" in wheel.read(metadata).decode().splitlines()
    (licence,) = [n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
    assert "Apache License" in wheel.read(licence).decode()
    requires = [line.split(": ", 1)[1] for line in wheel.read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist: ") and "extra ==" not in line]
    from trainers.lora import MIN_TRANSFORMERS

    assert f"transformers>={MIN_TRANSFORMERS}" in requires  # the oldest release the tests pass on
    assert "peft>=0.18" in requires  # PromptTuningInit.SAMPLE_VOCAB, which aligners/soft_prompt.py writes
    assert any(r.startswith("numpy>=") for r in requires) and any(r.startswith("scipy>=") for r in requires)
