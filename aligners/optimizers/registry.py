"""Optimisers by name, each behind the same ask/tell protocol, with its own hyper-parameters.

As peft's ``register_peft_method``: an optimiser is a class plus a dataclass of its settings,
registered once under a name. The command line gets one flag per setting (``--f``), the run's
recorded settings get its values, and nothing else in the aligner names an optimiser.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class AskTell(Protocol):
    """``ask`` proposes a population of points in [-bound, bound]^dim (rows); ``tell`` receives
    their losses (lower is better) in the same order. Given its seed and the losses it is told,
    an optimiser must be deterministic: a resumed run replays the saved losses into a fresh one."""

    def ask(self) -> np.ndarray: ...

    def tell(self, fitness) -> None: ...


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    cls: type  # cls(dim, *, population, bound, seed, **settings) -> AskTell
    config_fields: type  # a dataclass; field(metadata={"help": ...}) on each setting


OPTIMIZERS: dict[str, OptimizerSpec] = {}


def register_optimizer(name: str, cls: type | None = None, config_fields: type | None = None):
    """``register_optimizer("de", DifferentialEvolution, DEConfig)``, or as a class decorator:
    ``@register_optimizer("de", config_fields=DEConfig)``."""
    if cls is None:
        return lambda c: register_optimizer(name, c, config_fields) or c
    if name in OPTIMIZERS:
        raise ValueError(f"optimizer {name!r} is already registered ({OPTIMIZERS[name].cls.__name__})")
    if config_fields is None:
        config_fields = dataclasses.make_dataclass(f"{cls.__name__}Config", [])
    if not dataclasses.is_dataclass(config_fields):
        raise TypeError(f"config_fields of optimizer {name!r} must be a dataclass")
    names = {f.name for f in dataclasses.fields(config_fields)}
    for other in OPTIMIZERS.values():
        shared = names & {f.name for f in dataclasses.fields(other.config_fields)}
        if shared:  # each setting is one flag of culture-align, so names are unique across optimisers
            raise ValueError(f"optimizer {name!r}: setting(s) {sorted(shared)} already belong to {other.name!r}")
    config_fields._argument_group_name = f"settings of --optimizer {name} ({cls.__name__})"
    OPTIMIZERS[name] = OptimizerSpec(name, cls, config_fields)
    return cls


def optimizer_spec(name: str) -> OptimizerSpec:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown --optimizer {name!r}; registered: {', '.join(sorted(OPTIMIZERS))}")
    return OPTIMIZERS[name]


def optimizer_settings(name: str, given: dict | None = None) -> dict:
    """The optimiser's settings, defaults filled in; a setting it does not have is an error."""
    spec = optimizer_spec(name)
    valid = [f.name for f in dataclasses.fields(spec.config_fields)]
    unknown = sorted(set(given or {}) - set(valid))
    if unknown:
        raise ValueError(f"optimizer {name!r} has no setting(s) {unknown}; its settings: {valid}")
    return dataclasses.asdict(spec.config_fields(**(given or {})))


def make_optimizer(name: str, dim: int, *, population: int, bound: float, seed: int, settings: dict | None = None):
    spec = optimizer_spec(name)
    return spec.cls(dim, population=population, bound=bound, seed=seed, **optimizer_settings(name, settings))
