"""How much wider a culture's interval is when the texts its tasks share are resampled together.

    python -m benchmarks.text_clusters <folder with an lm_eval --log_samples run of culturellm>

Per culture of the one run: its tasks and documents, how many texts are a document of more than one of its tasks,
and the interval of its mean macro-F1 and accuracy two ways: drawing texts, each with its document in every task
that holds it (``stats.ClusteredTaskMean``: what ``culture-leaderboard`` shows), and drawing each task's documents
on its own (``stats.TaskMean``: as if the tasks were independent). Both read the per-sample logs as the leaderboard
reads them, with its seed; a culture whose tasks share no text gets the same interval both ways.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from benchmarks.results_folder import read_folder
from culture_tasks import stats
from culture_tasks.leaderboard import _task_items, _text_clusters, clustered_mean, find_result_files, load_runs, task_mean

SUITE = "culturellm"
METRICS = ("f1_macro", "acc")


def shared_texts(run, tasks: list[str]) -> int:
    """Texts that are a logged document of more than one of ``tasks``."""
    per_text = Counter(text for task in tasks for _, _, text in run.items(task, "acc").values())
    return sum(1 for count in per_text.values() if count > 1)


def culture_rows(folder: Path) -> list[dict]:
    """Per culture: tasks, documents, shared texts, and per metric the mean with both intervals."""
    runs = [r for r in load_runs(find_result_files([str(folder)])) if r.cultures(SUITE)]
    if len(runs) != 1:
        raise ValueError(f"{folder}: expected the CultureLLM results of one run, found {len(runs)}")
    run = runs[0]
    rows = []
    for culture, tasks in sorted(run.cultures(SUITE).items()):
        items = {m: _task_items(run, tasks, m) for m in METRICS}
        if any(found is None for found in items.values()):
            raise ValueError(f"{culture}: a task has no per-sample log beside its result file (run lm_eval with "
                             "--log_samples)")
        row = {"culture": culture, "tasks": len(tasks), "documents": len(items["acc"]),
               "shared": shared_texts(run, tasks)}
        for metric in METRICS:
            independent = stats.bootstrap_ci(task_mean(metric), items[metric])
            texts = _text_clusters(run, tasks, metric)
            clustered = independent if texts is None else stats.bootstrap_ci(clustered_mean(metric), texts)
            row[metric] = (task_mean(metric)(items[metric]), clustered, independent)
        rows.append(row)
    return rows


def render(rows: list[dict]) -> str:
    lines = ["| culture | tasks | documents | texts in 2+ tasks | macro-F1 | texts drawn | tasks apart | ratio "
             "| accuracy | texts drawn | tasks apart | ratio |", "|---|---:|---:|---:|---:|---|---|---:|---:|---|---|---:|"]
    for row in rows:
        cells = []
        for metric in METRICS:
            value, (cl, ch), (il, ih) = row[metric]
            ratio = (ch - cl) / (ih - il) if ih > il else float("nan")
            cells.append(f"{value:.3f} | [{cl:.3f}, {ch:.3f}] | [{il:.3f}, {ih:.3f}] | {ratio:.2f}")
        lines.append(f"| {row['culture']} | {row['tasks']} | {row['documents']} | {row['shared']} | " + " | ".join(cells)
                     + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    code, rows = read_folder(argv, __doc__, "text_clusters", culture_rows)
    if rows is not None:
        print(render(rows))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
