"""Black-box optimisers with an ask/tell interface, so a whole population is scored in one batch.

Adding one is one module: a class with ``ask``/``tell`` and a dataclass of its settings, passed to
``register_optimizer`` (see ``registry``); the built-in ones are imported here to register them.
"""

from aligners.optimizers.registry import (OPTIMIZERS, AskTell, OptimizerSpec, make_optimizer, optimizer_settings,
                                          optimizer_spec, register_optimizer)
from aligners.optimizers.differential_evolution import DEConfig, DifferentialEvolution  # noqa: E402
from aligners.optimizers.cma_es import CMAES, CMAConfig  # noqa: E402

__all__ = ["OPTIMIZERS", "AskTell", "OptimizerSpec", "make_optimizer", "optimizer_settings", "optimizer_spec",
           "register_optimizer", "DifferentialEvolution", "DEConfig", "CMAES", "CMAConfig"]
