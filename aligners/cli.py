"""culture-align: soft-prompt alignment of a frozen model to countries' Hofstede profiles.

    culture-align --model <dir> --country USA [--optimizer de|cma] [--virtual-tokens N]
                  [--subspace-dim K] [--population P] [--generations G] [--seed S]
                  [--device cuda] [--dtype bfloat16] --output <dir> [--resume]
    culture-align --config run.yaml --country CHN --generations 50     # YAML + overrides

Each country gets a PEFT prompt-tuning checkpoint, alignment.json (settings, history, final
indices, the plain / persona / soft-prompt comparison, WVS held-out check) and loss_curve.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from aligners.config import AlignConfig


def parse_args(argv: list[str] | None) -> tuple[str | None, dict]:
    p = argparse.ArgumentParser(prog="culture-align", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file of settings; command-line flags override it")
    p.add_argument("--model", help="base model folder (or hub id)")
    p.add_argument("--country", dest="countries", nargs="+", help="Hofstede code, ISO alpha-3 code or name")
    p.add_argument("--target", type=lambda s: [float(x) for x in s.split(",")],
                   help="explicit scores pdi,idv,mas,uai,lto,ivr (e.g. 95,25,60,80,36,52)")
    p.add_argument("--optimizer", choices=["de", "cma"])
    p.add_argument("--virtual-tokens", type=int)
    p.add_argument("--subspace-dim", type=int)
    p.add_argument("--population", type=int)
    p.add_argument("--generations", type=int)
    p.add_argument("--bound", type=float, help="box bound of z")
    p.add_argument("--init", choices=["text", "vocab"], help="initial prompt: a text's embeddings or random rows")
    p.add_argument("--init-text")
    p.add_argument("--f", type=float, help="DE differential weight F")
    p.add_argument("--cr", type=float, help="DE crossover rate CR")
    p.add_argument("--sigma0", type=float, help="CMA-ES initial step, as a fraction of the bound")
    p.add_argument("--seed", type=int)
    p.add_argument("--device")
    p.add_argument("--dtype")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--chat-template", action="store_true", default=None, help="score as --apply_chat_template")
    p.add_argument("--answer-mode", choices=["expected", "argmax"])
    p.add_argument("--data-dir", help="data root (default: $CULTURE_DATA_DIR)")
    p.add_argument("--no-baselines", dest="baselines", action="store_false", default=None)
    p.add_argument("--output")
    p.add_argument("--resume", action="store_true", default=None)
    args = vars(p.parse_args(argv))
    return args.pop("config"), args


def main(argv: list[str] | None = None) -> int:
    from aligners.align import AlignmentError, run
    from culture_tasks.data_root import DataRootError
    from culture_tasks.survey.vsm13 import UnknownCountryError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config_path, overrides = parse_args(argv)
    try:
        cfg = AlignConfig.from_sources(config_path, overrides)
        summaries = run(cfg)
    except (AlignmentError, UnknownCountryError, DataRootError, ValueError, FileNotFoundError) as err:
        print(f"culture-align: {err}", file=sys.stderr)
        return 2
    for s in summaries:
        print(json.dumps({"country": s["target"]["country"], "loss": s["loss"], "report": s["report"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
