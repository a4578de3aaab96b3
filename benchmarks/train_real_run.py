"""A real CultureLLM run: training sets, LoRA adapters per culture and seed, lm-eval scores.

    python -m benchmarks.train_real_run --model <base dir> --questions aug.jsonl \\
        --cultures english chinese arabic one --seeds 0 1 2 --out runs/smollm2 --limit 300

Every step is skipped when its output exists, so an interrupted run continues; it continues only with
the settings it was started with (stored in ``<out>/run_settings.json``, compared on every start; more
cultures and seeds may be added; in half precision, the default, the evaluation batch size and device are
settings too), and ``<out>`` is locked against a second run. Each result file is lm-eval's own
(``results_<run>.json``, its ``config`` that of the tasks run under ``--limit``), with lm-eval's per-sample logs
beside it (``samples_<task>_<run>.jsonl``): ``culture-leaderboard runs/smollm2/results`` shows them,
``python -m benchmarks.train_table runs/smollm2`` tabulates base vs fine-tuned, with paired intervals.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from culture_tasks.atomic import write_text_atomic
from culture_tasks.outputs import OutputLock, file_digest, load_settings, save_settings, settings_differences
from culture_tasks.paths import task_manager
from trainers.cultures import ONE, countries_of, evaluation_tasks
from trainers.examples import build_examples
from trainers.kfold import scoring_settings
from trainers.lora import LoraTrainConfig, train

log = logging.getLogger("benchmarks")


# lm-eval's fields by task (or group) that the result file merges over the two evaluations
MERGED = ("results", "higher_is_better", "n-samples", "versions", "n-shot", "configs", "group_subtasks")


def evaluate(model: str, adapter: Path | None, tasks: list[str], out: Path, args) -> None:
    """Score the base model or an adapter into ``results/<name>/results_<name>.json``, with lm-eval's per-sample
    logs beside it (the tasks' interval companions are in the results; lm-eval's own stderr bootstrap is off)."""
    import lm_eval

    name = adapter.name if adapter else "base"
    path = out / "results" / name / f"results_{name}.json"
    if path.exists():
        return
    model_args = f"pretrained={model},dtype={args.dtype}" + (f",peft={adapter}" if adapter else "")
    limits = {}
    results = {key: {} for key in MERGED}
    # the classification suites under --limit, the 50-question survey tasks whole
    for group, limit in (([t for t in tasks if t.startswith("culturellm")], args.limit),
                         ([t for t in tasks if t.startswith("wvs_")], None)):
        if not group:
            continue
        r = lm_eval.simple_evaluate(
            model="hf", model_args=model_args, tasks=group, limit=limit, batch_size=args.eval_batch_size,
            device=args.device, apply_chat_template=True, bootstrap_iters=0, log_samples=True,
            task_manager=task_manager({"data_dir": args.data_dir}),
        )
        write_samples(path, r.pop("samples"))
        for key in MERGED:
            results[key].update(r.get(key) or {})
        if limit is not None or "config" not in results:  # the --limit group's: the run key says --limit N
            results["config"] = r["config"]
        results["chat_template"] = r.get("chat_template")
        limits[",".join(group)] = limit
    results["limits"] = limits
    write_text_atomic(path, json.dumps(results, indent=1, default=str))  # last: marks the scoring finished


def write_samples(path: Path, samples: dict[str, list]) -> None:
    """lm-eval's per-sample logs, ``samples_<task>_<name>.jsonl`` beside ``results_<name>.json``, written by
    lm-eval's own tracker as ``lm_eval --log_samples`` writes them: the paired base-vs-adapter intervals of
    ``train_table`` and ``culture-leaderboard`` resample them. A killed run's log is replaced, not appended to."""
    from lm_eval.loggers import EvaluationTracker

    from culture_tasks.leaderboard import result_stamp

    tracker = EvaluationTracker(output_path=str(path))
    tracker.date_id = result_stamp(path)
    for task, rows in samples.items():
        path.with_name(f"samples_{task}_{tracker.date_id}.jsonl").unlink(missing_ok=True)
        tracker.save_results_samples(task_name=task, samples=rows)


SETTINGS = "run_settings.json"
# settings stored only by later versions (``scoring_settings``): a run stored without them continues unchecked on them
LATER_SETTINGS = ("eval_batch_size", "eval_device", "eval_kernels")


def run_settings(args) -> dict:
    """What the outputs in ``--out`` depend on (the questions by content); cultures, seeds and stage may change
    between starts, and in float32 the device and the evaluation batch size (half-precision scores move with
    them: ``kfold.scoring_settings``, so adapters scored after a restart are scored as the stored base was)."""
    questions = Path(args.questions)
    if not questions.is_file():
        raise SystemExit(f"--questions {questions}: no such file")
    return {"model": args.model, "questions_sha256": file_digest(questions), "data_dir": args.data_dir,
            "limit": args.limit, "epochs": args.epochs, "learning_rate": args.learning_rate,
            "batch_size": args.batch_size, "rank": args.rank, "gradient_checkpointing": args.gradient_checkpointing,
            "dtype": args.dtype, **scoring_settings(args.dtype, args.eval_batch_size, args.device)}


def claim_settings(out: Path, settings: dict) -> None:
    """Store the settings of a new ``out``; refuse to continue one made with others, whose adapters,
    training sets and result files would be reported as if made with these."""
    saved = load_settings(out / SETTINGS, SystemExit)
    if saved is None:
        save_settings(out / SETTINGS, settings)
        return
    unstored = [k for k in LATER_SETTINGS if k not in saved and k in settings]
    if unstored:  # refusing would strand the run; its base results were scored with what it was started with
        log.warning("%s was stored without %s; the restarted run is not checked on them", out / SETTINGS,
                    ", ".join(unstored))
    diff = settings_differences(saved, {k: v for k, v in settings.items() if k not in unstored})
    if diff:
        raise SystemExit(f"{out / SETTINGS}: the run in {out} was made with other settings ({'; '.join(diff)}); "
                         "continue it with those, or choose another --out")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--questions", required=True)
    p.add_argument("--cultures", nargs="+", default=["english", "chinese", ONE])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", required=True)
    p.add_argument("--data-dir")
    p.add_argument("--limit", type=int, default=300, help="documents per CultureLLM task")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--learning-rate", type=float, default=5e-4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--gradient-checkpointing", type=int, choices=[0, 1], help="default: on GPU")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--stage", choices=["train", "eval", "all"], default="all")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    settings = run_settings(args)
    with OutputLock.for_folder(out, SystemExit):
        claim_settings(out, settings)
        run(args, out)


def run(args, out: Path) -> None:
    if args.stage in ("train", "all"):
        for culture in args.cultures:
            data = out / "data" / f"{culture}.jsonl"
            if not data.exists():
                build_examples(culture, questions_file=args.questions, data_dir=args.data_dir).write(data)
            for seed in args.seeds:
                adapter = out / "adapters" / f"{culture}-s{seed}"
                if (adapter / "training.json").exists():
                    continue
                s = train(LoraTrainConfig(model=args.model, data=[str(data)], output=str(adapter), seed=seed,
                                          epochs=args.epochs, learning_rate=args.learning_rate, rank=args.rank,
                                          alpha=2 * args.rank, batch_size=args.batch_size, logging_steps=10,
                                          save_steps=100_000, resume=adapter.exists(), gradient_checkpointing=None
                                          if args.gradient_checkpointing is None else bool(args.gradient_checkpointing)))
                # seconds is null for a run resumed from a checkpoint stored without the training time before it
                took = "training time unknown" if s["seconds"] is None else f"{s['seconds']:.0f} s"
                print(f"trained {adapter.name}: {s['examples']} examples, {s['steps']} steps, "
                      f"loss {s['train_loss']:.3f}, {took}", flush=True)
    if args.stage in ("eval", "all"):
        base_tasks = ["culturellm"] + [t for c in countries_of(ONE) for t in (f"wvs_{c.slug}", f"wvs_{c.slug}_persona")]
        evaluate(args.model, None, base_tasks, out, args)
        print("evaluated base", flush=True)
        for culture in args.cultures:
            for seed in args.seeds:
                adapter = out / "adapters" / f"{culture}-s{seed}"
                evaluate(args.model, adapter, evaluation_tasks(culture), out, args)
                print(f"evaluated {adapter.name}", flush=True)


if __name__ == "__main__":
    main()
