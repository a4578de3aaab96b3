"""The task YAMLs are a pure function of the manifest."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parents[1] / "culture_tasks" / "culturellm"


def _generator():
    spec = importlib.util.spec_from_file_location("_generate_configs", HERE / "_generate_configs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_committed_yamls_match_the_manifest():
    gen = _generator()
    assert gen.main(["--check"]) == 0


def test_rendering_is_deterministic_and_complete():
    gen = _generator()
    entries = gen.load_manifest()
    first, second = gen.render(entries), gen.render(gen.load_manifest())
    assert first == second
    assert len(entries) == 58
    assert {e.culture for e in entries} == {
        "arabic", "bengali", "chinese", "english", "german", "korean", "portuguese", "spanish", "turkish"
    }
    top = yaml.safe_load(first["_culturellm.yaml"])
    assert top["task"] == [f"culturellm_{c}" for c in sorted({e.culture for e in entries})]
    assert all(m["weight_by_size"] is False for m in top["aggregate_metric_list"])


def test_yaml_boolean_words_stay_labels():
    gen = _generator()
    entry = next(e for e in gen.load_manifest() if e.task("mc") == "culturellm_arabic_offenseval2020")
    assert list(entry.labels) == ["NOT", "OFF"]
    rendered = gen.render([entry])["culturellm_arabic_offenseval2020.yaml"]
    assert list(yaml.safe_load(rendered)["dataset_kwargs"]["labels"]) == ["NOT", "OFF"]


def test_a_new_dataset_needs_only_a_manifest_entry(tmp_path):
    gen = _generator()
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(
        "datasets:\n"
        "  - {culture: dutch, name: toxic, file: Dutch/x.jsonl, text_field: text,\n"
        "     labels: {NO: fine, YES: toxic}, instruction: 'Toxic?'}\n",
        encoding="utf-8",
    )
    files = gen.render(gen.load_manifest(manifest))
    assert set(files) == {
        "culturellm_dutch_toxic.yaml", "_culturellm_dutch.yaml", "_culturellm.yaml",
        "culturellm_gen_dutch_toxic.yaml", "_culturellm_gen_dutch.yaml", "_culturellm_gen.yaml",
    }
    assert yaml.safe_load(files["culturellm_dutch_toxic.yaml"])["dataset_kwargs"]["labels"] == {"NO": "fine", "YES": "toxic"}


ENTRY = "  - {culture: dutch, name: toxic, file: Dutch/x.jsonl, text_field: text, labels: {NO: fine, YES: toxic}, instruction: 'Toxic?'%s}\n"


@pytest.mark.parametrize(
    ("top", "extra", "message"),
    [  # a misspelt suite-wide key left every text uncut; a misspelt entry key was a bare TypeError
        ("max_text_char: 500\n", "", r"unknown key\(s\) 'max_text_char' \(did you mean 'max_text_chars'\?\)"),
        ("", ", drop_label: [X]", r"dataset #1 \(toxic\): unknown key\(s\) 'drop_label' \(did you mean 'drop_labels'\?\)"),
        # true was read as 1 (every text cut to one character), -5 as "all but the last 5 characters"
        ("max_text_chars: true\n", "", r"max_text_chars must be a whole number >= 0 \(0: no cut\), got True"),
        ("", ", max_text_chars: -5", r"dataset #1 \(toxic\): max_text_chars must be a whole number >= 0.*got -5"),
        ("", ", max_text_chars: 2k", r"dataset #1 \(toxic\): max_text_chars must be a whole number >= 0.*got '2k'"),
    ],
)
def test_manifest_keys_and_max_text_chars_are_checked(tmp_path, top, extra, message):
    gen = _generator()
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(top + "datasets:\n" + ENTRY % extra, encoding="utf-8")
    with pytest.raises(SystemExit, match=message) as err:
        gen.load_manifest(manifest)
    assert str(manifest) in str(err.value)



LABELS_ENTRY = "  - {culture: dutch, name: toxic, file: Dutch/x.jsonl, text_field: text, instruction: 'Toxic?', %s}\n"


@pytest.mark.parametrize(
    ("fields", "message"),
    [  # a list of labels was a bare AttributeError
        ("labels: [fine, toxic]", r"dataset #1 \(toxic\): labels must map each label in the file to the words shown"),
        ("labels: {}", r"dataset #1 \(toxic\): labels must map each label in the file to the words shown.*got \{\}"),
        # a string was split into characters: drop_labels: NA dropped the labels N and A
        ("labels: {NO: fine, YES: toxic}, drop_labels: NA", r"dataset #1 \(toxic\): drop_labels must be a list.*got 'NA'"),
        # the rows of YES were dropped and macro-F1 still averaged over YES: F1 0 in every run
        ("labels: {NO: fine, YES: toxic}, drop_labels: [YES]",
         r"dataset #1 \(toxic\): label\(s\) \['YES'\] are both in labels and in drop_labels"),
        # the generative answer "toxic" always read as the first of the two
        ("labels: {NO: fine, YES: toxic, MAYBE: Toxic}",
         r"dataset #1 \(toxic\): labels YES and MAYBE show the same words 'toxic'"),
    ],
)
def test_manifest_labels_and_drop_labels_are_checked(tmp_path, fields, message):
    gen = _generator()
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("datasets:\n" + LABELS_ENTRY % fields, encoding="utf-8")
    with pytest.raises(SystemExit, match=message) as err:
        gen.load_manifest(manifest)
    assert str(manifest) in str(err.value) and "\n" not in str(err.value)


def test_readme_table_and_caveat_counts_match_the_data(data_root, caplog):
    import logging
    import re

    gen = _generator()
    readme = (HERE / "README.md").read_text(encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        table = gen.table(gen.load_manifest(), str(data_root))
    assert table in readme  # the "58 tasks" table, sizes after cleaning

    def per_task(kind: str) -> dict[str, int]:
        found = {}
        for record in caplog.records:
            match = re.search(rf"(\d+) {re.escape(kind)}", record.getMessage())
            if match:
                found[record.getMessage().split(":")[0]] = int(match.group(1))
        return found

    repeated, conflicting = per_task("repeated text (kept)"), per_task("text with conflicting labels (kept)")
    assert f"{sum(repeated.values())} rows of {len(repeated)} tasks" in readme
    assert f"{sum(conflicting.values())} rows of {len(conflicting)} tasks" in readme
    assert f"{sum(per_task('mis-decoded UTF-8 text (kept)').values())} Turkish spam e-mails" in readme
    assert f"({per_task('truncated (kept)')['culturellm_turkish_spam']} rows cut)" in readme
    assert f"{per_task('empty label')['culturellm_korean_hate_speech_detection']} rows of the" in readme
