"""Per-culture macro-F1 and the width of its 95 % interval, from a quickstart run.

    python -m benchmarks.quickstart_intervals runs/quickstart/<time>

The numbers are the report's own: the leaderboard's CultureLLM cells (a culture's score is the
mean of its tasks' macro-F1; its interval resamples the logged documents, ``--log_samples``).
Used to size ``PER_CULTURE`` in scripts/quickstart.sh: the width shrinks about as 1 / sqrt(documents). A
culture with a task under ``classification.MIN_DOCS`` documents has no interval (the cell says why). The first
line names the run (its row id and model arguments) and, for a sample, that its numbers are partial.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from benchmarks.results_folder import read_folder, run_line
from culture_tasks.leaderboard import SUITES, LeaderboardError, build_tables, find_result_files, load_runs

Cells = dict[str, tuple[float, float | None, float | None, str]]


def culture_cells(run_folder: Path) -> tuple[str, Cells]:
    """``run_line`` of the CultureLLM table's one row and its ``{culture: (macro-F1, low, high, why no interval)}``."""
    tables = build_tables(load_runs(find_result_files([str(run_folder)])))
    table = next((t for t in tables if t.title == SUITES["culturellm"]), None)
    if table is None:
        raise LeaderboardError(f"{run_folder}: no CultureLLM results; give the folder of one quickstart run")
    if len(table.rows) != 1:  # the widths of one run: which one is for the caller to say
        raise LeaderboardError(f"{run_folder}: CultureLLM results of {len(table.rows)} runs "
                               f"({' | '.join(run_line(run) for run, _ in table.rows)}); give the folder of one")
    run, cells = table.rows[0]
    return run_line(run), {col.key: (cell.value, cell.low, cell.high, cell.interval_note)
                           for col, cell in zip(table.columns, cells)
                           if not col.count and col.metric == "f1_macro" and col.key != "overall"}


def main(argv: list[str] | None = None) -> int:
    code, found = read_folder(argv, __doc__, "quickstart_intervals", culture_cells)
    if found is None:
        return code
    run, rows = found
    if any("--log_samples" in note for *_, note in rows.values()):
        raise SystemExit("no interval without the per-sample logs: run lm_eval with --log_samples")
    print(run + "\n")
    print("| culture | macro-F1 | 95 % interval | width |")
    print("|---|---:|---|---:|")
    for culture, (value, low, high, note) in rows.items():
        shown = f"[{low:.3f}, {high:.3f}] | {high - low:.3f}" if low is not None and high is not None else f"{note} | –"
        print(f"| {culture} | {'–' if value is None else f'{value:.3f}'} | {shown} |")
    widths = [high - low for _, low, high, _ in rows.values() if low is not None and high is not None]
    if widths:
        print(f"\nwidth: median {np.median(widths):.3f}, range {min(widths):.3f}-{max(widths):.3f} "
              f"({len(widths)} of {len(rows)} cultures have an interval)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
