"""Write the wvs_* and vsm13_* task and group YAMLs from countries.yaml.

    python culture_tasks/survey/_generate_configs.py           # (re)write
    python culture_tasks/survey/_generate_configs.py --check   # exit 1 if any YAML is stale

Per country: <instrument>_<slug> (the model's own answers), <instrument>_<slug>_persona (asked
to answer as a person from the country) and <instrument>_<slug>_reversed (options in reverse
order, for the spread of a result). Groups: wvs, wvs_persona, wvs_reversed, vsm13, ... and
vsm13_partial, ... for the countries whose Hofstede profile has only some dimensions.
The ``metric_list`` of the two templates is written from ``METRICS`` (with the bootstrap-interval
companions); the rest of each template is edited by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


from culture_tasks import stats, task_generation
from culture_tasks.paths import TASKS_DIR
from culture_tasks.survey.countries import listed_countries
from culture_tasks.survey.tasks import WVS_TOPICS
from culture_tasks.survey.vsm13 import DIMENSIONS

SCORING = "culture_tasks.survey.tasks"
VARIANTS = {"": {}, "_persona": {"persona": True}, "_reversed": {"reversed_options": True}}
GROUP_METRICS = {"wvs": ["wvs_jsd", "wvs_w1", "wvs_majority"], "vsm13": ["vsm13_l1", "vsm13_mae"]}
# (metric, aggregation, higher_is_better) of each template's metric_list. The six indices have
# no direction (lm-eval needs a bool; tasks.DIRECTIONLESS says so to tables and rankings).
METRICS = {
    "wvs": [*((m, "mean", True) for m in GROUP_METRICS["wvs"]),
            *((f"wvs_jsd_{t}", f"wvs_jsd_{t}", True) for t in WVS_TOPICS)],
    "vsm13": [("vsm13_l1", "vsm13_l1", False), ("vsm13_mae", "vsm13_mae", False),
              *((d, d, True) for d in DIMENSIONS), ("vsm13_dims", "vsm13_dims", True)],
}
# Hofstede codes whose 2015 scores lack dimensions (only LTO and IVR): their losses cover 2 of 6
# dimensions, so they are averaged in groups of their own (vsm13_partial, ...), never with the
# six-dimension losses (a test checks this set against the data file).
PARTIAL_TARGETS = frozenset({"IRQ", "JOR", "SAU"})
# every metric but the dimension count gets its _ci_low/_ci_high companions
INTERVALS = {name: [m for m, _, _ in metrics if m != "vsm13_dims"] for name, metrics in METRICS.items()}


def _dump(data: dict) -> str:
    return task_generation.dump(data, "survey/_generate_configs.py", "survey/countries.yaml")


def render(countries: list[dict]) -> dict[Path, str]:
    files: dict[Path, str] = {}
    for instrument, key in (("wvs", "wvs_csv"), ("vsm13", "hofstede")):
        folder = TASKS_DIR / instrument
        template = folder / f"_{instrument}_template_yaml"
        block = stats.metric_list_yaml(SCORING, METRICS[instrument], intervals=INTERVALS[instrument])
        files[template] = stats.with_metric_list(template.read_text(encoding="utf-8"), block)
        for suffix, variant in VARIANTS.items():
            names = []
            for c in countries:
                if not c.get(key):
                    continue
                name = f"{instrument}_{c['slug']}{suffix}"
                kwargs = (
                    {"wvs_country": c["name"], "wvs_csv": c["wvs_csv"]}
                    if instrument == "wvs"
                    else {"vsm13_country": c["hofstede"]}
                )
                kwargs["persona"] = c["name"] if variant.get("persona") else ""
                kwargs["reversed_options"] = bool(variant.get("reversed_options"))
                files[folder / f"{name}.yaml"] = _dump(
                    {"include": f"_{instrument}_template_yaml", "task": name, "dataset_kwargs": kwargs}
                )
                names.append(name)
            group = f"{instrument}{suffix}"
            partial = [n for n, c in zip(names, (c for c in countries if c.get(key)))
                       if instrument == "vsm13" and c["hofstede"] in PARTIAL_TARGETS]
            full = [n for n in names if n not in partial]
            files[folder / f"_{group}.yaml"] = _dump(task_generation.group(group, full, GROUP_METRICS[instrument]))
            if partial:
                files[folder / f"_{group}_partial.yaml"] = _dump(
                    task_generation.group(f"{group}_partial", partial, GROUP_METRICS[instrument]))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="report stale files, write nothing")
    args = parser.parse_args(argv)
    countries = listed_countries()
    owned = [*(TASKS_DIR / "wvs").glob("*wvs*.yaml"), *(TASKS_DIR / "vsm13").glob("*vsm13*.yaml"),
             TASKS_DIR / "wvs" / "_wvs_template_yaml", TASKS_DIR / "vsm13" / "_vsm13_template_yaml"]
    return task_generation.write(render(countries), owned, args.check)


if __name__ == "__main__":
    sys.exit(main())
