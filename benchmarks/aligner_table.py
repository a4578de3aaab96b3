"""The soft-prompt paper's comparison from alignment.json files: country x {plain, persona, soft prompt}
VSM13 L1 (mean ± std over seeds), the reversed-option check and the WVS held-out check; then, where
the runs recorded it, the country-specific comparison: the target's rank among all Hofstede
countries (1 = closest) and the margin, for the plain model, the persona prompt and the soft prompt.
Rows are split by optimiser and objective when the runs used more than one. Last, per objective and
seed, the summary over the targets with six dimensions: mean reciprocal rank of the soft prompt (and
of the plain model and the persona prompt), mean margin, and how many targets the soft prompt ranks
closer than the plain model does; its mean ± std over seeds is what the choice of objective rests on.
Runs that differ in another setting than target, seed, optimiser and objective (another model or budget),
or one run passed twice, are refused rather than pooled.

    python benchmarks/aligner_table.py runs/seed*/*/alignment.json
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from culture_tasks.survey.instruments import BEFORE_OPTION_ORDER


def _fmt(values: list[float], digits: int = 1) -> str:
    if not values:
        return "–"
    if len(values) == 1:  # one seed: no spread to show
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


# settings that may differ between the runs of one table: what a row or a seed is (target, seed; optimiser and
# objective split the rows) and what does not change the search (where the files were, the batch size); not
# baselines: a seed without them would leave its row's reversed-option, WVS and rank cells to the other seeds
MAY_DIFFER = ("country", "target", "seed", "objective", "optimizer", "output", "data_dir", "device", "batch_size",
              "shared_stems")


# settings culture-align added later, with the value every run made before them had
EARLIER = BEFORE_OPTION_ORDER


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
            row[f"rank_{kind}"].append(comp["rank"])
            row[f"margin_{kind}"].append(comp["margin"])
            row["countries"] = [comp["countries"]]
            row["dims"] = [len(comp["dims"])]
        row["soft"].append(r["vsm13_l1"][opt])
        for k in ("plain", "persona"):
            if k in r["vsm13_l1"]:
                row[k].append(r["vsm13_l1"][k])
        if "vsm13_l1_reversed" in r:
            row["rev_plain"].append(r["vsm13_l1_reversed"]["plain"])
            row["rev_soft"].append(r["vsm13_l1_reversed"][opt])
        if "wvs" in r:
            row["wvs_plain"].append(r["wvs"]["plain"]["wvs_jsd"])
            row["wvs_opt"].append(r["wvs"][opt]["wvs_jsd"])
        row["seeds"].append(s["settings"]["seed"])
    print("| country | seeds | plain | persona | soft prompt | reversed: plain | reversed: soft prompt | WVS 1−JSD plain | WVS 1−JSD soft prompt |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c, r in rows.items():
        print(f"| {c} | {len(r['seeds'])} | {_fmt(r['plain'])} | {_fmt(r['persona'])} | {_fmt(r['soft'])} | "
              f"{_fmt(r['rev_plain'])} | {_fmt(r['rev_soft'])} | "
              f"{_fmt(r['wvs_plain'], 3)} | {_fmt(r['wvs_opt'], 3)} |")

    if any(r["rank_soft"] for r in rows.values()):
        print()
        print("| target | dims | countries | rank plain | rank persona | rank soft prompt | margin plain | "
              "margin persona | margin soft prompt |")
        print("|---|---|---|---|---|---|---|---|---|")
        for c, r in rows.items():
            if r["rank_soft"]:
                print(f"| {c} | {r['dims'][0]} | {r['countries'][0]} | {_fmt(r['rank_plain'], 0)} | "
                      f"{_fmt(r['rank_persona'], 0)} | {_fmt(r['rank_soft'], 0)} | {_fmt(r['margin_plain'], 3)} | "
                      f"{_fmt(r['margin_persona'], 3)} | {_fmt(r['margin_soft'], 3)} |")
    print_seed_summary(runs)


def seed_summary(runs: list[dict]) -> dict[tuple[str, int], dict[str, float]]:
    """(objective, seed) -> MRR of soft prompt / plain / persona, mean margin, targets improved, over six-dimension
    targets, and the targets' names (seeds are pooled only over the same targets)."""
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for s in runs:
        comparison = s["report"].get("comparison", {})
        opt = s["settings"]["optimizer"]
        if opt in comparison and len(comparison[opt]["dims"]) == 6:
            groups[(s.get("objective", "l1"), s["settings"]["seed"])].append({**comparison, "_target": s["target"]["country"]})
    out = {}
    for key, comps in sorted(groups.items()):
        opt = next(k for k in comps[0] if k not in ("plain", "persona", "_target"))
        out[key] = {
            "targets": len(comps),
            "names": tuple(sorted(c["_target"] for c in comps)),
            "mrr": statistics.mean(c[opt]["reciprocal_rank"] for c in comps),
            "mrr_plain": statistics.mean(c["plain"]["reciprocal_rank"] for c in comps),
            "mrr_persona": statistics.mean(c["persona"]["reciprocal_rank"] for c in comps) if all("persona" in c for c in comps) else float("nan"),
            "margin": statistics.mean(c[opt]["margin"] for c in comps),
            "improved": sum(c[opt]["rank"] < c["plain"]["rank"] for c in comps),
        }
    return out


def print_seed_summary(runs: list[dict]) -> None:
    summary = seed_summary(runs)
    if not summary:
        return
    print()
    print("| objective | seed | targets | MRR soft prompt | MRR plain | MRR persona | mean margin soft prompt | "
          "targets ranked closer than plain |")
    print("|---|---|---|---|---|---|---|---|")
    for (objective, seed), r in summary.items():
        print(f"| {objective} | {seed} | {r['targets']} | {r['mrr']:.3f} | {r['mrr_plain']:.3f} | {r['mrr_persona']:.3f} | "
              f"{r['margin']:.3f} | {r['improved']} of {r['targets']} |")
    for objective in sorted({o for o, _ in summary}):
        rows = [r for (o, _), r in summary.items() if o == objective]
        if len({r["names"] for r in rows}) > 1:  # a mean over seeds of different targets mixes targets with seeds
            print(f"| {objective} | all ({len(rows)}) | | not pooled: the seeds cover different targets | | | | |")
            continue
        print(f"| {objective} | all ({len(rows)}) | | {_fmt([r['mrr'] for r in rows], 3)} | {rows[0]['mrr_plain']:.3f} | "
              f"{rows[0]['mrr_persona']:.3f} | {_fmt([r['margin'] for r in rows], 3)} | "
              f"{_fmt([float(r['improved']) for r in rows], 1)} |")


if __name__ == "__main__":
    main(sys.argv[1:])
