"""Black-box optimisers with an ask/tell interface, so a whole population is scored in one batch.

Differential Evolution is written here (rand/1/bin, bounds by reflection, the start point z = 0,
i.e. the initial prompt P0 itself, is a member of the first population): scipy's
``differential_evolution`` scores a vectorised population but offers no ask/tell and no way to
stop and resume mid-run with its random state. CMA-ES is the ``cma`` package's.

Both are deterministic given their seed and the fitness values they are told, which is how an
interrupted run resumes exactly: the saved fitness history is replayed into a fresh optimiser.
"""

from __future__ import annotations

import numpy as np


class DifferentialEvolution:
    def __init__(self, dim: int, *, population: int, bound: float, seed: int, f: float = 0.5, cr: float = 0.9):
        if population < 4:
            raise ValueError("Differential Evolution needs a population of at least 4")
        self.dim, self.size, self.bound, self.f, self.cr = dim, population, bound, f, cr
        self.rng = np.random.default_rng(seed)
        self.population: np.ndarray | None = None
        self.fitness: np.ndarray | None = None
        self._trials: np.ndarray | None = None

    def ask(self) -> np.ndarray:
        if self.population is None:
            start = self.rng.uniform(-self.bound, self.bound, (self.size, self.dim))
            start[0] = 0.0
            self._trials = start
            return start.copy()
        trials = np.empty_like(self.population)
        for i in range(self.size):
            others = [j for j in range(self.size) if j != i]
            a, b, c = self.population[self.rng.choice(others, 3, replace=False)]
            mutant = a + self.f * (b - c)
            cross = self.rng.random(self.dim) < self.cr
            cross[self.rng.integers(self.dim)] = True
            trial = np.where(cross, mutant, self.population[i])
            over, under = trial > self.bound, trial < -self.bound
            trial[over] = 2 * self.bound - trial[over]
            trial[under] = -2 * self.bound - trial[under]
            trials[i] = np.clip(trial, -self.bound, self.bound)
        self._trials = trials
        return trials.copy()

    def tell(self, fitness) -> None:
        fitness = np.asarray(fitness, dtype=float)
        if self.population is None:
            self.population, self.fitness = self._trials, fitness
            return
        better = fitness <= self.fitness
        self.population = np.where(better[:, None], self._trials, self.population)
        self.fitness = np.where(better, fitness, self.fitness)


class CMAES:
    """``cma`` samples from numpy's global random state; it gets a private one here so that
    other code drawing random numbers between generations cannot change the run."""

    def __init__(self, dim: int, *, population: int, bound: float, seed: int, sigma0: float = 0.5):
        import cma

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


def make_optimizer(name: str, dim: int, *, population: int, bound: float, seed: int, f: float, cr: float,
                   sigma0: float):
    if name == "de":
        return DifferentialEvolution(dim, population=population, bound=bound, seed=seed, f=f, cr=cr)
    if name == "cma":
        return CMAES(dim, population=population, bound=bound, seed=seed, sigma0=sigma0)
    raise ValueError(f"optimizer must be 'de' or 'cma', got {name!r}")
