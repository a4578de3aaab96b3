"""The ``--metadata`` keys a task accepts: unknown keys are errors, booleans parse strictly.

lm-eval hands a task's dataset loader its metadata: the task YAML's ``version``, what lm-eval
itself adds (``config_source``), the user's ``--metadata`` and - from the ``lm_eval`` command
line - every ``--model_args`` key (``self.metadata = self.model_args | self.metadata`` in
lm-eval 0.4.13's ``evaluate_config.py``). So a key is accepted if the task reads it, lm-eval
adds it, or it is a constructor argument of one of lm-eval's registered models (found by
reading their source, so that no optional backend such as vLLM is imported; ``hf-prompt``'s too) or of
``transformers``' ``from_pretrained`` (``HFLM`` passes unknown model args on to it) or, when
vLLM is installed, a field of its ``EngineArgs`` (lm-eval's ``VLLM`` passes them on). Anything
else - ``datadir`` for ``data_dir`` - stops the run with the list of valid keys. A key that is one of the task
YAML's own settings (``persona``) stops it with the task to use instead (``check_task_settings``, which the
tasks' class ``culture_tasks.task.CultureTask`` calls before lm-eval calls the loader with both).
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

LM_EVAL_KEYS = frozenset({"version", "config_source", "config", "_metadata"})
# The --metadata keys each family of this project's tasks reads. One run's metadata goes to every
# task of the run, so a key that another family reads (``target`` in a run of wvs_* and vsm13_*)
# is accepted everywhere, with one warning per family that ignores it; a key no task reads is an error.
TASK_KEYS: dict[str, tuple[str, ...]] = {
    "culturellm": ("data_dir",),
    "wvs": ("data_dir", "questions"),
    "vsm13": ("data_dir", "target", "target_source", "target_country", "constants", "answer_mode"),
}
PROJECT_KEYS = frozenset(k for keys in TASK_KEYS.values() for k in keys)
# this project's model (``--model hf-prompt``), read like lm-eval's own
PROJECT_MODEL = "culture_tasks.hf_prompt:HFPromptLM"


class MetadataError(ValueError):
    """A ``--metadata`` key or value the task cannot use."""


def _module_tree(module: str) -> ast.Module | None:
    spec = importlib.util.find_spec(module.split(".")[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *module.split(".")[1:]).with_suffix(".py")
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return None


def _init_args(cls: ast.ClassDef) -> set[str]:
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            args = node.args
            return {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]} - {"self"}
    return set()


@functools.cache
def model_arg_names() -> frozenset[str]:
    """Constructor argument names of every model lm-eval registers and of this project's ``hf-prompt``
    (and of their base classes)."""
    from lm_eval.models import MODEL_MAPPING

    classes: dict[str, ast.ClassDef] = {}
    wanted = set()
    for target in [*MODEL_MAPPING.values(), PROJECT_MODEL]:
        module, name = target.split(":")
        tree = _module_tree(module)
        if tree is None:
            continue
        classes.update({n.name: n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)})
        wanted.add(name)
    names: set[str] = set()
    seen: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name in seen or name not in classes:
            continue
        seen.add(name)
        names |= _init_args(classes[name])
        wanted |= {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in classes[name].bases}
    return frozenset(names | from_pretrained_names() | _class_fields("vllm.engine.arg_utils", "EngineArgs"))


def _class_fields(module: str, name: str) -> set[str]:
    """Annotated fields of a (data)class, read from source; empty when the package is absent."""
    tree = _module_tree(module)
    if tree is None:
        return set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == name:
            return {n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    return set()


@functools.cache
def from_pretrained_names() -> frozenset[str]:
    """Arguments ``PreTrainedModel.from_pretrained`` takes by name or reads from its ``**kwargs``."""
    tree = _module_tree("transformers.modeling_utils")
    if tree is None:
        return frozenset()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "from_pretrained":
            names |= {a.arg for a in [*node.args.args, *node.args.kwonlyargs]} - {"cls", "self"}
            for call in ast.walk(node):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and call.func.attr in ("pop", "get") and isinstance(call.func.value, ast.Name)
                        and call.func.value.id == "kwargs" and call.args
                        and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)):
                    names.add(call.args[0].value)
    return frozenset(n for n in names if not n.startswith("_") and not n.isupper())


def with_hints(unknown: Iterable, known: Iterable[str]) -> str:
    """``'pdx' (did you mean 'pdi'?), 'zzz'``: each unknown name with the nearest known one, if any is
    close; the one wording of every unknown-key error of the project."""
    by_case = {str(k).lower(): k for k in sorted(set(known), reverse=True)}  # 'F' finds 'f'

    def hint(name) -> str:
        found = difflib.get_close_matches(str(name).lower(), by_case, n=1)
        return f"{name!r} (did you mean {by_case[found[0]]!r}?)" if found else repr(name)

    return ", ".join(hint(k) for k in unknown)


def check_keys(task: str, given: Mapping, own: Iterable[str]) -> None:
    """Raise for any key that no task of this project reads and that is neither lm-eval's nor a
    model argument; the message lists ``own``, the keys this task reads."""
    own = sorted(set(own))
    known = PROJECT_KEYS | set(own) | LM_EVAL_KEYS
    unknown = sorted(k for k in given if k not in known and k not in model_arg_names())
    if not unknown:
        _say_ignored(given, own)
        return
    others = sorted(PROJECT_KEYS - set(own))
    raise MetadataError(
        f"{task}: unknown --metadata key(s) {with_hints(unknown, PROJECT_KEYS | set(own))}; this task reads {own}"
        + (f", other tasks of this project read {others}" if others else "")
        + " (lm-eval's own keys and its models' --model_args are accepted too)"
    )


# The settings a task YAML gives its loader (its dataset_kwargs), each with what to do instead of giving it in
# --metadata ({family}: the task's family, wvs or vsm13): lm-eval passes both to the loader, which stops with a
# bare "got multiple values for keyword argument" TypeError.
_MANIFEST_FIX = ("it comes from culture_tasks/culturellm/manifest.yaml: change it there and re-run "
                 "culture_tasks/culturellm/_generate_configs.py")
TASK_SETTINGS: dict[str, str] = {
    "persona": "use {family}_<country>_persona to ask as a typical person of that country, {family}_<country> to "
               "ask without a persona",
    "reversed_options": "use {family}_<country>_reversed to list the options in reverse",
    "both_orders": "use vsm13_<country>_balanced to ask every item in both option orders",
    "wvs_country": "use wvs_<country> of the country wanted",
    "wvs_csv": "use wvs_<country> of the country wanted",
    "vsm13_country": "use vsm13_<country> of the country wanted, or --metadata target (and target_country) to score "
                     "another country's profile",
    **dict.fromkeys(("task_name", "file", "text_field", "labels", "instruction", "drop_labels", "max_text_chars"),
                    _MANIFEST_FIX),
}


def check_task_settings(task: str, metadata: Mapping, settings: Mapping) -> None:
    """Raise for a ``--metadata`` key that is one of the task's own settings (its YAML's dataset_kwargs), naming
    why and what to use instead, before lm-eval hands both to the loader."""
    given = [key for key in settings if key in metadata]
    if not given:
        return
    family = task.split("_")[0]
    fixes = "; ".join(f"--metadata {key} is fixed by the task: "
                      + TASK_SETTINGS.get(key, "it is the task YAML's setting").format(family=family) for key in given)
    raise MetadataError(f"{task}: {fixes}; drop {', '.join(given)} from --metadata")


_SAID_IGNORED: set[tuple[str, str]] = set()


def _say_ignored(given: Mapping, own: list[str]) -> None:
    """A key that only another family of tasks reads is accepted (one run's metadata reaches every task), but
    these tasks do not use it: say so once per family and key, so that `questions` given to a run of
    vsm13_* alone is not taken for a subset of its items."""
    family = next((f for f, keys in TASK_KEYS.items() if sorted(set(keys)) == own), None)
    for key in sorted(k for k in given if k in PROJECT_KEYS and k not in own):
        if family is None or (family, key) in _SAID_IGNORED:
            continue
        _SAID_IGNORED.add((family, key))
        readers = [f for f, keys in TASK_KEYS.items() if key in keys]
        logging.getLogger(__name__).warning("--metadata %s is read by the %s tasks only: the %s tasks of this run "
                                            "ignore it", key, " and ".join(readers), family)


BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def as_bool(value) -> bool:
    """The project's one strict boolean: a real bool, one of BOOL_WORDS in any case, or YAML's unquoted 1 / 0;
    anything else (``"flase"``, ``None``, ``2``, ``"False "`` with a space: a word padded by a slip of quoting
    is not taken for what it might have meant) is a ValueError, never Python's truthiness."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in BOOL_WORDS:
        return BOOL_WORDS[value.lower()]
    if type(value) is int and value in (0, 1):
        return bool(value)
    raise ValueError(f"expected true/false/yes/no/1/0, got {value!r}")


def parse_bool(name: str, value) -> bool:
    """A boolean task setting (--metadata, a task YAML): as_bool, its error naming the setting."""
    try:
        return as_bool(value)
    except ValueError:
        raise MetadataError(f"{name} must be true or false (or yes/no/1/0), got {value!r}") from None


def check_bool_fields(config) -> None:
    """A settings dataclass built in Python gets no command-line parsing: refuse a non-bool in a boolean field
    (``overwrite="no"`` would read as true), naming the field. Call it first in ``__post_init__``."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, kinds = getattr(config, f.name), set(typing.get_args(hints[f.name])) or {hints[f.name]}
        if bool in kinds and kinds <= {bool, type(None)} and not isinstance(value, bool) \
                and not (value is None and type(None) in kinds):
            raise ValueError(f"{f.name} must be true or false, got {value!r}")
