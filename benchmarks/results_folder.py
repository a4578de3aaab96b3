"""The command line of a script that reads one folder of ``lm_eval`` results (``benchmarks.quickstart_intervals``,
``benchmarks.design_weights``): one argument, ``--help``, and a folder that cannot be read in one line; and the
line that names the run its numbers are of."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from culture_tasks.leaderboard import LeaderboardError, Run, provenance

T = TypeVar("T")


def read_folder(argv: list[str] | None, doc: str, name: str, read: Callable[[Path], T]) -> tuple[int, T | None]:
    """``(0, read(folder))``; ``(0, None)`` after printing ``doc`` for ``--help``; ``(2, None)`` after one line
    naming what could not be read (a missing folder, no result file, a foreign log). A wrong number of
    arguments exits with ``doc``."""
    args = sys.argv[1:] if argv is None else argv
    if args in (["-h"], ["--help"]):
        print(doc)
        return 0, None
    if len(args) != 1:
        raise SystemExit(doc)
    try:
        return 0, read(Path(args[0]))
    except (LeaderboardError, OSError, ValueError) as err:
        print(f"{name}: {err}", file=sys.stderr)
        return 2, None


def run_line(run: Run) -> str:
    """Which run the numbers are of (row id and model arguments, as in the report), and for a sample that it is one."""
    prov = provenance(run)
    return f"run {run.row_id}: {prov['model_args']}" + (f"; † {prov['partial']}" if prov["partial"] else "")
