"""Differential Evolution (rand/1/bin, bounds by reflection), written here because scipy's
``differential_evolution`` scores a vectorised population but offers no ask/tell and no way to
stop and resume mid-run with its random state. The start point z = 0, i.e. the initial prompt P0
itself, is a member of the first population, so the result is never worse than P0."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aligners.optimizers.registry import register_optimizer


MIN_POPULATION = 4  # a member and three others (rand/1)


@dataclass
class DEConfig:
    f: float = field(default=0.5, metadata={"help": "DE differential weight F"})
    cr: float = field(default=0.9, metadata={"help": "DE crossover rate CR"})

    def __post_init__(self):
        if not 0 < self.f <= 2:
            raise ValueError(f"--f (DE differential weight) must be in (0, 2], got {self.f}")
        if not 0 <= self.cr <= 1:
            raise ValueError(f"--cr (DE crossover rate) must be in [0, 1], got {self.cr}")

    def check_population(self, population: int) -> None:
        """Each trial mixes three other members, so a smaller population cannot run."""
        if population < MIN_POPULATION:
            raise ValueError(f"--population {population}: Differential Evolution (--optimizer de) needs a population "
                             f"of at least {MIN_POPULATION}; use --population {MIN_POPULATION} or more")


@register_optimizer("de", config_fields=DEConfig)
class DifferentialEvolution:
    def __init__(self, dim: int, *, population: int, bound: float, seed: int, f: float = 0.5, cr: float = 0.9):
        DEConfig(f, cr).check_population(population)
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
