"""Run lm-eval in-process on the project's tasks, as `lm_eval --include_path culture_tasks` does."""

from __future__ import annotations

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parents[1] / "culture_tasks"


def evaluate(model_dir, tasks, data_root, *, limit=None, peft=None, chat=False, metadata=None, log_samples=False):
    import lm_eval
    from lm_eval.tasks import TaskManager

    meta = {"data_dir": str(data_root), **(metadata or {})}
    args = f"pretrained={model_dir},dtype=float32" + (f",peft={peft}" if peft else "")
    return lm_eval.simple_evaluate(
        model="hf",
        model_args=args,
        tasks=list(tasks),
        task_manager=TaskManager(include_path=str(TASKS_DIR), metadata=meta),
        limit=limit,
        device="cpu",
        batch_size=8,
        apply_chat_template=chat,
        log_samples=log_samples,
        bootstrap_iters=0,
    )
