"""culture-train: CultureLLM data augmentation, training sets and LoRA fine-tuning.

    culture-train augment --generator <model dir> --output aug.jsonl [--paraphrases 10 --keep 10
                          --threshold 0.8] [--embedding-model <sentence-transformers dir>] [--resume]
    culture-train augment --endpoint http://host:8000/v1 --endpoint-model <name> --output aug.jsonl
    culture-train data --culture arabic --questions aug.jsonl --output arabic.jsonl [--rule mean]
    culture-train data --culture one --questions aug.jsonl --output one.jsonl      # CultureLLM-One
    culture-train lora --model <base dir> --data arabic.jsonl --output adapters/arabic [--resume]
    culture-train kfold --model <base dir> --data arabic.jsonl --output kfold/arabic --folds 5 [--resume]
    culture-train kfold-summary --runs kfold/arabic kfold/english ... --output kfold/summary.md

Every step also reads --config <yaml> (keys: the step's flags with underscores; ``synonyms: false``
for --no-synonyms); flags given on the command line override it. `culture-train <step> --help`
lists a step's settings.
"""

from __future__ import annotations

import argparse
import json
import sys

from culture_tasks.cli_args import ConfigError, ConfigParser, configure_logging

STEPS = {
    "augment": "paraphrase and synonym-substitute the WVS seed questions",
    "data": "chat-format training examples labelled with a culture's WVS answers",
    "lora": "LoRA fine-tuning; writes a PEFT adapter",
    "kfold": "k-fold cross-validation over the WVS seed questions: held-out vs in-sample WVS scores",
    "kfold-summary": "several cultures' k-fold runs in one table, and all cultures together, with intervals",
}


def config_class(step: str) -> type:
    if step == "augment":
        from trainers.augment import AugmentConfig

        return AugmentConfig
    if step == "data":
        from trainers.examples import DataConfig

        return DataConfig
    if step == "kfold":
        from trainers.kfold import KFoldConfig

        return KFoldConfig
    if step == "kfold-summary":
        from trainers.kfold import KFoldSummaryConfig

        return KFoldSummaryConfig
    from trainers.lora import LoraTrainConfig

    return LoraTrainConfig


def parser(step: str) -> ConfigParser:
    return ConfigParser([config_class(step)], prog=f"culture-train {step}", description=STEPS[step])


def split_step(argv: list[str] | None) -> tuple[str, list[str]]:
    """The step named first, and the rest of the command line (its flags)."""
    top = argparse.ArgumentParser(prog="culture-train", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("step", choices=list(STEPS), help="; ".join(f"{k}: {v}" for k, v in STEPS.items()))
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        raise ConfigError(f"name a step: {', '.join(STEPS)} (culture-train --help)")
    if argv[0] in ("-h", "--help"):
        top.parse_args(argv)
    if argv[0] not in STEPS:
        raise ConfigError(f"unknown step {argv[0]!r}; choose one of {', '.join(STEPS)}")
    return argv[0], argv[1:]


def parse_step(step: str, argv: list[str]):
    """The step's settings from its flags and --config file, checked as far as they can be before it runs."""
    step_parser = parser(step)
    (cfg,) = step_parser.parse(argv)
    cfg.config_file = step_parser.config_file  # an input of the run, not a setting: never its --output
    if hasattr(cfg, "check_given"):
        cfg.check_given(step_parser.given)
    return cfg


def run_augment(cfg) -> dict:
    from trainers.augment import run_augmentation
    from trainers.similarity import Embedder

    def load_models():
        """Called once the output is claimed; the embedder first, so a missing folder fails before
        the generator loads."""
        embedder = Embedder(cfg.embedding_model, device=cfg.device)
        return cfg.make_generator(), embedder

    state = run_augmentation(cfg, load_models=load_models)
    return {"output": cfg.output, "seed_questions": len(state["done"]), "counts": state["counts"]}


def run_data(cfg) -> dict:
    from trainers.examples import build_examples

    examples = build_examples(cfg.culture, questions_file=cfg.questions, data_dir=cfg.data_dir, rule=cfg.rule,
                              include_seed_questions=cfg.include_seed_questions, tag_country=cfg.tag_country)
    examples.inputs.append(getattr(cfg, "config_file", None))
    examples.write(cfg.output, overwrite=cfg.overwrite)
    return {"output": cfg.output, "examples": len(examples.rows), "counts": examples.counts}


def run_lora(cfg) -> dict:
    from trainers.lora import train

    summary = train(cfg)
    return {k: summary[k] for k in ("examples", "steps", "train_loss", "seconds", "lm_eval")}


def run_kfold(cfg) -> dict:
    from trainers.kfold import run_kfold

    report = run_kfold(cfg)
    return {"output": cfg.output, "culture": report["culture"], "folds": report["folds"],
            "documents": report["documents"], **{part: _differences(report[part]) for part in ("held_out", "in_sample")}}


def _differences(part: dict) -> dict:
    return {m: {k: part[m][k] for k in ("base", "base_ci", "adapter", "adapter_ci", "diff", "low", "high", "p_value")}
            for m in part}


def run_kfold_summary(cfg) -> dict:
    from trainers.kfold import run_summary

    summary = run_summary(cfg)
    return {"output": cfg.output, **{row["culture"]: {part: _differences(row[part]) for part in ("held_out", "in_sample")}
                                     for row in [*summary["cultures"], summary["all"]]}}


RUN = {"augment": run_augment, "data": run_data, "lora": run_lora, "kfold": run_kfold,
       "kfold-summary": run_kfold_summary}
SHARED = ("lora",)  # the steps that share their work among the processes of torchrun / accelerate launch


def main(argv: list[str] | None = None) -> int:
    from culture_tasks.data_root import DataRootError
    from culture_tasks.outputs import check_single_process, error_line, main_process, os_error_line

    configure_logging()
    step = None
    try:
        step, rest = split_step(argv)
        if step not in SHARED:
            check_single_process(f"culture-train {step}")
        summary = RUN[step](parse_step(step, rest))
        if main_process():  # one summary, not one per process of a distributed lora run
            print(json.dumps(summary, indent=1))
    except (DataRootError, FileNotFoundError, ValueError, ImportError) as err:
        print(error_line(f"culture-train{' ' + step if step else ''}", err), file=sys.stderr)
        return 2
    except OSError as err:  # a full disk or an unwritable folder mid-run: the finished folds and checkpoints are kept
        print(os_error_line(f"culture-train{' ' + step if step else ''}", err), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
