"""Command lines built from config dataclasses, with a ``--config`` YAML file underneath the flags.

transformers' ``HfArgumentParser`` makes one flag per dataclass field (``--virtual_tokens`` and
``--virtual-tokens``, help text from ``field(metadata={"help": ...})``); as in trl's ``TrlParser``,
``--config`` is read first and its values become the parser's defaults, so flags override them
(each setting a flag changes is named in an info line; a second ``--config`` is an error).
``ConfigParser.given`` tells which settings were typed or in the file, whatever their values (a flag
typed with its default value is given): checks of a setting given twice, or to no effect, use it.
On top of that this module makes both sources strict: a YAML key that names no setting is an error
listing the valid ones, booleans are only true/false/yes/no/1/0 (or real YAML booleans), and every
bad value is one line naming the file or flag, raised as :class:`ConfigError` instead of exiting.

Field metadata beyond ``help``/``aliases``: ``type`` (and ``nargs``) replace the parser's own
conversion, e.g. ``--target 95,25,60,80,36,52`` read as one comma-separated argument.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import re
import types
import typing
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from culture_tasks.metadata import as_bool, with_hints

DTYPES = ("float32", "float16", "bfloat16", "auto")
# the half-precision dtypes, as flags and lm-eval's result files spell them: scores carry their rounding
HALF_PRECISION = ("bfloat16", "float16", "half", "bf16", "fp16")
_OWN_METADATA = ("type", "nargs")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and each flag's default (where it has one to show)."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action, argparse._StoreFalseAction):
            return action.help  # "None" says nothing; the help text tells what an unset value means
        return super()._get_help_string(action)


class ConfigError(ValueError):
    """A bad flag, config file or setting; the message is one line that names it."""


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names one key twice: plain YAML would keep the last value without a word."""


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (``overwrite: false`` and
    later ``overwrite: true``), naming the key and both lines; merged (``<<``) keys may be overridden."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise DuplicateKeyError(f"key {key!r} is given twice (lines {seen[key]} and {line}); "
                                                "keep one")
                except TypeError:  # an unhashable key: SafeLoader's own error follows
                    continue
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


# PyYAML reads YAML 1.1. There a number needs a dot and a signed exponent to be a float: 1e-3 and 1.0e3 are
# strings (an `extra: {adam_epsilon: 1e-8}` reached TrainingArguments as '1e-8'). And 010 is octal 8, 0x1f is
# 31, 0b11 is 3, 1:00 (1:30.5) is sexagesimal 60 (90.5), where the flag reads 10 or refuses the value (`seed:
# 010` searched with seed 8 without a word). Here numbers are read as in YAML 1.2 and JSON: integers are
# decimal, 1e-3 is a float, and the other forms are text, which a number setting refuses (a quoted '1e-3'
# stays text)
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in UniqueKeyLoader.yaml_implicit_resolvers.items()}
UniqueKeyLoader.add_implicit_resolver(_FLOAT, re.compile(r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X), list("-+0123456789."))
UniqueKeyLoader.add_implicit_resolver(_INT, re.compile(r"^[-+]?[0-9]+(?:_[0-9]+)*$"), list("-+0123456789"))


def _decimal_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    try:
        return int(text)  # Python's int, as the flag reads it: decimal, 1_000 allowed
    except ValueError:  # an explicit `!!int 0x1f`
        raise yaml.constructor.ConstructorError(None, None, f"{text!r} is not a decimal integer",
                                                node.start_mark) from None


UniqueKeyLoader.add_constructor(_INT, _decimal_int)


def _as_written(value, raw):
    """A text setting's YAML scalar as the file writes it (``NO``, ``0.10``, ``1e5``, ``2024-01-01``),
    not the bool, number or date YAML reads it as; ``raw`` is the same value read with every scalar as text."""
    if isinstance(value, list) and isinstance(raw, list) and len(raw) == len(value):
        return [_as_written(v, r) for v, r in zip(value, raw)]
    if value is not None and not isinstance(value, (str, list, dict)) and isinstance(raw, str):
        return raw
    return value


def _unique_pairs(pairs: list) -> dict:
    """``json.loads`` hook: a key given twice is an error, not the last value silently."""
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} is given twice")
        out[key] = value
    return out


def parse_bool(text) -> bool:
    """Strict boolean for argparse and --config: metadata.as_bool, as argparse's error."""
    try:
        return as_bool(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_mapping(text) -> dict:
    """A JSON object given on the command line (a YAML mapping arrives as a dict already)."""
    if isinstance(text, dict):
        for key in text:  # YAML keys may be numbers or null; JSON's are always strings
            if not isinstance(key, str):
                raise argparse.ArgumentTypeError(f"expected a mapping of names, got the key {key!r} "
                                                 f"({type(key).__name__})")
        return text
    if not isinstance(text, str):
        raise argparse.ArgumentTypeError(f"expected a JSON object (a mapping), got {text!r}")
    try:
        value = json.loads(text, object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({err.msg})") from None
    except ValueError as err:  # a duplicate key
        raise argparse.ArgumentTypeError(f"{err} in {text!r}; keep one") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def parse_floats(text) -> list[float]:
    """``95,25,60`` (one argument) or a YAML list of numbers."""
    items = text.split(",") if isinstance(text, str) else text
    if isinstance(items, list) and any(isinstance(x, bool) for x in items):  # a YAML yes is no score of 1
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    try:
        return [float(x) for x in items]
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def configure_logging() -> None:
    """The commands' log lines on standard error: every one on the main process, warnings and errors only on the
    other processes of a torchrun / accelerate launch, which run the same steps (their info lines, lm-eval's and
    transformers' included, would be printed once per process)."""
    from culture_tasks.outputs import OutputError, main_process

    try:
        main = main_process()
    except OutputError:  # a malformed RANK: every line shown, and the command's first reading of it stops the run
        main = True
    handler = logging.StreamHandler()
    handler.setLevel(logging.INFO if main else logging.WARNING)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", handlers=[handler])


def check_dtype(dtype: str, flag: str = "--dtype") -> None:
    if dtype not in DTYPES:
        raise ValueError(f"{flag} must be one of {', '.join(DTYPES)}, got {dtype!r}")


# measured on SmolLM2-135M-Instruct, 4 soft prompts on VSM13 (docs/bench_h200.md): in float32 the L1 of
# the same prompts differs by < 0.001 between batch sizes 64 and 7, in bfloat16 by up to 9.8
HALF_PRECISION_NOTE = ("{flag} {dtype}: scores carry half-precision rounding (SmolLM2: VSM13 L1 differs by "
                       "up to ~10 points between batch sizes, < 0.001 in float32); report float32 numbers")


def warn_half_precision(dtype: str, flag: str = "--dtype") -> None:
    """Survey scores amplify rounding (an index is 25-35 x a difference of answer means): say so in half precision,
    naming the command's own ``flag``."""
    if dtype in HALF_PRECISION:
        logging.getLogger("culture_tasks").warning(HALF_PRECISION_NOTE.format(flag=flag, dtype=dtype))


def check_device(device: str, flag: str = "--device") -> None:
    """A device this machine has, named as lm-eval's HFLM takes it (cpu, cuda, cuda:<index>, mps): HFLM
    puts the model on cuda, or the cpu, instead of any other name without a word (``gpu``, ``CPU``,
    ``cuda:1`` with one GPU), while the run records the name given. Checked before a model is loaded."""
    device = str(device)
    check_launch_device(device, flag)
    if device == "cpu":
        return
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{flag} {device}: CUDA is not available on this machine; use cpu")
    valid = ["cpu"]
    if torch.cuda.is_available():
        valid += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        valid += ["mps", "mps:0"]
    if device not in valid:
        raise ValueError(f"{flag} {device}: not a device here; use "
                         f"{', '.join(valid[:-1]) + ' or ' if len(valid) > 1 else ''}{valid[-1]}")


def check_launch_device(device: str, flag: str = "--device") -> None:
    """Under torchrun / accelerate launch with several processes on a machine with GPUs, HFLM places each
    process's model on that process's GPU (accelerate's device, ``cuda:<local rank>``) whatever it was given, so
    there only ``cuda`` names where the run computes (``cpu``, the aligner's default, would be recorded for a search
    on the GPUs)."""
    from culture_tasks.outputs import launched_world_size

    if device == "cuda" or launched_world_size() <= 1:
        return
    import torch

    if torch.cuda.is_available():
        raise ValueError(f"{flag} {device}: under torchrun / accelerate launch on a machine with GPUs, lm-eval's model "
                         f"wrapper puts each process's model on its own GPU whatever {flag} says, so the run would "
                         f"record {device} for work done on cuda:<local rank>; pass {flag} cuda, or hide the GPUs "
                         "(CUDA_VISIBLE_DEVICES=) to run on the CPU")


def check_finite(values, flag: str) -> None:
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{flag} must be finite numbers, got {bad}")


class _FlagsReplaceDefault:
    """A list flag whose first use on the command line replaces the default (the field's or the
    ``--config`` file's list), since flags override the config; repeated flags still add up."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) is self.default:  # still the default: drop it
            setattr(namespace, self.dest, [])
        super().__call__(parser, namespace, values, option_string)


class ExtendAction(_FlagsReplaceDefault, argparse._ExtendAction):
    """``action="extend"``; argparse's own would add the flags' values to the config's list."""


class AppendAction(_FlagsReplaceDefault, argparse._AppendAction):
    """``action="append"``, by the same rule."""


def _is_union(tp) -> bool:
    return typing.get_origin(tp) is typing.Union or isinstance(tp, types.UnionType)


def _is_bool(tp) -> bool:
    return tp is bool or (_is_union(tp) and set(typing.get_args(tp)) == {bool, type(None)})


@dataclasses.dataclass(frozen=True)
class Given:
    """Where a setting was given: on the command line (``config_file`` None) or in the --config file.
    A flag typed with its default value is given all the same (the parser's defaults hide that)."""

    name: str
    config_file: str | None = None

    @property
    def on_command_line(self) -> bool:
        return self.config_file is None

    def __str__(self) -> str:
        return f"--{self.name.replace('_', '-')}" if self.on_command_line else f"{self.name} in {self.config_file}"


class ConfigParser(HfArgumentParser):
    """``HfArgumentParser`` with strict booleans, JSON mappings, field-level ``type`` and errors
    raised as :class:`ConfigError` (``main`` turns them into one line and exit status 2)."""

    def __init__(self, dataclass_types, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        self._fields: dict[str, tuple[dataclasses.Field, object]] = {}
        self.config_file: str | None = None  # the --config file of the last parse: an input of the run
        # field name -> where the last parse took it from; a setting left to its default is absent
        self.given: dict[str, Given] = {}
        super().__init__(dataclass_types, **kwargs)
        self.add_argument("--config", help="YAML file of settings (same names as the flags); flags override it")

    def _add_dataclass_arguments(self, dtype):
        self.register("action", "extend", ExtendAction)  # flags replace the --config list, see ExtendAction
        self.register("action", "append", AppendAction)
        hints = typing.get_type_hints(dtype)
        for f in dataclasses.fields(dtype):
            if f.init:
                self._fields[f.name] = (f, hints[f.name])
        super()._add_dataclass_arguments(dtype)

    @staticmethod
    def _parse_dataclass_field(parser, field):
        own = {k: field.metadata[k] for k in _OWN_METADATA if k in field.metadata}
        tp = field.type
        stripped = dataclasses.field(default=field.default, default_factory=field.default_factory,
                                     metadata={k: v for k, v in field.metadata.items() if k not in own})
        stripped.name, stripped.type = field.name, tp
        before = len(parser._actions)
        HfArgumentParser._parse_dataclass_field(parser, stripped)
        for action in parser._actions[before:]:
            if isinstance(action, argparse._StoreFalseAction) and action.dest == field.name:
                action.help = f"the opposite of --{field.name}: sets it to false"
                continue  # the parser copies the positive flag's help, which says the opposite
            if action.dest != field.name:
                continue
            if action.default is None and field.default is not dataclasses.MISSING:
                action.default = field.default  # the parser drops a list field's non-list default ("all-linear")
            if "type" in own:
                action.type, action.nargs = own["type"], own.get("nargs")
            elif _is_bool(tp):
                action.type = parse_bool
                if action.nargs is None:  # HfArgumentParser wants a value for `bool | None = None` only
                    action.nargs, action.const = "?", True  # a bare flag means true, as for every bool
            elif typing.get_origin(tp) is dict or tp is dict:
                action.type = parse_mapping

    def error(self, message):
        if message.startswith("the following arguments are required"):
            message += " (give them as flags or in the --config file)"
        raise ConfigError(message)

    # --- the YAML layer -------------------------------------------------------------------------

    def _yaml_keys(self) -> dict[str, argparse.Action]:
        """Every name a YAML key may use: the field name and the flags' spellings (``country``)."""
        keys = {}
        for action in self._actions:
            if action.dest not in self._fields or isinstance(action, argparse._StoreFalseAction):
                continue
            keys[action.dest] = action
            for option in action.option_strings:
                keys[option.lstrip("-").replace("-", "_")] = action
        return keys

    def _negated_keys(self) -> dict[str, str]:
        """The ``--no-<setting>`` flags as YAML keys would spell them (``no_baselines``) -> the setting."""
        return {option.lstrip("-").replace("-", "_"): action.dest for action in self._actions
                if isinstance(action, argparse._StoreFalseAction) and action.dest in self._fields
                for option in action.option_strings}

    @staticmethod
    def _convert(where: str, item, convert):
        """One YAML value through the flag's own conversion: strings are read as on the command
        line, numbers must fit the field, and nothing else passes."""
        if convert is None:
            return item
        if isinstance(item, str) or convert in (parse_floats, parse_mapping):
            try:
                return convert(item)
            except (argparse.ArgumentTypeError, TypeError, ValueError) as err:
                raise ConfigError(f"{where}: {err}") from None
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            if convert is str:
                return str(item)
            if convert is float:
                return float(item)
            if convert is int and isinstance(item, int):
                return item
        raise ConfigError(f"{where}: expected {getattr(convert, '__name__', 'a value')}, got {item!r}")

    def _coerce(self, path: Path, key: str, value, action: argparse.Action, raw=None):
        field, tp = self._fields[action.dest]
        where = f"{path}: {key}"
        if action.type is str and "type" not in field.metadata:
            value = _as_written(value, raw)
        if value is None:
            if field.default is None or (_is_union(tp) and type(None) in typing.get_args(tp)):
                return None
            raise ConfigError(f"{where}: needs a value, got null")
        if _is_bool(tp):
            try:
                return parse_bool(value)
            except argparse.ArgumentTypeError as err:
                raise ConfigError(f"{where}: {err}") from None
        # a list setting takes a list, and a single value as a list of one, as its flag does (`runs: a.json` was
        # a string, read as files 'a', '.', ...); a field's own type reads a whole list itself
        many = action.nargs in ("+", "*") and "type" not in field.metadata
        if isinstance(value, list) and not many and "type" not in field.metadata:
            raise ConfigError(f"{where}: expected a single value, got a list")
        if many:
            items = [self._convert(where, v, action.type) for v in (value if isinstance(value, list) else [value])]
        else:
            items = [self._convert(where, value, action.type)]
        for item in items:
            if action.choices is not None and item not in action.choices:
                raise ConfigError(f"{where}: {item!r} is not one of {list(action.choices)}")
        return items if many else items[0]

    def read_yaml(self, path: str) -> dict:
        """The file's settings by field name, converted and checked as the flags would be."""
        file = Path(path)
        if file.is_dir():
            raise ConfigError(f"--config: {file} is a folder; name the YAML file")
        if not file.is_file():
            raise ConfigError(f"--config: file {file} does not exist")
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(f"{file}: not UTF-8 text (byte {err.object[err.start]:#04x} at position {err.start}); "
                              "save the file as UTF-8") from None
        try:
            loaded = yaml.load(text, Loader=UniqueKeyLoader)
        except DuplicateKeyError as err:
            raise ConfigError(f"{file}: {err}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{file}: not valid YAML ({' '.join(str(err).split())})") from None
        loaded = loaded or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: expected a mapping of settings, got {type(loaded).__name__}")
        keys = self._yaml_keys()
        unknown = sorted(str(k) for k in loaded if str(k) not in keys)
        negated = self._negated_keys()
        for key in unknown:  # `no_baselines: true`: the flag --no-baselines spelt as a key
            if key in negated:
                raise ConfigError(f"{file}: {key} is not a setting (--{key.replace('_', '-')} is the flag that sets "
                                  f"{negated[key]} to false); write {negated[key]}: false")
        if unknown:
            raise ConfigError(f"{file}: unknown setting(s) {with_hints(unknown, self._fields)}; valid settings: "
                              f"{sorted(self._fields)}")
        try:  # every scalar as text: what a text setting holds
            raw = yaml.load(text, Loader=yaml.BaseLoader)
        except yaml.YAMLError:  # an explicit tag (!!float 1): then the values as read
            raw = None
        raw = raw if isinstance(raw, dict) else {}
        values: dict = {}
        for key, value in loaded.items():
            action = keys[str(key)]
            if action.dest in values:
                raise ConfigError(f"{file}: {action.dest} is given twice (as {key!r} and another spelling)")
            values[action.dest] = self._coerce(file, str(key), value, action, raw.get(str(key)))
        return values

    def parse(self, argv: list[str] | None) -> tuple:
        """Dataclass instances from ``--config`` (defaults) and ``argv`` (overrides)."""
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--config", action="append")
        known, _ = pre.parse_known_args(argv)
        if known.config and len(known.config) > 1:  # argparse would read the last one only
            raise ConfigError(f"--config is given twice ({', '.join(known.config)}); give one file (flags "
                              "override its settings)")
        self.config_file = known.config[0] if known.config else None
        values: dict = {}
        if self.config_file:
            values = self.read_yaml(self.config_file)
            self.set_defaults(**values)
            for action in self._actions:
                if action.dest in values:
                    action.required = False
        namespace = self.parse_args(argv)
        self.given = {name: Given(name, self.config_file) for name in values}
        self.given.update((name, Given(name)) for name in self._typed(argv))
        for name, value in values.items():
            if getattr(namespace, name) != value:
                logging.getLogger("culture_tasks").info("--config %s: %s %r is replaced by the command line's %r",
                                                        self.config_file, name, value, getattr(namespace, name))
        outputs = []
        for dtype in self.dataclass_types:
            names = [f.name for f in dataclasses.fields(dtype) if f.init]
            outputs.append(dtype(**{k: getattr(namespace, k) for k in names}))
        return tuple(outputs)

    def _typed(self, argv: list[str] | None) -> set[str]:
        """The fields whose flags ``argv`` names, whatever their values: ``argv`` parsed again with every
        default (the fields' and the --config file's) suppressed, so that only typed flags set a value."""
        defaults, saved = dict(self._defaults), [(action, action.default) for action in self._actions]
        try:
            self._defaults.clear()
            for action in self._actions:
                action.default = argparse.SUPPRESS
            namespace = self.parse_args(argv)
        finally:
            self._defaults.update(defaults)
            for action, default in saved:
                action.default = default
        return set(vars(namespace)) & set(self._fields)


def flags_of(parser: ConfigParser) -> dict[str, list[str]]:
    """Field name -> the flags that set it (for documentation and tests)."""
    out: dict[str, list[str]] = {}
    for action in parser._actions:
        if action.dest in parser._fields:
            out.setdefault(action.dest, []).extend(action.option_strings)
    return out
