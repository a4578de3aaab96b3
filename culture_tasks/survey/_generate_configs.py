"""Write the task and group YAMLs of every registered survey instrument from countries.yaml.

    python culture_tasks/survey/_generate_configs.py           # (re)write
    python culture_tasks/survey/_generate_configs.py --check   # exit 1 if any YAML is stale

Per country: <instrument>_<slug> (the model's own answers), <instrument>_<slug>_persona (asked
to answer as a person from the country) and <instrument>_<slug>_reversed (options in reverse
order, for the spread of a result); VSM13 also <slug>_balanced and <slug>_persona_balanced (every item
asked in both orders, the answers averaged). Groups: wvs, wvs_persona, wvs_reversed, vsm13, ... and
vsm13_partial, ... for the countries whose Hofstede profile has only some dimensions.
The instruments and their facts are the registry's (``culture_tasks/survey/instruments.py``);
the ``metric_list`` of each template is written from its entry (with the bootstrap-interval
companions), the rest of each template is edited by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from culture_tasks import stats, task_generation
from culture_tasks.survey import instruments
from culture_tasks.survey.countries import listed_countries
from culture_tasks.survey.instruments import Instrument


def _dump(data: dict) -> str:
    return task_generation.dump(data, "survey/_generate_configs.py", "survey/countries.yaml")


def render_instrument(inst: Instrument, countries: list[dict]) -> dict[Path, str]:
    """An instrument's template (its metric_list rewritten), per country and variant a task
    YAML, and per variant the group of those tasks (and of the countries grouped apart)."""
    block = stats.metric_list_yaml(inst.scoring, list(inst.metrics), intervals=list(inst.intervals))
    files = {inst.template: stats.with_metric_list(inst.template.read_text(encoding="utf-8"), block)}
    covered = [c for c in countries if inst.covers(c)]
    # every setting of the loader is written, false ones too: lm-eval calls it with --metadata and then these,
    # so a setting left out here could be filled from --metadata (`both_orders: true` made vsm13_usa balanced)
    two_orders = any(variant.get("both_orders") for variant in inst.variants.values())
    for suffix, variant in inst.variants.items():
        for c in covered:
            kwargs = {**inst.dataset_kwargs(c), "persona": c["name"] if variant.get("persona") else "",
                      "reversed_options": bool(variant.get("reversed_options")),
                      **({"both_orders": bool(variant.get("both_orders"))} if two_orders else {})}
            name = inst.task(c["slug"], suffix)
            files[inst.tasks_folder / f"{name}.yaml"] = _dump(
                {"include": inst.template.name, "task": name, "dataset_kwargs": kwargs})
        group = f"{inst.name}{suffix}"
        apart = [inst.task(c["slug"], suffix) for c in covered if inst.grouped_apart(c)]
        full = [inst.task(c["slug"], suffix) for c in covered if not inst.grouped_apart(c)]
        files[inst.tasks_folder / f"_{group}.yaml"] = _dump(task_generation.group(group, full, list(inst.headline)))
        if apart:
            files[inst.tasks_folder / f"_{group}_partial.yaml"] = _dump(
                task_generation.group(f"{group}_partial", apart, list(inst.headline)))
    return files


def render(countries: list[dict]) -> dict[Path, str]:
    """Every registered instrument's files."""
    return {path: text for inst in instruments.INSTRUMENTS.values()
            for path, text in render_instrument(inst, countries).items()}


def owned_files(inst: Instrument) -> list[Path]:
    """The files the generator writes for an instrument: a stale one is removed."""
    return [*inst.tasks_folder.glob(f"*{inst.name}*.yaml"), inst.template]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="report stale files, write nothing")
    args = parser.parse_args(argv)
    countries = listed_countries()
    owned = [path for inst in instruments.INSTRUMENTS.values() for path in owned_files(inst)]
    return task_generation.write(render(countries), owned, args.check)


if __name__ == "__main__":
    sys.exit(main())
