"""Run lm-eval in-process on the project's tasks, as `lm_eval --include_path culture_tasks` does."""

from __future__ import annotations

from culture_tasks.paths import task_manager


def evaluate(model_dir, tasks, data_root, *, limit=None, peft=None, chat=False, metadata=None, log_samples=False):
    import lm_eval

    meta = {"data_dir": str(data_root), **(metadata or {})}
    args = f"pretrained={model_dir},dtype=float32" + (f",peft={peft}" if peft else "")
    return lm_eval.simple_evaluate(
        model="hf",
        model_args=args,
        tasks=list(tasks),
        task_manager=task_manager(meta),
        limit=limit,
        device="cpu",
        batch_size=8,
        apply_chat_template=chat,
        log_samples=log_samples,
        bootstrap_iters=0,
    )
