"""The steering matrix: a model steered toward N countries, each compared with every country.

    culture-steer --model <dir> --output <dir> \\
        --target usa=persona --target china=prompt:<prompt-tuning dir> --target germany=lora:<lora dir> \\
        [--target india=plain] [--iters 1000] [--no-wvs] [--overwrite | --resume] [--config steer.yaml]
    culture-steer --rescore <earlier output> --output <dir> [--iters 1000] [--seed 1234] [--level 0.95]

Each steered model (a persona prompt, a prompt-tuning checkpoint, a LoRA checkpoint, or nothing)
answers the VSM13 survey, and WVS where available, through the lm-eval tasks themselves
(``aligners.scoring.TaskScorer``: the numbers are lm-eval's); the plain model is always scored too,
as the off-target control. Written: steering.json (profiles, N x N matrices, rank metrics with
intervals, the change of every distance relative to the plain model, the reference files and the VSM13
items answered by content, the data root), steering.md, steering.png. Each model's answers are stored as soon
as they are computed, with what answered them (the settings, the model's and each checkpoint's fingerprint, the
data files by content), in steering.partial.json, which is removed once the three files are written: ``--resume``
continues a killed run, reusing the stored answers and computing the rest (with other settings,
another model or checkpoint content or other data, it is an error naming the difference), and ends
with the files an uninterrupted run writes; a folder holding a killed run's answers is refused without
``--resume`` or ``--overwrite``.
Answers whose log-likelihoods are not all finite (a damaged weight or checkpoint, a soft prompt too large)
stop the run before anything is written, naming the plain model or the --target, the task and the fix
(the answers this run stored are removed; a resumed run keeps those stored before).
A prompt checkpoint is culture-align's output folder: its alignment.json must name the --target's country
(and Hofstede's scores for it), the run's --chat-template and an --option-order that asks the items as the
search did, expected-value answers and the VSM13 items of this run by content; a folder without alignment.json is
refused, as nothing of this could be checked. A checkpoint made on another model than --model's content (the
fingerprint alignment.json or training.json records) is refused; one without that record is used with a warning.
Every answer is scored in float32, and steering.json records per answer set the ``lm_eval`` command that gives
its numbers again (``lm_eval_commands``); half precision is refused (``FLOAT32_ONLY``): lm-eval's own scoring of
it rounds otherwise, so no recorded command would give the numbers beside it. The dtype the weights were loaded in
is recorded in each profile and in steering.json's identity.dtype_loaded. Everything else is checked before the
model is loaded.
Settings may also come from ``--config`` YAML (the field names: ``targets: [usa=persona, ...]``); flags
override it. ``--rescore`` recomputes every
metric of an earlier run from the answers its steering.json stores, without a model (when the
statistics change, or for other interval settings); the answers and their provenance are kept, and
reference data that differ from the stored run's are named.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from culture_tasks import outputs, plots, provenance, stats
from culture_tasks.atomic import replacing, write_text_atomic
from culture_tasks.cli_args import check_device, check_dtype, configure_logging
from culture_tasks.data_root import ENV_VAR, DataRootError, data_file, resolve_data_root
from culture_tasks.fingerprints import SAMPLED, model_fingerprint, scheme_of, warn_sampled
from culture_tasks.metadata import check_bool_fields
from culture_tasks.models import ModelFileError, check_adapter_fits, check_safetensors
from culture_tasks.outputs import (LOCK_NAME, OutputLock, check_settings, check_single_process, claim_output,
                                   error_line, file_digest, os_error_line, set_aside, settings_differences)
from culture_tasks.paths import lm_eval_command, task_manager
from culture_tasks.survey import compare
from culture_tasks.survey.countries import culture_key, find_listed, listed_countries
from culture_tasks.survey.instruments import BEFORE_OPTION_ORDER, OPTION_ORDERS, instrument
from culture_tasks.survey.vsm13 import (DIMENSIONS, HOFSTEDE_FILE, ITEMS_FILE, UnknownCountryError, find_target,
                                        vsm13_indices)
from culture_tasks.survey.wvs import QUESTIONS_FILE

log = logging.getLogger("culture_tasks")
METHODS = ("plain", "persona", "prompt", "lora")
PEFT_TYPES = {"prompt": "PROMPT_TUNING", "lora": "LORA"}
OUTPUT_FILES = ("steering.json", "steering.md", "steering.png")
# the answers computed so far and what answered them, rewritten after each model; removed once OUTPUT_FILES are written
PARTIAL = "steering.partial.json"
# why culture-steer takes no --dtype but float32 (SteeringConfig). In half precision the recorded lm_eval command
# gives other numbers than the scorer (``TaskScorer``): lm-eval rounds every log-probability to the model's dtype
# (its log-softmax runs in it; the scorer's in float32), which on the tiny test model on the CPU is the whole gap,
# VSM13 indices 0.31 apart at lm_eval's --batch_size 1 and 16 alike (tested); and lm-eval's half-precision numbers
# also move with its own batches (kfold's test), which the scorer does not form alike (left padding, shared stems).
# Giving them again would take a second scorer rounding and batching as lm-eval does; float32 gives them to float
# rounding at any batch size. As for culture-align's report (``aligners.align.in_float32``) the numbers are float32,
# and as steering only scores, a half-precision load would buy nothing but a second, float32 one.
FLOAT32_ONLY = ("--dtype {dtype}: culture-steer scores in float32 only: in half precision its answers are not what "
                "lm_eval gives (lm_eval rounds its log-softmax to the model's dtype and batches otherwise, tenths of a "
                "VSM13 index point apart), so the lm_eval command steering.json records beside them would not give "
                "them; drop --dtype (float32 is the default; a model too large for float32 on the GPU runs with "
                "--device cpu)")


class SteeringError(ValueError):
    """Bad input to a steering run; nothing was loaded or written."""


@dataclass(frozen=True)
class Steered:
    """One steered model: the country it is steered to and how."""

    slug: str
    name: str
    hofstede: str
    wvs: bool
    method: str
    checkpoint: str | None

    @property
    def label(self) -> str:
        return f"{self.slug}:{self.method}"


def find_country(key: str, data_dir: str | None = None) -> dict:
    """A countries.yaml entry by any spelling culture-align's --country takes: countries.yaml's own
    (``countries.find_listed``), else Hofstede's file's ("Korea South", "U.S.A."), so a name one CLI takes
    the other takes too. A country Hofstede's file has but countries.yaml lacks has no survey tasks."""
    entry = find_listed(key)
    if entry is None:
        try:
            code = find_target(key, data_dir).code
        except (UnknownCountryError, DataRootError):  # no data root: the name is not one countries.yaml knows
            raise SteeringError(f"unknown country {key!r} in --target; use one of "
                                f"{', '.join(c['slug'] for c in listed_countries())} (or their Hofstede/ISO codes)"
                                ) from None
        entry = next((c for c in listed_countries() if c.get("hofstede") == code), None)
        if entry is None:
            raise SteeringError(f"country {key!r} in --target is {code} in Hofstede's file, but countries.yaml "
                                "lists no survey tasks for it; use one of "
                                f"{', '.join(c['slug'] for c in listed_countries())}")
    if not entry.get("hofstede"):
        raise SteeringError(f"country {key!r} has no Hofstede code in countries.yaml")
    return entry


def target_parts(spec: str) -> tuple[str, str, str, str, str]:
    """``COUNTRY=METHOD[:CHECKPOINT]`` split as written: country, "=" (or "" where missing), method, ":" (or ""
    where missing), checkpoint."""
    country, sep, rest = spec.partition("=")
    method, colon, checkpoint = rest.partition(":")
    return country, sep, method, colon, checkpoint


def parse_target(spec: str, data_dir: str | None = None) -> Steered:
    """``COUNTRY=METHOD[:CHECKPOINT]``, e.g. ``usa=persona`` or ``china=prompt:runs/china``; a ``:`` after a method
    that takes no checkpoint (``usa=persona:``, a path left out or cut off) is refused, not dropped."""
    country, sep, method, colon, checkpoint = target_parts(spec)
    if not sep or not country.strip():
        raise SteeringError(f"--target {spec!r}: write COUNTRY=METHOD[:CHECKPOINT], METHOD one of {METHODS}")
    method = method.strip()
    if method not in METHODS:
        raise SteeringError(f"--target {spec!r}: unknown method {method!r}; use one of {METHODS}")
    if method in PEFT_TYPES and not checkpoint:
        raise SteeringError(f"--target {spec!r}: method {method} needs a checkpoint folder ({method}:<dir>)")
    if method not in PEFT_TYPES and colon:
        raise SteeringError(f"--target {spec!r}: method {method} takes no checkpoint; write {country}={method}")
    c = find_country(country, data_dir)
    return Steered(c["slug"], c["name"], c["hofstede"], bool(c.get("wvs_csv")), method, checkpoint or None)


def read_json(path: Path, who: str, fix: str) -> dict:
    """``outputs.read_json``, its error a SteeringError."""
    return outputs.read_json(path, who, fix, SteeringError)


def check_checkpoint(row: Steered, model: str) -> None:
    """The checkpoint exists, is the kind its method says, and names this base model (``check_made_on``
    compares the content it was made on) and fits its layers (``models.check_adapter_fits``: a LoRA's tensor
    shapes, a soft prompt's hidden size), all before the model loads."""
    path = Path(row.checkpoint)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        if not (path / name).is_file():
            raise SteeringError(f"--target {row.label}: {path / name} does not exist; give a peft checkpoint folder")
    try:  # a cut or damaged file would fail only when its row is scored, after the model has loaded
        check_safetensors(path / "adapter_model.safetensors", fix="save the checkpoint again or give another folder")
    except ModelFileError as err:
        raise SteeringError(f"--target {row.label}: {err}") from None
    config = read_json(path / "adapter_config.json", f"--target {row.label}",
                       "save the checkpoint again or give another folder")
    if config.get("peft_type") != PEFT_TYPES[row.method]:
        raise SteeringError(f"--target {row.label}: {path} is a {config.get('peft_type')} checkpoint, "
                            f"method {row.method} needs {PEFT_TYPES[row.method]}")
    base = config.get("base_model_name_or_path")
    if base and base != model and Path(base).resolve() != Path(model).resolve():
        raise SteeringError(f"--target {row.label}: {path} was made for base model {base}, not --model {model}")
    if Path(model).is_dir():  # an adapter of another base model would fail only once its row was loaded
        kind = {"prompt": "prompt", "lora": "LoRA"}[row.method]
        try:
            check_adapter_fits(path, model, f"--model {model}", f"give a {kind} checkpoint made on {model}")
        except ModelFileError as err:
            raise SteeringError(f"--target {row.label}: {err}") from None


ALIGNMENT = "alignment.json"  # culture-align's record beside its adapter: the country and settings of the fit
TRAINING = "training.json"  # culture-train's record beside its adapter: the cultures and settings of the training
# where each method's record holds the fingerprint of the base model the checkpoint was made on
MADE_ON = {"prompt": (ALIGNMENT, ("inputs", "model_fingerprint")), "lora": (TRAINING, ("model_fingerprint",))}


def check_made_on(row: Steered, model: str, made: dict) -> None:
    """The checkpoint was made on --model's content: adapter_config.json's base model is only a path, which may
    hold another model since (a new download, another fine-tune of the same shape), so the fingerprint its
    record holds is compared with --model's, in the scheme it was made in (``made``: --model's by scheme, each
    made once). Where no fingerprint can be compared (a record made before it, a hub model, an adapter made
    elsewhere) the checkpoint is used with a warning naming what was not checked: refusing would strand them."""
    path, field, recorded = _recorded_fingerprint(row)
    scheme = scheme_of(recorded)
    if scheme is not None and scheme not in made:
        made[scheme] = model_fingerprint(model, scheme)
    now = made.get(scheme)
    if now is None:
        why = (f"{path} records no {field}" if recorded is None else
               f"{path} has {field} {recorded!r}, which is no fingerprint" if scheme is None else
               f"--model {model} is no local folder")
        _warn_unchecked(row, model, why)
        return
    if scheme == SAMPLED:
        warn_sampled(model)
    if now != recorded:
        raise SteeringError(f"--target {row.label}: {path} has {field} {recorded}, but --model {model} is {now}: the "
                            "checkpoint was made on another model; give --model the base model it was made on, or a "
                            f"checkpoint made on {model}")


def _recorded_fingerprint(row: Steered) -> tuple[Path, str, object]:
    """The record a checkpoint's command wrote beside it, the field of the base model's fingerprint, and its value
    (None where the record or the field is missing)."""
    name, keys = MADE_ON[row.method]
    path = Path(row.checkpoint) / name
    value = read_json(path, f"--target {row.label}", "give the folder its command wrote") if path.is_file() else {}
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return path, ".".join(keys), value


def _warn_unchecked(row: Steered, model: str, why: str) -> None:
    who = f"--target {row.label}"
    base = read_json(Path(row.checkpoint) / "adapter_config.json", who, "save the checkpoint again").get(
        "base_model_name_or_path")
    named = f"only adapter_config.json's base model {base!r} is compared" if base else \
        "and adapter_config.json names no base model"
    log.warning("%s: %s, so that the checkpoint was made on the model in --model %s is not checked (%s)", who, why,
                model, named)


def check_alignment(row: Steered, cfg: SteeringConfig) -> None:
    """A soft prompt is steered toward the country culture-align fitted it to, asked as it was fitted: a prompt
    fitted to the USA would otherwise fill the china:prompt row. Its alignment.json names the country, the
    target scores, the chat template, the option order and the answer mode; without it none of this can be
    checked, so a prompt checkpoint without one is refused (culture-align writes it beside every adapter)."""
    path = Path(row.checkpoint) / ALIGNMENT
    who, fix = f"--target {row.label}", "give the folder culture-align wrote, holding its alignment.json"
    if not path.is_file():
        raise SteeringError(f"{who}: {path} does not exist, so the country and settings the prompt was fitted with "
                            f"cannot be checked; {fix}")
    record = read_json(path, who, fix)
    settings = record.get("settings")
    if not isinstance(settings, dict) or not settings.get("country"):
        raise SteeringError(f"{who}: {path} has no settings.country, so it is no culture-align record; {fix}")
    _check_fitted_country(row, settings, record, path, cfg.data_dir)
    _check_fitted_settings(row, settings, path, cfg)
    _check_fitted_items(row, record, path, cfg.data_dir)


def _check_fitted_items(row: Steered, record: dict, path: Path, data_dir: str | None) -> None:
    """The prompt is asked the VSM13 items it was fitted on, by content: another data root's items (other wording,
    another order) would score a prompt on a survey it was not fitted to, unannounced, so they are refused as
    another option order is. A record made before culture-align stored them is used with a warning."""
    inputs = record.get("inputs") if isinstance(record.get("inputs"), dict) else {}
    fitted, items = inputs.get("vsm13_items"), data_file(ITEMS_FILE, data_dir)
    if fitted is None:
        log.warning("--target %s: %s records no inputs.vsm13_items, so that the prompt was fitted on the VSM13 items "
                    "this run asks (%s) is not checked", row.label, path, items)
        return
    now = file_digest(items)
    if fitted != now:
        root = inputs.get("data_dir") or "<the data root it was fitted with>"
        raise SteeringError(f"--target {row.label}: {path} has inputs.vsm13_items {fitted}, this run's {items} is "
                            f"{now}: the prompt was fitted on other VSM13 items; pass --data-dir {root}, or give a "
                            "prompt fitted on these items")


def _check_fitted_country(row: Steered, settings: dict, record: dict, path: Path, data_dir: str | None) -> None:
    """The prompt's country, coded as culture-align coded it, is the row's; its target scores are Hofstede's
    for that country (explicit --target scores aim elsewhere)."""
    from culture_tasks.survey.vsm13 import resolve_target

    who, country = f"--target {row.label}", settings["country"]
    try:
        code = resolve_target(country, settings.get("target"), data_dir).code
    except (UnknownCountryError, ValueError) as err:
        raise SteeringError(f"{who}: {path} has settings.country {country!r}, which is not readable here ({err}); "
                            "give a prompt fitted to a country of Hofstede's file") from None
    if code != row.hofstede:
        raise SteeringError(f"{who}: {path} has settings.country {country!r} ({code}), the --target {row.name} "
                            f"({row.hofstede}); give a prompt fitted to {row.name}, or steer this one toward {code}")
    fitted = (record.get("target") or {}).get("scores")
    hofstede = resolve_target(row.hofstede, None, data_dir).scores
    if fitted != hofstede:
        raise SteeringError(f"{who}: {path} has target.scores {fitted!r}, this run Hofstede's {hofstede!r} for "
                            f"{row.hofstede}; give a prompt fitted to Hofstede's scores for {row.hofstede}")


def _check_fitted_settings(row: Steered, settings: dict, path: Path, cfg: SteeringConfig) -> None:
    """The prompt is asked as its search asked the items: with or without the chat template, in the option
    order it was fitted on, its answers read as expected values (culture-steer's only reading)."""
    who = f"--target {row.label}"
    chat = settings.get("chat_template")
    if chat != cfg.chat_template:
        raise SteeringError(f"{who}: {path} has settings.chat_template {chat!r}, this run {cfg.chat_template!r}; "
                            + ("pass --chat-template" if chat else "leave out --chat-template"))
    order = {**BEFORE_OPTION_ORDER, **settings}["option_order"]  # a run stored before it: the listed order
    asked = steering_order(order)
    if asked != cfg.option_order:
        raise SteeringError(f"{who}: {path} has settings.option_order {order!r}, this run {cfg.option_order!r}; "
                            f"pass --option-order {asked}" if asked else
                            f"{who}: {path} has settings.option_order {order!r}, which culture-steer cannot ask; "
                            f"use one of {', '.join(sorted(OPTION_ORDERS))}")
    mode = settings.get("answer_mode", "expected")  # a run stored before --answer-mode read expected values
    if mode != "expected":
        raise SteeringError(f"{who}: {path} has settings.answer_mode {mode!r}, this run 'expected' (culture-steer "
                            "reads every answer as its expected value); give a prompt fitted with --answer-mode "
                            "expected")


def check_trained_culture(row: Steered) -> None:
    """A LoRA adapter is steered toward a country of a culture it was trained on: the korean adapter would
    otherwise fill the usa:lora row. culture-train records the rows' cultures in training.json; an adapter
    made elsewhere (or before the record) is used with a warning that its culture could not be checked."""
    path = Path(row.checkpoint) / TRAINING
    record = read_json(path, f"--target {row.label}", "train the adapter again or give another folder") \
        if path.is_file() else {}
    cultures = record.get("cultures") if isinstance(record, dict) else None
    culture = find_listed(row.slug).get("culture")
    if cultures and not (isinstance(cultures, list) and all(isinstance(c, str) for c in cultures)):
        # a string would match its substrings ("korean" in "nonkorean")
        raise SteeringError(f"--target {row.label}: {path} has cultures {cultures!r}, which is no list of culture "
                            "names; train the adapter again or give another folder")
    if not cultures:
        log.warning("--target %s: %s names no cultures the adapter was trained on, so that it was trained for "
                    "%s (culture %s) is not checked", row.label, path, row.name, culture)
        return
    if culture not in {culture_key(c) for c in cultures}:  # "Korean" in a record made before runs recorded korean
        stands = f"stands for the culture {culture!r}" if culture else "stands for no CultureLLM culture"
        raise SteeringError(f"--target {row.label}: {path} has cultures {cultures}, and {row.name} {stands}; give an "
                            f"adapter trained on its culture, or steer this one toward a country of "
                            f"{', '.join(map(repr, cultures))}")


def steering_order(fitted: str) -> str | None:
    """culture-steer's --option-order for a prompt culture-align fitted under ``fitted``: the one asking the
    items as its search did (``worst`` searches the balanced task's documents); None for an unknown order."""
    from aligners.orders import SEARCH_ORDERS

    search = SEARCH_ORDERS.get(fitted)
    return next((name for name, variant in OPTION_ORDERS.items() if search and variant == search.variant), None)


@dataclass
class SteeringConfig:
    output: str = field(metadata={"help": "folder for steering.json, steering.md and steering.png"})
    model: str | None = field(default=None, metadata={
        "help": "base model folder (or hub id) that every checkpoint was made for (required unless --rescore)"})
    targets: list[str] = field(default_factory=list, metadata={
        "help": "COUNTRY=METHOD[:CHECKPOINT] per steered model (repeat the flag or list several); METHOD: plain, "
                "persona, prompt (a culture-align output folder, fitted to that country: its alignment.json is "
                "checked) or lora (required unless --rescore)",
        "aliases": ["--target"], "action": "extend"})
    rescore: str | None = field(default=None, metadata={
        "help": "an earlier culture-steer output folder: recompute every metric from the answers in its "
                "steering.json with this run's --iters, --seed, --level and --norm; no model is loaded, and "
                "the model, targets and how they answered (--device, --dtype, --batch-size, --chat-template, "
                "--wvs) are the stored ones: giving any of them is an error"})
    data_dir: str | None = field(default=None, metadata={"help": "data root (default: $CULTURE_DATA_DIR)"})
    device: str = field(default="cpu", metadata={"help": "torch device"})
    dtype: str = field(default="float32", metadata={
        "help": "float32, the only dtype taken: in half precision (or auto, the model's own) the answers would "
                "not be what the lm_eval command steering.json records beside them gives, as lm_eval rounds "
                "otherwise; a model too large for float32 on the GPU runs with --device cpu"})
    batch_size: int = field(default=64, metadata={"help": "rows per forward pass (results do not depend on it)"})
    chat_template: bool = field(default=False, metadata={"help": "score as lm_eval --apply_chat_template"})
    wvs: bool = field(default=True, metadata={"help": "also run the WVS survey for countries with WVS data"})
    option_order: str = field(default="listed", metadata={
        "help": "VSM13 items with their options listed (vsm13_<country>, the default) or balanced: every item asked "
                "in both orders and its answers averaged (vsm13_<country>_balanced; for prompts fitted with "
                "culture-align --option-order balanced)", "choices": sorted(OPTION_ORDERS)})
    norm: int = field(default=2, metadata={"help": "1 or 2: the norm of the z-space distance"})
    iters: int = field(default=1000, metadata={"help": "bootstrap resamples for the intervals"})
    seed: int = field(default=1234, metadata={"help": "bootstrap seed"})
    level: float = field(default=0.95, metadata={"help": "interval coverage"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output"})
    resume: bool = field(default=False, metadata={
        "help": f"continue a killed run in --output: the answers it stored ({PARTIAL}) are reused and the rest "
                "computed; the model, targets, checkpoints (by content), data files and --device, --dtype, "
                "--batch-size, --chat-template, --wvs must be the stored ones (an error names a difference); a "
                "finished run with the same settings is left as it is"})

    def __post_init__(self):
        if isinstance(self.targets, str):
            self.targets = [self.targets]
        if self.rescore is not None:
            if self.model is not None or self.targets:
                raise SteeringError(f"--rescore takes the model and targets from {self.rescore}/steering.json; "
                                    "drop --model and --target")
            self.rows = []
        elif self.model is None:
            raise SteeringError("give --model (the base model folder), or --rescore <earlier output>")
        elif not self.targets:
            raise SteeringError("name at least one --target COUNTRY=METHOD[:CHECKPOINT]")
        try:
            check_bool_fields(self)
        except ValueError as err:
            raise SteeringError(str(err)) from None
        if self.rescore is not None and self.resume:
            raise SteeringError("--resume: no effect with --rescore, which answers nothing (it recomputes the metrics "
                                "from stored answers at once); drop --resume")
        check_dtype(self.dtype)
        if self.dtype != "float32" and self.rescore is None:  # --rescore names the flag as one it does not take
            raise SteeringError(FLOAT32_ONLY.format(dtype=self.dtype))
        check_device(self.device)
        if self.norm not in (1, 2):
            raise SteeringError(f"--norm must be 1 or 2, got {self.norm}")
        if self.option_order not in OPTION_ORDERS:
            raise SteeringError(f"--option-order must be one of {', '.join(sorted(OPTION_ORDERS))}, "
                                f"got {self.option_order!r}")
        if self.iters < 1 or self.batch_size < 1:
            raise SteeringError("--iters and --batch-size must be at least 1")
        if self.seed < 0:  # numpy refuses it, but only once the intervals are computed, after the scoring
            raise SteeringError(f"--seed must be a non-negative integer, got {self.seed}")
        if not 0 < self.level < 1:
            raise SteeringError(f"--level must lie between 0 and 1, got {self.level}")
        if self.rescore is None:
            self.rows = [parse_target(t, self.data_dir) for t in self.targets]
        labels = [r.label for r in self.rows]
        slugs = [r.slug for r in self.rows]
        twice = sorted({s for s in slugs if slugs.count(s) > 1})
        if twice:  # the matrix has one column per country; MRR, margin and tau average over countries
            raise SteeringError(f"--target steers {', '.join(twice)} more than once "
                                f"({', '.join(x for x in labels if x.split(':')[0] in twice)}): a matrix holds "
                                "one row per country, and its MRR, mean margin and Kendall tau count each "
                                "country once; run culture-steer once per method to compare methods")


def _check_model_folder(model: str) -> None:
    """A path that names no folder, or a folder without a readable config.json, is an error here rather than in
    the loader; a hub id passes."""
    config = Path(model) / "config.json"
    if not Path(model).is_dir():
        from aligners.align import check_model

        try:
            check_model(model)  # a path names an existing folder
        except ValueError as err:
            raise SteeringError(str(err)) from None
        return
    if not config.is_file():
        raise SteeringError(f"--model {model}: the folder has no config.json; give a model folder "
                            "(culture-model from-gguf builds one)")
    read_json(config, "--model", "restore the model folder or give another --model")


def check_output(out: Path, overwrite: bool, inputs=(), resume: bool = False, resumable: bool = True,
                 models=()) -> str:
    """Never write over an earlier result unless asked, nor into (or over) one of the run's inputs;
    ``"new"``, ``"resume"`` or ``"replace"`` (``claim_output``)."""
    return claim_output(out, overwrite=overwrite, resume=resume, inputs=inputs, error=SteeringError,
                        resumable=resumable, models=models)


def run_inputs(cfg: SteeringConfig) -> list[str | None]:
    """What the run reads from disk: the model, every --target checkpoint and the data root."""
    return [cfg.model, cfg.data_dir or os.environ.get(ENV_VAR), *run_models(cfg)]


def run_models(cfg: SteeringConfig) -> list[str | None]:
    """The folders whose fingerprints the run stores (the model, every checkpoint): no output inside them."""
    return [cfg.model, *(row.checkpoint for row in cfg.rows)]


def validate(cfg: SteeringConfig) -> None:
    """Every check that needs no model: checkpoints (a prompt's fit, the model content they were made on),
    output folder, data files."""
    _check_model_folder(cfg.model)
    made = {}
    for row in cfg.rows:
        if row.checkpoint:
            check_checkpoint(row, cfg.model)
        if row.method == "prompt":
            check_alignment(row, cfg)
        if row.method == "lora":
            check_trained_culture(row)
        if row.checkpoint:
            check_made_on(row, cfg.model, made)
    check_output(Path(cfg.output), cfg.overwrite, run_inputs(cfg), cfg.resume, models=run_models(cfg))


# --------------------------------------------------------------------------- scoring


def _vsm13_task(row: Steered, option_order: str = "listed") -> str:
    order = OPTION_ORDERS[option_order]
    return instrument("vsm13").task(row.slug, f"_persona{order}" if row.method == "persona" else order)


def _wvs_task(row: Steered, fallback: str | None) -> str | None:
    """The persona needs the country's own WVS task; the other prompts are the same in every
    WVS task (the questions a country never answered are missing from its task)."""
    if row.method == "persona":
        return f"wvs_{row.slug}_persona" if row.wvs else None
    return f"wvs_{row.slug}" if row.wvs else fallback


def _soft_prompt(row: Steered):
    from safetensors.torch import load_file

    if row.method != "prompt":
        return None
    weights = load_file(str(Path(row.checkpoint) / "adapter_model.safetensors"))
    if len(weights) != 1:
        raise SteeringError(f"{row.checkpoint}: expected one prompt-embedding tensor, found {sorted(weights)}")
    return next(iter(weights.values())).unsqueeze(0)


def _load_lm(cfg: SteeringConfig, peft: str | None = None):
    from aligners.scoring import load_hflm

    lm = load_hflm(cfg.model, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size, peft=peft)
    if peft:  # a LoRA merged into its copy of the weights scores like any causal LM
        lm._model = lm._model.merge_and_unload()
    return lm


def survey_answers(lm, row: Steered, tm, cfg: SteeringConfig, wvs_fallback: str | None) -> dict:
    """VSM13 item means, indices and lm-eval's own metrics; WVS answer distributions by question."""
    from aligners.scoring import TaskScorer, loaded_dtype
    from culture_tasks.survey.tasks import _in_code_order, item_means

    soft = _soft_prompt(row)
    scorer = TaskScorer(lm, _vsm13_task(row, cfg.option_order), tm, chat_template=cfg.chat_template)
    lls = scorer.option_loglikelihoods(soft, cfg.batch_size)[0]
    _check_finite(lls, row, scorer.task_name, cfg)
    means = item_means([item.doc for item in scorer.items], lls)
    out = {"vsm13_task": scorer.task_name, "item_means": means, "indices": vsm13_indices(means),
           "lm_eval": scorer.metrics(lls), "wvs_task": None, "wvs_answers": None,
           "dtype": loaded_dtype(lm)}  # the weights that answered (float32: FLOAT32_ONLY)
    task = _wvs_task(row, wvs_fallback) if cfg.wvs else None
    if task:
        wvs = TaskScorer(lm, task, tm, chat_template=cfg.chat_template)
        wlls = wvs.option_loglikelihoods(soft, cfg.batch_size)[0]
        _check_finite(wlls, row, task, cfg)
        out["wvs_task"] = task
        out["wvs_answers"] = {item.doc["q_id"]: _in_code_order(item.doc, [(x, False) for x in ll]).tolist()
                              for item, ll in zip(wvs.items, wlls)}
    return out


def _check_finite(lls, row: Steered, task: str, cfg: SteeringConfig) -> None:
    """Answers are never NaN: log-likelihoods that are not all finite (a damaged weight or checkpoint, a soft
    prompt too large) stop the run, naming the model or --target, the task and the fix, before anything is written."""
    from culture_tasks.stats import nonfinite_documents, nonfinite_model_fix

    bad = nonfinite_documents(lls)
    if not bad:
        return
    if row.checkpoint:
        what = ("a soft prompt that is not finite, or too large for the model" if row.method == "prompt"
                else "an adapter whose weights are not finite")
        fix = f"check its checkpoint {row.checkpoint} ({what})"
    else:
        fix = nonfinite_model_fix(cfg.dtype)
    who = "the plain model" if row.method == "plain" else f"--target {row.label}"
    raise SteeringError(f"{who} gives a NaN or infinite log-likelihood on {bad} of {len(lls)} items of {task} in "
                        f"--dtype {cfg.dtype}, so its answers would be NaN; nothing is written: {fix}")


def lm_eval_commands(cfg: SteeringConfig, profiles: dict) -> dict[str, str]:
    """Per answer set (``plain`` and each --target's label), the plain ``lm_eval`` command that scores it: the
    tasks its profile records, its checkpoint as ``peft`` (prompt or LoRA), float32 (the only dtype whose numbers
    lm_eval gives again: ``FLOAT32_ONLY``), the run's chat template and the data root in full. The VSM13 indices are
    those tasks' metrics; a WVS similarity is the mean of the logged documents' ``wvs_jsd`` over the matrix's common
    questions, hence ``--log_samples``. In float32 the batch size and device move them by float rounding only
    (< 1e-4 of an index point; tested), so neither is named."""
    checkpoints = {r.label: r.checkpoint for r in cfg.rows}
    metadata = {"data_dir": str(resolve_data_root(cfg.data_dir))}
    return {label: lm_eval_command(cfg.model, [t for t in (p["vsm13_task"], p.get("wvs_task")) if t],
                                   adapter=checkpoints.get(label), metadata=metadata, dtype="float32",
                                   chat=cfg.chat_template) + " --log_samples --output_path <results>"
            for label, p in profiles.items()}


# --------------------------------------------------------------------------- metrics


def _ci(values, level):
    return list(stats.percentile_interval(values, level))


def _distance_replicates(reps: list[dict], code: str, reference: compare.Reference, norm: int) -> np.ndarray:
    """``compare_vsm13``'s distance to ``code`` of each replicate profile, all at once."""
    cell = compare.compare_vsm13(dict.fromkeys(DIMENSIONS, 0.0), code, reference, norm=norm)
    dims = cell["dims"]
    return compare.z_distances(np.array([[r[d] for d in dims] for r in reps]),
                               np.array([[reference.profiles[cell["target"]][d] for d in dims]]),
                               np.array([cell["sigma"][d] for d in dims]), norm)[:, 0]


def _raw_l1_replicates(reps: list[dict], code: str, reference: compare.Reference) -> np.ndarray:
    """``compare_vsm13``'s raw L1 (C=0) to ``code`` of each replicate profile."""
    cell = compare.compare_vsm13(dict.fromkeys(DIMENSIONS, 0.0), code, reference)
    country = reference.profiles[cell["target"]]
    return np.array([compare.raw_l1(r, country, cell["dims"]) for r in reps])


def _control(distances: dict, plain: dict, target: str) -> dict:
    """How far a steered model moved toward its target and toward the other countries, relative to
    the plain model (negative = closer); the same function on the replicates gives the intervals."""
    moved = {c: distances[c] - plain[c] for c in distances}
    others = float(np.mean([v for c, v in moved.items() if c != target]))
    return {"change_to_target": moved[target], "mean_change_to_others": others,
            "specificity": moved[target] - others, "change_by_country": moved}


def vsm13_metrics(rows: list[Steered], answers: list[dict], plain: dict, reference: compare.Reference,
                  cfg: SteeringConfig) -> dict:
    """Matrix, per-row rank metrics with intervals, summary by coverage, Kendall tau, control."""
    profiles = [a["indices"] for a in answers]
    replicates = [compare.term_replicates(a["item_means"], iters=cfg.iters, seed=cfg.seed) for a in answers]
    plain_reps = compare.term_replicates(plain["item_means"], iters=cfg.iters, seed=cfg.seed)
    columns = [r.hofstede for r in rows]
    per_column = {c: compare.compare_vsm13(plain["indices"], c, reference, norm=cfg.norm)
                  for c in dict.fromkeys(columns)}
    plain_cells = {c: _distance_replicates(plain_reps, c, reference, cfg.norm) for c in per_column}
    matrix, matrix_ci, raw, raw_ci, change, change_ci = [], [], [], [], [], []
    for p, reps in zip(profiles, replicates):
        cells = [compare.compare_vsm13(p, c, reference, norm=cfg.norm) for c in columns]
        cell_reps = {c: _distance_replicates(reps, c, reference, cfg.norm) for c in per_column}
        matrix.append([x["distance"] for x in cells])
        matrix_ci.append([_ci(cell_reps[c], cfg.level) for c in columns])
        raw.append([x["raw_l1"][x["target"]] for x in cells])
        raw_ci.append([_ci(_raw_l1_replicates(reps, c, reference), cfg.level) for c in columns])
        change.append([x["distance"] - per_column[x["target"]]["distance"] for x in cells])
        change_ci.append([_ci(cell_reps[c] - plain_cells[c], cfg.level) for c in columns])  # paired by seed
    results, rep_results, plain_results = [], [], []
    for row, a in zip(rows, answers):
        res, reps_res = compare.compare_vsm13_ci(a["item_means"], row.hofstede, reference, norm=cfg.norm,
                                                 iters=cfg.iters, seed=cfg.seed, level=cfg.level)
        base = per_column[row.hofstede]
        plain_rep = [compare.compare_vsm13(r, row.hofstede, reference, norm=cfg.norm) for r in plain_reps]
        control = _control(res["distances"], base["distances"], res["target"])
        moved = control["change_by_country"]
        rep_control = [_control(r["distances"], q["distances"], res["target"]) for r, q in zip(reps_res, plain_rep)]
        for key in ("change_to_target", "mean_change_to_others", "specificity"):
            control[f"{key}_ci"] = _ci([c[key] for c in rep_control], cfg.level)
        control["closer_to"] = sorted((c for c in moved if moved[c] < 0), key=moved.get)[:5]
        entry = {
            "row": row.label, "target": row.hofstede, "dims": res["dims"], "full_profile": res["full_profile"],
            "countries": res["countries"], "distance": res["distance"], "raw_l1": res["raw_l1"][res["target"]],
            "raw_l1_ci": _ci([r["raw_l1"][res["target"]] for r in reps_res], cfg.level),
            **{k: res[k] for k in ("rank", "top1", "reciprocal_rank", "margin")},
            "plain": {**{k: base[k] for k in ("distance", "rank", "reciprocal_rank", "margin")},
                      **{f"{k}_ci": _ci([q[k] for q in plain_rep], cfg.level)
                         for k in ("distance", "rank", "reciprocal_rank", "margin")}},
            "control": control,
        }
        entry.update({f"{key}_ci": res[f"{key}_ci"] for key in ("distance", "rank", "reciprocal_rank", "margin")})
        entry["margin_gain"] = res["margin"] - base["margin"]  # the margin's gain over the plain model
        entry["margin_gain_ci"] = _ci([r["margin"] - q["margin"] for r, q in zip(reps_res, plain_rep)], cfg.level)
        results.append(entry)
        rep_results.append(reps_res)
        plain_results.append(plain_rep)
    summary = {}
    for dims, group in compare.by_coverage(results).items():
        idx = [i for i, r in enumerate(results) if ",".join(r["dims"]) == dims]
        summary[dims] = {
            "rows": [results[i]["row"] for i in idx],
            "top1": float(np.mean([results[i]["top1"] for i in idx])),
            "top1_ci": _ci([np.mean([rep_results[i][b]["top1"] for i in idx]) for b in range(cfg.iters)], cfg.level),
            "mrr": compare.mean_reciprocal_rank(group),
            "mrr_ci": _ci([np.mean([rep_results[i][b]["reciprocal_rank"] for i in idx]) for b in range(cfg.iters)],
                          cfg.level),
            "mean_margin": float(np.mean([results[i]["margin"] for i in idx])),
            "mean_margin_ci": _ci([np.mean([rep_results[i][b]["margin"] for i in idx]) for b in range(cfg.iters)],
                                  cfg.level),
            "plain_mrr": float(np.mean([results[i]["plain"]["reciprocal_rank"] for i in idx])),
            "plain_mrr_ci": _ci([np.mean([plain_results[i][b]["reciprocal_rank"] for i in idx])
                                 for b in range(cfg.iters)], cfg.level),
        }
    pairs = list(zip(columns, profiles))
    tau = compare.kendall_tau(pairs, reference) if len(rows) > 1 else None
    tau_ci = None
    if tau is not None:
        reps_tau = [compare.kendall_tau(list(zip(columns, [r[b] for r in replicates])), reference)
                    for b in range(cfg.iters)]
        tau_ci = {k: _ci([t[k] for t in reps_tau], cfg.level) for k in tau}
    return {
        "rows": [r.label for r in rows], "columns": columns,
        "column_dims": [per_column[c]["dims"] for c in columns],
        "distance": matrix, "distance_ci": matrix_ci, "raw_l1": raw, "raw_l1_ci": raw_ci,
        "change_vs_plain": change, "change_vs_plain_ci": change_ci,
        "plain_distance": [per_column[c]["distance"] for c in columns],
        "plain_distance_ci": [_ci(_distance_replicates(plain_reps, c, reference, cfg.norm), cfg.level)
                              for c in columns],
        "per_row": results, "summary_by_coverage": summary,
        "kendall_tau": tau, "kendall_tau_ci": tau_ci,
    }


def wvs_metrics(rows: list[Steered], answers: list[dict], plain: dict, reference: dict,
                cfg: SteeringConfig) -> dict | None:
    """The same for WVS: 1 - JSD to every WVS country, on their common questions."""
    from culture_tasks.stats import bootstrap_ci

    idx = [i for i, (r, a) in enumerate(zip(rows, answers)) if r.wvs and a["wvs_answers"]]
    if not idx or not plain.get("wvs_answers"):
        return None
    columns = [rows[i].slug for i in idx]
    questions, plain_q = compare.wvs_similarities(plain["wvs_answers"], reference)
    sims, per_row, matrix, change = [], [], [], []
    plain_all = compare.wvs_scores(plain_q, columns[0])["similarities"]
    for i in idx:
        q, per_q = compare.wvs_similarities(answers[i]["wvs_answers"], reference)
        if q != questions:
            raise RuntimeError(f"{rows[i].label}: WVS question set differs from the plain model's")
        sims.append(per_q)
        res = compare.compare_wvs(answers[i]["wvs_answers"], rows[i].slug, reference,
                                  iters=cfg.iters, seed=cfg.seed, level=cfg.level)
        base = compare.compare_wvs(plain["wvs_answers"], rows[i].slug, reference,
                                   iters=cfg.iters, seed=cfg.seed, level=cfg.level)
        res["plain"] = {k: base[k] for key in ("similarity", "rank", "reciprocal_rank", "margin")
                        for k in (key, f"{key}_ci")}
        res["row"] = rows[i].label
        per_row.append(res)
        matrix.append([res["similarities"][c] for c in columns])
        change.append([res["similarities"][c] - plain_all[c] for c in columns])
    index = list(range(len(questions)))

    def cell_ci(per_q, c):  # similarity to country c, questions resampled (the seed pairs every cell)
        return list(bootstrap_ci(lambda rows: float(np.mean(per_q[c][list(rows)])), index,
                                 iters=cfg.iters, seed=cfg.seed, level=cfg.level))

    def change_ci(per_q, c):  # the same questions for the steered and the plain model: a paired interval
        diff = per_q[c] - plain_q[c]
        return list(bootstrap_ci(lambda rows: float(np.mean(diff[list(rows)])), index,
                                 iters=cfg.iters, seed=cfg.seed, level=cfg.level))

    def top1(sample):
        return float(np.mean([compare.wvs_scores(s, rows[i].slug, sample)["top1"] for s, i in zip(sims, idx)]))

    def mrr(sample):
        return float(np.mean([compare.wvs_scores(s, rows[i].slug, sample)["reciprocal_rank"]
                              for s, i in zip(sims, idx)]))

    def plain_mrr(sample):
        return float(np.mean([compare.wvs_scores(plain_q, rows[i].slug, sample)["reciprocal_rank"] for i in idx]))

    return {
        "rows": [rows[i].label for i in idx], "columns": columns, "questions": len(questions),
        "similarity": matrix, "similarity_ci": [[cell_ci(s, c) for c in columns] for s in sims],
        "change_vs_plain": change, "change_vs_plain_ci": [[change_ci(s, c) for c in columns] for s in sims],
        "plain_similarity": [plain_all[c] for c in columns],
        "plain_similarity_ci": [cell_ci(plain_q, c) for c in columns],
        "per_row": per_row,
        "top1": float(np.mean([r["top1"] for r in per_row])),
        "top1_ci": list(bootstrap_ci(top1, index, iters=cfg.iters, seed=cfg.seed, level=cfg.level)),
        "mrr": mrr(index),
        "mrr_ci": list(bootstrap_ci(mrr, index, iters=cfg.iters, seed=cfg.seed, level=cfg.level)),
        "plain_mrr": plain_mrr(index),
        "plain_mrr_ci": list(bootstrap_ci(plain_mrr, index, iters=cfg.iters, seed=cfg.seed, level=cfg.level)),
    }


# --------------------------------------------------------------------------- outputs


def reference_files(data_dir: str | None, wvs: bool) -> dict[str, str]:
    """The files every comparison reads, by content: a rescore says whether it compared with the same."""
    names = [HOFSTEDE_FILE]
    if wvs:
        names += [QUESTIONS_FILE, *(f"culturellm/{c['wvs_csv']}" for c in listed_countries() if c.get("wvs_csv"))]
    return {name: file_digest(data_file(name, data_dir)) for name in names}


def _fmt(v, ci=None, spec: str = ".3f") -> str:
    text = format(v, spec) if isinstance(v, float) else str(v)
    return text + (f" [{ci[0]:{spec}}, {ci[1]:{spec}}]" if ci else "")


def _rank(rank: float, ci=None) -> str:
    """A rank with its interval in whole ranks, rounded outward (``stats.rank_interval_text``)."""
    return f"{rank:.0f}" + (f" {stats.rank_interval_text(*ci)}" if ci else "")


def _tau(t, ci) -> str:
    """A tau without variation to rank is said to be undefined, not printed as nan."""
    if t is None or (isinstance(t, float) and math.isnan(t)):
        return "undefined (steered indices tied across targets)"
    return _fmt(t, ci)


def _change_table(title: str, columns, rows, values, cis) -> list[str]:
    """A steered-to x compared-with table of changes relative to the plain model."""
    cis = cis or [[None] * len(columns)] * len(rows)  # results written before the intervals existed
    return [f"### {title}", "", "| steered to | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|",
            *(f"| {r} | " + " | ".join(_fmt(x, ci) for x, ci in zip(row, ci_row)) + " |"
              for r, row, ci_row in zip(rows, values, cis)), ""]


def _order_lines(config: dict) -> list[str]:
    """How the VSM13 items were asked, where it is not the listed order."""
    if _answered(config, "option_order") == "listed":
        return []
    return ["VSM13 items asked in both option orders, each item's answers averaged (`vsm13_<country>_balanced`).", ""]


def _settings_lines(config: dict) -> list[str]:
    """What answered: every steered model's checkpoint and the scoring settings, so that a row says exactly
    which adapter and settings produced it (the fingerprints below say which content)."""
    known = {**EARLIER, **config}
    rows = [t.replace("=", " = ", 1) for t in known.get("targets") or []]
    shown = {"dtype": "dtype", "batch_size": "batch size", "device": "device", "chat_template": "chat template",
             "option_order": "option order"}
    settings = [f"{name} " + ({True: "applied", False: "none"}[known[key]] if key == "chat_template" else
                              str(known[key])) for key, name in shown.items() if key in known]
    line = " ".join([f"Steered models: {'; '.join(rows)}." if rows else "",
                     f"Answered with {', '.join(settings)}." if settings else ""]).strip()
    return [line, ""] if line else []


def _rescored_line(source: dict | None) -> list[str]:
    if not source:
        return []
    changed = source.get("reference_changed", [])
    data = ("" if changed == [] else " That run did not record its reference data." if changed is None
            else f" Its metrics compared with other reference data than that run: {', '.join(changed)}.")
    return [f"Metrics recomputed (`culture-steer --rescore`) from the answers stored in {source['path']}"
            f"/steering.json ({source['sha256']}); the line below says where the answers were computed.{data}", ""]


def _data_lines(result: dict) -> list[str]:
    """Which data the answers came from (the VSM13 items by content) and were compared with; a run written before
    they were recorded says nothing."""
    answered = result.get("answered_data")
    if not answered:
        return []
    items = "; ".join(f"{name} {digest}" for name, digest in answered.items())
    return [f"Data root {result.get('data_root') or '?'}: answered {items}; compared with "
            f"{len(result.get('reference') or {})} reference files, by content in steering.json.", ""]


def _identity_lines(ident: dict | None) -> list[str]:
    if not ident:
        return ["Model and checkpoint fingerprints: not recorded by this run.", ""]
    parts = [f"model {ident['model_fingerprint'] or '(hub id: no local content)'}"]
    parts += [f"{label} {fp}" for label, fp in ident["checkpoints"].items()]
    loaded = [f"Weights loaded in {ident['dtype_loaded']}."] if ident.get("dtype_loaded") else []
    return [" ".join(["Fingerprints (`culture_tasks.fingerprints.model_fingerprint`): " + "; ".join(parts) + ".",
                      *loaded]), ""]


def markdown(result: dict) -> str:
    v = result["vsm13"]
    level = f"{result['config']['level'] * 100:g}"  # as the heatmap's title: 0.975 is 97.5 %, not 98 %
    lines = [f"# Steering matrix: {result['config']['model']}", "",
             f"Intervals: {level} % percentile bootstrap ({result['config']['iters']} resamples, seed "
             f"{result['config']['seed']}); VSM13 over item pairs, WVS over questions. A VSM13 interval is the "
             "spread of the instrument's two item pairs per dimension, a lower bound on the uncertainty (read as a "
             "sample of item pairs it holds an index's value about half the time, a rank's 69-94 %: "
             "docs/interval_calibration.md).", "",
             *_order_lines(result["config"]),
             *_settings_lines(result["config"]),
             *_rescored_line(result.get("rescored_from")),
             *_identity_lines(result.get("identity")),
             *_data_lines(result),
             *provenance.describe(result.get("environment")),
             "## VSM13 z-distance (steered to x compared with; lower = closer)", "",
             "| steered to | " + " | ".join(f"{c} ({len(d)} dims)" for c, d in zip(v["columns"], v["column_dims"]))
             + " |",
             "|---" * (len(v["columns"]) + 1) + "|"]
    lines += [f"| {r} | " + " | ".join(_fmt(x, ci) for x, ci in zip(row, cis)) + " |"
              for r, row, cis in zip(v["rows"], v["distance"], v["distance_ci"])]
    lines += ["| plain | " + " | ".join(_fmt(x, ci) for x, ci in zip(v["plain_distance"], v["plain_distance_ci"]))
              + " |", ""]
    lines += _change_table("VSM13 change of z-distance vs. the plain model (negative = moved closer; "
                           "paired interval)", v["columns"], v["rows"], v["change_vs_plain"], v.get("change_vs_plain_ci"))
    lines += [
              "## Per steered model (VSM13)", "",
              "| steered to | dims | rank (1 = closest) | reciprocal rank | margin (higher = better) | "
              f"{compare.RAW_L1_LABEL} | plain rank | change to target | mean change to others | "
              "margin gain vs plain |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in v["per_row"]:
        lines.append(f"| {r['row']} | {len(r['dims'])} | {_rank(r['rank'], r['rank_ci'])} of {r['countries']} | "
                     f"{_fmt(r['reciprocal_rank'], r['reciprocal_rank_ci'])} | {_fmt(r['margin'], r['margin_ci'])} | "
                     f"{_fmt(r['raw_l1'], r.get('raw_l1_ci'), '.1f')} | "
                     f"{_rank(r['plain']['rank'], r['plain']['rank_ci'])} | "
                     f"{_fmt(r['control']['change_to_target'], r['control'].get('change_to_target_ci'))} | "
                     f"{_fmt(r['control']['mean_change_to_others'], r['control'].get('mean_change_to_others_ci'))} | "
                     f"{_fmt(r['margin_gain'], r.get('margin_gain_ci')) if 'margin_gain' in r else '–'} |")
    lines += ["", "Summary by dimension coverage (never pooled):", ""]
    for dims, s in v["summary_by_coverage"].items():
        lines.append(f"- {dims}: top-1 {_fmt(s['top1'], s['top1_ci'])}, MRR {_fmt(s['mrr'], s['mrr_ci'])} "
                     f"(plain {_fmt(s['plain_mrr'], s['plain_mrr_ci'])}), "
                     f"mean margin {_fmt(s['mean_margin'], s['mean_margin_ci'])}; rows {', '.join(s['rows'])}")
    if v["kendall_tau"]:
        lines += ["", "Kendall tau across targets (steered index vs human score; higher = better): "
                  + ", ".join(f"{k} {_tau(t, v['kendall_tau_ci'][k])}" for k, t in v["kendall_tau"].items())]
    w = result.get("wvs")
    if w:
        lines += ["", f"## WVS 1 - JSD ({w['questions']} questions common to all WVS countries; higher = closer)", "",
                  "| steered to | " + " | ".join(w["columns"]) + " | rank | margin |",
                  "|---" * (len(w["columns"]) + 3) + "|"]
        for r, row, cis in zip(w["per_row"], w["similarity"], w["similarity_ci"]):
            lines.append(f"| {r['row']} | " + " | ".join(_fmt(x, ci) for x, ci in zip(row, cis))
                         + f" | {_rank(r['rank'], r['rank_ci'])} of {r['countries']} | "
                         f"{_fmt(r['margin'], r['margin_ci'])} |")
        lines += ["| plain | " + " | ".join(_fmt(x, ci) for x, ci in zip(w["plain_similarity"],
                                                                       w["plain_similarity_ci"])) + " | | |",
                  "", f"WVS top-1 {_fmt(w['top1'], w['top1_ci'])}, MRR {_fmt(w['mrr'], w['mrr_ci'])} "
                  f"(plain {_fmt(w['plain_mrr'], w.get('plain_mrr_ci'))})", ""]
        lines += _change_table("WVS change of 1 - JSD vs. the plain model (positive = moved closer; paired "
                               "interval)", w["columns"], w["rows"], w["change_vs_plain"], w.get("change_vs_plain_ci"))
    return "\n".join(lines) + "\n"


def heatmap_names(result: dict) -> tuple[str, dict[str, str]]:
    """steering.png's title and each row's name in it: the image is read without steering.md, so it names the
    model, and each checkpoint row its checkpoint folder (``germany:prompt (de_fit)``)."""
    config = result["config"]
    names = {}
    for label, spec in zip(result["vsm13"]["rows"], config.get("targets") or []):  # the rows in --target's order
        checkpoint = target_parts(spec)[4].rstrip("/")
        names[label] = f"{label} ({Path(checkpoint).name or checkpoint})" if checkpoint else label
    return f"Steering matrix: {config['model']}", names


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def run(cfg: SteeringConfig) -> dict:
    """Checked first (no lock file is put into an input), then run with the output folder locked,
    so that a second run cannot mix its files in; the output is checked again under the lock."""
    if cfg.rescore is not None:
        return rescore(cfg)
    validate(cfg)
    with OutputLock.for_folder(cfg.output, SteeringError):
        # another run may have written meanwhile
        mode = check_output(Path(cfg.output), cfg.overwrite, run_inputs(cfg), cfg.resume, models=run_models(cfg))
        return _run(cfg, mode)


def _clear_unfinished(out: Path) -> None:
    """The temporary files of a write that was killed are removed; files this command does not write are left,
    and named."""
    others, ours = [], (*OUTPUT_FILES, PARTIAL)
    for path in sorted(out.iterdir()):
        if _unfinished_write(path, ours):
            path.unlink()
        elif path.name not in (*ours, LOCK_NAME, *(f".{n}.replaced" for n in ours)):
            others.append(path.name)
    if others:
        log.warning("%s also holds %s, not written by culture-steer: left as they are, not this run's", out,
                    ", ".join(others))


def _write(result: dict, out: Path, keep: tuple[str, ...] = ()) -> dict:
    """The three files are written to temporary files first; only once all three are there is the earlier run's
    set aside (``--overwrite``: ``outputs.set_aside``, deleted when this run has finished, kept and named when it
    fails; a killed run's stored answers too, unless ``keep`` names them) and the new ones renamed into place. A
    failure (a full disk, the heatmap) leaves the earlier files as they were, never one of them beside one of this."""
    result = _jsonable(result)
    out.mkdir(parents=True, exist_ok=True)
    _clear_unfinished(out)
    with ExitStack() as stack:  # each temporary file is renamed over its name when the block ends, removed on failure
        staged = {name: stack.enter_context(replacing(out / name)) for name in OUTPUT_FILES}
        staged["steering.json"].write_text(json.dumps(result, indent=1), encoding="utf-8")
        staged["steering.md"].write_text(markdown(result), encoding="utf-8")
        plots.steering_heatmap(result, staged["steering.png"], *heatmap_names(result))
        for name in (*OUTPUT_FILES, PARTIAL):
            if name not in keep:
                set_aside(out / name)
    return result


def _stored_answers(profile: dict) -> dict:
    """A profile as steering.json stores it, with the item numbers JSON turned into strings as ints."""
    return {**profile, "item_means": {int(k): float(v) for k, v in profile["item_means"].items()}}


def _stored_run(folder: Path, data_dir: str | None = None) -> tuple[dict, list[Steered], list[dict], dict]:
    """An earlier run's result, its steered rows, their answers and the plain model's, checked."""
    path = folder / "steering.json"
    fix = "give the folder of a finished culture-steer run"
    if not path.is_file():
        raise SteeringError(f"--rescore: {path} does not exist; {fix}")
    stored = read_json(path, "--rescore", fix)
    try:
        rows = [parse_target(t, data_dir) for t in stored["config"]["targets"]]
        profiles = stored["profiles"]
        answers = [_stored_answers(profiles[r.label]) for r in rows]
        plain = _stored_answers(profiles["plain"])
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise SteeringError(f"--rescore: {path} lacks the stored config or answers ({type(err).__name__}: {err}); "
                            f"{fix}") from None
    for label, profile in [("plain", plain), *((r.label, a) for r, a in zip(rows, answers))]:
        _check_stored_finite(path, label, profile)
    stored["sha256"] = file_digest(path)
    return stored, rows, answers, plain


def _check_stored_finite(path: Path, label: str, profile: dict) -> None:
    """Answers stored as NaN (a model's non-finite log-likelihoods) would rescore into NaN metrics unannounced."""
    values = list(profile["item_means"].values())
    values += [x for dist in (profile.get("wvs_answers") or {}).values() for x in dist]
    if not all(math.isfinite(float(x)) for x in values):
        raise SteeringError(f"--rescore: {path}: the stored answers of {label} are not finite (the model gave NaN or "
                            "infinite log-likelihoods); rerun culture-steer with the model in float32")


# the settings of how the answers came: --rescore takes them from the stored run
ANSWERED = ("model", "targets", "device", "dtype", "batch_size", "chat_template", "wvs", "option_order")
# settings added to ANSWERED later, with the value every run stored before them had
EARLIER = BEFORE_OPTION_ORDER


def _answered(config: dict, key: str):
    """A stored ANSWERED setting; a run stored before the setting existed had its EARLIER value."""
    return {**EARLIER, **config}[key]


def rescore(cfg: SteeringConfig) -> dict:
    """Every metric again from stored answers: the same numbers as the run that stored them when the
    settings are the same (tested), new intervals when --iters, --seed or --level differ."""
    source = Path(cfg.rescore)
    stored, rows, answers, plain = _stored_run(source, cfg.data_dir)
    inputs = [source, cfg.data_dir or os.environ.get(ENV_VAR)]
    check_output(Path(cfg.output), cfg.overwrite, inputs, resumable=False)
    with OutputLock.for_folder(cfg.output, SteeringError):
        check_output(Path(cfg.output), cfg.overwrite, inputs, resumable=False)  # another run may have written meanwhile
        reference = compare.hofstede_reference(cfg.data_dir)
        use_wvs = bool(stored["config"].get("wvs")) and bool(plain.get("wvs_answers"))
        reference_now, reference_then = reference_files(cfg.data_dir, use_wvs), stored.get("reference")
        changed = None if reference_then is None else [n for n in reference_now
                                                        if reference_then.get(n) != reference_now[n]]
        if changed != []:
            log.warning("--rescore: %s", "the stored run did not record its reference data" if changed is None
                        else f"the reference data differ from the stored run's: {', '.join(changed)}")
        answered = {**EARLIER, **stored["config"]}
        _warn_half_precision_answers(source, stored)
        config = {**asdict(cfg), **{k: answered.get(k) for k in ANSWERED}, "wvs": use_wvs}
        result = {
            "config": config,
            "rescored_from": {"path": str(source), "sha256": stored.pop("sha256"),
                              "config": stored["config"], "environment": provenance.environment("cpu"),
                              "reference": reference_then, "reference_changed": changed},
            "reference": reference_now,
            "directions": compare.DIRECTIONS,
            "profiles": stored["profiles"],
            "lm_eval_commands": stored.get("lm_eval_commands"),  # how the stored answers were scored
            "vsm13": vsm13_metrics(rows, answers, plain, reference, cfg),
            "wvs": wvs_metrics(rows, answers, plain, compare.wvs_reference(cfg.data_dir), cfg) if use_wvs else None,
            "identity": stored.get("identity"),  # what the answers were computed with
            **{k: stored[k] for k in ("data_root", "answered_data") if k in stored},  # and on which data
            "environment": stored.get("environment"),  # where the answers were computed
        }
        return _write(result, Path(cfg.output))


def _warn_half_precision_answers(source: Path, stored: dict) -> None:
    """A run made before half precision was refused (``FLOAT32_ONLY``) keeps its answers on --rescore, rounding and
    all: its recorded lm_eval commands do not give them, which is said rather than passed on unannounced."""
    dtype = (stored.get("identity") or {}).get("dtype_loaded") or stored["config"].get("dtype")
    if dtype not in (None, "float32"):
        log.warning("--rescore: the answers in %s were computed in %s, not float32: lm_eval rounds half precision "
                    "otherwise, so the lm_eval_commands it records need not give them again; run culture-steer again "
                    "(it scores in float32) for answers they give", source / "steering.json", dtype)


def _run(cfg: SteeringConfig, mode: str) -> dict:
    from tqdm.auto import tqdm

    reference = compare.hofstede_reference(cfg.data_dir)
    for row in cfg.rows:  # coverage problems stop the run before the model loads
        compare.compare_vsm13(dict.fromkeys(DIMENSIONS, 0.0), row.hofstede, reference)
    wvs_ref = compare.wvs_reference(cfg.data_dir) if cfg.wvs else {}
    reference_data = reference_files(cfg.data_dir, cfg.wvs)
    fallback = next((f"wvs_{c['slug']}" for c in listed_countries() if c.get("wvs_csv")), None)
    out = Path(cfg.output)
    ident = identity(cfg)
    answered_data = {ITEMS_FILE: file_digest(data_file(ITEMS_FILE, cfg.data_dir))}
    settings = answered_settings(asdict(cfg), [r.label for r in cfg.rows], ident, {**answered_data, **reference_data})
    partial = out / PARTIAL
    if mode == "resume" and not partial.is_file():
        if (out / "steering.json").is_file() or not _only_unfinished_writes(out):
            return _finished(out, cfg, settings)
        log.info("--resume: %s holds no stored answers (the run was killed while storing its first): starting afresh",
                 out)
        mode = "new"
    profiles = _stored_partial(partial, settings, out) if mode == "resume" else {}
    if mode == "replace":  # --overwrite starts afresh; a killed run's answers are kept until this run has finished
        set_aside(partial)
    models = {}

    def answer(row: Steered, label: str) -> dict:
        """The row's answers, computed (the base model and the task manager loaded when first needed) and
        stored with the settings that answered them, or reused."""
        if label not in profiles:
            if "tm" not in models:
                models["tm"] = task_manager(data_dir=cfg.data_dir)
            if row.method == "lora":
                lm = _load_lm(cfg, row.checkpoint)
            else:
                if "base" not in models:
                    models["base"] = _load_lm(cfg)
                lm = models["base"]
            profiles[label] = _as_stored(survey_answers(lm, row, models["tm"], cfg, fallback))
            write_text_atomic(partial, json.dumps(_jsonable({"settings": settings, "profiles": profiles}), indent=1))
        return profiles[label]

    plain_row = Steered(cfg.rows[0].slug, cfg.rows[0].name, cfg.rows[0].hofstede, cfg.rows[0].wvs, "plain", None)
    todo = [r for r in cfg.rows if r.label not in profiles]
    try:
        plain = answer(plain_row, "plain")
        with tqdm(total=len(cfg.rows), initial=len(cfg.rows) - len(todo), desc="steered models", unit="model") as bar:
            for row in todo:
                if row.method == "plain" and row.slug == plain_row.slug:  # the plain model itself
                    profiles[row.label] = plain
                else:
                    answer(row, row.label)
                bar.update()
    except SteeringError as err:  # answers that are not finite: the run cannot go on with these settings
        if mode == "resume":
            raise SteeringError(f"{err} (the answers stored before it stay in {partial})") from None
        partial.unlink(missing_ok=True)  # a resume with the fix (other settings or checkpoint) would refuse them
        raise
    answers = [profiles[r.label] for r in cfg.rows]
    answered = {"plain": plain, **{r.label: a for r, a in zip(cfg.rows, answers)}}
    result = {
        "config": {k: v for k, v in asdict(cfg).items()},
        "directions": compare.DIRECTIONS,
        "profiles": answered,
        "lm_eval_commands": lm_eval_commands(cfg, answered),
        "vsm13": vsm13_metrics(cfg.rows, answers, plain, reference, cfg),
        "wvs": wvs_metrics(cfg.rows, answers, plain, wvs_ref, cfg) if cfg.wvs else None,
        "reference": reference_data,
        "data_root": str(resolve_data_root(cfg.data_dir).resolve()),
        "answered_data": answered_data,  # what the model answered, by content (the reference: what it is compared with)
        "identity": {**ident, "dtype_loaded": loaded_dtypes(profiles)},
        "environment": provenance.environment(cfg.device),
    }
    result = _write(result, out, keep=(PARTIAL,))
    partial.unlink(missing_ok=True)  # every answer is in steering.json now
    return result


def _only_unfinished_writes(out: Path) -> bool:
    """The folder holds nothing but the lock and the temporary files of atomic writes that were killed."""
    ours = (*OUTPUT_FILES, PARTIAL)
    return all(p.name == LOCK_NAME or _unfinished_write(p, ours) for p in out.iterdir())


def _unfinished_write(path: Path, names) -> bool:
    """The temporary file of an atomic write of one of ``names`` (``.steering.json.<random>``, the heatmap's
    own inside it ``..steering.png.<random>.png.<random>.png``), not the backup ``--overwrite`` keeps of one
    (``.steering.partial.json.replaced``) until its run has finished."""
    hidden = path.name.startswith(".") and not path.name.endswith(".replaced")
    return path.is_file() and hidden and any(path.name.lstrip(".").startswith(f"{n}.") for n in names)


def _as_stored(profile: dict) -> dict:
    """A profile as steering.partial.json and steering.json store it and a --resume reads it back, so
    that a resumed run computes its metrics from exactly what an uninterrupted run computes them from."""
    return _stored_answers(json.loads(json.dumps(_jsonable(profile))))


def answered_settings(config: dict, labels: list[str], ident: dict, data: dict[str, str]) -> dict:
    """What a run's answers depend on, compared on --resume: the ANSWERED settings, the targets by label
    and in order (the first one's country is the plain model's task), the model's and each checkpoint's
    fingerprint, and the data files by content."""
    settings = {k: _answered(config, k) for k in ANSWERED if k != "targets"}
    settings["targets"] = labels
    settings["model_fingerprint"] = ident["model_fingerprint"]
    settings.update({f"checkpoint {label}": fp for label, fp in ident["checkpoints"].items()})
    settings.update({f"data {name}": digest for name, digest in data.items()})
    return settings


def _stored_partial(path: Path, settings: dict, out: Path) -> dict:
    """The answers a killed run stored, by label; a one-line error when they were computed otherwise."""
    fix = "pass --overwrite to start again, or choose another --output"
    stored = read_json(path, "--resume", fix)
    if not isinstance(stored.get("settings"), dict):
        raise SteeringError(f"--resume: {path} holds no stored settings; {fix}")
    check_settings({**EARLIER, **stored["settings"]}, settings, out, error=SteeringError)
    try:
        profiles = {label: _stored_answers(p) for label, p in stored["profiles"].items()}
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise SteeringError(f"--resume: {path} lacks the stored settings or answers ({type(err).__name__}: {err}); "
                            f"{fix}") from None
    log.info("--resume: %d stored answer sets of %d reused from %s", len(profiles), len(settings["targets"]) + 1,
             path)
    return profiles


INTERVALS = ("iters", "seed", "level", "norm")  # the metrics' settings: the stored answers give other numbers


def _finished(out: Path, cfg: SteeringConfig, settings: dict) -> dict:
    """--resume into a folder without stored answers: a finished run with the same settings is left as it
    is (its result returned); one with other settings, or no culture-steer run at all, is an error."""
    path = out / "steering.json"
    if not path.is_file():
        raise SteeringError(f"--resume: {out} holds neither {PARTIAL} nor steering.json, so it is not a culture-steer "
                            "run; pass --overwrite to start one there, or choose another --output")
    fix = "pass --overwrite to run it again, or choose another --output"
    stored = read_json(path, "--resume", fix)
    try:
        config = stored["config"]
        labels = [parse_target(t, cfg.data_dir).label for t in config["targets"]]
        then = answered_settings(config, labels, stored["identity"], {**stored.get("answered_data", {}),
                                                                     **stored["reference"]})
        then.update({k: config[k] for k in INTERVALS})
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise SteeringError(f"--resume: {path} lacks the stored settings ({type(err).__name__}: {err}); {fix}") from None
    # steering.json records the reference files and the VSM13 items by content (one written before it recorded the
    # items: the reference files only)
    check_settings(then, settings, out, keys=[k for k in settings if k in then or not k.startswith("data ")],
                   error=SteeringError)
    diff = settings_differences(then, {k: getattr(cfg, k) for k in INTERVALS}, INTERVALS)
    if diff:
        raise SteeringError(f"--resume: the run in {out} is finished, with other interval settings ({'; '.join(diff)}); "
                            f"its files are kept: recompute them with --rescore {out} --output <new>, or pass "
                            "--overwrite to run it again")
    log.info("--resume: the run in %s is finished; nothing to do", out)
    return stored


def loaded_dtypes(profiles: dict) -> str | None:
    """The dtype the answering weights held, as the profiles record it: float32 (``FLOAT32_ONLY``); a run made
    before half precision was refused may hold another, also where its config says auto. None: not recorded."""
    found = sorted({p["dtype"] for p in profiles.values() if p.get("dtype")})
    return ", ".join(found) or None


def identity(cfg: SteeringConfig) -> dict:
    """The content behind the paths: the model folder's and each checkpoint's fingerprint (None for a
    hub id), so a matrix names what produced it even after a folder is replaced."""
    return {"model_fingerprint": model_fingerprint(cfg.model),
            "checkpoints": {r.label: model_fingerprint(r.checkpoint) for r in cfg.rows if r.checkpoint}}


# --------------------------------------------------------------------------- command line


def parser():
    """Flags (and ``--config`` YAML) from the fields of ``SteeringConfig``."""
    from culture_tasks.cli_args import ConfigParser

    return ConfigParser([SteeringConfig], prog="culture-steer", description=__doc__)


def parse_args(argv: list[str] | None) -> SteeringConfig:
    config_parser = parser()
    (cfg,) = config_parser.parse(argv)
    unused = [str(config_parser.given[k]) for k in ANSWERED if k in config_parser.given]
    if cfg.rescore is not None and unused:  # typed even with the stored value: it did nothing
        raise SteeringError(f"{', '.join(unused)}: no effect with --rescore, which takes the answers and the settings "
                            f"that computed them from {Path(cfg.rescore) / 'steering.json'}; "
                            f"drop {'them' if len(unused) > 1 else 'it'}")
    return cfg


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    try:
        check_single_process("culture-steer", SteeringError)
        result = run(parse_args(argv))
    except (SteeringError, DataRootError, ValueError, FileNotFoundError) as err:
        print(error_line("culture-steer", err), file=sys.stderr)
        return 2
    except OSError as err:  # the earlier files are kept (logged)
        print(os_error_line("culture-steer", err), file=sys.stderr)
        return 2
    print(json.dumps(result["vsm13"]["summary_by_coverage"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
