"""Leaderboard tables from lm-eval result files: one row per model + adapter.

    culture-leaderboard results/ other/results_2026.json --format html --output leaderboard.html

CultureLLM scores are per-culture means of the tasks' macro-F1 (as the paper averages per
culture) and the mean over all tasks; survey metrics (WVS, VSM13) get tables of their own.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from culture_tasks.atomic import write_text_atomic

SUITES = {"culturellm": "CultureLLM (multiple choice), macro-F1", "culturellm_gen": "CultureLLM (generative), macro-F1"}


SURVEY_HEADLINE = {"wvs": ("wvs_jsd", "wvs_w1", "wvs_majority"), "vsm13": ("vsm13_l1", "vsm13_mae")}


class NotAResultFile(ValueError):
    """A file that is not an lm-eval results JSON."""


@dataclass
class Run:
    """One model + adapter, merged over all result files that name it."""

    name: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> metric -> value
    higher_is_better: dict[str, dict[str, bool]] = field(default_factory=dict)


@dataclass
class Column:
    key: str
    label: str
    higher_is_better: bool = True


@dataclass
class Table:
    title: str
    columns: list[Column]
    rows: list[tuple[str, list[float | None]]]

    def best(self) -> list[float | None]:
        out = []
        for j, col in enumerate(self.columns):
            values = [r[1][j] for r in self.rows if r[1][j] is not None]
            out.append(None if not values else (max(values) if col.higher_is_better else min(values)))
        return out


def find_result_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.rglob("results_*.json"))
            if not found:
                raise NotAResultFile(f"{p}: no lm-eval result file (results_*.json) in this folder")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return files


def run_name(config: dict) -> str:
    args = config.get("model_args") or {}
    if isinstance(args, str):
        args = dict(kv.split("=", 1) for kv in args.split(",") if "=" in kv)
    model = str(args.get("pretrained") or config.get("model") or "?")
    name = Path(model.rstrip("/")).name or model
    if args.get("peft"):
        name += " + " + (Path(str(args["peft"]).rstrip("/")).name or str(args["peft"]))
    return name


def load_runs(files: list[Path]) -> list[Run]:
    runs: dict[str, Run] = {}
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise NotAResultFile(f"{path}: not an lm-eval result file ({err})") from err
        if not isinstance(data, dict) or not isinstance(data.get("results"), dict) or "config" not in data:
            raise NotAResultFile(
                f"{path}: not an lm-eval result file (expected the `results` and `config` fields that "
                "`lm_eval --output_path` writes to results_*.json)"
            )
        name = run_name(data["config"]) + (" (chat)" if data.get("chat_template") else "")
        run = runs.setdefault(name, Run(name))
        for task, values in data["results"].items():
            metrics = {}
            for key, value in values.items():
                metric, _, filt = key.partition(",")
                if filt and "_stderr" not in metric and isinstance(value, (int, float)) and math.isfinite(value):
                    metrics[metric] = float(value)
            run.metrics.setdefault(task, {}).update(metrics)
        for task, hib in (data.get("higher_is_better") or {}).items():
            run.higher_is_better.setdefault(task, {}).update(hib)
    return list(runs.values())


def _suite_tasks(run: Run, suite: str) -> dict[str, dict[str, float]]:
    """Leaf tasks of a suite: culturellm_<culture>_<name> (groups are recomputed, not read)."""
    prefix = suite + "_"
    others = [s + "_" for s in SUITES if s != suite and s.startswith(prefix)]
    return {
        t: m for t, m in run.metrics.items()
        if t.startswith(prefix) and not any(t.startswith(o) for o in others) and t.count("_") > suite.count("_") + 1
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def suite_table(runs: list[Run], suite: str) -> Table | None:
    per_run = {}
    cultures: set[str] = set()
    for run in runs:
        by_culture: dict[str, list[float]] = defaultdict(list)
        fails = []
        for task, metrics in _suite_tasks(run, suite).items():
            if "f1_macro" in metrics:
                by_culture[task[len(suite) + 1:].split("_", 1)[0]].append(metrics["f1_macro"])
            if "parse_fail_rate" in metrics:
                fails.append(metrics["parse_fail_rate"])
        if by_culture:
            per_run[run.name] = (by_culture, fails)
            cultures |= set(by_culture)
    if not per_run:
        return None
    ordered = sorted(cultures)
    columns = [Column(c, c) for c in ordered] + [Column("overall", "overall"), Column("tasks", "tasks")]
    with_fails = any(f for _, f in per_run.values())
    if with_fails:
        columns.append(Column("parse_fail_rate", "parse fail rate", higher_is_better=False))
    rows = []
    for name, (by_culture, fails) in per_run.items():
        all_scores = [v for c in ordered for v in by_culture.get(c, [])]
        values = [_mean(by_culture.get(c, [])) for c in ordered] + [_mean(all_scores), float(len(all_scores))]
        if with_fails:
            values.append(_mean(fails))
        rows.append((name, values))
    rows.sort(key=lambda r: -(r[1][len(ordered)] or 0.0))
    return Table(SUITES[suite], columns, rows)


def survey_tables(runs: list[Run]) -> list[Table]:
    """Non-CultureLLM tasks: one table per instrument (the task name's first word) and metric,
    one column per task; per-topic breakdowns stay in the result files."""
    columns: dict[tuple[str, str], dict[str, bool]] = defaultdict(dict)
    for run in runs:
        for task, metrics in run.metrics.items():
            if task.startswith("culturellm"):
                continue
            family = task.split("_", 1)[0]
            for metric in metrics:
                if metric in SURVEY_HEADLINE.get(family, (metric,)):
                    columns[(family, metric)][task] = bool(run.higher_is_better.get(task, {}).get(metric, True))
    tables = []
    for (family, metric), tasks in sorted(columns.items()):
        names = sorted(tasks)
        hib = tasks[names[0]]
        cols = [Column(t, t, hib) for t in names]
        rows = [(run.name, [run.metrics.get(t, {}).get(metric) for t in names]) for run in runs]
        rows = [r for r in rows if any(v is not None for v in r[1])]
        rows.sort(key=lambda r: (r[1][0] is None, -(r[1][0] or 0) if hib else (r[1][0] or 0)))
        tables.append(Table(f"{family}: {metric}" + (" (higher is better)" if hib else " (↓ lower is better)"), cols, rows))
    return tables


def build_tables(runs: list[Run]) -> list[Table]:
    tables = [t for s in SUITES if (t := suite_table(runs, s)) is not None]
    return tables + survey_tables(runs)


def _fmt(value: float | None, column: Column) -> str:
    if value is None:
        return "–"
    return str(int(value)) if column.key == "tasks" else f"{value:.4f}"


def to_markdown(tables: list[Table]) -> str:
    out = []
    for table in tables:
        best = table.best()
        out.append(f"### {table.title}\n")
        out.append("| model | " + " | ".join(c.label for c in table.columns) + " |")
        out.append("|---|" + "---:|" * len(table.columns))
        for name, values in table.rows:
            cells = []
            for value, col, b in zip(values, table.columns, best):
                text = _fmt(value, col)
                marked = value is not None and col.key != "tasks" and len(table.rows) > 1 and value == b
                cells.append(f"**{text}**" if marked else text)
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def to_html(tables: list[Table]) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True
    )
    view = []
    for table in tables:
        best = table.best()
        rows = [
            (name, [
                (_fmt(v, c), v is not None and c.key != "tasks" and len(table.rows) > 1 and v == b)
                for v, c, b in zip(values, table.columns, best)
            ])
            for name, values in table.rows
        ]
        view.append({"title": table.title, "columns": table.columns, "rows": rows})
    return env.get_template("leaderboard.html.j2").render(tables=view)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="culture-leaderboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="lm-eval result files or folders (searched for results_*.json)")
    parser.add_argument("--format", choices=["markdown", "html"], default="markdown")
    parser.add_argument("--output", help="write here instead of standard output")
    args = parser.parse_args(argv)
    try:
        tables = build_tables(load_runs(find_result_files(args.paths)))
    except (NotAResultFile, FileNotFoundError) as err:
        print(f"culture-leaderboard: {err}", file=sys.stderr)
        return 2
    if not tables:
        print("culture-leaderboard: the result files hold no CultureLLM or survey metrics", file=sys.stderr)
        return 2
    text = to_html(tables) if args.format == "html" else to_markdown(tables)
    if args.output:
        write_text_atomic(Path(args.output), text)
        if args.format == "html":
            print(to_markdown(tables))
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
