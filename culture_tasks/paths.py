"""The tasks folder for lm-eval's ``--include_path`` and a task manager over it.

One home for the location, so that an installed wheel and a checkout behave alike:

    lm_eval --include_path "$(culture-tasks-path)" --tasks culturellm ...
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent


def task_manager(metadata: dict | None = None, *, data_dir: str | None = None):
    """An lm-eval ``TaskManager`` that knows this project's tasks (``--include_path TASKS_DIR``).

    ``metadata`` reaches every task as ``--metadata`` does; ``data_dir`` fills its ``data_dir``
    unless the metadata names one. Only this project's tasks are indexed: lm-eval's thousands
    of built-in ones cost ~20 s to scan.
    """
    from lm_eval.tasks import TaskManager

    meta = dict(metadata or {})
    if data_dir and "data_dir" not in meta:
        meta["data_dir"] = str(data_dir)
    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=meta)


def absolute_if_local(path: str | Path) -> str:
    """A path that exists here, made absolute; anything else (a hub id) as given: what a checkpoint or
    a command records, so it names the same folder from any working directory."""
    return os.path.abspath(path) if Path(path).exists() else str(path)


# what lm-eval's ``key=value,...`` reading of --model_args splits at (``,``), groups by (quotes, brackets,
# braces, parentheses) or takes for a JSON object (``{``)
_MODEL_ARGS_SYNTAX = frozenset(",'\"[](){}")


def model_args_text(args: dict[str, str]) -> str:
    """``--model_args`` that lm_eval reads back as ``args``: ``k=v,k=v``, or a JSON object (lm-eval ≥ 0.4.13
    takes one) where a value holds a character of that syntax: a checkpoint folder ``seed=0,l1`` gave
    ``peft=.../seed=0`` and the error "expected `key=value`, got 'l1'", one named ``o'brien`` swallowed the
    ``dtype=float32`` after it."""
    if any(_MODEL_ARGS_SYNTAX & set(value) for value in args.values()):
        return json.dumps(args)
    return ",".join(f"{key}={value}" for key, value in args.items())


def lm_eval_command(model: str | Path, tasks: list[str] | str, *, adapter: str | Path | None = None,
                    metadata: dict | None = None, dtype: str | None = None, chat: bool = False,
                    system_instruction: str | None = None, batch_size: int | None = None,
                    device: str | None = None) -> str:
    """The ``lm_eval`` command that reproduces a score, runnable from any folder.

    The tasks folder, the model and adapter folders and ``metadata["data_dir"]`` are absolute
    (relative ones would only work from the folder the run started in); every argument is
    shell-quoted, and ``--model_args`` is written so that lm-eval reads every folder whole (``model_args_text``).
    ``system_instruction``: the system message the scored model was trained with. ``batch_size`` and ``device``:
    those a score was computed with, which move half-precision scores (lm_eval's defaults would give others).
    """
    args = {"pretrained": absolute_if_local(model)}
    if adapter is not None:
        args["peft"] = os.path.abspath(adapter)
    if dtype:
        args["dtype"] = dtype
    model_args = model_args_text(args)
    meta = dict(metadata or {})
    if meta.get("data_dir"):
        meta["data_dir"] = os.path.abspath(meta["data_dir"])
    parts = ["lm_eval", "--model", "hf", "--model_args", model_args, "--include_path", str(TASKS_DIR),
             "--tasks", tasks if isinstance(tasks, str) else ",".join(tasks)]
    if meta:
        parts += ["--metadata", json.dumps(meta)]
    if chat:
        parts.append("--apply_chat_template")
    if system_instruction:
        parts += ["--system_instruction", system_instruction]
    if batch_size is not None:
        parts += ["--batch_size", str(batch_size)]
    if device:
        parts += ["--device", device]
    return shlex.join(parts)


@lru_cache(maxsize=1)
def _folder_groups() -> dict[str, list[str]]:
    import yaml

    groups = {}
    for path in sorted(TASKS_DIR.rglob("_*.yaml")):
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(config, dict) and "group" in config:
            groups[config["group"]] = list(config["task"])
    return groups


@lru_cache(maxsize=1)
def _task_files() -> dict[str, Path]:
    """Task name -> its YAML: this project's task files are named after their task (templates and groups: ``_*``)."""
    return {p.stem: p for p in sorted(TASKS_DIR.rglob("*.yaml")) if not p.name.startswith("_")}


@lru_cache(maxsize=None)
def _task_config(path: Path) -> dict:
    """A task YAML with the file it includes, merged by lm-eval's own loader; ``!function`` tags left unresolved."""
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(path, resolve_func=False)


def installed_version(task: str):
    """``metadata.version`` of ``task``'s definition in the tasks folder, or None for a task not defined here: what
    a result file's ``versions`` is checked against (an older file's numbers are the older task's)."""
    path = _task_files().get(task)
    if path is None:
        return None
    config = _task_config(path)
    return (config.get("metadata") or {}).get("version") if config.get("task") == task else None


def task_groups(result: Mapping | None = None) -> dict[str, list[str]]:
    """lm-eval's group structure, group -> its subtasks: the ``group_subtasks`` of a result file
    (what was run), over the group YAMLs of the tasks folder for the groups the file does not
    name (a file trimmed of it, a run of one culture's group without its suite's)."""
    found = (result or {}).get("group_subtasks") or {}
    return {**_folder_groups(), **{g: list(t) for g, t in found.items() if t}}


def parser():
    """The command line of ``culture-tasks-path`` (no settings: ``--help`` only)."""
    import argparse

    return argparse.ArgumentParser(
        prog="culture-tasks-path",
        description="Print the installed tasks folder, for lm_eval --include_path \"$(culture-tasks-path)\".",
    )


def main(argv: list[str] | None = None) -> int:
    """``culture-tasks-path``: print the folder to pass to ``lm_eval --include_path``."""
    parser().parse_args(argv)
    print(TASKS_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
