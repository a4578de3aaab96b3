"""The task class of every culture task: lm-eval's ``ConfigurableTask`` with the checks it lacks.

A ``--metadata`` key that is one of the task's own settings (``persona``, ``max_text_chars``) is named in one
line (``metadata.check_task_settings``): lm-eval would call the loader with it twice, a bare TypeError.

``lm_eval --cache_requests true`` keeps each task's built requests in a file named by the task, the few-shot
count, the process rank, the chat template and the tokenizer, never by the documents or the prompt code. The
documents are still loaded afresh, and ``process_results`` scores the cached requests' answers against them:
after an edited data file, another ``data_dir``, another ``--metadata`` (option order, persona, questions) or
another release of these tasks, the answers to the old prompts would be scored against the new labels without
a word. With ``--samples`` the cache even serves the first documents instead of the sampled ones. So when a
cache was read, every cached request must belong to a document of this run, unchanged, and the first
document's requests built now must equal the cached ones; otherwise the run stops, naming the fix.

A data-parallel evaluation split over the processes of several nodes (``accelerate launch`` / ``torchrun``
with ``--num_machines`` / ``--nnodes`` > 1) stops before any document is scored (``check_one_node``): lm-eval's
hf backend numbers those processes by their rank on their own node, so the nodes would score the same documents.

It also records the content fingerprint of the local model, adapter and tokenizer folders in the task's metadata
(``loaded_fingerprints``), so a result file of plain ``--model hf`` says which weights it scored.

Each template names this class (``class: !function culture_tasks.task.CultureTask``), lm-eval's own route for
a task defined in Python; the YAML's settings are passed on unchanged.
"""

from __future__ import annotations

import json
from importlib.metadata import version

from lm_eval.api.task import ConfigurableTask

from culture_tasks.fingerprints import FINGERPRINTS_KEY, folder_fingerprints
from culture_tasks.metadata import check_task_settings
from culture_tasks.outputs import launched_on_node, launched_world_size


class StaleRequestCache(ValueError):
    """lm-eval's request cache holds requests of other documents or prompts than this run's."""


class SplitOverNodes(ValueError):
    """A data-parallel evaluation over several nodes, which lm-eval's hf backend splits by node-local rank."""


class CultureTask(ConfigurableTask):
    def __init__(self, *args, config: dict | None = None, **kwargs):
        config = {k: v for k, v in (config or {}).items() if k != "class"}  # names this class: no TaskConfig field
        # lm-eval calls the loader as custom_dataset(**metadata, **dataset_kwargs): a --metadata key that is one of
        # the task's own settings would stop it with a bare TypeError before the loader could name it
        check_task_settings(str(config.get("task")), config.get("metadata") or {}, config.get("dataset_kwargs") or {})
        super().__init__(*args, config=config, **kwargs)
        record_loaded_fingerprints(self.config.metadata)


    def build_all_requests(self, **kwargs) -> None:
        check_one_node(str(self.config.task), kwargs.get("world_size", 1))
        super().build_all_requests(**kwargs)
        if kwargs.get("cache_requests") and not kwargs.get("rewrite_requests_cache"):
            self._check_cached_requests(kwargs)

    def _check_cached_requests(self, kwargs: dict) -> None:
        where = {k: kwargs[k] for k in ("rank", "limit", "world_size", "samples") if k in kwargs}
        fresh = {doc_id: _canonical(doc) for doc_id, doc in self.doc_iterator(**where)}
        cached = self._instances
        stale = {i.doc_id for i in cached if fresh.get(i.doc_id) != _canonical(i.doc)}
        stale |= set(fresh) - {i.doc_id for i in cached}
        if not stale and cached:
            first = cached[0].doc_id
            try:  # the first document's requests built now: the prompt code and settings of this run
                super().build_all_requests(**{**kwargs, "limit": 1, "cache_requests": False})
                rebuilt = [i.arguments for i in self._instances if i.doc_id == first]
            finally:
                self._instances = cached
            if rebuilt != [i.arguments for i in cached if i.doc_id == first]:
                stale = {first}
        if stale:
            raise StaleRequestCache(
                f"{self.config.task}: lm-eval's request cache holds requests built from other documents or prompts "
                f"than this run's ({len(stale)} of {len(fresh)} documents differ; the data, data_dir, --metadata, "
                "--samples or the task release changed since it was written): rerun with --cache_requests refresh")


def check_one_node(task: str, world_size: int) -> None:
    """Refuse a data-parallel split over several nodes before any document is scored. lm-eval's hf backend
    (0.4.13) gives each process its rank on its own node (``accelerator.local_process_index``) out of the whole
    launch's processes: the processes of one local rank on every node score the same documents, those of the
    ranks held by the other nodes' processes are never scored, and the run fails when it gathers the results
    (``gather_object`` on a second "rank 0"), after all the scoring. One node is split correctly."""
    on_node = launched_on_node()
    if world_size > 1 and on_node < launched_world_size():
        raise SplitOverNodes(
            f"{task}: this evaluation is split over {world_size} processes on several nodes ({on_node} on this one), "
            f"and lm-eval {version('lm_eval')}'s hf backend numbers them by their rank on their own node, so every "
            "node would score the same documents and the run would fail when gathering them; run it on one node "
            f"(accelerate launch --num_processes {on_node}), or give each node its own --tasks")


def record_loaded_fingerprints(metadata) -> None:
    """The content fingerprints of the local model, adapter and tokenizer folders the run names (``lm_eval`` merges
    ``--model_args`` into the tasks' metadata), under ``FINGERPRINTS_KEY`` in the metadata the result file
    records: with plain ``--model hf``, which records no local content, a result row still says exactly which
    weights it scored (taken as the tasks are built, after lm-eval has loaded the model)."""
    if not isinstance(metadata, dict):
        return
    found = folder_fingerprints(metadata)
    if found:
        metadata[FINGERPRINTS_KEY] = found


def _canonical(doc) -> str:
    """A document as comparable text (NaN equals NaN; key order does not matter)."""
    return json.dumps(doc, sort_keys=True, default=str)
