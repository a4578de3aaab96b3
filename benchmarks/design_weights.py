"""What the design weights change in a sampled CultureLLM run: each culture's macro-F1 and accuracy
with the weights (the tasks' numbers) and without them (the sample's own label mix).

    python -m benchmarks.design_weights <folder with an lm_eval --log_samples run of culturellm>

A sample of ``culture_tasks.sampling`` gives every label of a task at least one document, so a rare
label holds more of the sample than of the task; the tasks weigh each document back to its label's
share of the task (``classification.design_weights``). Read from the per-sample logs as the
leaderboard reads them; a log of a task version before the weights has no label counts, and both
columns are then the unweighted number. A culture's value is the mean over its tasks. Each change has the
95 % interval of a paired bootstrap over the culture's documents (the same resamples weighted and
unweighted, drawn as the leaderboard draws a culture's: within each task, texts that several tasks label
with all their documents); none where a task holds fewer documents than an interval needs, as on the board.
The first line names the run and, for a sample, that its numbers are partial.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.results_folder import read_folder, run_line
from culture_tasks import stats
from culture_tasks.classification import f1_macro, share
from culture_tasks.leaderboard import (Run, clustered_mean, find_result_files, load_runs, no_interval_reason,
                                      task_mean)

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


def change_interval(run: Run, tasks: list[str], metric: str) -> tuple[float, float] | str:
    """The paired 95 % interval of (weighted − unweighted) mean of ``metric`` over ``tasks``, or why there is none."""
    why = no_interval_reason(run, tasks, metric)
    if why:
        return why
    documents = [(task, text, item) for task in sorted(tasks)
                 for _, (_, item, text) in sorted(run.items(task, metric).items())]
    unweighted = [(task, text, _unweighted(item)) for task, text, item in documents]
    clusters = [stats.text_clusters(docs) for docs in (unweighted, documents)]
    if None not in clusters:  # texts that several tasks label move together
        return stats.paired_interval(clustered_mean(metric), *clusters)
    return stats.paired_interval(task_mean(metric), *([(t, i) for t, _, i in docs] for docs in (unweighted, documents)))


def culture_table(folder: Path) -> tuple[str, list[tuple]]:
    """The run's line (``run_line``) and per culture of the one run in ``folder``: (culture, tasks, documents, mean of
    ``task_values``, the change's interval or why none for macro-F1 and for accuracy)."""
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
        out.append((culture, len(tasks), documents, np.mean(values, axis=0),
                    change_interval(run, tasks, "f1_macro"), change_interval(run, tasks, "acc")))
    return run_line(run), out


def _change(value: float, interval: tuple[float, float] | str) -> str:
    return f"{value:+.3f}" + (" –" if isinstance(interval, str) else f" [{interval[0]:+.3f}, {interval[1]:+.3f}]")


def render(run: str, rows: list[tuple]) -> str:
    lines = [run, "", "| culture | tasks | documents | macro-F1 weighted | unweighted | change [95 % CI] | accuracy weighted "
             "| unweighted | change [95 % CI] |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for culture, tasks, documents, (f1w, f1u, accw, accu), f1_ci, acc_ci in rows:
        lines.append(f"| {culture} | {tasks} | {documents} | {f1w:.3f} | {f1u:.3f} | {_change(f1w - f1u, f1_ci)} | "
                     f"{accw:.3f} | {accu:.3f} | {_change(accw - accu, acc_ci)} |")
    reasons = sorted({why for *_, f1_ci, acc_ci in rows for why in (f1_ci, acc_ci) if isinstance(why, str)})
    return "\n".join(lines + [""] * bool(reasons) + [f"–: {why}" for why in reasons])


def main(argv: list[str] | None = None) -> int:
    code, found = read_folder(argv, __doc__, "design_weights", culture_table)
    if found is not None:
        print(render(*found))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
