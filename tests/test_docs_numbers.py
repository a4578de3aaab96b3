"""The published tables of docs/ against the result files committed beside them. Each table is made again from
those files by the script that printed it (no model runs), so a table edited by hand, a copy left behind when
its source was regenerated, or one that a changed script would now print otherwise fails here."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from trainers.cultures import CULTURE_COUNTRIES

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SMOLLM2 = DOCS / "aligner_objectives_smollm2"
QWEN = DOCS / "aligner_objectives_qwen25coder"
KFOLD_RUNS = sorted(p.parent.name for p in DOCS.glob("*/kfold.json"))
STEERING = sorted(str(p.parent.relative_to(DOCS)) for p in DOCS.rglob("steering.json"))


def _rows(text: str) -> list[str]:
    """The body rows of the Markdown tables in a text (header and rule rows are alike in every table)."""
    lines = text.splitlines()
    return [line for i, line in enumerate(lines) if line.startswith("| ") and not line.startswith("|---")
            and not (i + 1 < len(lines) and lines[i + 1].startswith("|---"))]


def _missing(rows: list[str], doc: Path) -> list[str]:
    """Rows a script prints that the doc does not hold verbatim."""
    held = set(doc.read_text(encoding="utf-8").splitlines())
    return [row for row in rows if row not in held]


def _aligner_rows(capsys, paths: list[Path]) -> list[str]:
    """The table rows benchmarks/aligner_table.py prints for these alignment.json files."""
    from benchmarks.aligner_table import main

    capsys.readouterr()
    main([str(p) for p in sorted(paths)])
    return _rows(capsys.readouterr().out)


def test_every_published_kfold_and_steering_table_has_its_source_beside_it():
    """The two tests below are made one per kfold.json / steering.json found: a table whose source file was
    renamed, moved or lost would get no test at all, and nothing would fail. Every kfold.md and steering.md of
    docs/ is one of them; the folders are hand-counted (at least: new runs may add more), so that a search that
    finds nothing cannot pass either."""
    assert sorted(str(p.parent.relative_to(DOCS)) for p in DOCS.rglob("kfold.md")) == KFOLD_RUNS
    assert sorted(str(p.parent.relative_to(DOCS)) for p in DOCS.rglob("steering.md")) == STEERING
    assert len(KFOLD_RUNS) >= 18 and len(STEERING) >= 20


@pytest.mark.parametrize("run", KFOLD_RUNS)
def test_a_kfold_table_is_what_its_kfold_json_gives(run):
    from trainers.kfold import markdown, read_report

    folder = DOCS / run
    assert (folder / "kfold.md").read_text(encoding="utf-8") == markdown(read_report(folder)[1]), (
        f"docs/{run}/kfold.md is not what its kfold.json gives: write trainers.kfold.markdown(read_report(folder)[1]) "
        "to it")


@pytest.mark.parametrize("folder", STEERING)
def test_a_steering_matrix_is_what_its_steering_json_gives(folder):
    import json

    from culture_tasks.steering import markdown

    result = json.loads((DOCS / folder / "steering.json").read_text(encoding="utf-8"))
    assert (DOCS / folder / "steering.md").read_text(encoding="utf-8") == markdown(result), (
        f"docs/{folder}/steering.md is not what its steering.json gives: `culture-steer --rescore docs/{folder} "
        "--output <new>` and copy its three files back")


def test_the_fine_tuning_table_and_its_readme_copy_are_what_the_result_files_give():
    from benchmarks.train_table import table

    printed = table(DOCS / "train_smollm2")
    assert (DOCS / "train_smollm2.md").read_text(encoding="utf-8").endswith("\n" + printed + "\n"), (
        "docs/train_smollm2.md: its table is not what `python -m benchmarks.train_table docs/train_smollm2` prints")
    readme = [row for row in _rows((REPO / "README.md").read_text(encoding="utf-8"))
              if row.split(" | ")[0].removeprefix("| ") in CULTURE_COUNTRIES]
    assert readme and [row for row in readme if row not in printed.splitlines()] == []


def test_the_smollm2_objective_tables_are_what_their_alignment_files_give(capsys):
    reduced = [p for objective in ("contrastive", "l1") for p in (SMOLLM2 / objective).glob("seed*/*/alignment.json")]
    assert len(reduced) == 42
    assert _missing(_aligner_rows(capsys, reduced), SMOLLM2 / "README.md") == []
    for objective in ("contrastive", "l1"):  # three seeds of seven targets each; their L1 tables are not quoted
        full = list((SMOLLM2 / "full_budget").glob(f"{objective}*/*/alignment.json"))
        rows = _aligner_rows(capsys, full)
        ranks = [row for row in rows if row.split(" | ")[1:3] in (["6", "65"], ["6", "66"])]
        assert len(full) == 21 and len(ranks) == 7
        assert _missing(ranks + [r for r in rows if r.startswith(f"| {objective} |")], SMOLLM2 / "README.md") == []


def test_the_qwen_objective_tables_are_what_their_alignment_files_give(capsys):
    runs = list((QWEN / "contrastive").glob("*/alignment.json")) + list((QWEN / "contrastive").glob(
        "seed*/*/alignment.json"))
    assert len(runs) == 18
    per_target = [row for row in _aligner_rows(capsys, runs) if not row.startswith("| contrastive |")]
    assert len(per_target) == 12 and _missing(per_target, QWEN / "README.md") == []


def _kfold_summary(runs: list[str]) -> dict:
    """``across_cultures`` of these runs, a copy: a summary's bootstrap is the slow part of this file, and two tests
    below read the same two summaries (each is computed once per session)."""
    import copy

    return copy.deepcopy(_kfold_summary_once(tuple(runs)))


@functools.lru_cache(maxsize=None)
def _kfold_summary_once(runs: tuple[str, ...]) -> dict:
    from trainers.kfold import across_cultures, read_report

    return across_cultures({DOCS / run: read_report(DOCS / run)[1] for run in runs})


def _signed(r: dict) -> str:
    """A difference as the prose quotes it: points, sign, 95 % interval (−, not -)."""
    text = f"{100 * r['diff']:+.1f} [{100 * r['low']:.1f}, {100 * r['high']:.1f}]"
    return text.replace("-", "−")


SMOLLM2_CULTURES = [run for run in KFOLD_RUNS if run.startswith("train_kfold_smollm2_") and run != "train_kfold_smollm2_one"
                    and "_seed" not in run]
QWEN_CULTURES = [f"train_kfold_qwen25coder_{c}" for c in ("bengali", "german", "korean", "portuguese", "turkish")]


@pytest.mark.parametrize("summary, runs", [("train_kfold_smollm2_summary.md", ["train_kfold_smollm2"] + SMOLLM2_CULTURES),
                                           ("train_kfold_qwen25coder_summary.md", QWEN_CULTURES)])
def test_a_kfold_summary_is_what_its_runs_give(summary, runs):
    from trainers.kfold import summary_markdown

    assert (DOCS / summary).read_text(encoding="utf-8") == summary_markdown(_kfold_summary(runs)), (
        f"docs/{summary} is not what `culture-train kfold-summary` gives for its runs")


def test_the_prose_quotes_the_kfold_summaries():
    """The all-cultures numbers the README and train_kfold.md state in prose, and the Qwen subsets quoted as the
    summary grew (two, three, four cultures), are what the runs' kfold.json files give."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    kfold_doc = (DOCS / "train_kfold.md").read_text(encoding="utf-8")
    smol = _kfold_summary(["train_kfold_smollm2"] + SMOLLM2_CULTURES)["all"]
    for r in (smol["held_out"]["wvs_majority"], smol["in_sample"]["wvs_majority"], smol["letter_prior"],
              smol["held_out"]["wvs_w1"]):
        assert _signed(r) in readme and _signed(r) in kfold_doc
    for cultures in (["german", "korean"], ["german", "korean", "turkish"], ["german", "korean", "portuguese", "turkish"],
                     ["bengali", "german", "korean", "portuguese", "turkish"]):
        together = _kfold_summary([f"train_kfold_qwen25coder_{c}" for c in cultures])["all"]
        for r in (together["held_out"]["wvs_majority"], together["letter_prior"]):
            assert _signed(r) in kfold_doc, (cultures, _signed(r))


def test_the_order_section_says_how_many_l1_checkpoints_the_papers_budget_has():
    """interval_calibration.md's option-order table was measured on 16 `l1` checkpoints of the paper's budget; its
    note gives the listed row for the checkpoints the folder holds now, which must be what their files give."""
    import json
    from collections import defaultdict

    import numpy as np
    from scipy import stats

    files = sorted((SMOLLM2 / "full_budget").glob("l1*/*/alignment.json"))
    gains, by_target = [], defaultdict(list)
    for path in files:
        report = json.loads(path.read_text(encoding="utf-8"))
        comparison = report["report"]["comparison"]
        gain = comparison["de"]["margin"] - comparison["plain"]["margin"]
        gains.append(gain)
        by_target[report["target"]["country"]].append(gain)
    means = [np.mean(v) for v in by_target.values()]
    half = stats.t.ppf(0.975, len(means) - 1) * np.std(means, ddof=1) / np.sqrt(len(means))
    note = (f"gain {np.mean(gains):+.3f} ± {np.std(gains, ddof=1):.3f}, {np.mean(means):+.3f} "
            f"[{np.mean(means) - half:+.3f}, {np.mean(means) + half:+.3f}] ({len(means)})").replace("-", "−")
    text = " ".join((DOCS / "interval_calibration.md").read_text(encoding="utf-8").split())
    assert f"the listed row from the {len(files)} `alignment.json`" in text and note in text, note


def _kfold_cells(line: str) -> list[str]:
    """A table row's cells as kfold.md writes them: no bold, ASCII minus, no plus sign."""
    return [c.strip().replace("**", "").replace("−", "-").removeprefix("+") for c in line.strip().strip("|").split("|")]


def _table_rows(text: str) -> dict[tuple[str, str], list[str]]:
    """The ``| questions | metric | base | adapter | difference | p |`` rows of a k-fold table (``_kfold_cells``)."""
    rows = {}
    for line in text.splitlines():
        cells = _kfold_cells(line)
        if len(cells) >= 6 and cells[0] in ("held-out", "in-sample") and cells[1].startswith("WVS "):
            rows[cells[0], cells[1]] = cells[2:6]
    return rows


def _sections_linking(doc: str, target: str) -> list[str]:
    sections = re.split(r"\n(?=#{2,3} )", doc)
    return [s for s in sections if f"({target})" in s]


# the further seeds' differences are quoted side by side in one table of their own format
@pytest.mark.parametrize("run", [r for r in KFOLD_RUNS if r.startswith("train_kfold_qwen25coder_") and "_seed" not in r])
def test_a_qwen_culture_s_table_in_train_kfold_md_is_its_kfold_md(run):
    """Each Qwen culture's section of train_kfold.md copies the held-out and in-sample rows of its kfold.md
    (base, adapter, difference with intervals, p), which test_kfold_tables checks against kfold.json."""
    doc = (DOCS / "train_kfold.md").read_text(encoding="utf-8")
    expected = _table_rows((DOCS / run / "kfold.md").read_text(encoding="utf-8"))
    assert len(expected) == 6
    tables = [rows for s in _sections_linking(doc, f"{run}/kfold.md") if (rows := _table_rows(s))]
    assert tables, f"no section of train_kfold.md with a k-fold table links {run}/kfold.md"
    assert all(rows == expected for rows in tables), run


def _seed_table(section: str) -> tuple[list[str], dict[tuple[str, str], list[str]]]:
    """A further-seeds table: the seeds its header names (``seed 0 ...``, ``seed 1 ...``) and, per row, the
    base cell then each seed's difference and p, cells as kfold.md writes them."""
    header = next(line for line in section.splitlines() if line.startswith("| questions | metric | base"))
    seeds = re.findall(r"\| seed (\d+)", header)
    rows = {}
    for line in section.splitlines():
        cells = _kfold_cells(line)
        if len(cells) == 3 + 2 * len(seeds) and cells[0] in ("held-out", "in-sample"):
            rows[cells[0], cells[1]] = cells[2:]
    return seeds, rows


@pytest.mark.parametrize("seed0", sorted(r.removesuffix("_seed1") for r in KFOLD_RUNS if r.endswith("_seed1")))
def test_a_further_seeds_table_quotes_each_seed_s_kfold_md(seed0):
    """The table of a run's further training seeds copies, per row, the base cell and every seed's difference with
    its interval and p from that seed's own kfold.md (seed 0: the run itself, seed N: ``<run>_seed<N>``)."""
    doc = (DOCS / "train_kfold.md").read_text(encoding="utf-8")
    sections = [s for s in _sections_linking(doc, f"{seed0}_seed1/kfold.md") if "| seed 1" in s]
    assert len(sections) == 1, f"train_kfold.md: one section with a seed table linking {seed0}_seed1/kfold.md"
    seeds, rows = _seed_table(sections[0])
    assert seeds[0] == "0" and len(seeds) >= 3 and len(rows) == 6
    for i, seed in enumerate(seeds):
        run = seed0 if seed == "0" else f"{seed0}_seed{seed}"
        expected = _table_rows((DOCS / run / "kfold.md").read_text(encoding="utf-8"))
        for key, cells in rows.items():
            base, _adapter, difference, p = expected[key]
            assert cells[0] == base and cells[1 + 2 * i: 3 + 2 * i] == [difference, p], (run, key)
