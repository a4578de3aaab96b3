"""The soft-prompt paper's comparison from alignment.json files: country x {plain, persona, soft prompt}
VSM13 L1, the reversed-option check and the WVS held-out check; then, where
the runs recorded it, the country-specific comparison: the target's rank among all Hofstede
countries (1 = closest) and the margin, for the plain model, the persona prompt and the soft prompt.
Rows are split by optimiser and objective when the runs used more than one. Last, per objective and
seed, the summary over the targets with six dimensions: mean reciprocal rank of the soft prompt (and
of the plain model and the persona prompt), mean margin, and how many targets the soft prompt ranks
closer than the plain model does, each MRR and the mean margin with its item-pair interval where the runs
recorded their prompts' item means; its mean over seeds is what the choice of objective rests on. How a cell
reads: ``CELLS``.
Runs that differ in another setting than target, seed, optimiser and objective (another model or budget), in
what alignment.json's ``inputs`` and ``dtype_loaded`` record they were computed from (the model's content, the
dtype its weights were loaded in, the VSM13 items and the Hofstede file; not where the data lay), or one run
passed twice, are refused rather than pooled.

    python benchmarks/aligner_table.py runs/seed*/*/alignment.json
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from culture_tasks import stats
from culture_tasks.data_root import data_file
from culture_tasks.fingerprints import scheme_of
from culture_tasks.outputs import file_digest
from culture_tasks.stats import t_interval
from culture_tasks.survey.compare import Reference, hofstede_reference, margin_and_rank, replicate_indices
from culture_tasks.survey.instruments import BEFORE_OPTION_ORDER
from culture_tasks.survey.vsm13 import HOFSTEDE_FILE, Target


SAME = 1e-4  # baselines scored at different seeds, by scorers that agree to float rounding, differ by up to ~3e-5
CELLS = ("Cells: a value every seed gave alike (the baselines; a single seed) with the interval its run recorded "
         "(item pairs for VSM13, questions for WVS; none for runs made before intervals); values that differ "
         "between seeds as mean ± sd [95 % t-interval over the seeds], which covers the spread between searches "
         "only.")


def _fmt(values: list[float], digits: int = 1, recorded: list | None = None,
         bounds: tuple[float, float] = (-math.inf, math.inf), rank: bool = False) -> str:
    """One value when every seed gave it (a baseline, or one seed), with the item-pair / question interval its run
    recorded, if any; else mean ± sd over the seeds and the 95 % t-interval over them (their spread only), cut to
    the metric's ``bounds`` (a rank lies in 1..countries). A ``rank``'s interval is shown in whole ranks, rounded
    outward (``stats.rank_interval_text``)."""
    if not values or any(math.isnan(v) for v in values):  # none, or undefined (no persona prompt)
        return "–"
    interval = stats.rank_interval_text if rank else lambda low, high: f"[{low:.{digits}f}, {high:.{digits}f}]"
    if max(values) - min(values) <= SAME * max(1.0, abs(values[0])):
        cis = {tuple(ci) if ci else None for ci in recorded or [None]}
        ci = cis.pop() if len(cis) == 1 else None  # seeds that recorded other intervals (or none): none shown
        return f"{values[0]:.{digits}f}" + (f" {interval(*ci)}" if ci else "")
    centre, low, high = t_interval(values, bounds=bounds)
    return f"{centre:.{digits}f} ± {statistics.stdev(values):.{digits}f} {interval(low, high)}"


def _ci(found) -> list | None:
    """A recorded [low, high], None where the run recorded none (runs made before intervals)."""
    return list(found) if isinstance(found, (list, tuple)) and len(found) == 2 else None


# settings that may differ between the runs of one table: what a row or a seed is (target, seed; optimiser and
# objective split the rows) and what does not change the search (where the files were, the batch size); not
# baselines: a seed without them would leave its row's reversed-option, WVS and rank cells to the other seeds
MAY_DIFFER = ("country", "target", "seed", "objective", "optimizer", "output", "data_dir", "device", "batch_size",
              "shared_stems")


# settings culture-align added later, with the value every run made before them had
EARLIER = BEFORE_OPTION_ORDER
# what alignment.json's ``inputs`` records a run's numbers were computed from, by content (not ``data_dir``: where the
# files lay; their digests say whether they are the same)
INPUT_KEYS = ("model_fingerprint", "vsm13_items", "hofstede_reference")


def check_poolable(runs: list[dict], paths: list[str]) -> None:
    """Runs of other settings (another model, population, generations, ...) or the same run twice would be
    pooled into one row's mean ± std and one seed's MRR: refused, naming the files and the setting."""
    seen: dict[tuple, str] = {}
    first = {**EARLIER, **runs[0]["settings"]}
    for run, path in zip(runs, paths):
        s = {**EARLIER, **run["settings"]}
        key = (s["optimizer"], run.get("objective", "l1"), run["target"]["country"], s["seed"])
        if key in seen:
            raise SystemExit(f"aligner_table: {seen[key]} and {path} are both {key[2]}, {key[1]} ({key[0]}), seed "
                             f"{key[3]}; pass each run once")
        seen[key] = path
        for name in sorted((set(s) & set(first)) - set(MAY_DIFFER)):
            if s[name] != first[name]:
                raise SystemExit(f"aligner_table: {paths[0]} was made with {name} {first[name]!r}, {path} with "
                                 f"{s[name]!r}; one table pools runs that differ only in target, seed, optimiser "
                                 "and objective")
    check_inputs(runs, paths)


def recorded_inputs(run: dict) -> dict:
    """The content a run was computed from (``inputs``: ``INPUT_KEYS``) and the dtype its weights were loaded in
    (``dtype_loaded``; ``settings.dtype`` may be auto), as far as its alignment.json records them."""
    inputs = run.get("inputs") or {}
    found = {k: inputs[k] for k in INPUT_KEYS if k in inputs}
    return {**found, **({"dtype_loaded": run["dtype_loaded"]} if "dtype_loaded" in run else {})}


def check_inputs(runs: list[dict], paths: list[str]) -> None:
    """Runs whose model content, loaded dtype, VSM13 items or Hofstede file differ (the same settings can name
    another model folder's content or another data root's files) would be pooled as seeds of one search: refused,
    naming the key and both files. Keys a run does not record (made before them) are not compared."""
    first = recorded_inputs(runs[0])
    for run, path in zip(runs[1:], paths[1:]):
        mine = recorded_inputs(run)
        for name in sorted(set(mine) & set(first)):
            if mine[name] != first[name]:
                schemes = {scheme_of(first[name]), scheme_of(mine[name])} if name == "model_fingerprint" else set()
                why = (" (fingerprints of two schemes: whether the model is the same cannot be told; rerun the older "
                       "one)" if len(schemes) > 1 else "")
                raise SystemExit(f"aligner_table: {paths[0]} was computed from {name} {first[name]!r}, {path} from "
                                 f"{mine[name]!r}{why}; one table pools runs of one model, dtype and data")


def main(paths: list[str]) -> None:
    """Rows by country, and by optimiser too when the runs used more than one."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    check_poolable(runs, paths)
    several = len({s["settings"]["optimizer"] for s in runs}) > 1
    objectives = len({s.get("objective", "l1") for s in runs}) > 1
    rows = defaultdict(lambda: defaultdict(list))
    for s in runs:
        r, c, opt = s["report"], s["target"]["country"], s["settings"]["optimizer"]
        label = f"{c} ({opt})" if several else c
        row = rows[f"{label}, {s.get('objective', 'l1')}" if objectives else label]
        for k, comp in r.get("comparison", {}).items():
            kind = "soft" if k == opt else k
            for metric in ("rank", "margin"):
                row[f"{metric}_{kind}"].append(comp[metric])
                row[f"{metric}_{kind}_ci"].append(_ci(comp.get(f"{metric}_ci")))
            row["countries"] = [comp["countries"]]
            row["dims"] = [len(comp["dims"])]
        for k, kind in ((opt, "soft"), ("plain", "plain"), ("persona", "persona")):
            if k in r["vsm13_l1"]:
                row[kind].append(r["vsm13_l1"][k])
                row[f"{kind}_ci"].append(_ci(r.get("vsm13_l1_ci", {}).get(k)))
        if "vsm13_l1_reversed" in r:
            for k, kind in (("plain", "rev_plain"), (opt, "rev_soft")):
                row[kind].append(r["vsm13_l1_reversed"][k])
                row[f"{kind}_ci"].append(_ci(r.get("vsm13_l1_reversed_ci", {}).get(k)))
        if "wvs" in r:
            for k, kind in (("plain", "wvs_plain"), (opt, "wvs_opt")):
                row[kind].append(r["wvs"][k]["wvs_jsd"])
                row[f"{kind}_ci"].append(_ci(r["wvs"][k].get("wvs_jsd_ci")))
        row["seeds"].append(s["settings"]["seed"])
    print(CELLS)
    print()
    print("| country | seeds | plain | persona | soft prompt | reversed: plain | reversed: soft prompt | WVS 1−JSD plain | WVS 1−JSD soft prompt |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c, r in rows.items():
        cell = lambda key, digits=1: _fmt(r[key], digits, r[f"{key}_ci"])  # noqa: E731
        print(f"| {c} | {len(r['seeds'])} | {cell('plain')} | {cell('persona')} | {cell('soft')} | "
              f"{cell('rev_plain')} | {cell('rev_soft')} | {cell('wvs_plain', 3)} | {cell('wvs_opt', 3)} |")

    if any(r["rank_soft"] for r in rows.values()):
        print()
        print("| target | dims | countries | rank plain | rank persona | rank soft prompt | margin plain | "
              "margin persona | margin soft prompt |")
        print("|---|---|---|---|---|---|---|---|---|")
        for c, r in rows.items():
            if r["rank_soft"]:
                rank = lambda key: _fmt(r[key], 0, r[f"{key}_ci"], (1, r["countries"][0]), rank=True)  # noqa: E731
                margin = lambda key: _fmt(r[key], 3, r[f"{key}_ci"])  # noqa: E731
                print(f"| {c} | {r['dims'][0]} | {r['countries'][0]} | {rank('rank_plain')} | "
                      f"{rank('rank_persona')} | {rank('rank_soft')} | {margin('margin_plain')} | "
                      f"{margin('margin_persona')} | {margin('margin_soft')} |")
    print_seed_summary(runs)


def seed_summary(runs: list[dict], reference: Reference | None = None) -> dict[tuple[str, int], dict[str, float]]:
    """(objective, seed) -> MRR of soft prompt / plain / persona, mean margin, targets improved, over six-dimension
    targets, and the targets' names (seeds are pooled only over the same targets); with ``reference`` (Hofstede's
    file the runs were compared with), the MRRs' and the mean margin's item-pair intervals where every run of the
    seed recorded its prompts' item means (``summary_intervals``)."""
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for s in runs:
        comparison = s["report"].get("comparison", {})
        opt = s["settings"]["optimizer"]
        if opt in comparison and len(comparison[opt]["dims"]) == 6:
            groups[(s.get("objective", "l1"), s["settings"]["seed"])].append(s)
    out = {}
    for key, group in sorted(groups.items()):
        opt = group[0]["settings"]["optimizer"]
        comps = [{**s["report"]["comparison"], "_target": s["target"]["country"]} for s in group]
        out[key] = {
            "targets": len(comps),
            "names": tuple(sorted(c["_target"] for c in comps)),
            "mrr": statistics.mean(c[opt]["reciprocal_rank"] for c in comps),
            "mrr_plain": statistics.mean(c["plain"]["reciprocal_rank"] for c in comps),
            "mrr_persona": statistics.mean(c["persona"]["reciprocal_rank"] for c in comps) if all("persona" in c for c in comps) else float("nan"),
            "margin": statistics.mean(c[opt]["margin"] for c in comps),
            "improved": sum(c[opt]["rank"] < c["plain"]["rank"] for c in comps),
        }
        if reference is not None:
            out[key].update(summary_intervals(group, reference))
    return out


# the per-seed cells summary_intervals gives an interval, and the prompt each one resamples ("soft": the optimiser's)
SUMMARY_CELLS = (("mrr", "soft", "reciprocal_rank"), ("mrr_plain", "plain", "reciprocal_rank"),
                 ("mrr_persona", "persona", "reciprocal_rank"), ("margin", "soft", "margin"))


def summary_intervals(group: list[dict], reference: Reference) -> dict[str, list[float]]:
    """The 95 % item-pair intervals of a seed's MRRs and mean margin: each run's recorded item means resampled
    as its own intervals are (``replicate_indices``; one seed, so resample i draws the same item pairs in every
    run), the target's rank and margin found in each resample and averaged over the targets. None of them
    where a run of the seed recorded no item means (made before they were recorded)."""
    out = {}
    for cell, kind, metric in SUMMARY_CELLS:
        per_run = [_resampled(s, kind, reference) for s in group]
        if any(found is None for found in per_run):
            continue
        values = np.mean([1.0 / f["rank"] if metric == "reciprocal_rank" else f["margin"] for f in per_run], axis=0)
        out[f"{cell}_ci"] = list(stats.percentile_interval(values))
    return out


def _resampled(run: dict, kind: str, reference: Reference) -> dict | None:
    """The target's rank and margin in each item-pair resample of one prompt's item means (``kind``: plain,
    persona or soft); None where the run recorded none."""
    prompt = run["settings"]["optimizer"] if kind == "soft" else kind
    means = run["report"].get("item_means", {}).get(prompt)
    if means is None:
        return None
    code = run["report"]["comparison"][prompt]["target"]
    target = Target(run["target"]["country"], code, run["target"]["scores"])  # a supplied profile, as the run used
    return margin_and_rank(replicate_indices({int(i): v for i, v in means.items()}), target, reference)


def recorded_reference(runs: list[dict]) -> Reference | None:
    """Hofstede's file the runs compared their targets with (their recorded data root, else the default one),
    checked against the digest they recorded; None when no run recorded item means (nothing to resample)."""
    if not any("item_means" in s["report"] for s in runs):
        return None
    data_dir = runs[0]["settings"].get("data_dir")
    data_dir = data_dir if data_dir and Path(data_dir).is_dir() else None
    path = data_file(HOFSTEDE_FILE, data_dir)
    recorded = (runs[0].get("inputs") or {}).get("hofstede_reference")
    if recorded and scheme_of(recorded) == "sha256" and file_digest(path) != recorded:
        raise SystemExit(f"aligner_table: {path} is not the Hofstede file the runs were compared with ({recorded}); "
                         "set CULTURE_DATA_DIR to the data root they used")
    return hofstede_reference(data_dir)


def print_seed_summary(runs: list[dict]) -> None:
    summary = seed_summary(runs, recorded_reference(runs))
    if not summary:
        return
    print()
    print("| objective | seed | targets | MRR soft prompt | MRR plain | MRR persona | mean margin soft prompt | "
          "targets ranked closer than plain |")
    print("|---|---|---|---|---|---|---|---|")
    for (objective, seed), r in summary.items():
        cell = lambda key: _fmt([r[key]], 3, [r.get(f"{key}_ci")])  # noqa: E731
        print(f"| {objective} | {seed} | {r['targets']} | {cell('mrr')} | {cell('mrr_plain')} | {cell('mrr_persona')} | "
              f"{cell('margin')} | {r['improved']} of {r['targets']} |")
    for objective in sorted({o for o, _ in summary}):
        rows = [r for (o, _), r in summary.items() if o == objective]
        if len({r["names"] for r in rows}) > 1:  # a mean over seeds of different targets mixes targets with seeds
            print(f"| {objective} | all ({len(rows)}) | | not pooled: the seeds cover different targets | | | | |")
            continue
        baseline = lambda key: _fmt([r[key] for r in rows], 3, [r.get(f"{key}_ci") for r in rows])  # noqa: E731
        print(f"| {objective} | all ({len(rows)}) | | {_fmt([r['mrr'] for r in rows], 3, bounds=(0, 1))} | "
              f"{baseline('mrr_plain')} | {baseline('mrr_persona')} | {_fmt([r['margin'] for r in rows], 3)} | "
              f"{_fmt([float(r['improved']) for r in rows], 1, bounds=(0, rows[0]['targets']))} |")
    if any(f"{key}_ci" not in r for r in summary.values() for key, _, _ in SUMMARY_CELLS):
        print()  # under the table: a line between its rows would end it, leaving the rows after it headless
        print(NO_SEED_INTERVAL)


NO_SEED_INTERVAL = ("A seed's MRR or mean margin without an interval: one of its runs recorded no item means (runs "
                    "made before alignment.json kept them), so the item pairs cannot be resampled across its targets.")


if __name__ == "__main__":
    main(sys.argv[1:])
