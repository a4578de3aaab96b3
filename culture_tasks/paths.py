"""The tasks folder for lm-eval's ``--include_path`` and a task manager over it.

One home for the location, so that an installed wheel and a checkout behave alike:

    lm_eval --include_path "$(culture-tasks-path)" --tasks culturellm ...
"""

from __future__ import annotations

import sys
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent


def task_manager(metadata: dict | None = None):
    """An lm-eval ``TaskManager`` that knows this project's tasks (``--include_path TASKS_DIR``).

    ``metadata`` reaches every task as ``--metadata`` does (e.g. ``{"data_dir": ...}``). Only
    this project's tasks are indexed: lm-eval's thousands of built-in ones cost ~20 s to scan.
    """
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=dict(metadata or {}))


def main(argv: list[str] | None = None) -> int:
    """``culture-tasks-path``: print the folder to pass to ``lm_eval --include_path``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="culture-tasks-path",
        description="Print the installed tasks folder, for lm_eval --include_path \"$(culture-tasks-path)\".",
    )
    parser.parse_args(argv)
    print(TASKS_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
