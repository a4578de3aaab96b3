"""The published tables of docs/ against the result files committed beside them. Each table is made again from
those files by the script that printed it (no model runs), so a table edited by hand, a copy left behind when
its source was regenerated, or one that a changed script would now print otherwise fails here."""

from __future__ import annotations

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
    full = list((SMOLLM2 / "full_budget").glob("contrastive*/*/alignment.json"))
    rows = _aligner_rows(capsys, full)
    ranks = [row for row in rows if row.split(" | ")[1:3] in (["6", "65"], ["6", "66"])]  # its L1 table is not quoted
    assert len(ranks) == 7 and _missing(ranks + [r for r in rows if r.startswith("| contrastive |")],
                                        SMOLLM2 / "README.md") == []


def test_the_qwen_objective_tables_are_what_their_alignment_files_give(capsys):
    runs = list((QWEN / "contrastive").glob("*/alignment.json")) + list((QWEN / "contrastive").glob(
        "seed*/*/alignment.json"))
    assert len(runs) == 18
    per_target = [row for row in _aligner_rows(capsys, runs) if not row.startswith("| contrastive |")]
    assert len(per_target) == 12 and _missing(per_target, QWEN / "README.md") == []
