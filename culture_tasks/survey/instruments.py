"""The survey instruments (WVS, VSM 2013), registered by name: one entry holds what the task
generator, the aligner and the leaderboard need to know about an instrument.

An instrument's items, options and answer scoring live in its loader and scoring functions
(``scoring``, named by the task template); the entry says which countries it covers, the
``dataset_kwargs`` of a country's tasks, its metrics, which of them are headline scores, which
have no better direction, and which countries are grouped apart. ``register_instrument`` adds
one: ``survey/_generate_configs.py`` then writes its task and group YAMLs, and tables read its
headline metrics from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from culture_tasks import stats
from culture_tasks.paths import TASKS_DIR
from culture_tasks.survey.vsm13 import DIMENSIONS
from culture_tasks.survey.wvs import WVS_TOPICS

# Task variants per country: the model's own answers, asked as a person from the country, options reversed.
VARIANTS = {"": {}, "_persona": {"persona": True}, "_reversed": {"reversed_options": True}}
# Every item asked in both option orders and its answers averaged (counterbalanced): a bias towards a position
# (the first option, say) cancels within each item; for an instrument whose metrics are computed from item means
# (VSM13), where the mean of two orders is the item's answer.
BALANCED = {"_balanced": {"both_orders": True}, "_persona_balanced": {"persona": True, "both_orders": True}}
# --option-order of culture-align and culture-steer -> the VSM13 variant suffix they score on
OPTION_ORDERS = {"listed": "", "balanced": "_balanced"}
# what a run stored before --option-order existed recorded: the listed order, the only one there was
BEFORE_OPTION_ORDER = {"option_order": "listed"}


@dataclass(frozen=True)
class Instrument:
    name: str  # task prefix and folder under the tasks folder: <name>/<name>_<country slug>.yaml
    country_key: str  # the countries.yaml field a country needs to have this instrument's tasks
    dataset_kwargs: Callable[[dict], dict]  # a country's countries.yaml entry -> its tasks' dataset_kwargs
    # the template's metric_list: (metric, aggregation, higher is better); None for a measurement that is
    # not a score (neither direction is better: lm-eval prints no arrow, tables mark no best)
    metrics: tuple[tuple[str, str, bool | None], ...]
    headline: tuple[str, ...]  # what the groups average and the tables show
    intervals: tuple[str, ...]  # metrics with bootstrap-interval companions (m_ci_low, m_ci_high)
    grouped_apart: Callable[[dict], bool] = field(default=lambda country: False)  # -> <group>_partial
    # (metric, full count): a task metric saying how many parts (dimensions) its headline metrics
    # cover; below the full count they are not comparable with full-coverage values
    coverage: tuple[str, int] | None = None
    scoring: str = "culture_tasks.survey.tasks"  # module of the template's aggregation functions
    # task variants per country (suffix -> what it sets: persona, reversed_options, both_orders)
    variants: dict[str, dict] = field(default_factory=lambda: dict(VARIANTS))
    folder: Path | None = None  # default: TASKS_DIR / name

    @property
    def tasks_folder(self) -> Path:
        return self.folder or TASKS_DIR / self.name

    @property
    def template(self) -> Path:
        return self.tasks_folder / f"_{self.name}_template_yaml"

    def covers(self, country: dict) -> bool:
        return bool(country.get(self.country_key))

    @property
    def directionless(self) -> frozenset[str]:
        """Metrics with no better direction, with their interval rows."""
        plain = {name for name, _, better in self.metrics if better is None}
        return frozenset({*plain, *(m + s for m in plain & set(self.intervals) for s in stats.CI_SUFFIXES)})

    def task(self, slug: str, variant: str = "") -> str:
        """The lm-eval task of a country (``variant``: one of its ``variants``)."""
        if variant not in self.variants:
            raise ValueError(f"{self.name} has no task variant {variant!r}; its variants: {sorted(self.variants)}")
        return f"{self.name}_{slug}{variant}"


INSTRUMENTS: dict[str, Instrument] = {}


def register_instrument(instrument: Instrument) -> Instrument:
    """Add an instrument under its name; a second one under the same name is an error."""
    if instrument.name in INSTRUMENTS:
        raise ValueError(f"survey instrument {instrument.name!r} is already registered")
    INSTRUMENTS[instrument.name] = instrument
    return instrument


def instrument(name: str) -> Instrument:
    if name not in INSTRUMENTS:
        raise ValueError(f"unknown survey instrument {name!r}; registered: {sorted(INSTRUMENTS)}")
    return INSTRUMENTS[name]


def headline_metrics() -> dict[str, tuple[str, ...]]:
    """Instrument name -> the metrics its tables show."""
    return {name: i.headline for name, i in INSTRUMENTS.items()}


def coverage_metrics() -> dict[str, tuple[str, int]]:
    """Instrument name -> (coverage metric, full count), for the instruments that report one."""
    return {name: i.coverage for name, i in INSTRUMENTS.items() if i.coverage}


def directionless_metrics() -> frozenset[str]:
    """Every registered metric with no better direction (``higher_is_better: null`` in its task YAML)."""
    return frozenset().union(*(i.directionless for i in INSTRUMENTS.values()))


def metric_directions() -> dict[str, bool | None]:
    """Every registered metric and its interval rows -> higher is better (None: no better direction), as its
    task YAML says: what a result file that records no direction for it is read with."""
    out: dict[str, bool | None] = {}
    for i in INSTRUMENTS.values():
        for name, _, better in i.metrics:
            out[name] = better
            if name in i.intervals:
                out.update({name + suffix: better for suffix in stats.CI_SUFFIXES})
    return out


WVS_HEADLINE = ("wvs_jsd", "wvs_w1", "wvs_majority")
register_instrument(Instrument(
    name="wvs",
    country_key="wvs_csv",
    dataset_kwargs=lambda c: {"wvs_country": c["name"], "wvs_csv": c["wvs_csv"]},
    metrics=(*((m, m, True) for m in WVS_HEADLINE), *((f"wvs_jsd_{t}", f"wvs_jsd_{t}", True) for t in WVS_TOPICS)),
    headline=WVS_HEADLINE,
    intervals=(*WVS_HEADLINE, *(f"wvs_jsd_{t}" for t in WVS_TOPICS)),
))

# Hofstede codes whose 2015 scores lack dimensions (only LTO and IVR): their losses cover 2 of 6
# dimensions, so they are averaged in groups of their own (vsm13_partial, ...), never with the
# six-dimension losses (a test checks this set against the data file).
PARTIAL_TARGETS = frozenset({"IRQ", "JOR", "SAU"})
register_instrument(Instrument(
    name="vsm13",
    country_key="hofstede",
    dataset_kwargs=lambda c: {"vsm13_country": c["hofstede"]},
    # the six indices and the dimension count have no direction (None)
    # vsm13_margin / vsm13_rank: the target among Hofstede's countries (z-space, offset removed;
    # culture_tasks.survey.compare), the comparison that does not depend on the index scale
    metrics=(("vsm13_l1", "vsm13_l1", False), ("vsm13_mae", "vsm13_mae", False),
             *((d, d, None) for d in DIMENSIONS), ("vsm13_margin", "vsm13_margin", True),
             ("vsm13_rank", "vsm13_rank", False), ("vsm13_dims", "vsm13_dims", None)),
    headline=("vsm13_l1", "vsm13_mae", "vsm13_margin"),
    intervals=("vsm13_l1", "vsm13_mae", *DIMENSIONS, "vsm13_margin", "vsm13_rank"),
    grouped_apart=lambda c: c["hofstede"] in PARTIAL_TARGETS,
    coverage=("vsm13_dims", len(DIMENSIONS)),
    variants={**VARIANTS, **BALANCED},
))
