"""A data root with three WVS questions and one synthetic country file, answers chosen by hand."""

from __future__ import annotations

import json
from pathlib import Path

SCALE4 = "1. Strongly agree 2. agree 3. Disagree 4. Strongly disagree"
QUESTIONS = [
    {"topic": "SOCIAL VALUES", "q_id": "27", "q_content": "Making my parents proud is a main goal", "option": SCALE4},
    {"topic": "SOCIAL VALUES", "q_id": "28", "q_content": "When a mother works for pay, the children suffer",
     "option": SCALE4},
    {"topic": "SOCIAL VALUES", "q_id": "29", "q_content": "Men make better political leaders", "option": SCALE4},
]
# Q27: valid 1,1,2,4,4,4 -> majority 4 (D); mean 16/6 = 2.67 -> 3 (C). The three -2 would win if counted.
# Q28: valid 2,2,3,3 -> tie, majority takes the lower code 2 (B); mean 2.5 -> rounds up to 3 (C).
# Q29: nobody answered (all negative) -> no label, its examples are skipped and counted.
ROWS = [(1, 2, -1), (1, 2, -2), (2, 3, -1), (4, 3, -5), (4, -1, -1), (4, -2, -1), (-1, -1, -1), (-2, -1, -1),
        (-2, -1, -1)]


def write_data_root(root: Path, csv_name: str = "English/United States.csv", rows=ROWS) -> Path:
    base = Path(root) / "culturellm"
    base.mkdir(parents=True, exist_ok=True)
    (base / "WVQ.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS), encoding="utf-8")
    csv = base / csv_name
    csv.parent.mkdir(parents=True, exist_ok=True)
    lines = ["B_COUNTRY,B_COUNTRY_ALPHA,Q27,Q28,Q29"] + [f"840,USA,{a},{b},{c}" for a, b, c in rows]
    lines += ["Avg,,1.0,1.0,1.0", "Avg_First,,1.0,1.0,1.0", "Avg_Last,,1.0,1.0,1.0"]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(root)
