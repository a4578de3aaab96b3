"""Optimisers by name, each behind the same ask/tell protocol, with its own hyper-parameters.

As peft's ``register_peft_method``: an optimiser is a class plus a dataclass of its settings,
registered once under a name. The command line gets one flag per setting (``--f``), the run's
recorded settings get its values, and nothing else in the aligner names an optimiser.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from culture_tasks.metadata import with_hints


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
    config_fields: type  # a dataclass; field(metadata={"help": ...}) on each setting; __post_init__ checks
    # the values, an optional check_population(population) the run's population and an optional
    # check_dimension(dim) its search space's dimension (all raise ValueError)


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


def optimizer_settings(name: str, given: dict | None = None, *, population: int | None = None,
                       dim: int | None = None) -> dict:
    """The optimiser's settings, defaults filled in. Names and types are checked here, values by
    its config's ``__post_init__`` and, given ``population`` / ``dim``, by its ``check_population`` /
    ``check_dimension``: all before a model is loaded, so that a run the optimiser would refuse never starts."""
    spec = optimizer_spec(name)
    given = dict(given or {})
    _check_names(name, spec, given)
    config = spec.config_fields(**_typed(name, spec, given))
    if population is not None and hasattr(config, "check_population"):
        config.check_population(population)
    if dim is not None and hasattr(config, "check_dimension"):
        config.check_dimension(dim)
    return dataclasses.asdict(config)


def _check_names(name: str, spec: OptimizerSpec, given: dict) -> None:
    valid = [f.name for f in dataclasses.fields(spec.config_fields)]
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(f"optimizer {name!r} has no setting(s) {with_hints(unknown, valid)}; its settings: {valid}")


def _typed(name: str, spec: OptimizerSpec, given: dict) -> dict:
    """``given`` with each value checked against its field's type: a JSON string or a bool is no
    number (``{"cr": true}`` would run as 1.0); an int is taken for a float field, as a float."""
    hints = typing.get_type_hints(spec.config_fields)
    return {key: _typed_value(name, key, value, hints[key]) for key, value in given.items()}


def _typed_value(name: str, key: str, value, tp):
    options = typing.get_args(tp)
    if type(None) in options and len(options) == 2:  # Optional[X]: None, or an X
        if value is None:
            return None
        tp = next(t for t in options if t is not type(None))
    if tp not in _TYPE_WORDS:
        return value  # other field types are the config's own to check
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, tp) and (tp is bool or not isinstance(value, bool)):  # True is an int to Python
        return value
    raise ValueError(f"--optimizer-args: {key} of --optimizer {name} must be {_TYPE_WORDS[tp]}, "
                     f"got {value!r} ({type(value).__name__})")


_TYPE_WORDS = {float: "a number (float)", int: "an integer (int)", str: "a string (str)", bool: "true or false (bool)"}


def make_optimizer(name: str, dim: int, *, population: int, bound: float, seed: int, settings: dict | None = None):
    spec = optimizer_spec(name)
    settings = optimizer_settings(name, settings, population=population, dim=dim)
    return spec.cls(dim, population=population, bound=bound, seed=seed, **settings)
