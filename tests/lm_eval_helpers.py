"""Run lm-eval in-process on the project's tasks, as `lm_eval --include_path culture_tasks` does."""

from __future__ import annotations

from culture_tasks.paths import task_manager


def evaluate(model_dir, tasks, data_root, *, limit=None, peft=None, chat=False, metadata=None, log_samples=False,
             output_path=None, bootstrap_iters=0):
    """``lm_eval.simple_evaluate``; with ``output_path`` the result and per-sample files are written
    there exactly as ``lm_eval --output_path ... --log_samples`` writes them. ``bootstrap_iters``: lm-eval's own
    standard errors (0: none, "N/A" everywhere; the ``lm_eval`` command's default is 100000)."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker

    meta = {"data_dir": str(data_root), **(metadata or {})}
    args = f"pretrained={model_dir},dtype=float32" + (f",peft={peft}" if peft else "")
    tracker = EvaluationTracker(output_path=str(output_path)) if output_path else None
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args=args,
        tasks=list(tasks),
        task_manager=task_manager(meta),
        limit=limit,
        device="cpu",
        batch_size=8,
        apply_chat_template=chat,
        log_samples=log_samples or output_path is not None,
        bootstrap_iters=bootstrap_iters,
        evaluation_tracker=tracker,
    )
    if tracker is not None:
        samples = results.pop("samples")
        tracker.save_results_aggregated(results=results, samples=samples)
        for task_name in results["configs"]:
            tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    return results
