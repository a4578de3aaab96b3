"""The soft-prompt paper's comparison from alignment.json files: country x {plain, persona, soft prompt}
VSM13 L1 (mean ± std over seeds), the reversed-option check and the WVS held-out check.

    python benchmarks/aligner_table.py runs/seed*/*/alignment.json
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def _fmt(values: list[float]) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {sd:.1f}"


def main(paths: list[str]) -> None:
    """Rows by country, and by optimiser too when the runs used more than one."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    several = len({s["settings"]["optimizer"] for s in runs}) > 1
    rows = defaultdict(lambda: defaultdict(list))
    for s in runs:
        r, c, opt = s["report"], s["target"]["country"], s["settings"]["optimizer"]
        row = rows[f"{c} ({opt})" if several else c]
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
              + (f"{statistics.mean(r['wvs_plain']):.3f} | {statistics.mean(r['wvs_opt']):.3f} |" if r['wvs_plain'] else "– | – |"))


if __name__ == "__main__":
    main(sys.argv[1:])
