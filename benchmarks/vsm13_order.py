"""Do the VSM13 intervals hold what the same prompt answers with the options listed the other way round?

    python -m benchmarks.vsm13_order <folder of benchmarks/vsm13_order.sh> [--aligned <folders> --data_dir <root>]

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

``--aligned``: the culture-align checkpoints the runs asked (each ``alignment.json`` under the folders). Per
objective and budget, each fitted prompt's rank and margin for its own target against the plain model's, with the
options listed (what the aligner reports), reversed, and balanced (each item's two orders averaged, as the
``vsm13_<country>_balanced`` tasks ask it: the indices are linear in the item means, so the balanced indices are
the mean of the two orders' indices), and the worse of the two single orders (the larger rank, the smaller
margin): does a fitted prompt's gain survive the order it was not fitted on?
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from culture_tasks import stats
from culture_tasks.leaderboard import LeaderboardError, find_result_files, load_runs
from culture_tasks.outputs import file_digest
from culture_tasks.survey import compare
from culture_tasks.survey.tasks import summarise_vsm13, vsm13_intervals, vsm13_pair_replicates
from culture_tasks.survey.vsm13 import DIMENSIONS, resolve_target

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


def _runs(folder: Path) -> list:
    runs = [run for run in load_runs(find_result_files([str(folder)])) if all(t in run.metrics for t in ORDERS)]
    if not runs:
        raise ValueError(f"{folder}: no run with both {' and '.join(ORDERS)} (see benchmarks/vsm13_order.sh)")
    return runs


def read(folder: Path, runs: list | None = None) -> list[dict[str, dict]]:
    """``prompt_cases`` of every prompt (run) in the folder (``runs``: its runs, already loaded)."""
    return [prompt_cases(tuple(_logged(run, t) for t in ORDERS)) for run in runs or _runs(folder)]


def order_indices(runs: list) -> dict[str | None, dict[str, dict[str, float]]]:
    """Per prompt (its adapter file's digest; None: the plain model) of ``runs``: the six indices listed,
    reversed and balanced (the mean of the two)."""
    out = {}
    for run in runs:
        listed, reversed_ = (summarise_vsm13(_logged(run, t)) for t in ORDERS)
        peft = run.model_args.get("peft")
        key = file_digest(Path(peft) / "adapter_model.safetensors") if peft else None
        out[key] = {"listed": {d: listed[d] for d in DIMENSIONS}, "reversed": {d: reversed_[d] for d in DIMENSIONS},
                    "balanced": {d: (listed[d] + reversed_[d]) / 2 for d in DIMENSIONS}}
    return out


ORDER_NAMES = ("listed", "reversed", "balanced")
# per prompt, the worse of the two single orders: the larger rank and the smaller margin (what --option-order
# worst minimises with the contrastive objective); a prompt gains here only where it gains in both orders
WORSE = "worse of listed and reversed"


def aligned_rows(indices: dict, roots: list[Path], data_dir: str | None) -> list[dict]:
    """Per fitted prompt under ``roots``: its objective, budget, target, and per order the prompt's and the plain
    model's rank and margin for that target (``compare.margin_and_rank``, as the tasks and the aligner rank it)."""
    reference = compare.hofstede_reference(data_dir)
    if None not in indices:
        raise ValueError("no run of the plain model (benchmarks/vsm13_order.sh asks it first)")
    rows = []
    for path in sorted(p for root in roots for p in root.rglob("alignment.json")):
        run = json.loads(path.read_text(encoding="utf-8"))
        digest = file_digest(path.parent / "adapter_model.safetensors")
        if digest not in indices:
            raise ValueError(f"{path.parent}: its prompt was not asked (run benchmarks/vsm13_order.sh on its folder)")
        settings = run["settings"]
        target = resolve_target(settings["country"], settings.get("target"), data_dir)
        searched = settings.get("option_order", "listed")  # a run from before the setting searched listed
        row = {"objective": run["objective"] + ("" if searched == "listed" else f", {searched} search"), "budget": f"{settings['population']} x {run['history'][-1]['generation']}",
               "target": target.code, "reported_margin": run["report"]["comparison"]["de"]["margin"]}
        for who, key in (("prompt", digest), ("plain", None)):
            for order in ORDER_NAMES:
                found = compare.margin_and_rank(indices[key][order], target, reference)
                row[who, order] = (float(found["rank"]), float(found["margin"]))
            (rank_l, margin_l), (rank_r, margin_r) = row[who, "listed"], row[who, "reversed"]
            row[who, WORSE] = (max(rank_l, rank_r), min(margin_l, margin_r))
        rows.append(row)
    return rows


def gain_interval(targets: list[str], gains: list[float]) -> tuple[float, float, float]:
    """The mean over targets of each target's mean margin gain (over its seeds), with its 95 % t-interval
    (t with targets - 1 degrees of freedom): a target's prompts share its reference profile, so the targets,
    not the prompts, are the independent units, and with 3-7 of them a bootstrap's percentile interval would
    be too narrow. NaN for fewer than two targets."""
    by_target: dict[str, list[float]] = defaultdict(list)
    for target, gain in zip(targets, gains):
        by_target[target].append(float(gain))
    return stats.t_interval([np.mean(v) for v in by_target.values()])


def render_aligned(rows: list[dict]) -> str:
    """Per objective and budget: mean rank and margin of the prompts and the plain model in each order, the mean
    margin gain over the plain model with its spread, the mean over targets with its interval (``gain_interval``;
    the number of targets in brackets), and how many prompts rank their target closer than the plain model does."""
    groups = defaultdict(list)
    for row in rows:
        groups[row["objective"], row["budget"]].append(row)
    lines = ["| objective | budget | prompts | order | rank: plain → prompt | margin: plain → prompt | "
             "margin gain (mean ± sd) | mean over targets [95 % t-interval] | closer than plain |",
             "|---|---|---:|---|---|---|---|---|---:|"]
    for (objective, budget), group in sorted(groups.items()):
        for order in (*ORDER_NAMES, WORSE):
            plain, prompt = (np.array([r[who, order] for r in group]) for who in ("plain", "prompt"))
            gain = prompt[:, 1] - plain[:, 1]
            sd = float(np.std(gain, ddof=1)) if len(gain) > 1 else 0.0
            targets = [r["target"] for r in group]
            centre, low, high = gain_interval(targets, list(gain))
            interval = "–" if np.isnan(low) else f"{centre:+.3f} [{low:+.3f}, {high:+.3f}] ({len(set(targets))})"
            closer = int(np.sum(prompt[:, 0] < plain[:, 0]))
            lines.append(f"| {objective} | {budget} | {len(group)} | {order} | {plain[:, 0].mean():.1f} → "
                         f"{prompt[:, 0].mean():.1f} | {plain[:, 1].mean():+.3f} → {prompt[:, 1].mean():+.3f} | "
                         f"{gain.mean():+.3f} ± {sd:.3f} | {interval} | {closer} of {len(group)} |")
    return "\n".join(lines)


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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="the OUT folder of benchmarks/vsm13_order.sh")
    parser.add_argument("--aligned", type=Path, nargs="+", default=[],
                        help="folders with the culture-align checkpoints the runs asked")
    parser.add_argument("--data_dir", default=None, help="data root (default: $CULTURE_DATA_DIR)")
    args = parser.parse_args(argv)
    try:
        runs = _runs(args.folder)
        print(render(read(args.folder, runs)))
        if args.aligned:
            print()
            print(render_aligned(aligned_rows(order_indices(runs), args.aligned, args.data_dir)))
    except (LeaderboardError, OSError, ValueError) as err:
        print(f"vsm13_order: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
