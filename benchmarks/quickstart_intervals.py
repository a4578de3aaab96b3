"""Per-culture macro-F1 and the width of its 95 % bootstrap interval, from a quickstart run.

    python -m benchmarks.quickstart_intervals runs/quickstart/<time>

Reads the per-document ``samples_culturellm_*.jsonl`` files that ``lm_eval --log_samples`` wrote.
A culture's score is the unweighted mean of its tasks' macro-F1 (as the leaderboard's); its
interval resamples the documents of every task with replacement (stratified by task, 1,000
resamples, ``culture_tasks.stats``' seed), recomputes each task's macro-F1 and averages. Used to
size ``PER_CULTURE`` in scripts/quickstart.sh: the width shrinks about as 1 / sqrt(documents).
"""

from __future__ import annotations

import json
import sys
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from culture_tasks import stats
from culture_tasks.classification import f1_macro


def task_items(run: Path) -> dict[str, list[tuple[int, int, int]]]:
    """``{task: [(gold, pred, n_labels), ...]}`` of every CultureLLM multiple-choice task logged."""
    out = {}
    for path in sorted(run.rglob("samples_culturellm_*.jsonl")):
        task = path.name[len("samples_"):].rsplit("_", 1)[0]
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        out[task] = [tuple(r["f1_macro"]) for r in rows]
    if not out:
        raise SystemExit(f"{run}: no samples_culturellm_*.jsonl (run lm_eval with --log_samples)")
    return out


def culture_intervals(items: dict[str, list[tuple]]) -> dict[str, tuple[float, float, float, int]]:
    """``{culture: (macro-F1, low, high, documents)}``; every task resampled on its own stream."""
    by_culture: dict[str, list[str]] = defaultdict(list)
    for task in items:
        by_culture[task.split("_")[1]].append(task)
    out = {}
    for culture, tasks in sorted(by_culture.items()):
        boots = []
        for task in tasks:
            canon = sorted(items[task], key=repr)
            idx = stats.resample_indices(len(canon), stats.ITERS, stats.SEED + zlib.crc32(task.encode()))
            boots.append(f1_macro.batched(canon, idx))
        low, high = stats.percentile_interval(np.mean(boots, axis=0), stats.LEVEL)
        value = float(np.mean([f1_macro(items[t]) for t in tasks]))
        out[culture] = (value, low, high, sum(len(items[t]) for t in tasks))
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit(__doc__)
    rows = culture_intervals(task_items(Path(args[0])))
    print("| culture | documents | macro-F1 | 95 % interval | width |")
    print("|---|---:|---:|---|---:|")
    for culture, (value, low, high, n) in rows.items():
        print(f"| {culture} | {n} | {value:.3f} | [{low:.3f}, {high:.3f}] | {high - low:.3f} |")
    widths = [high - low for _, low, high, _ in rows.values()]
    print(f"\nwidth: median {np.median(widths):.3f}, range {min(widths):.3f}-{max(widths):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
