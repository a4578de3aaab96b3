"""The lm-eval task class of every task YAML here (their templates' ``class:``).

lm-eval calls a task's loader as ``custom_dataset(**metadata, **dataset_kwargs)``: a ``--metadata`` key that is
also one of the task's own settings (``persona``, ``max_text_chars``) stops the run with a bare TypeError before
the loader can check it. This class checks first (``metadata.check_task_settings``), then is lm-eval's own.
"""

from __future__ import annotations

from lm_eval.api.task import ConfigurableTask

from culture_tasks.metadata import check_task_settings


class CultureTask(ConfigurableTask):
    """``ConfigurableTask``, refusing a ``--metadata`` key that the task's YAML fixes with one line that names it."""

    def __init__(self, config: dict | None = None, **kwargs) -> None:
        config = {key: value for key, value in (config or {}).items() if key != "class"}  # not a TaskConfig field
        check_task_settings(str(config.get("task")), config.get("metadata") or {}, config.get("dataset_kwargs") or {})
        super().__init__(config=config, **kwargs)
