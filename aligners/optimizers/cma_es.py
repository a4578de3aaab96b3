"""CMA-ES, the ``cma`` package's ask/tell."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from aligners.optimizers.registry import register_optimizer


@dataclass
class CMAConfig:
    sigma0: float = field(default=0.5, metadata={"help": "CMA-ES initial step, as a fraction of the bound"})

    def __post_init__(self):
        if not 0 < self.sigma0 < math.inf:  # also refuses nan
            raise ValueError(f"--sigma0 (CMA-ES initial step) must be positive and finite, got {self.sigma0}")

    def check_population(self, population: int) -> None:
        """cma's recombination weights need two candidates; with one it fails only when built."""
        if population < 2:
            raise ValueError(f"--population {population}: CMA-ES (--optimizer cma) needs a population of at least 2; "
                             "use --population 2 or more")

    def check_dimension(self, dim: int) -> None:
        """cma 4.x fails in one dimension at the first tell whose step outgrows a third of the box
        ("not yet initialized (dimension needed)"), after the generation was scored."""
        if dim < 2:
            raise ValueError(f"--subspace-dim {dim}: CMA-ES (--optimizer cma) needs a search space of at least 2 "
                             "dimensions; use --subspace-dim 2 or more, or --optimizer de")


@register_optimizer("cma", config_fields=CMAConfig)
class CMAES:
    """``cma`` samples from numpy's global random state; it gets a private one here so that
    other code drawing random numbers between generations cannot change the run."""

    def __init__(self, dim: int, *, population: int, bound: float, seed: int, sigma0: float = 0.5):
        import cma

        if not 0 <= seed < 2**32 - 1:  # cma reads a seed of 0 as one from the clock, and refuses 2**32 on
            raise ValueError(f"CMA-ES seed must be from 0 to {2**32 - 2}, got {seed}")
        self._trials: list | None = None
        outside = np.random.get_state()
        self.es = cma.CMAEvolutionStrategy(
            np.zeros(dim), sigma0 * bound,
            {"popsize": population, "bounds": [-bound, bound], "seed": seed + 1, "verbose": -9},
        )
        self._state = np.random.get_state()
        np.random.set_state(outside)

    def ask(self) -> np.ndarray:
        outside = np.random.get_state()
        np.random.set_state(self._state)
        try:
            self._trials = self.es.ask()
        finally:
            self._state = np.random.get_state()
            np.random.set_state(outside)
        return np.array(self._trials)

    def tell(self, fitness) -> None:
        self.es.tell(self._trials, [float(v) for v in fitness])
