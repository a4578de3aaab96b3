"""Base vs fine-tuned per culture from a `train_real_run` folder, as a markdown table.

    python -m benchmarks.train_table runs/smollm2     # docs/train_smollm2.md's table: the folder docs/train_smollm2

macro-F1 is the unweighted mean of the culture's CultureLLM tasks; WVS 1-JSD and majority
agreement are means over the culture's countries, on the plain ``wvs_<country>`` tasks for the
base and the per-culture models and on ``wvs_<country>_persona`` (the tag CultureLLM-One is
trained with) for CultureLLM-One and the base's persona row. Fine-tuned cells are mean ± sample
standard deviation over seeds, then the 95 % t-interval of that mean (seeds - 1 degrees of freedom: it
covers the spread between training seeds, not the sampling of documents, which `culture-leaderboard` and
`culture-train kfold` give), cut to the metric's range 0-100; a single run, or seeds that all gave one value, shows
it with the interval its result file records for a one-country culture's WVS cells (none for files written before
the tasks reported intervals); seeds of one row that scored other tasks are refused. A single run's
macro-F1 has the interval ``culture-leaderboard`` gives it (a one-task culture's recorded
``f1_macro_ci_low`` / ``_high``, else the bootstrap over the per-sample logs ``train_real_run`` keeps), and
each adapter's macro-F1 minus the base's has the leaderboard's paired interval and p-value over the
documents both scored (``leaderboard.compare_cell``: ``stats.paired_bootstrap``, documents paired by
lm-eval's doc_hash); a cell without one says why (runs made before the logs were kept: no per-sample
logs). Runs whose CultureLLM tasks were scored on part of their documents (lm-eval --limit) are named
under the table with their document counts.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

from culture_tasks import leaderboard as board
from culture_tasks.paths import task_groups
from culture_tasks.stats import culture_means, culture_tasks, t_interval
from trainers.cultures import CULTURE_COUNTRIES, ONE


def _results(folder: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    """Per run: its result file's results, and lm-eval's group structure under ``groups``; and per run,
    lm-eval's ``n-samples`` (each task's documents: ``original``, and ``effective`` under --limit)."""
    out, samples = {}, {}
    for path in sorted((folder / "results").glob("*/results_*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        out[path.parent.name] = {**data["results"], "groups": task_groups(data)}
        samples[path.parent.name] = data.get("n-samples") or {}
    return out, samples


def partial_note(samples: dict[str, dict]) -> str | None:
    """The CultureLLM cells of runs scored on part of their tasks (lm-eval --limit): how many documents,
    runs with the same counts named together; None when every task was scored whole."""
    by_counts: dict[tuple[int, int, int], list[str]] = {}
    for name, counts in samples.items():
        tasks = [c for t, c in counts.items() if t.startswith("culturellm")]
        cut = [c["effective"] for c in tasks if c["effective"] < c["original"]]
        if cut:
            key = (max(cut), sum(c["effective"] for c in tasks), sum(c["original"] for c in tasks))
            by_counts.setdefault(key, []).append(name)
    if not by_counts:
        return None
    parts = [f"at most {most} documents per task, {effective} of {original} ({', '.join(names)})"
             for (most, effective, original), names in sorted(by_counts.items())]
    return f"CultureLLM macro-F1 from part of the tasks (lm-eval --limit): {'; '.join(parts)}."


def _metric(results: dict, task: str, key: str) -> float | None:
    value = results.get(task, {}).get(f"{key},none")
    return float(value) if isinstance(value, (int, float)) else None


def culture_scores(results: dict, culture: str, persona: bool) -> tuple[float | None, float | None, float | None]:
    f1 = culture_means(results, results["groups"], "culturellm", key="f1_macro,none").get(culture)
    suffix = "_persona" if persona else ""
    jsd = [_metric(results, f"wvs_{c}{suffix}", "wvs_jsd") for c in CULTURE_COUNTRIES[culture]]
    maj = [_metric(results, f"wvs_{c}{suffix}", "wvs_majority") for c in CULTURE_COUNTRIES[culture]]
    jsd = statistics.fmean(jsd) if jsd and None not in jsd else None
    maj = statistics.fmean(maj) if maj and None not in maj else None
    return f1, jsd, maj


def scored_tasks(results: dict, culture: str, persona: bool) -> set[str]:
    """The tasks a run's cells of a culture rest on: its CultureLLM tasks with a macro-F1 and the WVS tasks
    with a value."""
    f1 = culture_tasks(results, results["groups"], "culturellm", key="f1_macro,none").get(culture, [])
    suffix = "_persona" if persona else ""
    wvs = {f"wvs_{c}{suffix}" for c in CULTURE_COUNTRIES[culture]
           if any(_metric(results, f"wvs_{c}{suffix}", k) is not None for k in ("wvs_jsd", "wvs_majority"))}
    return set(f1) | wvs


def check_same_tasks(culture: str, label: str, names: list[str], runs: list[dict], persona: bool) -> None:
    """A row's mean ± std is over its seeds: seeds that scored other tasks would be averaged over fewer seeds
    (a missing WVS task) or over other tasks (a missing CultureLLM task). Refused, naming the runs and tasks."""
    first = scored_tasks(runs[0], culture, persona)
    for name, run in zip(names[1:], runs[1:]):
        other = scored_tasks(run, culture, persona)
        if other != first:
            differ = ", ".join(sorted(first ^ other))
            raise SystemExit(f"train_table: {culture}: {names[0]} and {name} ({label}) did not score the same tasks "
                             f"({differ} in one only); score every seed on the same tasks")


def recorded_ci(results: dict, culture: str, persona: bool, key: str) -> tuple[float, float] | None:
    """The interval a run's file records for a one-country culture's WVS metric (``<key>_ci_low`` /
    ``_ci_high``); None for a culture of several countries (the mean of their intervals is no interval of
    the mean) and for files written before the tasks reported intervals."""
    if len(CULTURE_COUNTRIES[culture]) != 1:
        return None
    task = f"wvs_{CULTURE_COUNTRIES[culture][0]}{'_persona' if persona else ''}"
    low, high = _metric(results, task, f"{key}_ci_low"), _metric(results, task, f"{key}_ci_high")
    return (low, high) if low is not None and high is not None else None


def wvs_no_interval(culture: str) -> str:
    """Why a WVS cell of one run has no interval: a culture of several countries is their mean (their
    intervals are not the mean's); one country's file records none (written before the tasks reported them)."""
    if len(CULTURE_COUNTRIES[culture]) != 1:
        return f"no interval: the mean of {len(CULTURE_COUNTRIES[culture])} countries"
    return "no interval: the result file records none"


def _cell(values: list[float | None], scale: float = 100.0, recorded: list | None = None, why: str = "") -> str:
    """One value (one run, or seeds that all gave it) with the interval its runs recorded, if they recorded one
    and the same, else ``why`` there is none; else mean ± sd over the seeds [95 % t-interval over them]. Seeds
    alike have no spread to give a t-interval: a [v, v] would read as certainty."""
    values = [v * scale for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1 or max(values) - min(values) <= 1e-9 * scale:
        cis = {tuple(ci) if ci else None for ci in recorded or [None]}
        ci = cis.pop() if len(cis) == 1 else None
        notes = [f"{len(values)} seeds alike"] if len(values) > 1 else []
        notes += [why] if why and not ci else []
        interval = f" [{ci[0] * scale:.1f}, {ci[1] * scale:.1f}]" if ci else ""
        return f"{values[0]:.1f}{interval}" + (f" ({'; '.join(notes)})" if notes else "")
    centre, low, high = t_interval(values, bounds=(0.0, scale))
    return f"{centre:.1f} ± {statistics.stdev(values):.1f} [{low:.1f}, {high:.1f}]"


NO_LOGS = "no per-sample logs"  # a run made before train_real_run kept them


def board_runs(folder: Path) -> dict[str, board.Run]:
    """Each run's result file as culture-leaderboard reads it (one row each), with the per-sample logs beside it."""
    runs = {}
    for path in sorted((folder / "results").glob("*/results_*.json")):
        try:
            runs[path.parent.name] = board.load_runs([path])[0]
        except board.NotAResultFile as err:
            raise SystemExit(f"train_table: {err}") from None
    return runs


def f1_column(culture: str) -> board.Column:
    """The leaderboard's column of a culture's CultureLLM macro-F1: the mean over its tasks."""
    return board.Column(culture, culture, "f1_macro", lambda run: run.cultures("culturellm").get(culture, []))


def f1_interval(run: board.Run, culture: str) -> tuple[tuple[float, float] | None, str]:
    """A run's macro-F1 interval as the leaderboard's cell gives it, or None and why there is none."""
    cell = board.make_cell(run, f1_column(culture))
    if cell is not None and cell.low is not None and cell.high is not None:
        return (cell.low, cell.high), ""
    note = cell.interval_note if cell is not None else ""
    return None, f"no interval: {NO_LOGS}" if note == board.NO_SAMPLES else (note or "no interval")


def f1_difference(base: board.Run, run: board.Run, culture: str) -> str:
    """Adapter − base macro-F1 in points, with the leaderboard's 95 % paired interval and p over the documents
    both scored, or why there is none."""
    column = f1_column(culture)
    if any(t not in r.samples for r in (base, run) for t in board.covered_tasks(r, column)):
        return f"no paired interval: {NO_LOGS}"
    found, note = board.compare_cell(base, run, column)
    if found is None:
        return f"no paired interval: {note.removeprefix('no paired test: ')}"
    low, high = found["low"], found["high"]
    interval = f" [{100 * low:+.1f}, {100 * high:+.1f}]" if math.isfinite(low) and math.isfinite(high) else f" ({note})"
    return f"{100 * found['diff']:+.1f}{interval}, p {found['p_value']:.3f}"


def difference_cell(base: board.Run, runs: dict[str, board.Run], culture: str) -> str:
    """``f1_difference`` of each seed's run (once where every seed has the same reason for none)."""
    texts = {name: f1_difference(base, run, culture) for name, run in runs.items()}
    if len(texts) == 1 or (len(set(texts.values())) == 1 and next(iter(texts.values())).startswith("no paired")):
        return next(iter(texts.values()))
    return "; ".join(f"s{name.rpartition('-s')[2]}: {text}" for name, text in texts.items())


def _f1_cells(board_of: dict[str, board.Run], names: list[str], culture: str, f1s: list) -> tuple[str, str]:
    """A row's macro-F1 cell (a single run's with its interval, or why none) and its difference from the base;
    a per-sample log that is not the result file's own stops the table, naming it."""
    try:
        found = [f1_interval(board_of[n], culture) for n in names]
        diff = "–" if names == ["base"] else difference_cell(board_of["base"], {n: board_of[n] for n in names}, culture)
    except board.NotAResultFile as err:
        raise SystemExit(f"train_table: {err}") from None
    cell = _cell(f1s, recorded=[ci for ci, _ in found], why=next((why for ci, why in found if ci is None), ""))
    return cell, diff


def table(folder: Path) -> str:
    results, samples = _results(folder)
    if "base" not in results:  # no runs at all printed an empty table; runs without base, a KeyError
        raise SystemExit(f"train_table: {folder / 'results' / 'base'} holds no results_*.json; give the folder "
                         "of a benchmarks/train_real_run.py run (it scores the base model first)")
    base = results["base"]
    seeds = {}
    for name in results:
        if name != "base":
            culture, _, seed = name.rpartition("-s")
            seeds.setdefault(culture, []).append(name)
    board_of = board_runs(folder)
    lines = ["Fine-tuned cells: mean ± sd over seeds [95 % t-interval over seeds, cut to 0-100]; a single run's value "
             "(or that of seeds alike) with the interval its file records, where it records one (macro-F1: or its "
             "per-sample logs give). macro-F1 − base: each seed's adapter minus the base model on the same documents, "
             "in points, [95 % paired bootstrap interval], randomisation p (culture-leaderboard's paired test).", "",
             "| culture | model | seeds | CultureLLM macro-F1 | macro-F1 − base [95 % paired CI], p | WVS 1−JSD | "
             "WVS majority |",
             "|---|---|---|---|---|---|---|"]
    for culture in CULTURE_COUNTRIES:
        rows = [("base", ["base"], False), ("base, persona prompt", ["base"], True)]
        if culture in seeds:
            rows.append((f"CultureLLM-{culture}", sorted(seeds[culture]), False))
        if ONE in seeds:
            rows.append(("CultureLLM-One", sorted(seeds[ONE]), True))
        if len(rows) == 2:
            continue
        for label, names, persona in rows:
            runs = [results[n] for n in names]
            check_same_tasks(culture, label, names, runs, persona)
            scores = [culture_scores(r, culture, persona) for r in runs]
            f1, diff = ("–", "–") if label == "base, persona prompt" else \
                _f1_cells(board_of, names, culture, [s[0] for s in scores])
            jsd, majority = ([recorded_ci(r, culture, persona, key) for r in runs] for key in ("wvs_jsd", "wvs_majority"))
            why = wvs_no_interval(culture)
            lines.append(f"| {culture} | {label} | {len(runs) if len(runs) > 1 else ''} | {f1} | {diff} | "
                         f"{_cell([s[1] for s in scores], recorded=jsd, why=why)} | "
                         f"{_cell([s[2] for s in scores], recorded=majority, why=why)} |")
    note = partial_note(samples)
    return "\n".join(lines + (["", note] if note else []))


def main(argv=None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args in (["-h"], ["--help"]):
        print(__doc__)
        return
    if len(args) != 1:
        raise SystemExit(__doc__)
    print(table(Path(args[0])))


if __name__ == "__main__":
    main()
