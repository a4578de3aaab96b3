"""A survey instrument registered in one place reaches the task generator, its --check and lm-eval."""

from __future__ import annotations

import pytest

from culture_tasks.paths import TASKS_DIR
from culture_tasks.survey import _generate_configs as gen
from culture_tasks.survey import instruments
from culture_tasks.survey.instruments import Instrument, register_instrument

COUNTRIES = [
    {"slug": "usa", "name": "the United States", "wvs_csv": "English/US.csv", "hofstede": "USA"},
    {"slug": "germany", "name": "Germany", "wvs_csv": "German/Germany.csv"},
    {"slug": "india", "name": "India", "hofstede": "IND"},  # no WVS file: not covered
]


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The only place the toy instrument is defined: WVS questions scored by 1-JSD alone."""
    monkeypatch.setattr(instruments, "INSTRUMENTS", dict(instruments.INSTRUMENTS))
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "_toy_template_yaml").write_text((TASKS_DIR / "wvs" / "_wvs_template_yaml").read_text(encoding="utf-8"),
                                               encoding="utf-8")
    return register_instrument(Instrument(
        name="toy", country_key="wvs_csv", folder=folder,
        dataset_kwargs=lambda c: {"wvs_country": c["name"], "wvs_csv": c["wvs_csv"]},
        metrics=(("wvs_jsd", "mean", True), ("wvs_w1", "mean", None)), headline=("wvs_jsd",), intervals=(),
        grouped_apart=lambda c: c["slug"] == "germany"))


def test_a_registered_instrument_gets_its_tasks_groups_and_template(toy):
    files = gen.render_instrument(toy, COUNTRIES)
    names = sorted(p.name for p in files)
    assert names == sorted(["_toy_template_yaml", "_toy.yaml", "_toy_partial.yaml", "_toy_persona.yaml",
                            "_toy_persona_partial.yaml", "_toy_reversed.yaml", "_toy_reversed_partial.yaml",
                            *(f"toy_{c}{v}.yaml" for c in ("usa", "germany") for v in ("", "_persona", "_reversed"))])
    assert files[toy.tasks_folder / "toy_germany_persona.yaml"].splitlines()[1:] == [
        "include: _toy_template_yaml", "task: toy_germany_persona", "dataset_kwargs:",
        "  wvs_country: Germany", "  wvs_csv: German/Germany.csv", "  persona: Germany", "  reversed_options: false"]
    assert "task:\n- toy_usa\n" in files[toy.tasks_folder / "_toy.yaml"]
    assert "task:\n- toy_germany_reversed\n" in files[toy.tasks_folder / "_toy_reversed_partial.yaml"]
    template = files[toy.template]
    assert "metric_list:\n  - {metric: wvs_jsd, aggregation: mean, higher_is_better: true}\n" in template
    # the facts tables read
    assert instruments.headline_metrics() == {"wvs": ("wvs_jsd", "wvs_w1", "wvs_majority"),
                                              "vsm13": ("vsm13_l1", "vsm13_mae", "vsm13_margin"), "toy": ("wvs_jsd",)}
    # a metric registered with no direction: null in the template, directionless with its interval rows
    assert "  - {metric: wvs_w1, aggregation: mean, higher_is_better: null}\n" in template
    assert {"wvs_w1", "pdi", "pdi_ci_low", "ivr_ci_high", "vsm13_dims"} <= instruments.directionless_metrics()
    assert "wvs_w1_ci_low" not in toy.directionless  # the toy has no interval rows
    assert "wvs_jsd" not in instruments.directionless_metrics() and "vsm13_l1" not in instruments.directionless_metrics()
    with pytest.raises(ValueError, match="'toy' is already registered"):
        register_instrument(toy)


def test_the_generator_check_covers_a_registered_instrument(toy, capsys, data_root, monkeypatch):
    from lm_eval.tasks import TaskManager, get_task_dict

    monkeypatch.setattr(instruments, "INSTRUMENTS", {"toy": toy})  # writes nothing beside the toy's folder
    assert gen.main(["--check"]) == 1  # nothing written for the toy yet
    assert "toy_usa.yaml" in capsys.readouterr().out
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0 and "0 stale" in capsys.readouterr().out.splitlines()[-1]
    assert (toy.tasks_folder / "toy_usa.yaml").is_file()
    # the written task is an lm-eval task with WVS's documents and prompts
    manager = TaskManager(include_path=[str(TASKS_DIR), str(toy.tasks_folder)], include_defaults=False,
                          metadata={"data_dir": str(data_root)})
    tasks = get_task_dict(["toy_usa", "wvs_usa"], manager)
    toy_docs, wvs_docs = (list(tasks[n].test_docs()) for n in ("toy_usa", "wvs_usa"))
    assert len(toy_docs) == len(wvs_docs) > 0
    assert [tasks["toy_usa"].doc_to_text(d) for d in toy_docs] == [tasks["wvs_usa"].doc_to_text(d) for d in wvs_docs]
    assert [m["metric"] for m in tasks["toy_usa"].config.metric_list] == ["wvs_jsd", "wvs_w1"]
    # lm-eval keeps the null: the metric has no direction in its results
    assert tasks["toy_usa"].higher_is_better() == {"wvs_jsd": True, "wvs_w1": None}


def test_an_unknown_instrument_is_an_error():
    with pytest.raises(ValueError, match=r"unknown survey instrument 'hofstede'; registered: \['vsm13', 'wvs'\]"):
        instruments.instrument("hofstede")


def test_vsm13_alone_has_balanced_variants_and_an_unknown_variant_is_an_error():
    vsm13, wvs = instruments.instrument("vsm13"), instruments.instrument("wvs")
    assert vsm13.task("usa", "_persona_balanced") == "vsm13_usa_persona_balanced"
    assert (TASKS_DIR / "vsm13" / "vsm13_usa_balanced.yaml").read_text().splitlines()[-1] == "  both_orders: true"
    with pytest.raises(ValueError, match="wvs has no task variant '_balanced'"):
        wvs.task("usa", "_balanced")
