"""Leaderboard from lm-eval result files: one row per exact run, every number with its interval.

    culture-leaderboard results/ other/results_2026.json --format html --output board.html --baseline base

A row is one identity: the full model arguments (adapter ``peft=`` included), ``--limit``, the
few-shot count, the chat-template settings, the seeds and model revision/SHA lm-eval recorded. Result
files of the same identity (e.g. CultureLLM, WVS and VSM13 run separately, or one ``--samples`` run split
over several calls) fill one row unless a task in both differs in version, settings or the documents it
scored (``sample_signatures``: all of them, or a ``--samples`` file's counts and, where its per-sample logs
are beside it, a digest of the doc ids they hold), so that a sampled run and a complete one, or two samples
of one size, are two rows; a task in two files of one row takes every number (value, interval,
per-sample log, document count) from the newest file. Each row carries its provenance as read
from the result files, and a partial run (fewer documents than a task has: ``--limit``, ``--samples``) is
marked wherever its numbers appear.

CultureLLM scores are per-culture means of the tasks' macro-F1 (as the paper averages per
culture; a task's culture is the group lm-eval ran it in) and the mean over all tasks (what
lm-eval reports for the nested ``culturellm`` group: its ``Group.aggregate`` averages the leaf
tasks). A mean over fewer tasks than another row's in the same column says "k of n tasks" and is
not ranked against the complete ones. Survey
metrics (the headline metrics of the registered instruments, and VSM13's ``vsm13_rank``: ``BOARD_METRICS``)
get tables of their own; a VSM13
task that ranked another country (``--metadata target_country``, e.g. Japan through vsm13_usa)
is a column of its own, ``vsm13_usa → JPN``, compared only with runs that ranked that country; rows that scored
a column's VSM13 task against another target profile or other constants (``--metadata target``, ``constants``)
share no best (``ranked_against``). A
task's 95 % interval is its ``<metric>_ci_low`` / ``_ci_high`` companion metric (where the file has none, the
same bootstrap over its per-sample log); a mean over
tasks gets its interval from the per-sample logs (``--log_samples``), resampled within each task
(``stats.TaskMean``; a WVS group's countries share their questions, so it resamples questions:
``QuestionMean``; a VSM13 group: the mean over its countries of each one's respondent-bootstrap
resamples under the tasks' one seed, ``vsm13_interval``), or says "no interval".
``--baseline`` compares every row with one row on the same documents: the difference with a
paired bootstrap interval, and a paired randomisation test that marks the significant ones (VSM13's
metrics, the six indices too, pair the 24 items: ``vsm13_paired``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from hashlib import sha256
from itertools import combinations
from pathlib import Path

import numpy as np

from culture_tasks import stats
from culture_tasks.cli_args import HALF_PRECISION
from culture_tasks.atomic import write_text_atomic
from culture_tasks.classification import f1_macro, f1_macro_weighted, share, share_weighted
from culture_tasks.data_root import DataRootError
from culture_tasks.jsonl import JsonlError, read_jsonl_lines
from culture_tasks.metadata import TASK_KEYS
from culture_tasks.fingerprints import (FINGERPRINTS_KEY, SAMPLED, loaded_fingerprint, loaded_folders, scheme_of,
                                       warn_sampled)
from culture_tasks.outputs import OutputError, OutputLock, claim_output, error_line, os_error_line, set_aside
from culture_tasks.paths import installed_version, task_groups
from culture_tasks.survey.instruments import (coverage_metrics, directionless_metrics, headline_metrics,
                                              metric_directions)
from culture_tasks.survey.tasks import (BOARD_LOGS, VSM13_METRICS, WVS_TOPICS, _content_cache, logged_settings,
                                        logged_vsm13, majority_mean, reference_version, summarise_vsm13,
                                        vsm13_pair_replicates, vsm13_replicates, vsm13_scores)
from culture_tasks.survey.vsm13 import DIMENSIONS, constants_by_dimension
from culture_tasks.token_cache import MODEL_ARG as TOKEN_CACHE_ARG

SUITES = {"culturellm": "CultureLLM (multiple choice), macro-F1", "culturellm_gen": "CultureLLM (generative), macro-F1"}
PEFT_KINDS = {"LORA": "LoRA", "PROMPT_TUNING": "prompt tuning"}
ALPHA = 0.05  # a difference from the baseline is marked when the paired randomisation p-value is below this
FORMATS = {"html": "html", "md": "md", "markdown": "md", "csv": "csv", "json": "json"}
NO_SAMPLES = "no interval: no per-sample logs (run lm_eval with --log_samples)"
NOT_A_NUMBER = "not a number: too few documents, or NaN log-likelihoods (lm-eval's log names the task)"
# metrics a survey task reports that get tables of their own beside the headline ones (lm-eval's groups do not
# average them, so they have task columns only)
BOARD_METRICS = {"vsm13": ("vsm13_rank",)}
FOREIGN_LOG = ("a cut or foreign per-sample log; rerun with --log_samples, or remove the log (the row then shows "
               "no interval)")
# what lm-eval's config records beyond the model arguments that changes the numbers: the seeds
# (evaluator.simple_evaluate) and, for hf models, the revision and hub SHAs (HFLM.get_model_info)
SEED_KEYS = ("random_seed", "numpy_seed", "torch_seed", "fewshot_seed")
SCORING_KEYS = ("batch_size", "device")  # lm-eval's config: how the requests were batched, and where
RESOLVED_BATCH = "batch_sizes"  # lm-eval's config: the sizes --batch_size auto resolved to ([] for a fixed size)
MODEL_VERSION_KEYS = ("model_revision", "model_sha", "peft_sha", "delta_sha")


class NotAResultFile(ValueError):
    """A file that is not an lm-eval results JSON."""


class LeaderboardError(ValueError):
    """A request the leaderboard cannot answer truthfully (e.g. an unknown --baseline)."""


# --------------------------------------------------------------------------- aggregates over tasks


def _weighted_mean(items: Sequence[float], weights: np.ndarray) -> np.ndarray:
    total = weights.sum(axis=1)
    return np.divide(weights @ np.asarray(items, dtype=float), total, out=np.full(len(weights), np.nan),
                     where=total > 0)


# metric -> (aggregate of one task's per-document items, the same with per-item weights)
RESAMPLABLE: dict[str, tuple[Callable, Callable]] = {
    "f1_macro": (f1_macro, f1_macro_weighted),
    **{m: (share, share_weighted) for m in ("acc", "parse_fail_rate")},
    **{m: (stats.mean, _weighted_mean) for m in ("wvs_jsd", "wvs_w1")},
    "wvs_majority": (majority_mean, _weighted_mean),  # 0 / 1 scores: an exact interval where all are alike
}


def task_mean(metric: str) -> stats.TaskMean:
    """The statistic of a group column: the mean over its tasks of ``metric``, resampled within each task."""
    return stats.TaskMean(*RESAMPLABLE[metric])


# --------------------------------------------------------------------------- runs


@dataclass
class Run:
    """One identity (model arguments, limit, few-shot, chat template, task versions), over all its files."""

    key: dict
    row_id: str = ""
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> metric -> value
    higher_is_better: dict[str, dict[str, bool]] = field(default_factory=dict)
    versions: dict[str, object] = field(default_factory=dict)
    partial_tasks: dict[str, tuple[int, int]] = field(default_factory=dict)  # task -> (effective, original)
    documents: dict[str, int] = field(default_factory=dict)  # task -> documents scored (n-samples effective)
    # task -> which documents a file without --limit scored: "all", (effective, original) for a --samples run
    # whose logs are not beside it, (effective, original, digest of the logged doc ids) where they are
    sample_of: dict[str, object] = field(default_factory=dict)
    samples: dict[str, Path] = field(default_factory=dict)  # task -> samples_*.jsonl
    sources: dict[str, Path] = field(default_factory=dict)  # task -> the result file its numbers come from
    task_config: dict[str, dict] = field(default_factory=dict)
    settings: dict[str, dict] = field(default_factory=dict)  # task family -> the settings its numbers depend on
    groups: dict[str, list[str]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # provenance read from the files
    _items: dict = field(default_factory=dict, repr=False)
    _cultures: dict = field(default_factory=dict, repr=False)

    @property
    def model_args(self) -> dict:
        return self.key["model_args"]

    @property
    def label(self) -> str:
        model = self.model_args.get("pretrained") or self.info.get("model_type") or "?"
        name = Path(str(model).rstrip("/")).name or str(model)
        if self.model_args.get("peft"):
            peft = str(self.model_args["peft"]).rstrip("/")
            name += " + " + (Path(peft).name or peft)
        return name + (" (chat)" if self.key["chat_template"] else "")

    def _uncounted(self, tasks) -> bool:
        """Whether ``--limit`` may have cut one of ``tasks``: the files do not say how many documents it
        had (no ``n-samples``). Where they do, a limit at or above a task's size left it whole."""
        return self.key["limit"] is not None and any(t not in self.documents for t in tasks)

    @property
    def partial(self) -> bool:
        groups = task_groups({"group_subtasks": self.groups})
        return bool(self.partial_tasks) or self._uncounted(t for t in self.metrics if t not in groups)

    def partial_over(self, tasks) -> bool:
        """Whether a number over ``tasks`` comes from fewer documents than they have (--limit, --samples)."""
        return any(t in self.partial_tasks for t in tasks) or self._uncounted(tasks)

    @property
    def sample(self) -> str:
        """A short digest of the documents a ``--samples`` run scored (its per-sample logs' doc ids), or "" where
        no log says which: what tells two samples of one size apart."""
        found = {t: s[2] for t, s in sorted(self.sample_of.items()) if isinstance(s, tuple) and len(s) == 3}
        return sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()[:6] if found else ""

    def partial_text(self) -> str:
        """Why the run is partial, or "" for a complete one."""
        if not self.partial:
            return ""
        parts = [f"--limit {_num(self.key['limit'])}"] if self.key["limit"] is not None else []
        docs = sorted({f"{e} of {o}" for e, o in self.partial_tasks.values()})
        if docs:
            parts.append("documents per task: " + ", ".join(docs[:3]) + (" ..." if len(docs) > 3 else ""))
        if self.sample:
            parts.append(f"sample {self.sample}")
        return "partial run (" + "; ".join(parts) + ")"

    def cultures(self, suite: str) -> dict[str, list[str]]:
        """Culture -> the row's tasks of the suite, placed by lm-eval's groups (``paths.task_groups``)."""
        if suite not in self._cultures:
            groups = task_groups({"group_subtasks": self.groups})
            found = stats.culture_tasks(self.metrics, groups, suite)
            self._cultures[suite] = {c: sorted(tasks) for c, tasks in found.items()}
        return self._cultures[suite]

    def suite_tasks(self, suite: str) -> list[str]:
        """Every task of the suite in the row (the overall column's)."""
        return sorted(t for tasks in self.cultures(suite).values() for t in tasks)

    def items(self, task: str, metric: str) -> dict[int, tuple[str, object, object]] | None:
        """doc_id -> (document, item, unit) from the task's per-sample log, or None without one; the document is
        ``stats.document_key`` (lm-eval's doc_hash, else the text, with its target_hash), what pairs it; the unit is
        what a group resamples across its tasks: a survey document's ``q_id``, a classification document's text
        (``_unit``)."""
        if (task, metric) not in self._items:
            path = self.samples.get(task)
            if path is None:
                self._items[(task, metric)] = None
            else:
                try:
                    rows = read_jsonl_lines(path)
                except (JsonlError, FileNotFoundError) as err:
                    raise NotAResultFile(f"{path}: unreadable per-sample log ({err})") from err
                found = {}
                survey = task_family(task) in headline_metrics()
                for number, row in rows:
                    if row.get("filter", "none") == "none" and metric in row:
                        doc = row.get("doc_id")
                        if isinstance(doc, bool) or not isinstance(doc, int):
                            raise NotAResultFile(f"{path}:{number}: a per-sample row without an integer doc_id; "
                                                 "use the samples_*.jsonl that lm_eval --log_samples wrote")
                        if doc in found:
                            raise NotAResultFile(f"{path}: doc_id {doc} is logged twice: {FOREIGN_LOG}")
                        value = row[metric]
                        question = _unit(row, survey)
                        found[doc] = (stats.document_key(row), tuple(value) if isinstance(value, list) else value,
                                      question)
                if found:
                    self._check_log(task, metric, path, [item for _, item, _ in found.values()])
                self._items[(task, metric)] = found or None
        return self._items[(task, metric)]

    def _check_log(self, task: str, metric: str, path: Path, items: list) -> None:
        """A log is resampled for the intervals and paired tests of the numbers its result file reports: it
        must hold the documents that file scored and give its value."""
        reported = _finite(self.metrics.get(task, {}).get(metric))
        scored = self.documents.get(task)
        if metric in VSM13_METRICS:
            try:
                logged_settings(items[0])
            except ValueError as err:
                raise NotAResultFile(f"{path}: {err}: {FOREIGN_LOG}") from None
        if scored is not None and len(items) != scored:
            raise NotAResultFile(f"{path}: {len(items)} logged documents, but its result file reports {metric} over "
                                 f"{scored} (n-samples.{task}.effective): {FOREIGN_LOG}")
        if reported is None or (metric not in RESAMPLABLE and metric not in VSM13_METRICS):
            return
        logged = RESAMPLABLE[metric][0](items) if metric in RESAMPLABLE else summarise_vsm13(items)[metric]
        if not math.isclose(logged, reported, rel_tol=1e-9, abs_tol=1e-12):
            raise NotAResultFile(f"{path}: the logged documents give {metric} {logged:.6f}, but its result file "
                                 f"reports {reported:.6f}: {FOREIGN_LOG}")


def _num(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


# lm-eval's result file: results_<date>.json, or <name>_<date>.json for --output_path <name>.json, with its
# per-sample logs samples_<task>_<date>.jsonl beside it (EvaluationTracker's date_id: ISO time, ':' -> '-')
DATE_ID = re.compile(r"_(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)$")


def result_stamp(path: Path) -> str:
    """The date id that names a result file's per-sample logs."""
    found = DATE_ID.search(path.stem)
    return found.group(1) if found else path.stem.removeprefix("results_")


def find_result_files(paths: list[str]) -> list[Path]:
    """The result files named, and those under a folder named (hidden folders left out: an output set aside by
    ``--overwrite`` is not a run to show)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*.json") if (f.name.startswith("results_") or DATE_ID.search(f.stem))
                           and not any(part.startswith(".") for part in f.relative_to(p).parts[:-1]))  # a kept backup
            if not found:
                raise NotAResultFile(f"{p}: no lm-eval result file (results_*.json, or <name>_<date>.json from "
                                     "--output_path <name>.json) in this folder")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    seen: set[Path] = set()  # a file named twice (a folder and a file in it) is read once
    return [f for f in files if not (f.resolve() in seen or seen.add(f.resolve()))]


def parse_model_args(args) -> dict[str, str]:
    """``model_args`` as lm-eval stores it (a dict, or the ``k=v,k=v`` string) -> sorted dict of strings."""
    if isinstance(args, str):
        args = dict(kv.split("=", 1) for kv in args.split(",") if "=" in kv)
    return {str(k): str(v) for k, v in sorted((args or {}).items())}


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise NotAResultFile(f"{path}: not an lm-eval result file ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict) or not isinstance(data.get("config"), dict):
        raise NotAResultFile(
            f"{path}: not an lm-eval result file (expected the `results` and `config` fields that "
            "`lm_eval --output_path` writes to results_*.json)"
        )
    date = data.get("date")
    if date is not None and (isinstance(date, bool) or not isinstance(date, (int, float)) or not math.isfinite(date)):
        raise NotAResultFile(f"{path}: `date` must be the run's start time in seconds, as lm-eval writes it (it orders "
                             f"the files of a row); got {date!r}")
    check_fields(data, path)
    return data


# the fields of a result file the board reads, each a mapping by task (or group), and what each value must be
FIELD_VALUES: dict[str, tuple[str, Callable[[object], bool]]] = {
    "versions": ("a version (a number or a string)", lambda v: v is None or _number(v) or isinstance(v, str)),
    "n-shot": ("a whole number of shots", lambda v: v is None or (_number(v) and float(v).is_integer())),
    "n-samples": ("a mapping with `original` and `effective`", lambda v: isinstance(v, dict)),
    "higher_is_better": ("a mapping of metric to true, false or null",
                         lambda v: isinstance(v, dict) and all(x is None or isinstance(x, bool) for x in v.values())),
    "group_subtasks": ("a list of task names", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
    "configs": ("a task config (a mapping)", lambda v: isinstance(v, dict) and all(
        isinstance(v.get(k) or {}, dict) for k in ("metadata", "dataset_kwargs"))),
}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_fields(data: dict, path: Path) -> None:
    """Each field the board reads has the type lm-eval writes, or the file is refused naming the key: a foreign or
    hand-edited file must neither end in a traceback nor lose a task without a word."""
    for key, (what, valid) in FIELD_VALUES.items():
        found = data.get(key)
        if found is not None and not isinstance(found, dict):
            raise NotAResultFile(f"{path}: `{key}` must be a mapping by task, as lm-eval writes it; got {found!r:.80}")
        bad = next((k for k, v in (found or {}).items() if not valid(v)), None)
        if bad is not None:
            raise NotAResultFile(f"{path}: `{key}.{bad}` must be {what}, as lm-eval writes it; got {found[bad]!r:.80}")
    args = data["config"].get("model_args")
    if args is not None and not isinstance(args, (str, dict)):
        raise NotAResultFile(f"{path}: `config.model_args` must be lm-eval's k=v,... string or a mapping; got {args!r:.80}")
    for task, values in data["results"].items():
        check_task_results(values, path, task)


def check_task_results(values, path: Path, task: str) -> None:
    """A task's results are a mapping of ``metric,filter`` to a number (JSON's NaN included: a run that is not a
    number), or "N/A" for a stderr lm-eval did not compute; keys without a filter (``alias``) are names."""
    if not isinstance(values, dict):
        raise NotAResultFile(f"{path}: `results.{task}` must be a mapping of metric to value, as lm-eval writes it; "
                             f"got {values!r:.80}")
    for key, value in values.items():
        metric, _, filt = key.partition(",")
        if filt and not _number(value) and not ("_stderr" in metric and value == "N/A"):
            raise NotAResultFile(f"{path}: `results.{task}.{key}` must be a number, as lm-eval writes it; got "
                                 f"{value!r:.80}")


def identity(data: dict) -> dict:
    """What makes two result files the same run (``--limit`` is part of it, and names the documents: the first
    ones). Task versions, settings and, for a file without ``--limit``, which documents each task scored
    (``sample_signatures``) are checked per task on merging (``_conflicts``)."""
    config = data["config"]
    shots = sorted({int(v) for t, v in (data.get("n-shot") or {}).items() if t in data["results"] and v is not None})
    template = data.get("chat_template")
    key = {
        "model": str(config.get("model") or ""),
        "model_args": {k: v for k, v in parse_model_args(config.get("model_args")).items() if k != TOKEN_CACHE_ARG},
        "limit": config.get("limit"),
        "num_fewshot": shots,
        "chat_template": data.get("chat_template_sha") or (sha256(template.encode()).hexdigest() if template else None),
        "fewshot_as_multiturn": bool(data.get("fewshot_as_multiturn")),
        "system_instruction": data.get("system_instruction_sha") or data.get("system_instruction"),
    }
    # only where the file records them, so a file without them keeps the row id it had
    seeds = {k: config[k] for k in SEED_KEYS if k in config}
    version = {k: str(config[k]) for k in MODEL_VERSION_KEYS if config.get(k)}
    recorded = loaded_fingerprints(data)
    # plain hf: what the tasks recorded; a tokenizer= folder (recorded by the tasks only) by any model
    for arg, name in (("pretrained", "model_sha"), ("peft", "peft_sha"), ("tokenizer", "tokenizer_sha")):
        if name not in version and recorded.get(arg):
            version[name] = recorded[arg]
    # half-precision scores move with the batch size and the device (float32 ones do not: batch-invariance is
    # tested): there runs at other ones are other rows, not one row whose newest file wins
    scoring = {k: str(config.get(k)) for k in SCORING_KEYS} if _dtype(data) in HALF_PRECISION else {}
    if scoring and config.get(RESOLVED_BATCH):  # batch_size auto: the sizes it ran at (a fixed size keeps its id)
        scoring[RESOLVED_BATCH] = resolved_batches(config)
    return {**key, **({"seeds": seeds} if seeds else {}), **({"model_version": version} if version else {}),
            **({"scoring": scoring} if scoring else {})}


def resolved_batches(config: dict) -> str:
    """The batch sizes lm-eval's ``--batch_size auto`` resolved to, e.g. "64" or "64, 32"; "fixed" for a fixed size
    (lm-eval records []), "?" where the file does not record them."""
    found = config.get(RESOLVED_BATCH)
    if found is None:
        return "?"
    return (", ".join(map(str, found)) or "fixed") if isinstance(found, list) else str(found)


def loaded_fingerprints(data: dict) -> dict:
    """The content fingerprints of the local model and adapter folders the file's tasks recorded as they were
    built (``fingerprints.FINGERPRINTS_KEY`` in each task's metadata: ``lm_eval`` merges ``--model_args`` into it), for a
    file whose model records none (plain ``hf``); the tasks of one run record the same."""
    for cfg in (data.get("configs") or {}).values():
        found = ((cfg or {}).get("metadata") or {}).get(FINGERPRINTS_KEY) if isinstance(cfg, dict) else None
        if isinstance(found, dict):
            return {k: v for k, v in found.items() if isinstance(v, str)}
    return {}


def _dtype(data: dict) -> str:
    """The model's dtype as the file records it (``model_dtype``, else the ``dtype`` model argument), or "?"."""
    config = data["config"]
    args = parse_model_args(config.get("model_args"))
    return str(config.get("model_dtype") or args.get("dtype") or "?").removeprefix("torch.")


def task_family(task: str) -> str | None:
    """The family whose ``--metadata`` keys a task reads (``culturellm_gen_*`` reads culturellm's)."""
    return next((f for f in TASK_KEYS if task == f or task.startswith(f + "_")), None)


def task_settings(data: dict, task: str) -> tuple[str, dict] | None:
    """(family, settings) of a task of ``data``: the ``--metadata`` keys its family reads (answer mode,
    target, constants, question subset, data folder) and, for a generative task, ``--gen_kwargs``:
    what its numbers depend on beyond the model. None for what has no task config (a group)."""
    cfg = (data.get("configs") or {}).get(task)
    if not isinstance(cfg, dict):
        return None
    family = task_family(task) or task
    meta = cfg.get("metadata") or {}
    out = {k: meta[k] for k in TASK_KEYS.get(family, ()) if k in meta}
    if cfg.get("output_type") == "generate_until":
        family += " (generation)"
        if data["config"].get("gen_kwargs"):
            out["gen_kwargs"] = data["config"]["gen_kwargs"]
    return family, out


def settings_text(settings: dict[str, dict]) -> str:
    """One line per family, e.g. ``vsm13: answer_mode=argmax, data_dir=../data``."""
    return "; ".join(f"{family}: {_settings_values(settings[family])}" for family in sorted(settings))


def _settings_values(settings: dict) -> str:
    """``k=v, ...`` of one family's settings, or "defaults"."""
    return ", ".join(f"{k}={json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v}"
                     for k, v in sorted(settings.items())) or "defaults"


# settings whose paired test compares what they resolve to instead of their text: where the data lay (the
# documents' own hashes say whether they are the same) and VSM13's target and constants (``vsm13_paired``)
COMPARED_BY_CONTENT = ("data_dir", "target", "target_source", "target_country", "constants")


def version_text(version) -> str:
    """A task version as lm-eval records it (1.0, "1.0" and 1 are one version), or "unrecorded"."""
    if version is None:
        return "unrecorded"
    if isinstance(version, (int, float)) and not isinstance(version, bool):
        return str(float(version))
    return str(version)


def _scoring_settings(run: Run, task: str) -> dict | None:
    """The settings ``task``'s numbers depend on in ``run`` but for ``COMPARED_BY_CONTENT``; None where the file
    recorded no task config."""
    found = run.task_config.get(task, {}).get("settings")
    return None if found is None else {k: v for k, v in found.items() if k not in COMPARED_BY_CONTENT}


def definition_differs(a: Run, b: Run, task: str) -> str:
    """Why ``task`` is another task in rows ``a`` and ``b`` (another version, or other settings its numbers depend
    on), or "": its numbers there are not one measurement, so they are neither paired nor ranked together."""
    va, vb = version_text(a.versions.get(task)), version_text(b.versions.get(task))
    if va != vb:
        return f"{task} is version {va} in row {a.row_id}, {vb} in row {b.row_id}; rerun both with the same tasks"
    sa, sb = _scoring_settings(a, task), _scoring_settings(b, task)
    if sa is not None and sb is not None and sa != sb:
        return (f"{task} ran with {_settings_values(sa)} in row {a.row_id}, {_settings_values(sb)} in row "
                f"{b.row_id}; compare rows run with the same settings")
    return ""


RELATIVE_ADAPTER = "unknown (a relative path or hub id: lm_eval's working directory is not recorded)"


def adapter_kind(peft: str | None) -> str:
    """LoRA / prompt tuning from the adapter's adapter_config.json; "unknown" if it cannot be read. Only an
    absolute path names a folder here: lm_eval read a relative one from its own working directory, which
    the result file does not record, so a folder of that name here may be another adapter."""
    if not peft:
        return ""
    if not Path(peft).is_absolute():
        return RELATIVE_ADAPTER
    try:
        kind = json.loads((Path(peft) / "adapter_config.json").read_text(encoding="utf-8")).get("peft_type")
    except (OSError, ValueError, AttributeError):
        return "unknown"
    return PEFT_KINDS.get(str(kind).upper(), str(kind)) if kind else "unknown"


def fingerprint_changed(folder: str | None, recorded, now: Callable[[str, str], str | None] = loaded_fingerprint
                        ) -> str | None:
    """Against the content fingerprint ``hf-prompt`` records for a local folder (``model_sha`` / ``peft_sha``:
    ``fingerprints.loaded_fingerprint``, ``sha256-full:...``, or ``sha256:...`` from before, compared in its own
    scheme; a hub commit has no prefix): "" while the folder (an absolute path) still holds that content, the
    reason when it does not, None when there is nothing to compare. ``now(folder, scheme)``: the folder's
    fingerprint today (``load_runs`` takes each folder's once per scheme)."""
    scheme = scheme_of(recorded)
    if not folder or scheme is None:
        return None
    if not Path(folder).is_absolute() or not Path(folder).is_dir():
        return None
    if scheme == SAMPLED:
        warn_sampled(folder)
    if now(folder, scheme) == recorded:
        return ""
    return f"files differ from the fingerprint its run recorded ({recorded[:len(scheme) + 12]}...)"


def adapter_changed(peft: str | None, started: list[float], recorded: str | None = None,
                    now: Callable[[str, str], str | None] = loaded_fingerprint) -> str:
    """Empty unless the adapter folder (an absolute path) no longer holds what the row's runs read: by the
    fingerprint a run recorded (``hf-prompt``: ``peft_sha``, exact), else (lm-eval's ``hf`` records a hub SHA,
    never a local adapter's content) when it holds a file written after the earliest of the row's runs started.
    Then some of the row's numbers may be another adapter's."""
    exact = fingerprint_changed(peft, recorded, now)
    if exact is not None:
        return exact and f"adapter {exact}"
    if not peft or not Path(peft).is_absolute() or not Path(peft).is_dir():
        return ""
    times = [f.stat().st_mtime for f in Path(peft).iterdir() if f.is_file() and not f.name.startswith(".")]
    first = min((t for t in started if t), default=None)
    if not times or first is None or max(times) <= first:
        return ""
    return f"adapter files written {_date(max(times))}, after the run of {_date(first)}"


def _date(value) -> str:
    try:
        return datetime.fromtimestamp(float(value), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError, OverflowError):
        return str(value) if value else "?"


def _provenance(data: dict, path: Path) -> dict:
    config = data["config"]
    return {
        "model_type": str(config.get("model") or "?"),
        "dtype": _dtype(data),
        **{k: str(config.get(k) if config.get(k) is not None else "?") for k in SCORING_KEYS},
        RESOLVED_BATCH: resolved_batches(config),
        "lm_eval_version": str(data.get("lm_eval_version") or "?"),
        "transformers_version": str(data.get("transformers_version") or "?"),
        "git_hash": str(data.get("git_hash") or "?"),
        "dates": [_date(data.get("date"))],
        "chat_template": bool(data.get("chat_template")),
        "system_instruction": data.get("system_instruction") or "",
    }


def _merge_info(run: Run, info: dict) -> None:
    if not run.info:
        run.info = info
        return
    for key, value in info.items():
        if key == "dates":
            run.info["dates"] = sorted(set(run.info["dates"]) | set(value))
        elif run.info.get(key) != value and isinstance(value, str) and value not in str(run.info.get(key)).split(" / "):
            run.info[key] = f"{run.info[key]} / {value}"


def _add_file(run: Run, data: dict, path: Path, signatures: dict[str, object]) -> None:
    stamp = result_stamp(path)
    run.files.append(path)
    _merge_info(run, _provenance(data, path))
    counts = _sample_counts(data, path)
    # files come oldest first: a task the row already has is the older file's, and none of its numbers
    # (value, interval, per-sample log, document count) may survive next to the newer file's
    for task in set(data["results"]) | set(counts):
        for held in (run.metrics, run.versions, run.samples, run.partial_tasks, run.documents, run.higher_is_better,
                     run.task_config, run.sample_of, run.sources):
            held.pop(task, None)
    run._items = {k: v for k, v in run._items.items() if k[0] not in data["results"]}
    run._cultures.clear()
    for task, values in data["results"].items():
        metrics = {}
        for key, value in values.items():
            metric, _, filt = key.partition(",")
            if filt and "_stderr" not in metric and isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[metric] = float(value)
        run.metrics[task] = metrics
        run.sources[task] = path
        if task in (data.get("versions") or {}):
            run.versions[task] = data["versions"][task]
        sample = path.with_name(f"samples_{task}_{stamp}.jsonl")
        if sample.is_file():
            run.samples[task] = sample
        found = task_settings(data, task)
        if found is not None:
            run.settings[found[0]] = found[1]
        if task in (data.get("configs") or {}):
            cfg = data["configs"][task]
            run.task_config[task] = {"dataset_kwargs": cfg.get("dataset_kwargs") or {}, "metadata": cfg.get("metadata") or {},
                                     **({"settings": found[1]} if found is not None else {})}
    run.sample_of.update(signatures)
    for task, (effective, original) in counts.items():
        run.documents[task] = effective
        if effective < original:
            run.partial_tasks[task] = (effective, original)
    for task, hib in (data.get("higher_is_better") or {}).items():
        run.higher_is_better.setdefault(task, {}).update(hib)
    for group, members in (data.get("group_subtasks") or {}).items():
        if members:
            run.groups[group] = list(members)
    _refresh_stale_groups(run, data, path)


def _refresh_stale_groups(run: Run, data: dict, path: Path) -> None:
    """A group an older file reported, one of whose tasks ``path`` reruns, holds the older task's
    numbers: its value becomes the unweighted mean of its leaf tasks' current values (what the
    suite's group YAMLs aggregate: ``weight_by_size: false``), a metric some leaf lacks is dropped,
    and a line says so."""
    rerun = set(data["results"])
    for group in sorted(g for g in run.groups if g in run.metrics and g not in rerun):
        leaves = _leaves(run.groups, group)
        if not rerun & set(leaves):
            continue
        old = run.metrics[group]
        run.metrics[group] = {m: float(np.mean([run.metrics[t][m] for t in leaves]))
                              for m in old if not any(m.endswith(s) for s in stats.CI_SUFFIXES)
                              and all(m in run.metrics.get(t, {}) for t in leaves)}
        print(f"culture-leaderboard: {path} reruns {', '.join(sorted(rerun & set(leaves))[:3])} of group {group} "
              f"of row {run.label}; the group's value is recomputed as the mean of its tasks' newest numbers",
              file=sys.stderr)


def _sample_counts(data: dict, path: Path) -> dict[str, tuple[int, int]]:
    """task -> (effective, original) documents from the file's ``n-samples``."""
    out = {}
    for task, counts in (data.get("n-samples") or {}).items():
        found = [counts.get(k) if isinstance(counts, dict) else None for k in ("effective", "original")]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer() for v in found):
            raise NotAResultFile(f"{path}: n-samples.{task} needs integer `original` and `effective` "
                                 f"(lm-eval writes both); got {counts!r}")
        out[task] = (int(found[0]), int(found[1]))
    return out


# lm-eval writes each logged document as one json.dumps line starting with its doc_id
LOGGED_DOC_ID = re.compile(r'^\{"doc_id": (\d+)[,}]', re.M)


def _logged_doc_ids(path: Path) -> set[int]:
    """The doc ids of a per-sample log, read from the start of each line where lm-eval put them (a log can be
    large, and only its ids are wanted); a log written otherwise is read whole (``read_jsonl_lines``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    ids = [int(m) for m in LOGGED_DOC_ID.findall(text)]
    if text and len(ids) == sum(1 for line in text.split("\n") if line.strip()):
        return set(ids)
    try:
        rows = read_jsonl_lines(path)
    except (JsonlError, FileNotFoundError) as err:
        raise NotAResultFile(f"{path}: unreadable per-sample log ({err})") from err
    out = set()
    for number, row in rows:
        doc = row.get("doc_id")
        if isinstance(doc, bool) or not isinstance(doc, int):
            raise NotAResultFile(f"{path}:{number}: a per-sample row without an integer doc_id; "
                                 "use the samples_*.jsonl that lm_eval --log_samples wrote")
        out.add(doc)
    return out


def sample_signatures(data: dict, path: Path, counts: dict[str, tuple[int, int]]) -> dict[str, object]:
    """task -> which documents a file without ``--limit`` scored: "all", or for a task scored on fewer documents
    than it has (``--samples``; lm-eval's result file does not record the sample) its (effective, original)
    counts and, where its per-sample log is beside the file, a digest of the doc ids the log holds. Two files
    whose signatures differ on a task are two runs (a sample and the complete run, or two samples of one size);
    without logs two samples of one size cannot be told apart. Complete and ``--limit`` runs' logs are not read."""
    if data["config"].get("limit") is not None:
        return {}
    stamp = result_stamp(path)
    out: dict[str, object] = {}
    for task, (effective, original) in sorted(counts.items()):
        if effective >= original:
            out[task] = "all"
            continue
        log = path.with_name(f"samples_{task}_{stamp}.jsonl")
        if not log.is_file():
            out[task] = (effective, original)
            continue
        ids = _logged_doc_ids(log)
        if len(ids) != effective:
            raise NotAResultFile(f"{log}: {len(ids)} logged documents, but its result file reports {effective} "
                                 f"(n-samples.{task}.effective): {FOREIGN_LOG}")
        out[task] = (effective, original, sha256(json.dumps(sorted(ids)).encode()).hexdigest()[:16])
    return out


def _leaves(groups: dict, group: str, above: frozenset = frozenset()) -> list[str]:
    """The leaf tasks of a (nested) group of ``group_subtasks``."""
    out = []
    for member in groups.get(group) or []:
        nested = groups.get(member) and member not in above | {group}
        out += _leaves(groups, member, above | {group}) if nested else [member]
    return out


def check_suite_groups(data: dict, path: Path) -> None:
    """Say where the file's own CultureLLM group (suite or culture) is not the unweighted mean of its
    leaf tasks, which the board shows and lm-eval >= 0.4.13 reports (``Group.aggregate`` averages a
    nested group's leaf tasks; the group YAMLs say ``weight_by_size: false``): the file's number was
    computed another way (e.g. a mean of the cultures' means), and the board's differs from it."""
    groups = data.get("group_subtasks") or {}
    results = data["results"]
    for group in sorted(groups):
        if not any(group == s or group.startswith(s + "_") for s in SUITES):
            continue
        leaves = _leaves(groups, group)
        for metric in ("f1_macro", "parse_fail_rate"):
            reported = _finite((results.get(group) or {}).get(f"{metric},none"))
            values = [_finite((results.get(t) or {}).get(f"{metric},none")) for t in leaves]
            if reported is None or not values or any(v is None for v in values):
                continue
            mean = float(np.mean(values))
            if abs(reported - mean) > 1e-9:
                print(f"culture-leaderboard: {path} reports {group} {metric} {reported:.4f}, but the mean over its "
                      f"{len(values)} tasks is {mean:.4f}, which the board shows (as lm-eval >= 0.4.13 aggregates a "
                      f"group; this file is from lm-eval {data.get('lm_eval_version') or '?'})", file=sys.stderr)


def _conflicts(run: Run, data: dict, signatures: dict[str, object]) -> bool:
    """True when a task of ``data`` is in ``run`` at another version or on other documents (``signatures``: a
    sample and the complete task, or two samples), or a task family of ``data`` ran with other settings
    (another answer mode, target, question subset, ...): then it is another row."""
    if any(t in run.versions and run.versions[t] != v for t, v in (data.get("versions") or {}).items()):
        return True
    if any(t in run.sample_of and run.sample_of[t] != s for t, s in signatures.items()):
        return True
    found = (task_settings(data, t) for t in data["results"])
    return any(f is not None and f[0] in run.settings and run.settings[f[0]] != f[1] for f in found)


def load_runs(files: list[Path]) -> list[Run]:
    """Result files grouped into runs by identity; files of one identity with a task at different
    versions become separate rows. The same task twice in one row keeps the newest file's numbers,
    interval, per-sample log and document count, and nothing of the older file's."""
    loaded = sorted(((p, _read(p)) for p in files), key=lambda pd: float(pd[1].get("date") or 0))
    runs: list[Run] = []
    for path, data in loaded:
        check_suite_groups(data, path)
        signatures = sample_signatures(data, path, _sample_counts(data, path))
        key = identity(data)
        run = next((r for r in runs if r.key == key and not _conflicts(r, data, signatures)), None)
        if run is None:
            run = Run(key)
            runs.append(run)
        else:
            again = sorted(set(run.metrics) & set(data["results"]))
            unknown = [t for t in again if isinstance(signatures.get(t), tuple) and len(signatures[t]) == 2]
            if again:
                print(f"culture-leaderboard: {path} repeats {', '.join(again[:3])} of row {run.label}; "
                      "the newest file's numbers are shown"
                      + (f" ({', '.join(unknown[:3])}: without per-sample logs, two samples of one size (--samples) "
                         "cannot be told apart: run lm_eval with --log_samples)" if unknown else ""), file=sys.stderr)
        _add_file(run, data, path, signatures)
    started = {path: float(data.get("date") or 0) for path, data in loaded}
    data_of = dict(loaded)
    fingerprints: dict[tuple[str, str], str | None] = {}  # each folder read once, however many rows name it

    def now(folder: str, scheme: str) -> str | None:
        if (folder, scheme) not in fingerprints:
            fingerprints[folder, scheme] = loaded_fingerprint(folder, scheme)
        return fingerprints[folder, scheme]

    warned: set[str] = set()
    for run in runs:
        run.row_id = _row_id(run, shared=sum(r.key == run.key for r in runs) > 1)
        warn_stale(run)
        warn_mixed_harness(run, data_of)
        peft = run.model_args.get("peft")
        run.info["adapter"], run.info["adapter_kind"] = peft or "", adapter_kind(peft)
        version = run.key.get("model_version", {})
        changed = adapter_changed(peft, [started[p] for p in run.files], version.get("peft_sha"), now)
        if changed:
            run.info["adapter_kind"] += f"; changed since: {changed}"
            print(f"culture-leaderboard: row {run.label}: {changed}; its numbers may be another adapter's: evaluate "
                  "it again, or keep each adapter in a folder of its own", file=sys.stderr)
        # the folder the weights were loaded from (inside subfolder=), whose fingerprint model_sha is
        pretrained = loaded_folders(run.model_args).get("pretrained", run.model_args.get("pretrained"))
        model_changed = fingerprint_changed(pretrained, version.get("model_sha"), now)
        if model_changed:
            run.info["model_changed"] = f"model changed since: model {model_changed}"
            if pretrained not in warned:
                warned.add(pretrained)
                print(f"culture-leaderboard: {pretrained}: the model folder's {model_changed}; the numbers of the rows "
                      "that name it may be another model's: evaluate it again", file=sys.stderr)
    ids = [r.row_id for r in runs]
    if len(set(ids)) < len(ids):
        same = next(i for i in ids if ids.count(i) > 1)
        raise LeaderboardError(f"two rows would share the id {same}: their result files cannot be told apart; "
                               "pass them in separate calls")
    return runs


def stale_tasks(run: Run) -> dict[str, tuple[str, str]]:
    """task -> (version its file records, version of the installed task definition) for the row's tasks whose
    numbers come from another version of the task than the one installed (``paths.installed_version``; tasks not
    defined here are not checked)."""
    out = {}
    for task, version in sorted(run.versions.items()):
        installed = installed_version(task)
        if installed is not None and version_text(version) != version_text(installed):
            out[task] = (version_text(version), version_text(installed))
    return out


def warn_stale(run: Run) -> None:
    """One line per result file whose tasks are at another version than the installed definitions, and the row's
    provenance marked (``stale_tasks``): its numbers are the older task's, not what the tasks give now."""
    stale = stale_tasks(run)
    if not stale:
        return
    run.info["stale_tasks"] = stale
    by_file: dict[Path, list[str]] = defaultdict(list)
    for task, (was, now) in stale.items():
        by_file[run.sources[task]].append(f"{task} is version {was} there, {now} installed")
    for path, found in sorted(by_file.items()):
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        print(f"culture-leaderboard: {path}: {found[0]}{more}; its numbers are of the older task definition: rerun "
              "it with the current tasks", file=sys.stderr)


HARNESS = {"lm_eval_version": "lm-eval", "transformers_version": "transformers"}


def warn_mixed_harness(run: Run, data_of: dict[Path, dict]) -> None:
    """One line per library whose versions differ between the row's files, naming each file's. They stay one row:
    what changes a task's numbers is checked per task (version, settings, documents), and one model's suites run
    apart belong together; but a release may score otherwise, so the mix is never silent."""
    for key, name in HARNESS.items():
        by_version: dict[str, list[str]] = defaultdict(list)
        for path in run.files:
            by_version[str(data_of[path].get(key) or "?")].append(str(path))
        if len(by_version) > 1:
            listed = " and ".join(f"{v} ({', '.join(paths)})" for v, paths in sorted(by_version.items()))
            print(f"culture-leaderboard: row {run.label} [{run.row_id}] merges result files of {name} {listed}; a "
                  f"release may score a task otherwise: rerun them under one {name} where their numbers must agree",
                  file=sys.stderr)


def _row_id(run: Run, shared: bool) -> str:
    """A row's id from its own content only, so that adding other result files never moves an id to another
    run: the identity, and for an identity that several rows share (task versions, task settings or samples
    differ), what tells them apart, in all of them."""
    sampled = {t: s for t, s in sorted(run.sample_of.items()) if s != "all"}
    extra = json.dumps([run.versions, run.settings, sampled], sort_keys=True, default=list) if shared else ""
    return "r" + sha256((json.dumps(run.key, sort_keys=True) + extra).encode()).hexdigest()[:6]


def provenance(run: Run) -> dict:
    """The row's provenance, as shown in every format."""
    chat = "none"
    if run.key["chat_template"]:
        chat = "applied" + (", few-shot as multi-turn" if run.key["fewshot_as_multiturn"] else "")
    if run.key["system_instruction"]:
        chat += f", system instruction {run.info.get('system_instruction')!r}"
    versions = sorted({str(v) for v in run.versions.values()})
    return {
        "row_id": run.row_id,
        "model": run.model_args.get("pretrained", run.info.get("model_type", "?")),
        "model_args": ",".join(f"{k}={v}" for k, v in run.model_args.items()),
        "lm_eval_model": run.key["model"] or "?",
        "adapter": run.info.get("adapter", ""),
        "adapter_kind": run.info.get("adapter_kind", ""),
        "dtype": run.info.get("dtype", "?"),
        **{k: run.info.get(k, "?") for k in (*SCORING_KEYS, RESOLVED_BATCH)},
        "limit": "none" if run.key["limit"] is None else _num(run.key["limit"]),
        "num_fewshot": ", ".join(map(str, run.key["num_fewshot"])) or "?",
        "chat_template": chat,
        "seeds": ", ".join(f"{k}={v}" for k, v in sorted(run.key.get("seeds", {}).items())) or "?",
        "model_revision": "; ".join(x for x in (", ".join(f"{k}={v}" for k, v in sorted(
            run.key.get("model_version", {}).items())) or "?", run.info.get("model_changed")) if x),
        "task_versions": "; ".join(x for x in (", ".join(versions) or "?", _stale_text(run)) if x),
        "task_settings": settings_text(run.settings) or "?",
        "lm_eval_version": run.info.get("lm_eval_version", "?"),
        "transformers_version": run.info.get("transformers_version", "?"),
        "git_hash": run.info.get("git_hash", "?"),
        "date": ", ".join(run.info.get("dates", [])),
        "partial": run.partial_text(),
        "files": [str(f) for f in run.files],
    }


def _stale_text(run: Run) -> str:
    """The row's tasks at another version than the installed definitions, for its provenance, or ""."""
    stale = run.info.get("stale_tasks") or {}
    if not stale:
        return ""
    shown = [f"{t} {was} (installed {now})" for t, (was, now) in list(stale.items())[:3]]
    return "not the installed tasks: " + ", ".join(shown) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")


# --------------------------------------------------------------------------- cells and tables


@dataclass
class Column:
    key: str
    label: str
    metric: str
    tasks: Callable[[Run], list[str]]
    higher_is_better: bool | None = True  # None: a measurement with no better or worse
    count: bool = False  # a count of tasks, not a score


@dataclass
class Cell:
    value: float | None
    low: float | None = None
    high: float | None = None
    interval_note: str = ""
    # against the baseline (stats.paired_bootstrap, VSM13: vsm13_paired): diff, low, high, p_value and the unit paired
    # where it is not documents (a WVS group's questions, VSM13's items)
    diff: dict | None = None
    diff_note: str = ""
    p_adjusted: float | None = None  # Holm over the row's paired tests in its table (--adjust holm)
    best: bool = False
    best_note: str = ""  # why no cell of its column is marked best (also in the CSV and JSON, beside best: false)
    covered: int = 0  # the column's tasks this cell's mean is over
    of: int = 0  # the column's tasks over all rows

    @property
    def incomplete(self) -> bool:
        """A mean over fewer tasks than the column has: not comparable with the complete cells."""
        return self.covered < self.of

    def coverage_text(self) -> str:
        return f"‡ {self.covered} of {self.of} tasks" if self.incomplete else ""

    @property
    def p(self) -> float:
        """The p-value the mark reads: Holm-adjusted under --adjust holm, else the cell's own."""
        return self.p_adjusted if self.p_adjusted is not None else self.diff["p_value"]

    @property
    def significant(self) -> bool:
        return bool(self.diff) and math.isfinite(self.p) and self.p < ALPHA

    def mark(self) -> str:
        if not self.significant:
            return ""
        return "▲" if self.diff["diff"] > 0 else "▼"

    def disagreement(self) -> str:
        """Where the difference's interval and the test that marks it disagree, which one the mark follows (the
        test: its error rate holds however few documents differ, while the percentile interval of a difference
        over few differing documents excludes 0 too readily: ``stats.paired_bootstrap``); "" where they agree."""
        if not self.diff or _finite(self.diff["low"]) is None or _finite(self.diff["high"]) is None \
                or not math.isfinite(self.p):
            return ""
        excludes = self.diff["low"] > 0 or self.diff["high"] < 0
        test = "the Holm-adjusted test" if self.p_adjusted is not None else "the test"
        if excludes and not self.significant:
            why = ("the adjustment for the row's other tests" if self.diff["p_value"] < ALPHA
                   else f"few differing {self.diff.get('unit', 'documents')}")
            return f"interval excludes 0 but {test} does not reject: {why}; the mark follows the test"
        if self.significant and not excludes:
            return f"{test} rejects but the interval covers 0; the mark follows the test"
        return ""


@dataclass
class Table:
    title: str
    columns: list[Column]
    rows: list[tuple[Run, list[Cell]]]
    note: str = ""


def _finite(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _unit(row: dict, survey: bool):
    """A logged document's resampling unit across tasks: a survey question's ``q_id``; a classification
    document's text as shown (several CultureLLM tasks label the same texts); None where the log has neither."""
    return (row.get("doc") or {}).get("q_id") if survey else stats.logged_text(row)


def _text_clusters(run: Run, tasks: list[str], metric: str) -> list[tuple] | None:
    """The items of ``stats.ClusteredTaskMean`` for a mean over ``tasks`` of a classification metric when some
    text is a document of more than one of them (``stats.text_clusters``); None otherwise (``TaskMean``)."""
    if metric not in RESAMPLABLE or RESAMPLABLE[metric][0] is stats.mean or len(tasks) < 2:
        return None
    documents = []
    for task in sorted(tasks):
        found = run.items(task, metric)
        if found is None:
            return None
        documents += [(task, found[doc][2], found[doc][1]) for doc in sorted(found)]
    return stats.text_clusters(documents)


def clustered_mean(metric: str) -> stats.ClusteredTaskMean:
    """The statistic of a group column whose tasks share texts (``_text_clusters``)."""
    return stats.ClusteredTaskMean(*RESAMPLABLE[metric])


def _task_items(run: Run, tasks: list[str], metric: str) -> list[tuple] | None:
    """``(task, item)`` for every logged document of ``tasks``; None if a task has no per-sample log."""
    out = []
    for task in tasks:
        found = run.items(task, metric)
        if found is None:
            return None
        out += [(task, item) for _, (_, item, _) in sorted(found.items())]
    return out


class QuestionMean:
    """A survey group's statistic with the question as its unit: the mean over the group's tasks of
    each task's mean over its documents, from items ``(question, ((task, value), ...))``, one per
    question with its value in every task that asked it. The countries of a WVS group are asked the
    same questions, so their scores on a question move together: resampling each country's questions
    on its own would treat them as independent and make the interval too narrow (about 1/sqrt(k) as
    wide for k countries that agree). A resample draws questions, each with all its countries."""

    CHUNK = 64

    def __init__(self, one: Callable | None = None):
        self.one = one  # the tasks' per-question statistic (its alike_ci: wvs_majority's exact interval)

    def __call__(self, items: Sequence[tuple]) -> float:
        return float(self.batched(items, np.arange(len(items))[None, :])[0]) if items else float("nan")

    def alike_ci(self, items: Sequence[tuple], level: float) -> tuple[float, float] | None:
        """Every question scored alike in every task (``wvs_majority`` 0, or 1, everywhere): the statistic's
        exact interval over the questions, the resampling unit (a question's countries move together)."""
        alike = getattr(self.one, "alike_ci", None)
        if alike is None:
            return None
        return alike([float(np.mean([v for _, v in pairs])) for _, pairs in items], level)

    def batched(self, items: Sequence[tuple], idx: np.ndarray) -> np.ndarray:
        tasks = sorted({t for _, pairs in items for t, _ in pairs})
        column = {t: k for k, t in enumerate(tasks)}
        n = len(items)  # idx may pick from a longer list than one row holds (the randomisation test's a + b)
        values, asked = np.zeros((n, len(tasks))), np.zeros((n, len(tasks)))
        for i, (_, pairs) in enumerate(items):
            for task, value in pairs:
                values[i, column[task]], asked[i, column[task]] = float(value), 1.0
        out = []
        for weights in stats.resample_counts(idx, n, self.CHUNK):
            rows = len(weights)
            count = weights @ asked
            per_task = np.divide(weights @ values, count, out=np.zeros_like(count), where=count > 0)
            drawn = (count > 0).sum(axis=1)
            out.append(np.divide(per_task.sum(axis=1), drawn, out=np.full(rows, np.nan), where=drawn > 0))
        return np.concatenate(out) if out else np.array([])


def _questions(run: Run, tasks: list[str], metric: str) -> dict | None:
    """question -> ((task, value), ...) over ``tasks`` when their logs name each document's question, no
    task asks one twice, and some question is asked in more than one of them (a WVS group): the items
    of ``QuestionMean``. None otherwise (the tasks' documents are independent: ``TaskMean``)."""
    if len(tasks) < 2 or RESAMPLABLE.get(metric, (None,))[0] not in (stats.mean, majority_mean):
        return None
    by_question: dict = defaultdict(list)
    for task in tasks:
        found = run.items(task, metric)
        if found is None:
            return None
        asked = [q for _, _, q in found.values()]
        if any(q is None for q in asked) or len(set(asked)) < len(asked):
            return None
        for _, item, question in found.values():
            by_question[str(question)].append((task, item))
    if all(len(pairs) < 2 for pairs in by_question.values()):
        return None
    return {q: tuple(sorted(pairs)) for q, pairs in by_question.items()}


def vsm13_interval(run: Run, tasks: list[str], metric: str) -> tuple[float, float]:
    """The interval of the mean of a VSM13 metric over ``tasks`` (a group's countries): each task's resamples
    are those its own interval comes from (``tasks.vsm13_replicates``: the seeded respondent bootstrap, one seed
    for every task), resample b of the mean is the mean over the tasks of their resample b, and the interval
    is the percentiles of those means. The countries of a group without persona (``vsm13``, ``vsm13_reversed``,
    ...) ask one prompt and differ only in the target, so resample b surveys the same respondents for all of
    them: a joint bootstrap, as one survey scored against every target is. Persona tasks ask each country its
    own prompt, so the answer distributions differ; their resamples are still those of each task's own
    interval (the one seed's stream, item by item), so the countries' resample b share their random numbers
    but not their respondents: numpy's multinomial draws under other probabilities are neither independent
    nor the same, a pairing kept so that each country enters with exactly the resamples its own interval
    has. Under ``answer_mode: argmax`` every resample is the task's value, so the interval has width 0, as
    each task's has. A task without all 24 items is NaN in every resample, as its value is."""
    per_task = [vsm13_replicates(_vsm13_log(run, task, metric))[metric] for task in tasks]
    return stats.percentile_interval(np.mean(per_task, axis=0), stats.LEVEL)


def _vsm13_cell(run: Run, tasks: list[str], metric: str, value: float) -> Cell:
    """A mean of a VSM13 metric over tasks with ``vsm13_interval``, or why it has none."""
    try:
        if _task_items(run, tasks, metric) is None:
            return Cell(value, interval_note=_no_samples(run, tasks, metric))
        low, high = vsm13_interval(run, tasks, metric)
    except DataRootError as err:  # the logged documents name the data root whose Hofstede file the tasks ranked in
        return Cell(value, interval_note=f"no interval: {str(err).split('. ')[0]}: the per-sample logs rank the "
                                         "countries in the Hofstede file of the data_dir the tasks ran with")
    return Cell(value, _finite(low), _finite(high))


def _no_samples(run: Run, tasks: list[str], metric: str) -> str:
    """Why a mean has no interval: no logs at all, or the tasks whose log is missing."""
    missing = [t for t in tasks if run.items(t, metric) is None]
    if len(missing) == len(tasks):
        return NO_SAMPLES
    more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
    return (f"no interval: no per-sample log for {missing[0]}{more} "
            f"(samples_{missing[0]}_<date>.jsonl is not beside its result file)")


def covered_tasks(run: Run, column: Column) -> list[str]:
    """The column's tasks that the row has the column's metric for."""
    return [t for t in column.tasks(run) if column.metric in run.metrics.get(t, {})]


def leaf_tasks(run: Run, tasks: list[str]) -> list[str]:
    """``tasks``, or the members of the row's group when ``tasks`` is that one group (a survey group column):
    what the cell's number averages."""
    return list(run.groups[tasks[0]]) if len(tasks) == 1 and tasks[0] in run.groups else tasks


def make_cell(run: Run, column: Column) -> Cell | None:
    tasks = covered_tasks(run, column)
    if not tasks:
        return None
    values = [run.metrics[t][column.metric] for t in tasks]
    if column.count:
        return Cell(float(len(tasks)))
    value = float(np.mean(values))
    if not math.isfinite(value):
        return Cell(None, interval_note=NOT_A_NUMBER)
    if len(tasks) == 1:
        low, high = (run.metrics[tasks[0]].get(column.metric + s) for s in stats.CI_SUFFIXES)
        members = run.groups.get(tasks[0])
        few = _too_few(column.metric, _scored(run, members or tasks), run.key["limit"])
        if few:
            return Cell(value, interval_note=few)
        if _finite(low) is not None and _finite(high) is not None:
            return Cell(value, low, high)
        if not members:
            if low is not None and high is not None:  # reported as NaN: a finite value has none only from too few documents
                return Cell(value, interval_note="no interval: the result file's is not a number (fewer than "
                                                 f"{_min_items(column.metric)} documents)")
            return _logged_task_cell(run, tasks[0], column.metric, value)
        tasks = members
    if column.metric in VSM13_METRICS:
        return _vsm13_cell(run, tasks, column.metric, value)
    if column.metric not in RESAMPLABLE:
        return Cell(value, interval_note=f"no interval: {column.metric} has no per-document resampling")
    items = _task_items(run, tasks, column.metric)
    scored = (_scored(run, tasks) if items is not None  # with every task's log; else what the result file says
              else [run.documents[t] for t in tasks if t in run.documents])
    few = _too_few(column.metric, scored)
    if few:
        return Cell(value, interval_note=few)
    if items is None:
        return Cell(value, interval_note=_no_samples(run, tasks, column.metric))
    questions = _questions(run, tasks, column.metric)
    texts = None if questions is not None else _text_clusters(run, tasks, column.metric)
    if questions is not None:
        low, high = stats.bootstrap_ci(QuestionMean(RESAMPLABLE[column.metric][0]), list(questions.items()))
        return _resampled_cell(value, low, high, len(questions), "question")
    if texts is not None:
        low, high = stats.bootstrap_ci(clustered_mean(column.metric), texts)
        return _resampled_cell(value, low, high, _most_per_stratum(texts), "text per family of tasks")
    low, high = stats.bootstrap_ci(task_mean(column.metric), items)
    return _resampled_cell(value, low, high, _most_per_stratum(items), "document per task")


def _most_per_stratum(items: list[tuple]) -> int:
    """The most items of one stratum (a task, a family of tasks: an item's first field): with one in each, every
    resample of a stratified mean is the run itself (``stats.enough_items``)."""
    return max(Counter(item[0] for item in items).values(), default=0)


def _resampled_cell(value: float, low: float, high: float, units: int, unit: str) -> Cell:
    """A mean's cell with its bootstrap interval over ``units`` resampling units, or why it has none: fewer than
    ``stats.MIN_ITEMS`` (one question of a WVS group, however many countries asked it, resamples to itself)."""
    if _finite(low) is not None and _finite(high) is not None:
        return Cell(value, _finite(low), _finite(high))
    if units < stats.MIN_ITEMS:
        return Cell(value, interval_note=f"no interval: {units} {unit} in the per-sample logs, and a resample of "
                                         "one is itself")
    return Cell(value, interval_note="no interval: the bootstrap over the per-sample logs is not a number")


def _logged_task_cell(run: Run, task: str, metric: str, value: float) -> Cell:
    """A task whose result file reports no interval (a metric without companions, a file of an earlier version):
    ``stats.bootstrap_ci`` of the task's statistic over its per-sample log, as its companion metric and a mean over
    tasks compute it, or why there is none."""
    if metric not in RESAMPLABLE or run.items(task, metric) is None:
        return Cell(value, interval_note="no interval: the result file reports none for this metric")
    items = [item for _, item, _ in run.items(task, metric).values()]
    return _resampled_cell(value, *stats.bootstrap_ci(RESAMPLABLE[metric][0], items), len(items), "document")


def _min_items(metric: str) -> int:
    """The documents a task needs for an interval of ``metric`` (``stats.min_items``)."""
    return stats.min_items(RESAMPLABLE[metric][0]) if metric in RESAMPLABLE else stats.MIN_ITEMS


def _scored(run: Run, tasks: list[str]) -> list[int | None]:
    """The documents each of ``tasks`` scored: its result file's ``n-samples``, else the doc ids its per-sample
    log holds (a file of an lm-eval that wrote no ``n-samples``), else None."""
    out = []
    for task in tasks:
        count = run.documents.get(task)
        if count is None and task in run.samples:
            try:
                count = len(_logged_doc_ids(run.samples[task]))
            except NotAResultFile:
                count = None
        out.append(count)
    return out


def no_interval_reason(run: Run, tasks: list[str], metric: str) -> str:
    """Why a mean of ``metric`` over the run's ``tasks`` gets no interval (``_too_few``), "" where it gets one:
    for a script that resamples the same documents as the board's cells."""
    return _too_few(metric, _scored(run, tasks))


def _too_few(metric: str, scored: list[int | None], limit=None) -> str:
    """Why a mean of ``metric`` over tasks that scored ``scored`` documents (None: not known; ``limit``: the run's
    ``--limit``, at most that many) gets no interval (a task under the metric's own minimum, ``stats.min_items``: the
    classification metrics' ``MIN_DOCS``), or "" where they are enough. Result files of earlier versions may hold an
    interval over fewer: it is not shown either."""
    need = _min_items(metric)
    known = [n for n in scored if n is not None]
    why = (f"an interval of {metric} needs {need} in each (fewer do not hold the complete run's value: "
           "docs/interval_calibration.md)")
    if need <= stats.MIN_ITEMS:
        return ""
    if known and min(known) < need:
        fewest = min(known)
        return f"no interval: {fewest} document{'s' if fewest != 1 else ''} in a task; {why}"
    if len(known) < len(scored) and isinstance(limit, (int, float)) and 1 <= limit < need:
        most = int(limit)
        return f"no interval: --limit {_num(limit)} scored at most {most} document{'s' if most != 1 else ''} in a task; {why}"
    return ""


def compare_cell(base: Run, run: Run, column: Column) -> tuple[dict | None, str]:
    """Paired bootstrap of ``run`` minus ``base`` on the column's documents, or (None, why not)."""
    if column.count:
        return None, ""
    tasks, base_tasks = covered_tasks(run, column), covered_tasks(base, column)
    if not tasks or not base_tasks:
        return None, "not in both rows"
    tasks, base_tasks = leaf_tasks(run, tasks), leaf_tasks(base, base_tasks)
    if sorted(tasks) != sorted(base_tasks):
        return None, "no paired test: the rows cover different tasks"
    differs = next((why for task in sorted(tasks) if (why := definition_differs(base, run, task))), "")
    if differs:
        return None, f"no paired test: {differs}"
    if column.metric not in RESAMPLABLE and column.metric not in VSM13_METRICS:
        return None, f"no paired test: {column.metric} has no per-document resampling"
    try:
        return _compare_logs(base, run, tasks, column.metric)
    except DataRootError as err:  # the logged VSM13 documents name the data root whose Hofstede file they ranked in
        return None, (f"no paired test: {str(err).split('. ')[0]}: the per-sample logs rank the countries in the "
                      "Hofstede file of the data_dir the tasks ran with")


def _compare_logs(base: Run, run: Run, tasks: list[str], metric: str) -> tuple[dict | None, str]:
    """``compare_cell`` from the two rows' per-sample logs of ``tasks``."""
    a_items, b_items = [], []
    for task in tasks:
        a, b = base.items(task, metric), run.items(task, metric)
        if a is None or b is None:
            who = base.row_id if a is None else run.row_id
            return None, f"no paired test: no per-sample logs for {task} in row {who}"
        problem = stats.pairing_problem({k: h for k, (h, _, _) in a.items()}, {k: h for k, (h, _, _) in b.items()})
        if problem:
            return None, f"no paired test: {task}: {problem}"
        for doc in sorted(a):
            a_items.append((task, a[doc][1]))
            b_items.append((task, b[doc][1]))
    if metric in VSM13_METRICS:
        return vsm13_paired(base, run, tasks, metric)
    qa, qb = _questions(base, tasks, metric), _questions(run, tasks, metric)
    ta, tb = _text_clusters(base, tasks, metric), _text_clusters(run, tasks, metric)
    if qa is not None and qb is not None and qa.keys() == qb.keys():  # a survey group: questions are the pairs
        keys = sorted(qa)
        result = stats.paired_bootstrap(QuestionMean(), [(q, qa[q]) for q in keys], [(q, qb[q]) for q in keys])
        result["unit"] = "questions"
    elif ta is not None and tb is not None and [c[:2] for c in ta] == [c[:2] for c in tb]:
        result = stats.paired_bootstrap(clustered_mean(metric), ta, tb)  # texts shared by tasks are the pairs
    else:
        result = stats.paired_bootstrap(task_mean(metric), a_items, b_items)
    if not math.isfinite(result["diff"]):
        return None, "no paired test: the baseline row's value is not a number"
    too_few = _too_few(metric, _scored(base, tasks))
    if too_few:  # as the rows' own cells: texts shared by tasks pair documents across them, not over the minimum
        return {**result, "low": math.nan, "high": math.nan}, too_few
    if _finite(result["low"]) is None or _finite(result["high"]) is None:  # the difference keeps its p-value
        return result, "no interval: too few documents"
    return result, ""


def _vsm13_log(run: Run, task: str, metric: str) -> tuple:
    """The task's logged per-document results in document order (the items of ``tasks.logged_vsm13``)."""
    return tuple(item for _, (_, item, _) in sorted(run.items(task, metric).items()))


@_content_cache(size=BOARD_LOGS, context=lambda logs: tuple(map(reference_version, logs)))
def _vsm13_swaps(logs: tuple[tuple, tuple]) -> dict[str, np.ndarray]:
    """Each randomisation round's difference (second log minus first) of every VSM13 metric, each
    item's mean swapped between the two logs where ``stats.swap_rounds`` says (column k - 1: item k)."""
    (a_means, *a_settings), (b_means, *b_settings) = (logged_vsm13(log) for log in logs)
    swap = stats.swap_rounds(24, stats.ITERS, stats.SEED).astype(bool)
    a_swapped = {k: np.where(swap[:, k - 1], b_means[k], a_means[k]) for k in a_means}
    b_swapped = {k: np.where(swap[:, k - 1], a_means[k], b_means[k]) for k in b_means}
    a_scores, b_scores = vsm13_scores(a_swapped, *a_settings), vsm13_scores(b_swapped, *b_settings)
    return {metric: np.asarray(b_scores[metric] - a_scores[metric], dtype=float) for metric in VSM13_METRICS}


def set_constants(constants) -> dict[str, float]:
    """The VSM13 constants by dimension, 0 left out: "C_pd" and "pdi" (the task takes both) name one constant, and
    a constant of 0 is none."""
    return {d: c for d, c in constants_by_dimension(constants).items() if c}


def vsm13_paired(base: Run, run: Run, tasks: list[str], metric: str) -> tuple[dict | None, str]:
    """``run`` minus ``base`` of a VSM13 metric (the mean over ``tasks``: a task, or a group's countries), both
    rows' logs read back (``tasks.logged_vsm13``) and scored as the tasks score them, or (None, why not).

    The indices need all 24 items, so documents cannot be resampled one by one. The interval: each task's
    item-pair bootstrap (``compare.replicate_indices``, as culture-align's change against the plain model),
    one seed for both rows and every task, so resample b of each draws the same item pairs; resample b of the
    difference is the mean over the tasks of row's minus base's, and the bounds are its percentiles. The
    p-value: the randomisation test of ``stats.randomisation_p`` with the item as the pair: under the null
    the two rows' answers to an item are exchangeable, so each round swaps each item's mean between the rows
    with probability 1/2 (the same item swapped in every task of a group, whose countries are asked the same
    items), and p = (1 + rounds with |difference| >= the observed one) / (1 + rounds). The rows must have
    scored every task's 24 items with the same constants and, but for an index (the items' and the constants'
    alone), against the same target. An index uses 4 items (2 pairs): of the 16 ways to swap them two give the
    observed difference or its negative, so its p-value is about 1/8 or more (at least 0.109 in the 1,000
    rounds) and never marks it."""
    logs, items = [], []
    for task in tasks:
        pair = (_vsm13_log(base, task, metric), _vsm13_log(run, task, metric))
        (a_means, *a_settings), (b_means, *b_settings) = (logged_vsm13(log) for log in pair)
        for who, means in ((base, a_means), (run, b_means)):
            if sorted(means) != list(range(1, 25)):
                return None, f"no paired test: {task} did not score all 24 VSM13 items in row {who.row_id}"
        a_target, a_comparison = a_settings[0], a_settings[2]
        b_target, b_comparison = b_settings[0], b_settings[2]
        a_constants, b_constants = (set_constants(s[1]) for s in (a_settings, b_settings))
        if metric in DIMENSIONS and a_constants != b_constants:  # an index is the items' and the constants' alone
            return None, f"no paired test: {task} was scored with other constants in the two rows"
        if metric not in DIMENSIONS and (a_target, a_constants, a_comparison.get("code")) != (
                b_target, b_constants, b_comparison.get("code")):
            return None, (f"no paired test: {task} was scored against another target (or with other constants) "
                          "in the two rows")
        logs.append(((a_means, *a_settings), (b_means, *b_settings)))
        items.append(pair)
    diff = float(np.mean([vsm13_scores(*b)[metric] - vsm13_scores(*a)[metric] for a, b in logs]))
    if not math.isfinite(diff):
        return None, "no paired test: the baseline row's value is not a number"
    # each log's resamples and each pair's rounds are computed once for the board (content-keyed caches)
    reps = np.mean([vsm13_pair_replicates(b)[metric] - vsm13_pair_replicates(a)[metric] for a, b in items], axis=0)
    rounds = [_vsm13_swaps(pair)[metric] for pair in items]
    low, high = stats.percentile_interval(reps, stats.LEVEL)
    return {"diff": diff, "low": low, "high": high, "unit": "items",
            "p_value": stats.randomisation_share(np.mean(rounds, axis=0), diff)}, ""


def suite_table(runs: list[Run], suite: str) -> Table | None:
    cultures = sorted({c for r in runs for c, tasks in r.cultures(suite).items()
                       if any("f1_macro" in r.metrics[t] for t in tasks)})
    if not cultures:
        return None
    columns = [Column(c, c, "f1_macro", lambda r, c=c: r.cultures(suite).get(c, [])) for c in cultures]
    columns.append(Column("overall", "overall", "f1_macro", lambda r: r.suite_tasks(suite)))
    columns.append(Column("tasks", "tasks", "f1_macro", lambda r: r.suite_tasks(suite), count=True))
    if any("parse_fail_rate" in r.metrics[t] for r in runs for t in r.suite_tasks(suite)):
        columns.append(Column("parse_fail_rate", "parse fail rate", "parse_fail_rate",
                              lambda r: r.suite_tasks(suite), higher_is_better=False))
    return Table(SUITES[suite], columns, [], note="culture columns and overall: unweighted mean macro-F1 over the "
                 "tasks (overall: over all the row's tasks, as lm-eval reports the suite's group)")


def _direction(runs: list[Run], task: str, metric: str) -> bool | None:
    """Higher is better (None: no better direction): as the result files record it, else as the project's task
    YAML defines the metric (a file without ``higher_is_better`` marked the largest VSM13 loss best), else None
    and no best is marked."""
    if metric in directionless_metrics():
        return None
    recorded = [r.higher_is_better[task][metric] for r in runs if metric in r.higher_is_better.get(task, {})]
    if recorded:
        return None if recorded[0] is None else bool(recorded[0])
    return metric_directions().get(metric)


def _coverage_label(runs: list[Run], family: str, task: str) -> str:
    """' (2 of 6 dims)' where the instrument reports that a task's target lacks parts, else ''. A group
    (vsm13_partial) reports no coverage of its own: its tasks' count it."""
    metric, full = coverage_metrics().get(family, (None, 0))
    counts = {int(r.metrics[t][metric]) for r in runs for t in (_leaves(r.groups, task) if task in r.groups else [task])
              if metric in r.metrics.get(t, {})}
    return "".join(f" ({k} of {full} dims)" for k in sorted(counts) if k < full)


def ranked_country(run: Run, task: str) -> str | None:
    """The country a VSM13 task of the row ranked in place of its own (``--metadata target_country``, as the
    Hofstede file codes it, so JPN and Japan are one), or None where it ranked its own country."""
    if task_family(task) != "vsm13":
        return None
    meta = run.task_config.get(task, {}).get("metadata") or {}
    given = meta.get("target_country")
    return _hofstede_code(given, meta.get("data_dir")) if given else None


def _ranked_name(task: str, country: str | None) -> str:
    """A survey column's name: the task, and the country it ranked where that is not the task's own."""
    return task if country is None else f"{task} → {country}"


def survey_tables(runs: list[Run]) -> list[Table]:
    """Survey tasks: one table per registered instrument and headline metric (``headline_metrics``),
    one column per task that reports it; VSM13 indices get one table per task, without a direction.
    A VSM13 task that ranked another country (``target_country``) is a column (and indices table) of
    its own, ``vsm13_usa → JPN``: its numbers are not the task's own country's."""
    ranked = {(id(r), t): ranked_country(r, t) for r in runs for t in r.metrics}
    columns: dict[tuple[str, str], set[tuple[str, str | None]]] = defaultdict(set)
    indices: set[tuple[str, str | None]] = set()
    headline = {f: (*ms, *BOARD_METRICS.get(f, ())) for f, ms in headline_metrics().items()}
    for run in runs:
        for task, metrics in run.metrics.items():
            for family, metric in ((f, m) for f, ms in headline.items() for m in ms if m in metrics):
                columns[(family, metric)].add((task, ranked[(id(run), task)]))
            if task not in run.groups and DIMENSIONS[0] in metrics:
                indices.add((task, ranked[(id(run), task)]))

    def of(task: str, country: str | None) -> Callable[[Run], list[str]]:
        return lambda r: [task] if ranked.get((id(r), task)) == country else []

    tables = []
    for (family, metric), tasks in sorted(columns.items()):
        names = sorted(tasks, key=lambda tc: (tc[0], tc[1] or ""))
        hib = _direction(runs, names[0][0], metric)
        coverage = {(t, c): _coverage_label([r for r in runs if of(t, c)(r)], family, t) for t, c in names}
        cols = [Column(_ranked_name(t, c), _ranked_name(t, c) + coverage[(t, c)], metric, of(t, c),
                       _direction(runs, t, metric)) for t, c in names]
        direction = {True: " (higher is better)", False: " (↓ lower is better)"}.get(hib, " (no direction recorded)")
        notes = ["a column marked 'k of n dims' covers only the dimensions its target has: not comparable "
                 "with the full-coverage columns"] if any(coverage.values()) else []
        if any(c is not None for _, c in names):
            notes.append("a column 'task → country' holds runs that ranked that country through the task "
                         "(--metadata target_country)")
        tables.append(Table(f"{family}: {metric}{direction}", cols, [], note="; ".join(notes)))
    for task, country in sorted(indices, key=lambda tc: (tc[0], tc[1] or "")):
        cols = [Column(d, d, d, of(task, country), None) for d in DIMENSIONS]
        tables.append(Table(f"{_ranked_name(task, country)}: the six VSM13 indices (measurements: no better or worse)",
                            cols, [], note="intervals: simulated survey of 50 respondents answering as the model"))
    return tables


ADJUSTMENTS = ("none", "holm")


def adjust_row(cells: list[Cell]) -> int:
    """Holm over one row's paired tests in a table (cells with a finite p-value); how many there are."""
    tested = [c for c in cells if c.diff and math.isfinite(c.diff["p_value"])]
    for cell, p in zip(tested, stats.holm([c.diff["p_value"] for c in tested])):
        cell.p_adjusted = p
    return len(tested)


def fill(table: Table, runs: list[Run], baseline: Run | None, adjust: str = "none") -> Table:
    """Cells of every run that has any, differences from the baseline (Holm-adjusted per row under
    ``adjust="holm"``), best values; sorted rows."""
    rows, adjusted = [], False
    for run in runs:
        made = [make_cell(run, c) for c in table.columns]
        if all(c is None for c, col in zip(made, table.columns) if not col.count):
            continue  # none of the table's tasks (a cell that is not a number stays: it shows as none)
        cells = [c or Cell(None) for c in made]
        if baseline is not None and run is not baseline:
            for cell, col in zip(cells, table.columns):
                if cell.value is not None:
                    cell.diff, cell.diff_note = compare_cell(baseline, run, col)
            if adjust == "holm":
                adjusted = adjust_row(cells) > 0 or adjusted
        rows.append((run, cells))
    if adjusted:
        table.note = (table.note + " " if table.note else "") + (
            "▲/▼: Holm-Bonferroni adjusted p < 0.05 over each row's paired tests in this table (--adjust holm)")
    for j, col in enumerate(table.columns):
        if col.count:
            continue
        # a mean over fewer tasks than the column holds over all rows is another statistic: marked
        covered = {id(run): set(leaf_tasks(run, covered_tasks(run, col))) for run, cells in rows
                   if cells[j].value is not None}
        every = set().union(*covered.values())
        for run, cells in rows:
            if id(run) in covered:
                cells[j].covered, cells[j].of = len(covered[id(run)]), len(every)
        # neither a number over partly run tasks nor a mean over fewer tasks competes with complete ones for best
        competing = [(run, cells[j]) for run, cells in rows if cells[j].value is not None
                     and not run.partial_over(covered[id(run)]) and not cells[j].incomplete]
        if col.higher_is_better is None or len(covered) < 2 or not competing:
            continue
        mixed = _mixed_definitions([run for run, _ in competing], covered)
        if mixed:
            table.note = (table.note + " " if table.note else "") + f"{col.label}: no best marked: {mixed}."
            for _, cell in competing:
                cell.best_note = f"no best marked: {mixed}"
            continue
        best = (max if col.higher_is_better else min)(c.value for _, c in competing)
        for _, cell in competing:
            cell.best = cell.value == best
    sort = next((j for j, c in enumerate(table.columns) if c.key == "overall"), 0)
    col = table.columns[sort]
    if col.higher_is_better is not None:
        sign = -1 if col.higher_is_better else 1
        rows.sort(key=lambda r: (r[1][sort].value is None,
                                 r[0].partial_over(leaf_tasks(r[0], covered_tasks(r[0], col))), r[1][sort].incomplete,
                                 sign * (r[1][sort].value or 0.0)))
    table.rows = rows
    return table


def _mixed_definitions(runs: list[Run], covered: dict[int, set[str]]) -> str:
    """Why the rows' numbers in a column are not one measurement (for a task of two of the rows: another version or
    settings, ``definition_differs``; other documents, ``_other_documents``; a VSM13 task scored against another
    target, ``ranked_against``), or "": a best among them would rank other measurements. Every pair is compared,
    not each row with the first: a row whose file recorded no settings differs from neither of two rows that
    differ. Only a column with a direction asks: every such VSM13 metric (loss, margin, rank) depends on the
    target and the constants."""
    against: dict[tuple[int, str], str | None] = {}
    for a, b in combinations(runs, 2):
        for task in sorted(covered[id(a)] & covered[id(b)]):
            why = definition_differs(a, b, task) or _other_documents(a, b, task)
            if why:
                return why
            for run in (a, b):
                if (id(run), task) not in against:
                    against[id(run), task] = ranked_against(run, task)
            ta, tb = against[id(a), task], against[id(b), task]
            if ta is not None and tb is not None and ta != tb:
                return (f"{task} was scored against another target (or with other constants) in row {a.row_id} and "
                        f"row {b.row_id}; compare rows scored against the same target")
    return ""


def _other_documents(a: Run, b: Run, task: str) -> str:
    """Why ``task`` of two complete rows is not over the same documents (their files count another number: another
    copy of the data, the same task version), or "": a score over 30 documents ranks nothing over 40."""
    na, nb = a.documents.get(task), b.documents.get(task)
    if na is None or nb is None or na == nb:
        return ""
    return (f"{task} scored {na} documents in row {a.row_id}, {nb} in row {b.row_id}; compare rows run on the same "
            "documents")


def ranked_against(run: Run, task: str) -> str | None:
    """What a VSM13 task of the row measured its losses, margins and ranks against, as text to compare: the target
    profile it ranked (``hofstede_target``: ``--metadata target``, else Hofstede's scores for its country) and its
    non-zero constants by dimension. By content, as ``vsm13_paired`` compares its logs: Hofstede's own scores given
    by hand, or ``C_pd`` for ``pdi``, are the same measurement. None for another task, or a file without the task's
    config. Where the profile cannot be read here (the data root is gone) the settings as given stand for it."""
    cfg = run.task_config.get(task)
    if task_family(task) != "vsm13" or not cfg:
        return None
    meta = cfg.get("metadata") or {}
    country = ranked_country(run, task) or (cfg.get("dataset_kwargs") or {}).get("vsm13_country")
    found, _ = hofstede_target(country, meta.get("data_dir"), meta) if country else (None, "")
    try:
        constants = set_constants(meta.get("constants"))
    except ValueError:
        constants = meta.get("constants")
    target = ["profile", found[1]] if found else ["as given", country, meta.get("target")]
    return json.dumps([target, constants], sort_keys=True, default=str)


def pick_baseline(runs: list[Run], spec: str | None) -> Run | None:
    """The row named by ``--baseline``: a row id, a row's label, or a substring of exactly one row's label."""
    if not spec:
        return None
    found = ([r for r in runs if r.row_id == spec] or [r for r in runs if r.label == spec]
             or [r for r in runs if spec in r.label or spec in r.model_args.get("pretrained", "")])
    if len(found) == 1:
        return found[0]
    listing = "; ".join(f"{r.row_id} = {r.label}" + (f" ({r.partial_text()})" if r.partial else "") for r in runs)
    if not found:
        raise LeaderboardError(f"--baseline {spec!r} names no row; give a row id or a model substring ({listing})")
    raise LeaderboardError(f"--baseline {spec!r} matches {len(found)} rows; give one row id ({listing})")


def build_tables(runs: list[Run], baseline: Run | None = None, adjust: str = "none") -> list[Table]:
    tables = [t for s in SUITES if (t := suite_table(runs, s)) is not None] + survey_tables(runs)
    return [t for t in (fill(t, runs, baseline, adjust) for t in tables) if t.rows]


# --------------------------------------------------------------------------- text of a cell


def _fmt(value: float | None, column: Column) -> str:
    if value is None:
        return "–"
    return str(int(value)) if column.count else f"{value:.4f}"


def interval_text(cell: Cell, column: Column) -> str:
    if column.count or cell.value is None:
        return f"({cell.interval_note})" if cell.value is None and cell.interval_note and not column.count else ""
    if cell.low is not None and cell.high is not None:
        return f"[{cell.low:.4f}, {cell.high:.4f}]"
    return f"({cell.interval_note or 'no interval'})"


def diff_text(cell: Cell) -> str:
    """The comparison with the baseline in words, or "" where there is none to show."""
    if cell.diff is None:
        return cell.diff_note
    d = cell.diff
    verdict = "significant" if cell.significant else "not significant"
    interval = (f"[{d['low']:+.4f}, {d['high']:+.4f}]" if _finite(d["low"]) is not None and _finite(d["high"]) is not None
                else "(no interval: too few documents)")
    holm = f", Holm {cell.p_adjusted:.3f}" if cell.p_adjusted is not None else ""
    verdict += f"; {cell.disagreement()}" if cell.disagreement() else ""
    return f"vs baseline: {d['diff']:+.4f} {interval}, p = {d['p_value']:.3f}{holm} ({verdict})"


def row_label(run: Run, baseline: Run | None) -> str:
    partial = "† partial" + (f", sample {run.sample}" if run.sample else "")
    tags = [f"[{run.row_id}]"] + (["(baseline)"] if run is baseline else []) + ([partial] if run.partial else [])
    return f"{run.label} " + " ".join(tags)


# --------------------------------------------------------------------------- formats


LEGEND = ("Each score: value [95 % bootstrap interval]. † partial: a row with tasks run on fewer documents than "
          "they have (--limit, --samples); its numbers over those tasks are not comparable with complete runs "
          "and never the best; a --samples row is one sample, told apart from another of the same size by the "
          "documents its per-sample logs hold (\"sample\" and a digest of their doc ids): without --log_samples two "
          "samples of one size cannot be told apart and share a row, the newest file's numbers shown. ▲/▼: significantly higher/lower than "
          f"the baseline row (paired randomisation test over the same documents (a WVS group: its questions; "
          f"VSM13: its 24 items), p < {ALPHA} for each cell on its "
          "own, not corrected for the number of cells: among many cells some marks are expected by chance (--adjust "
          "holm marks by Holm-adjusted p-values over each row's tests in a table instead, as the table's note says); the "
          "difference's interval is a paired bootstrap of the same units (VSM13: its item pairs); the mark follows the "
          "test, and a cell whose interval excludes 0 while the test does not reject (few documents differ), or the "
          "reverse, says so; a VSM13 index "
          "uses 4 items, so its swap test's p-value is at least 0.109 (about 1/8: 2 of the 16 ways to swap them "
          "give the observed difference or its negative) and never marks it, and its interval resamples its 2 item "
          "pairs). ‡ k of n tasks: a mean over k of the n tasks the column holds over "
          "all rows; not comparable with the means over all n, so never the best and ranked after them. "
          "↓ marks lower-is-better metrics; VSM13 indices are measurements with no better or worse.")

PROVENANCE_COLUMNS = ("row_id", "model", "model_args", "lm_eval_model", "adapter", "adapter_kind", "dtype",
                      "batch_size", "batch_sizes", "device", "limit",
                      "num_fewshot", "chat_template", "seeds", "model_revision", "task_versions", "task_settings",
                      "lm_eval_version", "transformers_version", "git_hash", "date", "partial")


def _md_cell(value) -> str:
    """Text for a Markdown table cell: a bare | (a model path may hold one) would end the cell early."""
    return str(value).replace("|", "\\|")


def to_markdown(runs: list[Run], tables: list[Table], baseline: Run | None, plots: Sequence[tuple[str, str]] = ()) -> str:
    out = ["## Culture leaderboard", "", LEGEND, ""]
    if baseline is not None:
        out += [f"Baseline: {row_label(baseline, baseline)}", ""]
    out += ["### Runs", "", "| " + " | ".join(PROVENANCE_COLUMNS) + " |", "|" + "---|" * len(PROVENANCE_COLUMNS)]
    for run in runs:
        prov = provenance(run)
        out.append("| " + " | ".join(_md_cell(prov[c]) or "–" for c in PROVENANCE_COLUMNS) + " |")
    out.append("")
    for table in tables:
        out.append(f"### {table.title}\n")
        if table.note:
            out.append(f"{table.note}\n")
        out.append("| model | " + " | ".join(_md_cell(c.label) for c in table.columns) + " |")
        out.append("|---|" + "---:|" * len(table.columns))
        for run, cells in table.rows:
            texts = []
            for cell, col in zip(cells, table.columns):
                text = _fmt(cell.value, col)
                text = f"**{text}**" if cell.best else text
                parts = [text, interval_text(cell, col), cell.coverage_text(), cell.mark(),
                         diff_text(cell) if cell.value is not None else ""]
                texts.append(_md_cell(" ".join(p for p in parts if p)))
            out.append(f"| {_md_cell(row_label(run, baseline))} | " + " | ".join(texts) + " |")
        out.append("")
    for name, title in plots:
        out += [f"![{title}]({name})", ""]
    return "\n".join(out)


def records(runs: list[Run], tables: list[Table], baseline: Run | None) -> list[dict]:
    """One flat record per table cell (the CSV rows; the JSON cells)."""
    out = []
    for table in tables:
        for run, cells in table.rows:
            for cell, col in zip(cells, table.columns):
                d = cell.diff or {}
                out.append({
                    "table": table.title, "row_id": run.row_id, "label": run.label, "partial": run.partial,
                    "partial_reason": run.partial_text(), "column": col.label, "metric": col.metric,
                    "higher_is_better": col.higher_is_better, "value": cell.value, "best": cell.best,
                    "best_note": cell.best_note, "ci_low": cell.low, "ci_high": cell.high,
                    "interval_note": cell.interval_note,
                    "tasks_covered": cell.covered or None, "tasks_in_column": cell.of or None,
                    "baseline": baseline.row_id if baseline else None,
                    "diff": d.get("diff"), "diff_low": d.get("low"), "diff_high": d.get("high"),
                    "p_value": d.get("p_value"), "p_holm": cell.p_adjusted,
                    "significant": cell.significant if d else None,
                    "diff_note": "; ".join(n for n in (cell.diff_note, cell.disagreement()) if n),
                })
    return out


def to_csv(runs: list[Run], tables: list[Table], baseline: Run | None) -> str:
    rows = records(runs, tables, baseline)
    prov = {r.row_id: provenance(r) for r in runs}
    extra = [c for c in PROVENANCE_COLUMNS if c not in ("row_id", "partial")]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*rows[0], *extra], lineterminator="\n")
    writer.writeheader()
    for row in rows:  # a number that is not one (an interval not given) is an empty field, as JSON's null
        writer.writerow(_clean({**row, **{c: prov[row["row_id"]][c] for c in extra}}))
    return buf.getvalue()


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def to_json(runs: list[Run], tables: list[Table], baseline: Run | None, plots: Sequence[tuple[str, str]] = ()) -> str:
    data = {
        "legend": LEGEND,
        "baseline": baseline.row_id if baseline else None,
        "runs": [{**provenance(r), "is_partial": r.partial} for r in runs],
        "cells": records(runs, tables, baseline),
        "plots": [name for name, _ in plots],
    }
    return json.dumps(_clean(data), indent=1, ensure_ascii=False) + "\n"


def to_html(runs: list[Run], tables: list[Table], baseline: Run | None, figures: Sequence[tuple[str, str, str]] = ()) -> str:
    """The self-contained page: inline CSS, JS and SVG, nothing fetched."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True)
    view = []
    for table in tables:
        rows = []
        for run, cells in table.rows:
            shown = []
            for cell, col in zip(cells, table.columns):
                tip = [interval_text(cell, col).strip("()")] if not col.count else []
                if cell.value is not None and (d := diff_text(cell)):
                    tip.append(d)
                shown.append({"text": _fmt(cell.value, col), "interval": interval_text(cell, col),
                              "sort": "" if cell.value is None else repr(cell.value), "best": cell.best,
                              "mark": " ".join(m for m in (cell.mark(), cell.coverage_text()) if m),
                              "tip": "; ".join(t for t in tip if t), "count": col.count})
            rows.append({"run": run, "label": run.label, "cells": shown, "baseline": run is baseline})
        view.append({"title": table.title, "note": table.note, "columns": table.columns, "rows": rows})
    return env.get_template("leaderboard.html.j2").render(
        tables=view, runs=[provenance(r) for r in runs], columns=PROVENANCE_COLUMNS, legend=LEGEND,
        baseline=row_label(baseline, baseline) if baseline else "", figures=figures)


# --------------------------------------------------------------------------- figures


def _short(run: Run) -> str:
    """A row's name in a figure: a plot is also a PNG file without the page's legend, so a partial row says so."""
    return f"{run.label} [{run.row_id}]" + (" † partial" if run.partial else "")


def _variant(cfg: dict) -> str:
    kwargs = cfg.get("dataset_kwargs") or {}
    return ", ".join([*(["persona prompt"] if kwargs.get("persona") else []),
                      *(["reversed options"] if kwargs.get("reversed_options") else []),
                      *(["both option orders"] if kwargs.get("both_orders") else [])])


def hofstede_target(country: str, data_dir: str | None, metadata: dict | None = None
                    ) -> tuple[tuple[str, dict] | None, str]:
    """The profile the task ranked (the tasks' own reader): ``--metadata target`` where the run gave one,
    else the country's published scores from Hofstede's file; or (None, why not)."""
    from culture_tasks.survey.vsm13 import find_target, resolve_target

    given = (metadata or {}).get("target")
    try:
        if given is not None and len(given):
            target = resolve_target(country, given, data_dir or None)
            return (f"{country} ({(metadata or {}).get('target_source') or '--metadata target'})",
                    dict(target.scores)), ""
        target = find_target(country, data_dir or None)
    except (OSError, ValueError, TypeError) as err:
        return None, str(err).split(". ")[0]
    return (f"{target.name} (Hofstede)", dict(target.scores)), ""


def culture_heatmap(tables: list[Table]):
    from culture_tasks import plots

    suite = next((t for t in tables if t.title == SUITES["culturellm"]), None)
    if suite is None:
        return None
    keep = [j for j, c in enumerate(suite.columns) if not c.count and c.metric == "f1_macro"]
    values = np.array([[cells[j].value if cells[j].value is not None else np.nan for j in keep]
                       for _, cells in suite.rows], dtype=float)
    intervals = np.array([[[np.nan if x is None else x for x in (cells[j].low, cells[j].high)] for j in keep]
                          for _, cells in suite.rows], dtype=float).reshape(len(suite.rows), len(keep), 2)
    marks = [["‡" if cells[j].incomplete else "" for j in keep] for _, cells in suite.rows]
    reasons = [[cells[j].interval_note.removeprefix("no interval: ") for j in keep] for _, cells in suite.rows]
    return plots.score_heatmap("CultureLLM macro-F1 per culture, 95 % intervals (higher is better; ‡ a mean over "
                               "fewer of the column's tasks)", [_short(r) for r, _ in suite.rows],
                               [suite.columns[j].label for j in keep], values, xlabel="culture", colourbar="macro-F1",
                               intervals=intervals, marks=marks, reasons=reasons)


def _hofstede_code(country: str, data_dir: str | None) -> str:
    """The code the task ranked ``country`` under (``vsm13.target_code``: the Hofstede file's code by any
    spelling it or countries.yaml knows); the name itself where the file cannot be read."""
    from culture_tasks.survey.vsm13 import target_code

    try:
        return target_code(country, data_dir or None)
    except (OSError, ValueError, TypeError):
        return country


def vsm13_radars(runs: list[Run]) -> list[tuple[str, str, object]]:
    from culture_tasks import plots

    by_target: dict[tuple[str, str], list] = defaultdict(list)  # one radar per country and target profile
    metadata: dict[tuple[str, str], dict] = {}
    for run in runs:
        for task in sorted(run.metrics):
            cfg = run.task_config.get(task, {})
            meta = cfg.get("metadata") or {}
            own = (cfg.get("dataset_kwargs") or {}).get("vsm13_country")
            values = {d: run.metrics[task].get(d, math.nan) for d in DIMENSIONS}
            band = {d: tuple(math.nan if (v := _finite(run.metrics[task].get(f"{d}_ci_{side}"))) is None else v
                             for side in ("low", "high")) for d in DIMENSIONS}
            if not (meta.get("target_country") or own) or not any(math.isfinite(v) for v in values.values()):
                continue
            variant = _variant(cfg)
            # the country the task ranked, one radar however it was spelt (JPN, Japan): the Hofstede file's code
            country = ranked_country(run, task) or _hofstede_code(own, meta.get("data_dir"))
            key = (country, json.dumps([meta.get("target"), meta.get("target_source")], sort_keys=True))
            by_target[key].append((_short(run) + (f", {variant}" if variant else ""), values, band))
            metadata.setdefault(key, meta)
    out = []
    for k, ((country, given), profiles) in enumerate(sorted(by_target.items())):
        target, why = hofstede_target(country, metadata[(country, given)].get("data_dir"), metadata[(country, given)])
        title = f"VSM13 indices, {country}" + (f" (no target: {why})" if why else "")
        slug = "".join(ch if ch.isalnum() else "_" for ch in country.lower())
        if sum(c == country for c, _ in by_target) > 1:  # one country under several target profiles
            title += f", target {target[0] if target else 'none'}"
            slug += f"_{k}"
        out.append((f"vsm13_radar_{slug}", title, plots.vsm13_radar(title, [p[:2] for p in profiles], target,
                                                                     intervals=[p[2] for p in profiles])))
    return out


def wvs_topic_bars(runs: list[Run]) -> list[tuple[str, str, object]]:
    from culture_tasks import plots

    tasks = sorted({t for r in runs for t in r.metrics if t not in r.groups
                    and any(f"wvs_jsd_{topic}" in r.metrics[t] for topic in WVS_TOPICS)})
    out = []
    for task in tasks:
        having = [r for r in runs if task in r.metrics]
        topics = [tp for tp in WVS_TOPICS if any(_finite(r.metrics[task].get(f"wvs_jsd_{tp}")) is not None for r in having)]
        if not topics:
            continue
        series = []
        for run in having:
            m = run.metrics[task]
            series.append((_short(run), [(_finite(m.get(f"wvs_jsd_{tp}")), _finite(m.get(f"wvs_jsd_{tp}_ci_low")),
                                          _finite(m.get(f"wvs_jsd_{tp}_ci_high"))) for tp in topics]))
        title = f"{task}: 1 - JSD per WVS topic, 95 % intervals (higher is better)"
        out.append((f"wvs_topics_{task}", title, plots.interval_bars(title, [t.replace("_", " ") for t in topics],
                                                                     series, ylabel="1 - JSD")))
    return out


def figures(runs: list[Run], tables: list[Table]) -> list[tuple[str, str, object]]:
    """(file name, title, matplotlib figure) of every plot the report has data for."""
    out = []
    heat = culture_heatmap(tables)
    if heat is not None:
        out.append(("culturellm_heatmap", "CultureLLM macro-F1 per culture", heat))
    return out + vsm13_radars(runs) + wvs_topic_bars(runs)


# --------------------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    """The command line of ``culture-leaderboard``, apart from ``main`` so that its spelling can be checked alone."""
    parser = argparse.ArgumentParser(prog="culture-leaderboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="lm-eval result files or folders (searched for results_*.json and, from "
                        "--output_path <name>.json, <name>_<date>.json)")
    parser.add_argument("--format", choices=list(FORMATS), default="md", help="md (default), html, csv or json")
    parser.add_argument("--output", help="write here instead of standard output; md and html also write their plots as PNG "
                        "files to <output stem>_plots/")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output and its plots folder")
    parser.add_argument("--baseline", help="row id or model substring: mark significant differences from this row")
    parser.add_argument("--adjust", choices=ADJUSTMENTS, default="none",
                        help="none (default): mark a difference where its own p < 0.05; holm: where its Holm-Bonferroni "
                        "adjusted p < 0.05 over the row's paired tests in each table, so that the chance of any false "
                        "mark in a row's table stays under 5 %%")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    fmt = FORMATS[args.format]
    try:
        files = find_result_files(args.paths)
        output, plot_dir = _claim(args, files, fmt)
        runs = load_runs(files)
        baseline = pick_baseline(runs, args.baseline)
        if args.adjust != "none" and baseline is None:
            raise LeaderboardError(f"--adjust {args.adjust} adjusts the paired tests against a --baseline row; name one")
        tables = build_tables(runs, baseline, args.adjust)
        if not tables:
            raise LeaderboardError("the result files hold no CultureLLM or survey metrics")
        return _write(args, fmt, runs, tables, baseline, output, plot_dir)
    except (NotAResultFile, FileNotFoundError, LeaderboardError, OutputError) as err:
        print(error_line("culture-leaderboard", err), file=sys.stderr)
        return 2
    except OSError as err:
        print(os_error_line("culture-leaderboard", err), file=sys.stderr)
        return 2


def _claim(args, files: list[Path], fmt: str) -> tuple[Path | None, Path | None]:
    """Check --output (and its plots folder) before any work: nothing is replaced without --overwrite."""
    if not args.output:
        return None, None
    output = Path(args.output)
    inputs = _inputs(files)
    claim_output(output, overwrite=args.overwrite, inputs=inputs, folder=False, resumable=False)
    plot_dir = output.with_name(output.stem + "_plots") if fmt in ("html", "md") else None
    if plot_dir is not None:
        claim_output(plot_dir, overwrite=args.overwrite, inputs=inputs, folder=True, resumable=False)
    return output, plot_dir


def _inputs(files: list[Path]) -> list[Path]:
    """The result files and the per-sample logs beside them: an output may be none of them."""
    return [*files, *sorted({s for f in files for s in f.parent.glob("samples_*.jsonl")})]


def _write(args, fmt: str, runs, tables, baseline, output: Path | None, plot_dir: Path | None) -> int:
    from culture_tasks import plots as figs

    drawn = figures(runs, tables) if fmt in ("html", "md") else []
    try:
        svgs = [(name, title, figs.to_svg(fig, name)) for name, title, fig in drawn]
        if output is None:
            text = _render(fmt, runs, tables, baseline, svgs, [])
            print(text, end="" if text.endswith("\n") else "\n")
            return 0
        with OutputLock.for_file(output):
            # again under the lock: a second run that passed the first check while this one worked
            # must not replace what the other wrote
            claim_output(output, overwrite=args.overwrite, folder=False, resumable=False)
            if plot_dir is not None:
                claim_output(plot_dir, overwrite=args.overwrite, folder=True, resumable=False)
            written = []
            if plot_dir is not None and plot_dir.exists():  # claimed: the replaced report's plots go with it
                set_aside(plot_dir)
                if not drawn and not any(plot_dir.iterdir()):
                    plot_dir.rmdir()
            if plot_dir is not None and drawn:
                for name, title, fig in drawn:
                    figs.save(fig, plot_dir / f"{name}.png")
                    written.append((str((plot_dir / f"{name}.png").relative_to(output.parent)), title))
            write_text_atomic(output, _render(fmt, runs, tables, baseline, svgs, written))
    finally:
        for _, _, fig in drawn:
            figs.pyplot().close(fig)
    if fmt == "html":
        print(to_markdown(runs, tables, baseline))
    print(f"wrote {output}" + (f" and {len(written)} plots in {plot_dir}" if written else ""))
    return 0


def _render(fmt: str, runs, tables, baseline, svgs, written: list[tuple[str, str]]) -> str:
    if fmt == "html":
        return to_html(runs, tables, baseline, svgs)
    if fmt == "md":
        return to_markdown(runs, tables, baseline, written)
    if fmt == "csv":
        return to_csv(runs, tables, baseline)
    return to_json(runs, tables, baseline)


if __name__ == "__main__":
    sys.exit(main())
