"""The soft-prompt paper's comparison from alignment.json files: country x {plain, persona, DE}
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
    rows = defaultdict(lambda: defaultdict(list))
    for p in paths:
        s = json.loads(Path(p).read_text())
        r, c = s["report"], s["target"]["country"]
        opt = s["settings"]["optimizer"]
        for k, v in r["vsm13_l1"].items():
            rows[c][k].append(v)
        for k, v in r.get("vsm13_l1_reversed", {}).items():
            rows[c][f"rev_{k}"].append(v)
        if "wvs" in r:
            rows[c]["wvs_plain"].append(r["wvs"]["plain"]["wvs_jsd"])
            rows[c]["wvs_opt"].append(r["wvs"][opt]["wvs_jsd"])
        rows[c]["seeds"].append(s["settings"]["seed"])
    print("| country | seeds | plain | persona | soft prompt | reversed: plain | reversed: soft prompt | WVS 1−JSD plain | WVS 1−JSD soft prompt |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c, r in rows.items():
        opt = "de" if r.get("de") else "cma"
        print(f"| {c} | {len(r['seeds'])} | {_fmt(r['plain'])} | {_fmt(r['persona'])} | {_fmt(r[opt])} | "
              f"{_fmt(r['rev_plain'])} | {_fmt(r['rev_' + opt])} | "
              + (f"{statistics.mean(r['wvs_plain']):.3f} | {statistics.mean(r['wvs_opt']):.3f} |" if r['wvs_plain'] else "– | – |"))


if __name__ == "__main__":
    main(sys.argv[1:])
