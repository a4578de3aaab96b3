"""Do the VSM13 intervals hold what the same prompt answers with the options listed the other way round?

    python -m benchmarks.vsm13_order <folder of benchmarks/vsm13_order.sh>

Each prompt (the plain model, each distinct soft prompt) was asked the 24 items twice, as ``vsm13_usa`` and
``vsm13_usa_reversed``: the same questions and options, only their order reversed, a change a survey
respondent would not notice. For every metric the script reads both per-sample logs back as the task scores
them and asks of each order's interval whether it holds the other order's value, for the two intervals the
project gives a VSM13 number:

- *respondents*: ``lm_eval``'s own ``_ci_`` rows (``tasks.vsm13_intervals``: 50 simulated respondents answering
  from the model's answer distributions, resampled);
- *item pairs*: the steering matrix's, the aligner's and the leaderboard's paired test's
  (``tasks.vsm13_pair_replicates``: each dimension's two item-pair terms resampled).

A prompt gives two cases per metric (each order's interval, the other order's value). The shift is the
reversed order's value minus the listed order's: a mean far from 0 against its spread is a bias of the
model towards a position, which no interval of one order can show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.results_folder import read_folder
from culture_tasks import stats
from culture_tasks.leaderboard import find_result_files, load_runs
from culture_tasks.survey.tasks import summarise_vsm13, vsm13_intervals, vsm13_pair_replicates
from culture_tasks.survey.vsm13 import DIMENSIONS

ORDERS = ("vsm13_usa", "vsm13_usa_reversed")
METRICS = (*DIMENSIONS, "vsm13_l1", "vsm13_rank", "vsm13_margin")
KINDS = ("respondents", "item pairs")


def _logged(run, task: str) -> tuple:
    found = run.items(task, "vsm13_l1")
    if found is None:
        raise ValueError(f"{run.label}: no per-sample log of {task} (run lm_eval with --log_samples)")
    return tuple(item for _, (_, item, _) in sorted(found.items()))


def prompt_cases(items: tuple[tuple, tuple]) -> dict[str, dict]:
    """Per metric: both orders' values and, per interval kind, both orders' intervals."""
    values = [summarise_vsm13(log) for log in items]
    respondents = [vsm13_intervals(log) for log in items]
    pairs = [{m: stats.percentile_interval(reps, stats.LEVEL) for m, reps in vsm13_pair_replicates(log).items()}
             for log in items]
    return {m: {"values": tuple(v[m] for v in values),
                "respondents": tuple(r[m] for r in respondents),
                "item pairs": tuple(p[m] for p in pairs)} for m in METRICS}


def read(folder: Path) -> list[dict[str, dict]]:
    """``prompt_cases`` of every prompt (run) in the folder."""
    runs = [run for run in load_runs(find_result_files([str(folder)])) if all(t in run.metrics for t in ORDERS)]
    if not runs:
        raise ValueError(f"{folder}: no run with both {' and '.join(ORDERS)} (see benchmarks/vsm13_order.sh)")
    return [prompt_cases(tuple(_logged(run, t) for t in ORDERS)) for run in runs]


def summary(prompts: list[dict[str, dict]], metric: str) -> dict:
    """Coverage of the other order's value by each interval kind, median half-widths, and the shift."""
    out: dict = {"prompts": len(prompts)}
    shifts = np.array([p[metric]["values"][1] - p[metric]["values"][0] for p in prompts])
    for kind in KINDS:
        held, widths = [], []
        for p in prompts:
            values, intervals = p[metric]["values"], p[metric][kind]
            for own in (0, 1):
                low, high = intervals[own]
                held.append(low <= values[1 - own] <= high)
                widths.append((high - low) / 2)
        out[kind] = (float(np.mean(held)), float(np.median(widths)))
    out["median |shift|"] = float(np.median(np.abs(shifts)))
    out["shift"] = (float(np.mean(shifts)), float(np.std(shifts, ddof=1)) if len(shifts) > 1 else 0.0)
    return out


def render(prompts: list[dict[str, dict]]) -> str:
    lines = [f"{len(prompts)} prompts, 2 cases each per metric (each order's interval, the other order's value)", "",
             "| metric | respondents: holds | median half-width | item pairs: holds | median half-width "
             "| median abs. shift | mean shift ± sd |", "|---|---:|---:|---:|---:|---:|---:|"]
    for metric in METRICS:
        s = summary(prompts, metric)
        (r_held, r_half), (p_held, p_half) = s["respondents"], s["item pairs"]
        mean, sd = s["shift"]
        lines.append(f"| {metric} | {r_held:.2f} | {r_half:.1f} | {p_held:.2f} | {p_half:.1f} | "
                     f"{s['median |shift|']:.1f} | {mean:+.1f} ± {sd:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    code, prompts = read_folder(argv, __doc__, "vsm13_order", read)
    if prompts is not None:
        print(render(prompts))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
