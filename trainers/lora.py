"""LoRA fine-tuning on chat-format survey examples, with the loss on the answer tokens only.

Examples are tokenised by lm-eval's own model wrapper (``HFLM.apply_chat_template`` and
``HFLM._encode_pair``), so the context a model is trained on is token for token the context
``lm_eval --apply_chat_template`` (or plain ``lm_eval``) scores, and the answer tokens are the
continuation it scores. transformers' ``Trainer`` runs the loop: it gives checkpoints, resume,
bf16 and gradient checkpointing, and needs nothing beyond the chosen dependencies; TRL's
``SFTTrainer`` would add a dependency and its own prompt/completion tokenisation, which is
exactly the part that has to match the harness.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import shutil
import sys
import zipfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from culture_tasks import provenance
from culture_tasks.atomic import (gathered_staging, open_like_new_files, publish_staged, staged_files,
                                  write_text_atomic)
from culture_tasks.data_root import DataRootError, resolve_data_root
from culture_tasks.jsonl import read_jsonl_lines
from culture_tasks.metadata import check_bool_fields, with_hints
from culture_tasks.models import ModelFileError, check_safetensors, empty_model
from culture_tasks.fingerprints import model_fingerprint
from culture_tasks.outputs import (OutputLock, check_settings, claim_output, file_digest, launched_world_size,
                                   load_settings, main_process, remove_killed_writes, save_settings, set_aside)
from culture_tasks.paths import absolute_if_local, lm_eval_command
from trainers.keys import check_row_keys

log = logging.getLogger("trainers")
CHECKPOINTS = "checkpoints"
RUN_SETTINGS = "run_settings.json"  # under checkpoints/: what defines the run, compared on --resume
# in each checkpoint, per process: the loss summed since the last logging step
LOSS_CARRY = "loss_since_last_log.rank{}.json"
# the oldest transformers the tests pass on (pyproject.toml): 5.3 brought the Trainer hooks _trainer_class overrides
# (_run_epoch, _finalize_training, _tr_loss), 5.18 the resume of a run on several CPU processes ("cpu:0" optimizer)
MIN_TRANSFORMERS = "5.18"
LATER_SETTINGS = ("model_fingerprint", "survey_sha256", "world_size", "training_dtype")  # runs stored before these were added still resume
# settings that do not change the trained weights or the loss log: they may differ on --resume
NOT_DEFINING = ("output", "resume", "overwrite", "keep_checkpoints", "merge", "save_steps", "data", "data_dir")
# the keys of a training row, as `culture-train data` writes them (upstream's Finetune files: messages only)
EXAMPLE_KEYS = frozenset({"messages", "culture", "country", "q_id", "step", "answer_code", "rule"})
MESSAGE_KEYS = ("content", "role")  # of each chat message
ROLES = ("system", "user", "assistant")
ROLE_ORDER = "a system message (first, optional), user messages and the assistant's answer (last)"
MESSAGES_SHAPE = ("field 'messages' must be a list of chat messages ending with the assistant's answer, e.g. "
                  "[{role: user, content: ...}, {role: assistant, content: A}]")
# TrainingArguments that make_trainer sets itself (_training_arguments, _version_arguments): not
# allowed in --extra, each with the flag that sets it (None: fixed by the trainer)
SET_BY_TRAINER = {
    "output_dir": "--output", "per_device_train_batch_size": "--batch-size",
    "gradient_accumulation_steps": "--grad-accum", "learning_rate": "--learning-rate", "num_train_epochs": "--epochs",
    "max_steps": "--max-steps", "weight_decay": "--weight-decay", "logging_steps": "--logging-steps",
    "save_steps": "--save-steps", "seed": "--seed", "data_seed": "--seed", "bf16": "--bf16",
    "warmup_ratio": "--warmup", "warmup_steps": "--warmup", "activation_checkpointing": "--gradient-checkpointing",
    "gradient_checkpointing": "--gradient-checkpointing", "gradient_checkpointing_kwargs": "--gradient-checkpointing",
    "save_total_limit": None, "use_cpu": None, "report_to": None, "remove_unused_columns": None,
    # what the checkpoints and --resume rely on: checkpoints every --save-steps steps, each with the optimizer
    # and RNG state and a safetensors adapter (_checkpoint_problem), and a resume that skips the batches
    # already trained on (so it trains as the uninterrupted run)
    "save_strategy": "--save-steps", "save_only_model": None, "save_safetensors": None, "ignore_data_skip": None,
}
# the keys of SET_BY_TRAINER the checkpoints and --resume rely on (named in the error)
CHECKPOINT_ARGUMENTS = ("save_only_model", "save_safetensors", "ignore_data_skip")
# the largest --seed: transformers' set_seed seeds numpy, which refuses a seed from 2**32 on
MAX_SEED = 2**32 - 1


class TrainingError(ValueError):
    """Bad input to a fine-tuning run; nothing was written."""


@dataclass
class LoraTrainConfig:
    model: str = field(metadata={"help": "base model folder"})
    data: list[str] = field(metadata={"help": "training JSONL file(s) from `culture-train data`"})
    output: str = field(metadata={"help": "adapter folder to write"})
    rank: int = field(default=16, metadata={"help": "LoRA rank r"})
    alpha: int = field(default=32, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)"})
    dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    target_modules: list[str] | str = field(default="all-linear", metadata={
        "help": "layers to adapt: all-linear, one regular expression, or several module names"})
    learning_rate: float = field(default=2e-4, metadata={"help": "peak learning rate"})
    epochs: float = field(default=3.0, metadata={"help": "passes over the data (unless --max-steps)"})
    max_steps: int = field(default=-1, metadata={"help": "optimizer steps; overrides --epochs when positive"})
    batch_size: int = field(default=16, metadata={"help": "examples per device step"})
    grad_accum: int = field(default=1, metadata={"help": "gradient accumulation steps"})
    warmup: float = field(default=0.03, metadata={
        "help": "learning-rate warm-up: below 1 a fraction of the steps, else a number of steps"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    seed: int = field(default=0, metadata={"help": "seed of the LoRA initialisation and the data order"})
    chat_template: bool | None = field(default=None, metadata={
        "help": "train through the model's chat template (default: where the tokenizer has one)"})
    bf16: bool | None = field(default=None, metadata={"help": "bfloat16 training (default: on a GPU that supports it)"})
    gradient_checkpointing: bool | None = field(default=None, metadata={
        "help": "activation checkpointing (default: on GPU)"})
    max_length: int = field(default=1024, metadata={"help": "longest example in tokens; longer ones are skipped"})
    logging_steps: int = field(default=10, metadata={"help": "record the loss every this many steps"})
    save_steps: int = field(default=200, metadata={"help": "checkpoint every this many steps (the unit of --resume)"})
    keep_checkpoints: bool = field(default=False, metadata={"help": "keep <output>/checkpoints after the run"})
    merge: bool = field(default=False, metadata={"help": "also write the merged model to <output>/merged"})
    resume: bool = field(default=False, metadata={"help": "continue from the last checkpoint in --output"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output"})
    extra: dict = field(default_factory=dict, metadata={
        "help": "further TrainingArguments as a mapping, e.g. '{\"lr_scheduler_type\": \"cosine\"}'; each value of its "
                "field's type (true / false and numbers without quotes)"})
    data_dir: str | None = field(default=None, metadata={
        "help": "data root the lm_eval command in training.json scores on, named there in full (default: "
                "$CULTURE_DATA_DIR)"})

    def __post_init__(self):
        check_bool_fields(self)
        if isinstance(self.data, str):
            self.data = [self.data]
        if isinstance(self.target_modules, list) and self.target_modules == ["all-linear"]:
            self.target_modules = "all-linear"  # peft's keyword, not a module name
        elif isinstance(self.target_modules, list) and len(self.target_modules) == 1 \
                and not re.fullmatch(r"[\w.]+", str(self.target_modules[0])):
            # a single command-line value arrives as a list of one, which peft matches as a module name; one
            # that cannot be a module name (word characters and dots) is the one regular expression
            self.target_modules = str(self.target_modules[0])
        for name in ("rank", "alpha", "batch_size", "grad_accum", "max_length", "logging_steps", "save_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("learning_rate", "epochs", "warmup", "weight_decay", "dropout"):
            if not math.isfinite(getattr(self, name)):  # inf / nan: a NaN adapter, or an endless run
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        if not self.max_steps > 0 and not self.epochs > 0:
            raise ValueError("give a positive epochs or max_steps")
        if self.warmup < 0:
            raise ValueError(f"warmup must not be negative, got {self.warmup}")
        if self.warmup >= 1 and self.warmup != int(self.warmup):
            raise ValueError(f"warmup {self.warmup}: from 1 up it is a number of steps, so give a whole number "
                             "(or a fraction below 1 of the steps)")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must not be negative, got {self.weight_decay}")
        check_seed(self.seed)
        check_extra(self.extra)
        if self.extra:
            check_extra_values(self)
        self.check_data_files()
        self.check_data_cultures()

    def check_data_files(self) -> None:
        """One file given twice (by another path, or its copy) is trained on twice, each example at double
        weight and the epoch twice as long, while training.json counts the rows as if they were other data."""
        seen: dict[str, str] = {}
        for name in self.data:
            path = Path(name)
            if not path.is_file():
                continue  # reported when the examples are read
            key = file_digest(path)
            if key in seen:
                raise TrainingError(f"--data {name} holds the same rows as {seen[key]}, so every example would be "
                                    "trained on twice; give each file once")
            seen[key] = name

    def check_given(self, given: dict) -> None:
        """``--epochs`` typed or in the --config file beside a positive ``--max-steps`` would be recorded among
        the run's settings and not used (the step count decides): an error, whatever its value."""
        if self.max_steps > 0 and "epochs" in given:
            raise TrainingError(f"{given['epochs']} has no effect with --max-steps {self.max_steps} (the step count "
                                "decides how long it trains); give one of them")

    def check_data_cultures(self) -> None:
        """Every culture the training rows name must be known, or the lm_eval command written
        after training could not be made: checked here, before a model is loaded. The rows are read as
        ``read_examples`` reads them (``read_jsonl_lines``), so the first row of a file that starts with a
        byte-order mark is checked too, not failed on only when training has finished."""
        from trainers.cultures import countries_of

        first_seen: dict[str, str] = {}
        for name in self.data:
            path = Path(name)
            if not path.is_file():
                continue  # reported when the examples are read
            for line_no, row in read_jsonl_lines(path):
                if row.get("culture") is not None:
                    first_seen.setdefault(str(row["culture"]), f"{path}:{line_no}")
        for culture, where in first_seen.items():
            try:
                countries_of(culture)
            except ValueError as err:
                raise TrainingError(f"{where}: {err}") from None


def check_seed(seed: int) -> None:
    """--seed within numpy's range: transformers' ``set_seed`` refuses another only once training starts
    (after ``culture-train kfold`` has scored the base model), in a line that names no flag."""
    if not 0 <= seed <= MAX_SEED:
        raise TrainingError(f"--seed must be a whole number from 0 to {MAX_SEED}, got {seed}")


def check_extra(extra) -> None:
    """``--extra`` may hold only TrainingArguments that the trainer does not set itself: checked
    here, so that a misspelt or clashing key fails before the model is loaded or anything is written."""
    if not isinstance(extra, dict):
        raise TrainingError(f"--extra must be a mapping of TrainingArguments, e.g. '{{\"lr_scheduler_type\": "
                            f"\"cosine\"}}', got {extra!r}")
    if not extra:
        return
    import inspect

    from transformers import TrainingArguments

    accepted = set(inspect.signature(TrainingArguments.__init__).parameters) - {"self"} - set(SET_BY_TRAINER)
    for key in extra:
        if key in SET_BY_TRAINER:
            flag = SET_BY_TRAINER[key]
            why = " (its checkpoints and --resume rely on it)" if key in CHECKPOINT_ARGUMENTS else ""
            fix = f"is set by the trainer from {flag}; remove it from --extra and give {flag} instead" if flag \
                else f"is set by the trainer itself{why} and cannot be changed; remove it from --extra"
            raise TrainingError(f"--extra: {key!r} {fix}")
        if key not in accepted:
            raise TrainingError(f"--extra: {with_hints([key], accepted)} is not a TrainingArguments parameter of "
                                f"transformers {_transformers_version()}; fix or remove it")
    for key, value in extra.items():
        check_extra_type(key, value)


@functools.cache
def _extra_kinds() -> dict[str, tuple[type, bool]]:
    """Per TrainingArguments field of a plain type (bool, int, float or str, maybe optional): the type and
    whether None is allowed. Fields of other types (enums, unions, lists, mappings) are not listed."""
    import dataclasses
    import types
    import typing

    from transformers import TrainingArguments

    try:
        hints = typing.get_type_hints(TrainingArguments)
    except (NameError, TypeError):  # a forward reference this release cannot resolve: the fields' own types
        hints = {}
    out = {}
    for f in dataclasses.fields(TrainingArguments):
        hint = hints.get(f.name, f.type)
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        kinds = set(typing.get_args(hint)) if union else {hint}
        plain = kinds - {type(None)}
        if len(plain) == 1 and (kind := plain.pop()) in (bool, int, float, str):
            out[f.name] = (kind, type(None) in kinds)
    return out


# per plain TrainingArguments type: its name and what to write in --extra
EXPECTED = {bool: ("a bool", "true or false without quotes"), int: ("an int", "a whole number without quotes"),
            float: ("a float", "a number without quotes"), str: ("a str", "a quoted string")}


def check_extra_type(key: str, value) -> None:
    """TrainingArguments do not check the type of what they are given: "false" for a bool is truthy (the option
    turns on) and "1.0" for a float fails at the first step, after the model loaded and an old output was
    replaced. A bool field takes a real bool only (JSON true / false): the value is passed on unchanged, so
    a quoted word is refused rather than read; an int field an int, a float field an int or a float (a bool
    is neither), a str field a str; None where the field is optional. Other fields: TrainingArguments check."""
    found = _extra_kinds().get(key)
    if found is None:
        return
    kind, optional = found
    if value is None and optional:
        return
    ok = (type(value) is bool if kind is bool else type(value) is int if kind is int
          else type(value) in (int, float) if kind is float else isinstance(value, str))
    if not ok:
        name, how = EXPECTED[kind]
        raise TrainingError(f"--extra: {key!r} is {name} of TrainingArguments: give {how}"
                            f"{' (or null)' if optional else ''}, not {json.dumps(value, default=str)}")


def check_extra_values(cfg: LoraTrainConfig) -> None:
    """Build the run's TrainingArguments once, without a model: a value they refuse
    (``lr_scheduler_type: bogus``) stops the run here, not after the model is loaded."""
    from transformers import TrainingArguments

    try:
        TrainingArguments(**_training_arguments(cfg, *_accelerator_defaults(cfg)), **cfg.extra)
    except (ValueError, TypeError) as err:
        raise TrainingError(f"--extra: TrainingArguments refuse {json.dumps(cfg.extra, sort_keys=True)}: "
                            f"{' '.join(str(err).split())}") from None


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def read_examples(paths: list[str]) -> list[dict]:
    """The chat examples of every file; a row with a key `culture-train data` does not write is refused. No file
    at all (``data: []`` in a --config file) is refused by name, not as an unnamed file without examples."""
    if not paths:
        raise TrainingError("--data names no file; give the training JSONL file(s) `culture-train data` wrote")
    rows = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise TrainingError(f"training data {path} does not exist (make it with `culture-train data`)")
        for line_no, row in read_jsonl_lines(path):
            check_messages(row.get("messages"), f"{path}:{line_no}")
            check_row_keys(row, EXAMPLE_KEYS, f"{path}:{line_no}", "training", TrainingError)
            rows.append(row)
    if not rows:
        raise TrainingError(f"no training example in {', '.join(paths)}")
    return rows


def check_messages(messages, where: str) -> None:
    """A row's chat messages as the trainer reads them: a misspelt key ("rol") or role would be read as
    absent, and an assistant turn before the answer would become context the harness never asks with;
    each is refused, naming ``where`` (file:line), the message and the fix."""
    if not (isinstance(messages, list) and len(messages) >= 2 and all(isinstance(m, dict) for m in messages)):
        raise TrainingError(f"{where}: {MESSAGES_SHAPE}")
    for number, message in enumerate(messages, 1):
        unknown = sorted(k for k in message if k not in MESSAGE_KEYS)
        if unknown:
            raise TrainingError(f"{where}: field 'messages', message {number}: unknown key(s) "
                                f"{with_hints(unknown, MESSAGE_KEYS)}; a chat message has only role and content: "
                                "rename or remove them")
        _check_role(message.get("role"), number, len(messages), where)
    if not all(isinstance(m.get("content"), str) for m in messages):
        raise TrainingError(f"{where}: {MESSAGES_SHAPE}")
    if not messages[-1]["content"].strip():  # no answer token: the example would carry no loss
        raise TrainingError(f"{where}: the assistant's answer is empty; give the answer (the option "
                            "letter) as the last message's content, or remove the row")


def _check_role(role, number: int, count: int, where: str) -> None:
    """The roles the trainer supports where it supports them: a system message first, user messages, and
    the assistant's answer last (the context is everything before it, as the harness asks one question)."""
    at = f"{where}: field 'messages', message {number}"
    if role not in ROLES:
        what = f"unknown role {with_hints([role], ROLES)}" if role is not None else "no role"
        raise TrainingError(f"{at}: {what}; the trainer takes {ROLE_ORDER}")
    if number == count and role != "assistant":
        raise TrainingError(f"{where}: {MESSAGES_SHAPE}")
    if role == "assistant" and number < count:
        raise TrainingError(f"{at}: an assistant turn before the answer (the last message), which the harness never "
                            f"asks with; the trainer takes {ROLE_ORDER}: remove the turn")
    if role == "system" and number > 1:
        raise TrainingError(f"{at}: a system message after the first message; the trainer takes {ROLE_ORDER}: "
                            "move it first or remove it")


def plain_context(messages: list[dict]) -> str:
    """The context of a row's messages without a chat template, as lm-eval writes it: a system message is
    put before the question as ``lm_eval --system_instruction`` puts it, with nothing between them
    (``"".join`` of its plain-text messages); several user messages are joined by a blank line."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    return system + "\n\n".join(m["content"] for m in messages if m["role"] != "system")


def encode_examples(lm, rows: list[dict], chat: bool, max_length: int) -> tuple[list[dict], int]:
    """input_ids / labels per example as the harness tokenises (context, continuation).

    lm-eval's multiple-choice continuation is target_delimiter + choice, with the delimiter
    (" ") dropped under a chat template (the survey tasks set no gen_prefix)."""
    out, too_long = [], 0
    for row in rows:
        messages, answer = row["messages"][:-1], row["messages"][-1]["content"]
        context = lm.apply_chat_template(messages) if chat else plain_context(messages)
        ctx, cont = lm._encode_pair(context, answer if chat else " " + answer)
        if len(ctx) + len(cont) > max_length:
            too_long += 1
            continue
        out.append({"input_ids": ctx + cont, "labels": [-100] * len(ctx) + cont})
    return out, too_long


def answer_only_collator(tokenizer):
    """transformers' ``DataCollatorForSeq2Seq``, padding on the right with the pad token (the end
    of sequence where there is none), labels with -100: padding and context carry no loss.

    It pads a copy of the tokenizer, so the one saved with a merged model keeps its own settings."""
    import copy

    from transformers import DataCollatorForSeq2Seq

    padder = copy.deepcopy(tokenizer)
    padder.padding_side = "right"
    if padder.pad_token_id is None:
        padder.pad_token = padder.eos_token
    return DataCollatorForSeq2Seq(padder, padding=True, label_pad_token_id=-100, return_tensors="pt")


def asked_with_persona(rows: list[dict]) -> set[bool]:
    """Whether the rows' questions carry the persona line naming a country (both when mixed)."""
    from culture_tasks.survey.tasks import persona_of

    return {persona_of(next((m["content"] for m in r.get("messages", []) if m.get("role") == "user"), "")) is not None
            for r in rows}


def system_messages(rows: list[dict]) -> set[str | None]:
    """The system message each row starts with (None for a row without one)."""
    return {r["messages"][0]["content"] if r["messages"][0].get("role") == "system" else None for r in rows}


def system_instruction(rows: list[dict]) -> str | None:
    """The ``lm_eval --system_instruction`` that asks the rows as they were trained: their one system message
    (None where no row has one). Rows with several (upstream's WVQ_all.jsonl, one per culture) are asked as
    trained by no single command: None, with a warning naming how many there are."""
    found = system_messages(rows)
    if len(found) > 1:
        log.warning("the rows start with %d different system messages (or none): the lm_eval command written in "
                    "training.json asks without one; add --system_instruction as each culture's rows were asked",
                    len(found))
        return None
    return found.pop()


def adapter_command(model: str, rows: list[dict], adapter: Path, chat: bool, data_root: Path) -> str:
    """The ``lm_eval`` command that scores an adapter trained on ``rows`` as they were asked: their tasks
    (``adapter_tasks``), the chat template if they were trained through it and their system message, on
    ``data_root`` named in full (``scoring_data_root``)."""
    return lm_eval_command(model, adapter_tasks(rows), adapter=adapter, metadata={"data_dir": str(data_root)},
                           chat=chat, system_instruction=system_instruction(rows))


def scoring_data_root(cfg: LoraTrainConfig) -> Path:
    """The data root the recorded lm_eval command scores on: --data-dir, else $CULTURE_DATA_DIR, named in the
    command in full, since a command that left it to the variable would score another root's answers (or stop)
    in a shell with another root (or none). Resolved before anything loads: a run without one stops at once."""
    try:
        return resolve_data_root(cfg.data_dir)
    except DataRootError as err:
        raise TrainingError(f"the lm_eval command written to training.json names the data root it scores on: "
                            f"{err}") from None


def adapter_tasks(rows: list[dict]) -> list[str]:
    """The tasks that score an adapter trained on ``rows``: each of its cultures' (the whole suite
    when they are all there, as for CultureLLM-One), the WVS tasks asking as the rows asked (with
    the persona line or without; both where the rows mix them); rows naming no culture leave the
    tasks to the user."""
    from trainers.cultures import CULTURE_COUNTRIES, ONE, evaluation_tasks

    if any(not r.get("culture") for r in rows):
        return ["<tasks>"]
    cultures = row_cultures(rows)
    keys = [ONE] if len(cultures) > 1 and set(cultures) >= set(CULTURE_COUNTRIES) else cultures
    return list(dict.fromkeys(t for key in keys for persona in sorted(asked_with_persona(rows))
                              for t in evaluation_tasks(key, persona)))


def row_cultures(rows: list[dict]) -> list[str]:
    """The cultures the rows name, each as countries.yaml spells it (``culture_key``): training.json records them
    and culture-steer compares a lora target's culture with them, so "English" rows are recorded as english."""
    from trainers.cultures import culture_key

    return sorted({culture_key(r["culture"]) for r in rows if r.get("culture")})


def repeated_per_epoch(examples: int, batch_size: int, world_size: int) -> int:
    """Examples trained twice in each epoch of a multi-process run: accelerate completes a last round of
    per-process batches that the examples do not fill (``even_batches``) with examples from the start of the
    epoch's order, where one process trains a short last batch. 0 on one process or when the examples fill
    whole rounds (``batch_size`` × ``world_size``)."""
    return (-examples) % (batch_size * world_size) if world_size > 1 else 0


def global_batch(batch_size: int, grad_accum: int = 1, world_size: int = 1) -> int:
    """The rows one optimiser step trains on: each process's batch, accumulated, over every process."""
    return batch_size * grad_accum * world_size


def run_settings(cfg: LoraTrainConfig) -> dict:
    """The settings a resumed run must share with the run it continues; data files by content."""
    out = {k: v for k, v in asdict(cfg).items() if k not in NOT_DEFINING}
    out["data_sha256"] = [file_digest(p) for p in cfg.data]
    out["model_fingerprint"] = model_fingerprint(cfg.model)  # another model under the same path is refused
    # the global batch is batch x accumulation x processes: a resume under another process count would
    # continue another training
    out["world_size"] = launched_world_size()
    # bf16 left to its default is decided by the machine: a resume elsewhere must not switch precision
    out["training_dtype"] = "bfloat16" if _accelerator_defaults(cfg)[0] else "float32"
    return out


def _checkpoint_problem(folder: Path) -> str | None:
    """Why a Trainer checkpoint cannot be resumed from (killed while it was written), or None.

    The Trainer writes the adapter, optimizer, scheduler and RNG state, then trainer_state.json;
    a complete checkpoint has all of them readable (torch's files are zip archives whose
    directory sits at the end, so a cut-off file is not a zip). Under FSDP the optimizer is
    ``optimizer.bin``; with several processes each writes its own ``rng_state_<rank>.pth``."""
    state = folder / "trainer_state.json"
    try:
        step = json.loads(state.read_text(encoding="utf-8"))["global_step"]
    except (OSError, ValueError, KeyError):
        return "trainer_state.json missing or unreadable"
    if f"checkpoint-{step}" != folder.name:
        return f"trainer_state.json is for step {step}"
    if not any(zipfile.is_zipfile(folder / name) for name in ("optimizer.pt", "optimizer.bin")):
        return "optimizer.pt (optimizer.bin under FSDP) missing or cut off"
    processes = launched_world_size()
    rng = ["rng_state.pth"] if processes == 1 else [f"rng_state_{rank}.pth" for rank in range(processes)]
    for name in ("scheduler.pt", *rng):
        if not zipfile.is_zipfile(folder / name):
            return f"{name} missing or cut off"
    if not _readable_safetensors(folder / "adapter_model.safetensors"):
        return "adapter_model.safetensors missing or cut off"
    return None


def _readable_safetensors(path: Path) -> bool:
    """Whether a checkpoint's file is there and complete (``models.check_safetensors``, as a yes or no)."""
    try:
        check_safetensors(path)
    except ModelFileError:
        return False
    return path.is_file()


def latest_complete_checkpoint(checkpoints: Path, remove: bool = True) -> Path | None:
    """The newest complete checkpoint; incomplete newer ones are removed (``remove``) with a message."""
    found = sorted((p for p in checkpoints.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for folder in found:
        problem = _checkpoint_problem(folder)
        if problem is None:
            return folder
        if remove:
            log.warning("%s is incomplete (%s; the run stopped while writing it): removed, resuming from an "
                        "earlier checkpoint", folder, problem)
            shutil.rmtree(folder)
    return None


def adapter_problem(out: Path) -> str | None:
    """Why the adapter in ``out`` is not complete (``adapter_config.json`` and a readable
    ``adapter_model.safetensors``), or None."""
    if not (out / "adapter_config.json").is_file():
        return "adapter_config.json missing"
    if not _readable_safetensors(out / "adapter_model.safetensors"):
        return "adapter_model.safetensors missing or cut off"
    return None


def remove_finished_checkpoints(out: Path, keep: bool) -> None:
    """A run killed after writing training.json but before removing its ``checkpoints/`` left them for good
    (a resume does not train a finished run again): removed, with a line, unless kept (``keep``: asked
    now, or the finished run's own ``keep_checkpoints``). Nothing reads a finished run's checkpoints: its
    adapter, checked complete first, was written before training.json. Called with the output's lock held."""
    folder = out / CHECKPOINTS
    if keep or not folder.is_dir() or not (out / "training.json").is_file():
        return
    try:
        finished = json.loads((out / "training.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(finished, dict) or (finished.get("config") or {}).get("keep_checkpoints", False):
        return
    problem = adapter_problem(out)
    if problem is not None:
        log.warning("%s: the run is finished (training.json) but its adapter is not complete (%s): %s kept",
                    out, problem, folder)
        return
    shutil.rmtree(folder)
    log.warning("%s: removed %s, left by a finished run killed before it removed them", out, folder)


def _prepare_output(out: Path, cfg: LoraTrainConfig, settings: dict) -> tuple[str, Path | None]:
    """What to do with the output (see ``claim_output``) and the checkpoint to resume from (None:
    step 0). Checks only: ``_start_run`` sets a replaced output aside and stores the settings. The
    other processes of a distributed launch only find the checkpoint the main process checked."""
    if not main_process():
        return "resume", latest_complete_checkpoint(out / CHECKPOINTS, remove=False) if cfg.resume else None
    mode = claim_output(out, overwrite=bool(getattr(cfg, "overwrite", False)), resume=cfg.resume,
                        inputs=[cfg.model, *cfg.data, getattr(cfg, "config_file", None)], error=TrainingError,
                        models=[cfg.model])
    stored_path = out / CHECKPOINTS / RUN_SETTINGS
    if mode == "resume":
        # a checkpoint cut short is removed whole, with its own; an adapter or merged model cut short is only staged
        remove_killed_writes(out, ("training.json",), staged=True)
        remove_killed_writes(out / "merged", (), staged=True)
        remove_killed_writes(out / CHECKPOINTS, (RUN_SETTINGS,))
        remove_finished_checkpoints(out, cfg.keep_checkpoints)
        if (out / "training.json").exists():  # written last: its checkpoints, if kept, are not to train on again
            raise TrainingError(f"--resume: the run in {out} is complete (training.json); pass --overwrite to train "
                                "again there, or choose another --output")
        stored = load_settings(stored_path, TrainingError)
        if stored is None:
            raise TrainingError(f"--resume: {out} holds no {CHECKPOINTS}/{RUN_SETTINGS}; pass --overwrite to "
                                "train again there, or choose another --output")
        check_settings(stored, settings, out, error=TrainingError, later=LATER_SETTINGS)
        found = latest_complete_checkpoint(out / CHECKPOINTS)
        if found is None:
            log.warning("--resume: %s has no complete checkpoint yet; training starts at step 0 with the stored "
                        "settings", out)
        return mode, found
    return mode, None


def _start_run(out: Path, mode: str, settings: dict) -> None:
    """Once every check has passed: replace the old output if asked, store the new run's settings."""
    if mode == "replace":
        set_aside(out)
    if mode != "resume":
        save_settings(out / CHECKPOINTS / RUN_SETTINGS, settings)


def _accelerator_defaults(cfg: LoraTrainConfig) -> tuple[bool, bool]:
    import torch

    cuda = torch.cuda.is_available()
    bf16 = cfg.bf16 if cfg.bf16 is not None else (cuda and torch.cuda.is_bf16_supported())
    checkpointing = cfg.gradient_checkpointing if cfg.gradient_checkpointing is not None else cuda
    return bf16, checkpointing


def check_launch_precision(bf16: bool) -> None:
    """``accelerate launch`` hands its mixed precision (``--mixed_precision``, ``mixed_precision`` in its config
    file) to transformers as ``ACCELERATE_MIXED_PRECISION``, which TrainingArguments take where neither bf16 nor
    fp16 is set: a run training in float32 would train under that autocast while training.json recorded float32.
    Refused before anything loads (with bf16 on, bfloat16 is what both say)."""
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no") or "no"
    if not bf16 and launched != "no":
        raise TrainingError(f"accelerate launch asks for mixed precision {launched} (its --mixed_precision, or "
                            "mixed_precision in its config file), but this run trains in float32 (--bf16 false, or "
                            "left to its default without a GPU that supports bfloat16): transformers would train "
                            f"under {launched} autocast while training.json recorded float32; pass --bf16 true, or "
                            "launch with --mixed_precision no")


def _version_arguments(cfg: LoraTrainConfig, checkpointing: bool) -> dict:
    """Warm-up and activation checkpointing under the names this transformers release uses."""
    import inspect

    from transformers import TrainingArguments

    known = inspect.signature(TrainingArguments.__init__).parameters
    out = {}
    if cfg.warmup < 1 and "warmup_ratio" in known:
        out["warmup_ratio"] = cfg.warmup
    else:
        out["warmup_steps"] = cfg.warmup if cfg.warmup < 1 else int(cfg.warmup)
    if "activation_checkpointing" in known:
        out["activation_checkpointing"] = checkpointing
    else:
        out["gradient_checkpointing"] = checkpointing
        out["gradient_checkpointing_kwargs"] = {"use_reentrant": False} if checkpointing else None
    return out


def _training_arguments(cfg: LoraTrainConfig, bf16: bool, checkpointing: bool) -> dict:
    """The TrainingArguments the trainer sets itself (each key is in SET_BY_TRAINER, so --extra cannot clash)."""
    import torch

    return dict(**_version_arguments(cfg, checkpointing),
                output_dir=str(Path(cfg.output) / CHECKPOINTS),
                per_device_train_batch_size=cfg.batch_size,
                gradient_accumulation_steps=cfg.grad_accum,
                learning_rate=cfg.learning_rate,
                num_train_epochs=cfg.epochs,
                max_steps=cfg.max_steps,
                weight_decay=cfg.weight_decay,
                logging_steps=cfg.logging_steps,
                save_strategy="steps",
                save_steps=cfg.save_steps,
                save_only_model=False,
                ignore_data_skip=False,
                save_total_limit=2,
                seed=cfg.seed,
                data_seed=cfg.seed,
                bf16=bf16,
                use_cpu=not torch.cuda.is_available(),
                report_to=[],
                remove_unused_columns=False)


def lora_config(cfg: LoraTrainConfig):
    from peft import LoraConfig

    return LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=cfg.target_modules, task_type="CAUSAL_LM")


def model_config(cfg: LoraTrainConfig):
    """The model's config (``config.json``), read without the weights; a folder without one is refused by name."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(cfg.model)
    except (OSError, ValueError) as err:
        raise TrainingError(f"--model {cfg.model}: no model config could be read ({err}); give a model folder "
                            "holding config.json") from None


def load_tokenizer(cfg: LoraTrainConfig):
    """The model's tokenizer; a folder without a readable one is refused in one line naming --model (transformers'
    own error is an OSError the command line does not catch, or several lines)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(cfg.model)
    except (OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise TrainingError(f"--model {cfg.model}: no tokenizer could be read ({first}); give a model folder holding "
                            "its tokenizer files") from None


def check_target_modules(cfg: LoraTrainConfig) -> None:
    """peft matches --target-modules against the model's layers only when it wraps the model: done
    here on an empty copy built from the model's config (no weights), so that a misspelt module
    stops the run before the weights load and before an old output is replaced. So does a transformers whose
    Trainer lacks a hook the trainer overrides (``_trainer_class``)."""
    from peft import get_peft_model

    _trainer_class()
    model = empty_model(model_config(cfg))
    try:
        get_peft_model(model, lora_config(cfg))
    except ValueError as err:
        raise TrainingError(f"--target-modules {cfg.target_modules!r} does not fit {cfg.model}: "
                            f"{str(err).splitlines()[0]}") from None


def make_trainer(cfg: LoraTrainConfig, model, tokenizer, encoded: list[dict], collator=None):
    """peft LoRA around ``model`` and the Trainer that fits it (also used by the benchmark)."""
    from peft import get_peft_model
    from transformers import TrainingArguments

    bf16, checkpointing = _accelerator_defaults(cfg)
    if checkpointing:
        model.config.use_cache = False
    model = get_peft_model(model, lora_config(cfg))
    # adapter_config.json names the base folder absolutely (the path as typed would only load from here)
    model.peft_config["default"].base_model_name_or_path = absolute_if_local(cfg.model)
    # peft holds the adapted layers as a set and writes it in the set's order, which changes with
    # PYTHONHASHSEED: sorted, adapter_config.json is the same bytes from every process
    if isinstance(model.peft_config["default"].target_modules, set):
        model.peft_config["default"].target_modules = sorted(model.peft_config["default"].target_modules)
    if bf16 and cfg.dropout == 0:
        _keep_lora_inputs_in_compute_dtype(model)
    args = TrainingArguments(**_training_arguments(cfg, bf16, checkpointing), **cfg.extra)
    return _trainer_class()(model=model, args=args, train_dataset=encoded,
                            data_collator=collator or answer_only_collator(tokenizer))


def _keep_lora_inputs_in_compute_dtype(model) -> None:
    """Under bf16 autocast peft keeps the adapter weights in float32 (the optimizer's precision) and
    casts each LoRA layer's input to float32 before the adapter; autocast then casts it back to
    bfloat16 for the adapter's matmul. With no dropout in between the round trip is exact, so it is
    skipped: two dtype copies per LoRA layer and step fewer in the forward and two in the backward,
    the same numbers. (peft already runs no dropout kernel at dropout 0: its dropout is
    ``nn.Identity``. With dropout the cast is kept: dropout in float32 rounds differently.)"""
    for module in model.modules():
        if hasattr(module, "cast_input_dtype_enabled"):
            module.cast_input_dtype_enabled = False


def answer_positions(inputs: dict) -> dict:
    """The batch with the LM head asked only at the positions whose next token carries a loss.

    The loss is on the answer tokens only, so the logits of every other position (the whole prompt,
    the padding) would be computed and thrown away: with a large vocabulary a good part of the step's
    arithmetic (docs/bench_cpu.md). ``logits_to_keep`` (every position that predicts a
    label in some row of the batch) keeps those rows of the LM head's input, and ``shift_labels``
    (their labels) is what the model's own causal-LM loss then uses instead of shifting ``labels``:
    the same cross-entropy over the same tokens, divided by the same count."""
    import torch

    labels = inputs["labels"]
    shifted = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100)  # position t predicts token t + 1
    keep = (shifted != -100).any(dim=0).nonzero().squeeze(-1)
    return {**inputs, "logits_to_keep": keep, "shift_labels": shifted[:, keep].contiguous()}


def keeps_chosen_logits(model) -> bool:
    """Whether the causal LM under ``model`` (peft or not) computes logits at chosen positions only."""
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(inner.forward).parameters


def _trainer_class():
    """transformers' Trainer, plus the loss summed since the last logging step in each checkpoint,
    and the LM head only at the answer positions (``answer_positions``).

    The Trainer keeps that sum (``_tr_loss``) only in memory and restarts it at zero on resume,
    so a run resumed from a checkpoint that is not on a logging step would log the mean of fewer
    steps at its next logging step, and a different ``train_loss``. Saving the sum (and the
    running total) with the checkpoint and putting it back before the first step makes the log
    of a resumed run the log of the uninterrupted one. The training time so far is kept there too,
    so that ``training_seconds`` counts every session up to the checkpoint resumed from. A run resumed
    from the checkpoint of its last step trains nothing more."""
    import torch
    from transformers import Trainer, TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    class _RestoreLoss(TrainerCallback):
        def __init__(self, trainer):
            self.trainer = trainer

        def on_train_begin(self, args, state, control, **kwargs):
            t = self.trainer
            path = Path(t._resume_dir) / LOSS_CARRY.format(args.process_index) if t._resume_dir else None
            if path is None:
                return
            t.seconds_before = None  # unknown unless the checkpoint holds it
            if not path.is_file():
                return
            carry = json.loads(path.read_text(encoding="utf-8"))
            if carry["step"] != state.global_step:
                return
            t.seconds_before = carry.get("seconds")  # absent from a checkpoint stored before it was kept
            t._tr_loss = torch.tensor(carry["tr_loss"], device=t._tr_loss.device, dtype=t._tr_loss.dtype)
            t._globalstep_last_logged = carry["last_logged"]
            t._total_loss_scalar = carry["total_loss"]
            t._initial_global_step = 0  # train_loss: the mean over the whole run, as uninterrupted

    class LossCarryingTrainer(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._resume_dir = None
            self.add_callback(_RestoreLoss(self))
            # the model's own causal-LM loss computes it (no label smoothing, no custom loss) and its forward
            # can leave out logits: the LM head only where a label is
            self.answer_positions_only = (self.label_smoother is None and self.compute_loss_func is None
                                           and keeps_chosen_logits(self.model))

        def compute_loss(self, model, inputs, *args, **kwargs):
            if self.answer_positions_only:
                inputs = answer_positions(inputs)
            return super().compute_loss(model, inputs, *args, **kwargs)

        def train(self, resume_from_checkpoint=None, **kwargs):
            self._resume_dir = resume_from_checkpoint
            self._started, self.seconds_before = time.perf_counter(), 0.0
            return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

        def training_seconds(self) -> float | None:
            """Seconds of training so far: this session's, plus those of the sessions before it up to the
            checkpoint it resumed from (the work after that checkpoint was done again); None when that
            checkpoint does not hold them."""
            if self.seconds_before is None:
                return None
            return self.seconds_before + time.perf_counter() - self._started

        def _finalize_training(self, *args, **kwargs):
            # the steps after the last logging step are added to train_loss from _tr_loss, which holds this
            # process's share of their loss only: taken over all processes as a logged loss is, so that a
            # distributed run's train_loss is the one-process one
            if self.args.world_size > 1:
                from transformers.trainer_pt_utils import nested_gather

                self._tr_loss = nested_gather(self._tr_loss, self.args.parallel_mode).mean()
            return super()._finalize_training(*args, **kwargs)

        def _run_epoch(self, *args, **kwargs):
            # every run checkpoints its last step: a run killed after it (while writing the adapter or
            # training.json) resumes there, and transformers' epoch loop would train one step more before it
            # checks max_steps when that step ends mid-epoch (an 11th step of a --max-steps 10 run)
            if self.state.global_step >= self.state.max_steps:
                return None
            return super()._run_epoch(*args, **kwargs)

        def _save_checkpoint(self, model, trial):
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            write_text_atomic(folder / LOSS_CARRY.format(self.args.process_index), json.dumps({
                "step": self.state.global_step, "tr_loss": float(self._tr_loss.item()),
                "last_logged": self._globalstep_last_logged, "total_loss": self._total_loss_scalar,
                "seconds": self.training_seconds()}))
            super()._save_checkpoint(model, trial)

    # an override of a hook this Trainer lacks would never run (transformers 4 trains in _inner_training_loop,
    # with tr_loss a local): refused instead of a run that silently differs (check_target_modules asks first)
    hooks = {name for name in vars(LossCarryingTrainer) if name.startswith("_") and not name.startswith("__")}
    missing = sorted(name for name in hooks | {"_get_output_dir"} if not callable(getattr(Trainer, name, None)))
    if missing:
        raise TrainingError(f"transformers {_transformers_version()}: its Trainer has no {', '.join(missing)}, which "
                            f"culture-train lora relies on; install the transformers release pyproject.toml asks for "
                            f"(pip install 'transformers>={MIN_TRANSFORMERS}')")
    return LossCarryingTrainer


def uses_chat(cfg: LoraTrainConfig, tokenizer) -> bool:
    """Whether examples go through the chat template: --chat-template, else where the tokenizer has one;
    asking for one the tokenizer lacks is an error."""
    if cfg.chat_template and not tokenizer.chat_template:
        raise TrainingError(f"{cfg.model}: the tokenizer has no chat template; set chat_template: false")
    return cfg.chat_template if cfg.chat_template is not None else bool(tokenizer.chat_template)


def harness_encoder(cfg: LoraTrainConfig, tokenizer):
    """lm-eval's wrapper (``HFLM``) of the model and ``tokenizer``, which ``encode_examples`` tokenises through.
    Its chat template and ``_encode_pair`` read only the tokenizer and the model's config (its pad token and
    causal or seq2seq backend), so an empty copy of the model (``models.empty_model``: no weights) stands for
    it: the examples are tokenised as with the loaded model, and checked, before the weights load."""
    from lm_eval.models.huggingface import HFLM

    hf_log = logging.getLogger("lm_eval.models.huggingface")
    level = hf_log.level
    hf_log.setLevel(logging.ERROR)  # its warnings about a model instance concern evaluation, not this use
    try:
        return HFLM(pretrained=empty_model(model_config(cfg)), tokenizer=tokenizer, batch_size=1)
    finally:
        hf_log.setLevel(level)


def encode_for(cfg: LoraTrainConfig, tokenizer, rows: list[dict], lm=None) -> tuple[list[dict], int, bool]:
    """Examples tokenised as the harness scores them (through ``lm``, by default ``harness_encoder``'s), the
    number skipped as longer than --max-length, and whether through the chat template. Rows of which none fits
    are refused, naming the shortest example's length."""
    chat = uses_chat(cfg, tokenizer)
    lm = lm if lm is not None else harness_encoder(cfg, tokenizer)
    encoded, too_long = encode_examples(lm, rows, chat, cfg.max_length)
    if not encoded:
        shortest = min(len(e["input_ids"]) for e in encode_examples(lm, rows, chat, sys.maxsize)[0])
        raise TrainingError(f"every example is longer than max_length={cfg.max_length} tokens (the shortest has "
                            f"{shortest}); give --max-length {shortest} or more")
    return encoded, too_long, chat


def _adapter_weights(model) -> dict:
    """The adapter's tensors as ``save_pretrained`` writes them."""
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(model)


def _check_converged(cfg: LoraTrainConfig, out: Path, bf16: bool, loss: float, weights) -> None:
    """A run whose training loss or adapter weights are not finite numbers diverged: it stops here, before
    an adapter or training.json is written (the Trainer logs a NaN step's loss as the mean of the earlier
    steps, so a diverged run may report a finite loss: the weights tell)."""
    import torch

    bad = [name for name, t in weights.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if math.isfinite(loss) and not bad:
        return
    what = ([] if math.isfinite(loss) else [f"train_loss {loss}"]) + (
        [f"{len(bad)} of {len(weights)} adapter tensors hold NaN or inf, e.g. {bad[0]}"] if bad else [])
    precision = " or train in float32 (--bf16 false)" if bf16 else ""
    raise TrainingError(f"{out}: the training diverged ({'; '.join(what)}) and no adapter was written; train again "
                        f"with a lower --learning-rate (this run: {cfg.learning_rate:g}){precision}, with --overwrite")


def _check_saved_adapter(cfg: LoraTrainConfig, out: Path, bf16: bool, loss: float) -> None:
    """``_check_converged`` on the adapter files a gathering save wrote; they are removed if it diverged."""
    from safetensors.torch import load_file

    try:
        _check_converged(cfg, out, bf16, loss, load_file(str(out / "adapter_model.safetensors")))
    except TrainingError:
        for name in ("adapter_model.safetensors", "adapter_config.json", "README.md"):
            (out / name).unlink(missing_ok=True)
        raise


def merge_into_base(model: str, adapter: Path):
    """The base model as stored (its dtype and config, as ``lm_eval ... peft=`` loads it) with the adapter written
    to ``adapter`` merged in. The model the run trained is not that base: in bfloat16 training every weight of a
    float32 base was rounded to bfloat16 (the embeddings too), and gradient checkpointing turned use_cache off
    in its config, so merging it gave another model than base plus adapter. Loaded on the CPU, beside it."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model, dtype="auto")
    return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()


def _fsdp_asked() -> bool:
    """Whether the launch asked for FSDP (``accelerate launch`` with an FSDP configuration sets this)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true")


def parallelism(trainer) -> str:
    """How the run's processes share the work, as accelerate set it up (NO, MULTI_CPU, MULTI_GPU, FSDP, ...).

    accelerate runs an FSDP configuration without GPUs as plain data parallelism (DDP on gloo: every
    process holds the whole model) without a word; the trainer says so, and training.json records it.
    """
    kind = str(getattr(trainer.accelerator.distributed_type, "value", trainer.accelerator.distributed_type))
    if _fsdp_asked() and not trainer.is_fsdp_enabled:
        log.warning("FSDP was asked for (ACCELERATE_USE_FSDP) but accelerate runs %s: every process holds the "
                    "whole model (FSDP needs GPUs); the losses and the adapter are those of one process", kind)
    return kind


def train(cfg: LoraTrainConfig) -> dict:
    """Fine-tune into ``cfg.output`` (locked against a second run while training)."""
    out = Path(cfg.output)
    if cfg.merge and _fsdp_asked():
        raise TrainingError("merge: FSDP shards the base weights, so the merged model cannot be written here; "
                            "train without --merge and merge the adapter afterwards on one process")
    check_launch_precision(_accelerator_defaults(cfg)[0])
    rows = read_examples(cfg.data)
    data_root = scoring_data_root(cfg)
    settings = run_settings(cfg)
    check_target_modules(cfg)
    with OutputLock.for_folder(out, TrainingError):
        mode, resume_from = _prepare_output(out, cfg, settings)
        return _train(cfg, out, rows, resume_from, lambda: _start_run(out, mode, settings), data_root)


def _train(cfg: LoraTrainConfig, out: Path, rows: list[dict], resume_from: Path | None, start,
           data_root: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, set_seed

    bf16, checkpointing = _accelerator_defaults(cfg)
    set_seed(cfg.seed)
    tokenizer = load_tokenizer(cfg)
    # a chat template the tokenizer lacks, or a --max-length no example fits: refused before the weights load
    encoded, too_long, chat = encode_for(cfg, tokenizer, rows)
    if too_long:
        log.warning("%d examples longer than max_length=%d tokens skipped", too_long, cfg.max_length)
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.bfloat16 if bf16 else torch.float32)
    trainer = make_trainer(cfg, model, tokenizer, encoded)  # peft and TrainingArguments accept the settings
    shared_as = parallelism(trainer)
    repeated = repeated_per_epoch(len(encoded), cfg.batch_size, trainer.args.world_size)
    if repeated and trainer.is_world_process_zero():
        log.warning("%d examples over %d processes at batch %d: each epoch's last round trains %d examples twice "
                    "(accelerate fills it from the epoch's start), so the run is not the one-process run; give a "
                    "number of examples divisible by %d to avoid it", len(encoded), trainer.args.world_size,
                    cfg.batch_size, repeated, cfg.batch_size * trainer.args.world_size)
    start()  # every input is valid: only now is an old output replaced
    settings = run_settings(cfg)  # the content the model and data paths name now, for training.json
    model = trainer.model
    trainable, total = model.get_nb_trainable_parameters()
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = trainer.training_seconds()
    if seconds is None:
        log.warning("%s was stored without the training time before it: training.json records seconds as null "
                    "(unknown)", resume_from)
    main = trainer.is_world_process_zero()  # under torchrun / accelerate launch only one process writes
    if not trainer.is_fsdp_enabled:  # a diverged adapter is never written (under FSDP: checked once written)
        _check_converged(cfg, out, bf16, result.training_loss, _adapter_weights(model))
    if trainer.is_fsdp_enabled:  # every process takes part in gathering the sharded adapter
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
        staged = gathered_staging(out)  # save_model writes in place: a kill would leave a file cut short
        trainer.save_model(str(staged))  # the adapter files, written by the main process only
    if main and trainer.is_fsdp_enabled:
        (staged / "training_args.bin").unlink(missing_ok=True)  # a pickle; training.json holds the settings
        publish_staged(staged, out)
        staged.rmdir()
        _check_saved_adapter(cfg, out, bf16, result.training_loss)
    elif main:
        with staged_files(out) as staged:  # a kill while saving leaves no adapter cut short in the output
            model.save_pretrained(staged)  # adapter_model.safetensors + adapter_config.json
    if main and cfg.merge:
        merged = merge_into_base(cfg.model, out)
        with staged_files(out / "merged") as staged:
            merged.save_pretrained(staged)
            tokenizer.save_pretrained(staged)
    if main:
        open_like_new_files(out)
    losses = [{"step": h["step"], "loss": h["loss"]} for h in trainer.state.log_history if "loss" in h]
    summary = {
        "config": asdict(cfg),
        # what the paths named when the run was made (the files may be replaced afterwards)
        "data_sha256": settings["data_sha256"],
        "model_fingerprint": settings["model_fingerprint"],
        "examples": len(encoded),
        "repeated_per_epoch": repeated,  # trained twice in each epoch's last round (repeated_per_epoch)
        # the cultures the rows name (culture-steer checks a lora --target's country against them); [] for rows
        # without a culture (upstream's Finetune files)
        "cultures": row_cultures(rows),
        "skipped_too_long": too_long,
        "answer_tokens": sum(sum(1 for x in e["labels"] if x != -100) for e in encoded),
        "tokens": sum(len(e["input_ids"]) for e in encoded),
        "chat_template": chat,
        "bf16": bf16,
        "gradient_checkpointing": checkpointing,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "train_loss": result.training_loss,
        "steps": trainer.state.global_step,
        "world_size": trainer.args.world_size,
        "global_batch": global_batch(cfg.batch_size, cfg.grad_accum, trainer.args.world_size),
        "parallelism": shared_as,  # accelerate's distributed type: FSDP only where it sharded the model
        "seconds": None if seconds is None else round(seconds, 2),  # every session's, up to its checkpoint
        "losses": losses,
        "lm_eval": adapter_command(cfg.model, rows, out, chat, data_root),
        "environment": provenance.environment(str(trainer.args.device)),
    }
    if not main:
        return summary
    write_text_atomic(out / "training.json", json.dumps(summary, indent=1))
    if not cfg.keep_checkpoints:
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    return summary
