"""culture-align: soft-prompt alignment of a frozen model to countries' Hofstede profiles.

    culture-align --model <dir> --country USA [--optimizer de|cma] [--virtual-tokens N]
                  [--subspace-dim K] [--population P] [--generations G] [--seed S]
                  [--device cuda] [--dtype bfloat16] --output <dir> [--resume]
    culture-align --config run.yaml --country CHN --generations 50     # YAML + overrides

Each country gets a PEFT prompt-tuning checkpoint, alignment.json (settings, history, final
indices, the plain / persona / soft-prompt comparison, WVS held-out check) and loss_curve.png.
Every setting can also be a key of the --config file (``virtual_tokens: 8``; ``baselines: false`` for
--no-baselines); flags override it.
"""

from __future__ import annotations

import json
import sys

from aligners.config import AlignConfig
from culture_tasks.cli_args import ConfigParser, configure_logging


def parser() -> ConfigParser:
    from aligners.optimizers import OPTIMIZERS

    return ConfigParser([AlignConfig, *(s.config_fields for s in OPTIMIZERS.values())],
                        prog="culture-align", description=__doc__)


def parse_args(argv: list[str] | None) -> AlignConfig:
    config_parser = parser()
    cfg, *optimizer_configs = config_parser.parse(argv)
    cfg.config_file = config_parser.config_file  # an input of the run, not a setting: never inside --output
    text = config_parser.given.get("init_text")
    if cfg.init == "vocab" and text is not None:  # it would be recorded, and ignored
        raise ValueError(f"{text} has no effect with --init vocab (random vocabulary rows); drop it, or use --init text")
    return cfg.with_optimizer_configs(optimizer_configs, config_parser.given)


def main(argv: list[str] | None = None) -> int:
    from aligners.align import AlignmentError, run
    from culture_tasks.data_root import DataRootError
    from culture_tasks.outputs import error_line, os_error_line
    from culture_tasks.survey.vsm13 import UnknownCountryError

    configure_logging()
    try:
        summaries = run(parse_args(argv))
    except (AlignmentError, UnknownCountryError, DataRootError, ValueError, FileNotFoundError) as err:
        print(error_line("culture-align", err), file=sys.stderr)
        return 2
    except OSError as err:  # a full disk or an unwritable folder mid-run: the checkpoints written are kept
        print(os_error_line("culture-align", err), file=sys.stderr)
        return 2
    from aligners import distributed

    for s in summaries if distributed.is_main() else []:  # one summary, not one per process
        print(json.dumps({"country": s["target"]["country"], "loss": s["loss"], "loss_ci": s.get("loss_ci"),
                          "report": s["report"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
