"""What the design weights change in a sampled CultureLLM run: each culture's macro-F1 and accuracy
with the weights (the tasks' numbers) and without them (the sample's own label mix).

    python -m benchmarks.design_weights <folder with an lm_eval --log_samples run of culturellm>

A sample of ``culture_tasks.sampling`` gives every label of a task at least one document, so a rare
label holds more of the sample than of the task; the tasks weigh each document back to its label's
share of the task (``classification.design_weights``). Read from the per-sample logs as the
leaderboard reads them; a log of a task version before the weights has no label counts, and both
columns are then the unweighted number. A culture's value is the mean over its tasks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from culture_tasks.classification import f1_macro, share
from benchmarks.results_folder import read_folder
from culture_tasks.leaderboard import find_result_files, load_runs

SUITE = "culturellm"


def _unweighted(item):
    """An item without its label count: macro-F1's first three fields, a share's value."""
    if not isinstance(item, tuple):
        return item
    return item[:3] if len(item) == 4 else item[0]


def task_values(items_f1: list, items_acc: list) -> tuple[float, float, float, float]:
    """(macro-F1 weighted, unweighted, accuracy weighted, unweighted) of one task's logged items."""
    return (f1_macro(items_f1), f1_macro([_unweighted(i) for i in items_f1]),
            share(items_acc), share([_unweighted(i) for i in items_acc]))


def culture_table(folder: Path) -> list[tuple[str, int, int, np.ndarray]]:
    """Per culture of the one run in ``folder``: (culture, tasks, documents, mean of ``task_values``)."""
    runs = load_runs(find_result_files([str(folder)]))
    runs = [r for r in runs if r.cultures(SUITE)]
    if len(runs) != 1:
        raise SystemExit(f"{folder}: expected the CultureLLM results of one run, found {len(runs)}")
    run = runs[0]
    out = []
    for culture, tasks in sorted(run.cultures(SUITE).items()):
        values, documents = [], 0
        for task in tasks:
            logged = [run.items(task, metric) for metric in ("f1_macro", "acc")]
            if any(log is None for log in logged):
                raise SystemExit(f"{task}: no per-sample log beside its result file (run lm_eval with --log_samples)")
            f1, acc = ([item for _, (_, item, _) in sorted(log.items())] for log in logged)
            values.append(task_values(f1, acc))
            documents += len(f1)
        out.append((culture, len(tasks), documents, np.mean(values, axis=0)))
    return out


def render(rows: list[tuple[str, int, int, np.ndarray]]) -> str:
    lines = ["| culture | tasks | documents | macro-F1 weighted | unweighted | change | accuracy weighted | unweighted "
             "| change |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for culture, tasks, documents, (f1w, f1u, accw, accu) in rows:
        lines.append(f"| {culture} | {tasks} | {documents} | {f1w:.3f} | {f1u:.3f} | {f1w - f1u:+.3f} | {accw:.3f} | "
                     f"{accu:.3f} | {accw - accu:+.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    code, rows = read_folder(argv, __doc__, "design_weights", culture_table)
    if rows is not None:
        print(render(rows))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
