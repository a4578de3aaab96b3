"""Every command line that README.md and docs/ show parses with the parser of the command it runs.

A renamed flag, step or task leaves the documentation wrong with nothing failing. Each command line of a
shell block is read as the shell would read it (continuations joined, comments dropped, variables,
``$(...)`` and ``<...>`` replaced by a placeholder; nothing is run) and handed to the parser of the console
script or module it names, without running the job; ``lm_eval`` and ``culture-eval`` lines go through
lm-eval's own parser, and every ``--tasks`` name must be a task or group of the tasks folder.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import re
import shlex
import sys
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

from culture_tasks.cli_args import ConfigParser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_BLOCKS = {"bash", "sh", "shell", "console", "zsh"}
PLACEHOLDER = "placeholder"
OUR_PACKAGES = ("aligners.", "trainers.", "culture_tasks.")
LAUNCHERS = {"python", "python3", "srun", "accelerate", "torchrun"}  # a command of ours may follow them
SHELL_KEYWORDS = {"do", "then", "else", "time", "!"}

# console script -> its module, from pyproject.toml; lm-eval's own command is a module of its own
SCRIPTS = {name: target.split(":")[0] for name, target in
           tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"].items()}
SCRIPTS.update({"lm_eval": "lm_eval", "lm-eval": "lm_eval"})
NAMES = {module: name for name, module in reversed(SCRIPTS.items())}  # module -> the name counted below

# Hand-counted commands per script in README.md and docs/ (at least: new docs may add more), so that a
# broken extraction cannot pass by finding nothing.
MINIMUM = {"lm_eval": 19, "culture-train": 34, "culture-align": 11, "culture-leaderboard": 4, "culture-model": 4,
           "culture_tasks.sampling": 3, "culture-tasks-path": 2, "culture-eval": 1, "culture-steer": 1}

# Illustrations, not commands: (file, text the line holds) -> why it cannot parse.
NOT_COMMANDS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Command:
    """One documented command line: where it is, as written, and what it runs."""

    file: str
    line: int
    text: str
    module: str
    argv: tuple[str, ...]
    as_module: bool  # run with ``-m``, not by its console script

    @property
    def name(self) -> str:
        return NAMES.get(self.module, self.module)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {' '.join(self.text.split())}"


# --------------------------------------------------------------------------- reading the docs


def fenced_blocks(path: Path) -> Iterator[tuple[str, int, list[str]]]:
    """(language, line number of the block's first line, its lines) of every fenced code block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    fence = None
    for number, line in enumerate(lines, 1):
        match = re.match(r"\s*(`{3,}|~{3,})\s*(\S*)", line)
        if fence is None and match:
            fence, language, start, body = match.group(1), match.group(2).lower(), number + 1, []
        elif fence is not None and line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            yield language, start, body
            fence = None
        elif fence is not None:
            body.append(line)
    if fence is not None:  # a block left open runs to the end of the file
        yield language, start, body


def without_comment(line: str) -> str:
    """The line up to a ``#`` that starts a shell comment (outside quotes, at a word's start)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def logical_lines(body: list[str], start: int) -> Iterator[tuple[int, str]]:
    """(line number, text) of each command line: comments dropped, backslash continuations joined as
    the shell joins them (the backslash and newline removed, nothing added), a ``$ `` prompt removed."""
    text, first = "", None
    for number, line in enumerate(body, start):
        line = without_comment(line).rstrip()
        first = number if first is None else first
        if line.endswith("\\"):
            text += line[:-1]
            continue
        text += line
        if text.strip():
            yield first, re.sub(r"^\s*\$ ", "", text)
        text, first = "", None


def closing_paren(text: str, start: int) -> int:
    """The index of the ``)`` that closes the ``(`` at ``start``."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    raise ValueError(f"unbalanced parentheses in {text!r}")


def substituted(text: str) -> tuple[str, list[str]]:
    """The line with every ``$(( ))``, ``$( )``, variable and ``<placeholder>`` replaced by a placeholder
    value, and the command lines inside the ``$( )`` (themselves documented commands)."""
    inner = []
    while (start := text.find("$(")) >= 0:
        end = closing_paren(text, start + 1)
        body = text[start + 2:end]
        if body.startswith("(") and body.endswith(")"):
            value = "1"  # arithmetic
        else:
            value = PLACEHOLDER
            inner.append(body)
        text = text[:start] + value + text[end + 1:]
    text = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", PLACEHOLDER, text)
    return re.sub(r"<[^<>]+>", PLACEHOLDER, text), inner


def simple_commands(text: str) -> Iterator[list[str]]:
    """The words of each simple command of a line (split at ``;``, ``&&``, ``||`` and ``|``)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    words: list[str] = []
    for token in lexer:
        if token and set(token) <= set(";&|"):
            yield words
            words = []
        else:
            words.append(token)
    yield words


def entry_point(words: list[str]) -> tuple[str, list[str], bool] | None:
    """The module a command runs, its arguments and whether it is run with ``-m``: a console script of ours
    or ``lm_eval``, or the ``-m`` module of python or a launcher (srun, accelerate launch, torchrun, python -m
    torch.distributed.run) that is ``lm_eval`` or one of ours; None for any other command."""
    while words and (words[0] in SHELL_KEYWORDS or re.match(r"[A-Za-z_][A-Za-z0-9_]*=", words[0])):
        words = words[1:]
    if not words:
        return None
    if words[0] in SCRIPTS:
        return SCRIPTS[words[0]], words[1:], False
    if words[0] not in LAUNCHERS:
        return None
    for i, word in enumerate(words[1:], 1):
        if word in SCRIPTS:
            return SCRIPTS[word], words[i + 1:], False
        module = words[i + 1] if word == "-m" and i + 1 < len(words) else ""
        if module == "lm_eval" or module.startswith(OUR_PACKAGES):
            return module, words[i + 2:], True
    return None


def commands_of_line(file: str, number: int, text: str) -> Iterator[Command]:
    """The commands of ours on one command line, the ones inside its ``$( )`` included."""
    line, inner = substituted(text)
    for body in inner:
        yield from commands_of_line(file, number, body)
    for words in simple_commands(line):
        found = entry_point(words)
        if found:
            yield Command(file, number, text, found[0], tuple(found[1]), found[2])


def documented_commands() -> list[Command]:
    """Every command of ours in a shell block of README.md and docs/**/*.md."""
    found = []
    for path in DOCS:
        for language, start, body in fenced_blocks(path):
            if language in SHELL_BLOCKS:
                for number, text in logical_lines(body, start):
                    found.extend(commands_of_line(str(path.relative_to(ROOT)), number, text))
    return found


COMMANDS = documented_commands()


# --------------------------------------------------------------------------- parsing them


@cache
def task_names() -> frozenset[str]:
    """The tasks and groups of the tasks folder, as lm-eval's task manager indexes them."""
    from culture_tasks.paths import task_manager

    return frozenset(task_manager().all_tasks)


def parse_lm_eval(argv: list[str], monkeypatch) -> None:
    """lm-eval's own command line and its checks of the settings (``EvaluatorConfig.from_cli``, what
    ``lm_eval`` does before loading anything); then the model must be registered and every task ours."""
    from lm_eval._cli import HarnessCLI
    from lm_eval.api.registry import MODEL_REGISTRY
    from lm_eval.config.evaluate_config import EvaluatorConfig

    import culture_tasks.hf_prompt  # noqa: F401  (lm-eval's models and culture-eval's hf-prompt registered)

    monkeypatch.setattr(sys, "argv", ["lm_eval", *argv])  # HarnessCLI reads sys.argv, as lm_eval does
    args = HarnessCLI().parse_args()
    config = EvaluatorConfig.from_cli(args)
    if (config.model or "hf") not in MODEL_REGISTRY:
        raise ValueError(f"--model {config.model}: no such lm-eval model")
    unknown = [t for t in config.tasks if t not in task_names()]
    if unknown:
        raise ValueError(f"--tasks: {', '.join(unknown)}: not a task or group of the tasks folder")
    if not config.include_path:
        raise ValueError("--tasks names this project's tasks: give --include_path")


def parsers() -> dict[str, Callable[[list[str]], object]]:
    """Module -> its command line parsed and checked as the command would before it runs, raising on an error."""
    from aligners.cli import parse_args as align_args
    from culture_tasks import leaderboard, models, paths, sampling
    from culture_tasks.steering import parse_args as steer_args
    from trainers.cli import parse_step, split_step

    return {
        "aligners.cli": align_args,
        "trainers.cli": lambda argv: parse_step(*split_step(argv)),
        "culture_tasks.steering": steer_args,
        "culture_tasks.leaderboard": lambda argv: leaderboard.parser().parse_args(argv),
        "culture_tasks.models": lambda argv: models.parser().parse_args(argv),
        "culture_tasks.paths": lambda argv: paths.parser().parse_args(argv),
        "culture_tasks.sampling": lambda argv: sampling.parser().parse(argv),
    }


def on_a_gpu_machine(monkeypatch) -> None:
    """What ``--device cuda`` lines are written for: the device is checked as the settings are read."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)


def configs_stand_in(monkeypatch, folder: Path) -> None:
    """A ``--config`` file the docs name but do not ship (``run.yaml``: the reader's own) read as one
    that holds every required setting."""
    read = ConfigParser.read_yaml

    def read_or_stand_in(self, path):
        if not Path(path).is_file():
            path = folder / "stand_in.yaml"
            path.write_text(yaml.safe_dump({a.dest: PLACEHOLDER for a in self._actions if a.required}))
        return read(self, str(path))

    monkeypatch.setattr(ConfigParser, "read_yaml", read_or_stand_in)


def full_flags_only(monkeypatch) -> None:
    """No abbreviated flags: argparse takes ``--generation`` for ``--generations``, so a documented flag
    that a rename turned into the start of another would still parse."""
    init = argparse.ArgumentParser.__init__
    monkeypatch.setattr(argparse.ArgumentParser, "__init__",
                        lambda self, *args, **kwargs: init(self, *args, **{**kwargs, "allow_abbrev": False}))


@pytest.fixture
def in_checkout(monkeypatch, tmp_path):
    """What the docs assume: the repository as working folder (their paths are relative to it), GPUs, the
    reader's own --config files; and flags spelt in full."""
    monkeypatch.chdir(ROOT)
    on_a_gpu_machine(monkeypatch)
    configs_stand_in(monkeypatch, tmp_path)
    full_flags_only(monkeypatch)
    return monkeypatch


def parse_error(command: Command, monkeypatch) -> str | None:
    """What the command's own parser says is wrong with the line; None if it parses."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            if command.module in ("lm_eval", "culture_tasks.harness"):
                parse_lm_eval(list(command.argv), monkeypatch)
            else:
                parsers()[command.module](list(command.argv))
    except SystemExit as err:  # argparse: usage, then the error, went to stderr
        return (stderr.getvalue().strip().splitlines() or [f"exit status {err.code}"])[-1]
    except Exception as err:  # noqa: BLE001  (whatever the parser raises is the doc's error)
        return f"{type(err).__name__}: {err}"
    return None


def exemption(command: Command) -> tuple[str, str] | None:
    """The key of NOT_COMMANDS that exempts the line, if any."""
    return next((key for key in NOT_COMMANDS if command.file == key[0] and key[1] in command.text), None)


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"{c.file}:{c.line}:{c.name}")
def test_documented_command_parses(command, in_checkout):
    if exemption(command):
        pytest.skip(NOT_COMMANDS[exemption(command)])
    error = parse_error(command, in_checkout)
    assert error is None, f"{command}\n  {command.name}: {error}"


def test_every_command_kind_is_found():
    counts = Counter(c.name for c in COMMANDS)
    short = {name: (counts[name], least) for name, least in MINIMUM.items() if counts[name] < least}
    assert not short, f"fewer documented commands found than counted (found, counted): {short}"


def test_every_module_run_in_the_docs_has_a_parser():
    known = {*parsers(), "lm_eval", "culture_tasks.harness"}
    assert set(SCRIPTS.values()) <= known, "a console script without a parser here"
    strays = [str(c) for c in COMMANDS if c.module not in known]
    assert not strays, "documented modules without a parser here:\n" + "\n".join(strays)


def runs_as_module(module: str) -> bool:
    """Whether ``python -m module`` runs something: a package's ``__main__`` or a module's main guard."""
    spec = importlib.util.find_spec(module)
    if spec.submodule_search_locations:
        return importlib.util.find_spec(f"{module}.__main__") is not None
    return 'if __name__ == "__main__":' in Path(spec.origin).read_text(encoding="utf-8")


def test_modules_run_with_python_m_have_a_main():
    silent = [str(c) for c in COMMANDS if c.as_module and not runs_as_module(c.module)]
    assert not silent, "run with -m, but the module does nothing then:\n" + "\n".join(silent)


def test_every_exemption_is_still_in_the_docs():
    assert {exemption(c) for c in COMMANDS} - {None} == set(NOT_COMMANDS)


def test_commands_sit_in_shell_blocks():
    """A command in a block of another language (or none) would not be checked: the block needs ```bash."""
    misplaced = [f"{path.relative_to(ROOT)}:{start + i}: {line.strip()}"
                 for path in DOCS for language, start, body in fenced_blocks(path) if language not in SHELL_BLOCKS
                 for i, line in enumerate(body) if line.split()[:1] and line.split()[0] in SCRIPTS]
    assert not misplaced, "\n".join(misplaced)
