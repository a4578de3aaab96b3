"""The tasks folder helper, the culture -> country mapping in countries.yaml, the survey generator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from culture_tasks.paths import TASKS_DIR, main, task_manager
from culture_tasks.survey import countries

REPO = Path(__file__).resolve().parents[1]


def test_tasks_dir_is_the_folder_lm_eval_includes():
    assert TASKS_DIR == REPO / "culture_tasks"
    for name in ("culturellm/_mc_template_yaml", "wvs/_wvs_template_yaml", "vsm13/_vsm13_template_yaml"):
        assert (TASKS_DIR / name).is_file()


def test_culture_tasks_path_prints_the_folder(capsys):
    assert main([]) == 0
    assert capsys.readouterr().out == f"{TASKS_DIR}\n"
    out = subprocess.run([sys.executable, "-m", "culture_tasks.paths"], cwd="/", check=True,
                         capture_output=True, text=True, env={"PYTHONPATH": str(REPO)}).stdout
    assert out == f"{TASKS_DIR}\n"


def test_task_manager_knows_the_tasks_and_passes_metadata(tmp_path):
    from lm_eval.tasks import get_task_dict

    missing = tmp_path / "no-such-root"
    manager = task_manager({"data_dir": str(missing)})
    for name in ("culturellm", "culturellm_english_hate_offensive", "wvs_usa", "vsm13_usa"):
        assert name in manager.all_tasks
    # the metadata reaches the task's loader: it looks for the data root named there
    with pytest.raises(FileNotFoundError, match=str(missing)):
        get_task_dict(["vsm13_usa"], manager)


def test_culture_countries_come_from_countries_yaml():
    # CultureLLM paper, Table 1: the WVS countries standing for each culture
    assert countries.culture_countries() == {
        "arabic": ("iraq", "jordan"),
        "bengali": ("bangladesh",),
        "chinese": ("china",),
        "english": ("usa",),
        "german": ("germany",),
        "korean": ("south_korea",),
        "portuguese": ("brazil",),
        "spanish": ("argentina", "mexico"),
        "turkish": ("turkey",),
    }
    from trainers.cultures import CULTURE_COUNTRIES

    assert CULTURE_COUNTRIES == countries.culture_countries()


def test_a_culture_is_one_yaml_key(tmp_path):
    path = tmp_path / "countries.yaml"
    path.write_text(
        "countries:\n"
        "  - {slug: netherlands, name: the Netherlands, wvs_csv: Dutch/Netherlands.csv, culture: Dutch}\n"
        "  - {slug: belgium, name: Belgium, wvs_csv: Dutch/Belgium.csv, culture: dutch}\n"
        "  - {slug: india, name: India, hofstede: IND}\n",
        encoding="utf-8",
    )
    assert countries.culture_countries(path) == {"dutch": ("netherlands", "belgium")}


@pytest.mark.parametrize("entry, message", [
    # a misspelt key dropped the country's vsm13 tasks (or its culture's training examples) without a word
    ("{slug: japan, name: Japan, hofstde: JPN}",
     r"countries.yaml: country #2 \(japan\): unknown key\(s\) 'hofstde' \(did you mean 'hofstede'\?\); the keys "
     r"are slug, name, wvs_csv, hofstede, culture"),
    ("{slug: japan, hofstede: JPN}", r"countries.yaml: country #2 \(japan\) lacks name"),
    ("{slug: india, name: India, hofstede: IND}", r"countries.yaml: country #2 \(india\): slug india is given twice"),
])
def test_a_country_entry_with_an_unknown_key_is_an_error(tmp_path, entry, message):
    path = tmp_path / "countries.yaml"
    path.write_text(f"countries:\n  - {{slug: india, name: India, hofstede: IND}}\n  - {entry}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        countries.listed_countries(path)
    with pytest.raises(ValueError, match=message):
        countries.culture_countries(path)


def test_every_listed_culture_is_a_culturellm_suite_culture():
    import yaml

    manifest = yaml.safe_load((TASKS_DIR / "culturellm" / "manifest.yaml").read_text(encoding="utf-8"))
    suite = {d["culture"] for d in manifest["datasets"]}
    assert set(countries.culture_countries()) == suite


def test_committed_survey_yamls_match_countries_yaml(capsys):
    from culture_tasks.survey import _generate_configs as gen

    assert gen.main(["--check"]) == 0
    assert "0 stale" in capsys.readouterr().out


def test_survey_check_reports_a_stale_yaml(monkeypatch, capsys):
    from culture_tasks.survey import _generate_configs as gen

    real = gen.render

    def one_country_renamed(listed):
        files = real(listed)
        path = TASKS_DIR / "wvs" / "wvs_usa.yaml"
        files[path] = files[path].replace("the United States", "the USA")
        return files

    monkeypatch.setattr(gen, "render", one_country_renamed)
    assert gen.main(["--check"]) == 1
    assert capsys.readouterr().out == "stale generated files: wvs_usa.yaml\n"


def test_missing_data_root_skips_with_the_reason_or_fails_where_required(tmp_path, monkeypatch):
    from tests.conftest import REQUIRE_DATA, require_data_root

    monkeypatch.delenv(REQUIRE_DATA, raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"third-party data not found at {tmp_path}"):
        require_data_root(tmp_path)
    monkeypatch.setenv(REQUIRE_DATA, "1")
    with pytest.raises(pytest.fail.Exception, match=f"data root {tmp_path} not found"):
        require_data_root(tmp_path)
    (tmp_path / "culturellm").mkdir()
    assert require_data_root(tmp_path) == tmp_path
