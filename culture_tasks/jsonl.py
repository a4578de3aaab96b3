"""The one reader of JSON Lines files: every problem is reported as ``file:line`` and a fix.

``read_utf8`` is the one decoding of a data file's bytes, shared with the CSV readers (WVS answers,
Hofstede's scores), so that a byte that is not UTF-8 is named by file and line in every file kind."""

from __future__ import annotations

import json
import os
from pathlib import Path


class JsonlError(ValueError):
    """A JSONL file that cannot be read as one JSON object per line."""


class _DuplicateKey(ValueError):
    """A key given twice in one JSON object, carried out of the decoder to be named with its line."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """``json.loads`` keeps the last of a key given twice (``{"label": "0", "label": "1"}`` reads as label 1)
    without a word: refuse it instead."""
    row = dict(pairs)
    if len(row) < len(pairs):
        keys = [key for key, _ in pairs]
        raise _DuplicateKey(next(key for i, key in enumerate(keys) if key in keys[:i]))
    return row


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)


def read_utf8(path: str | os.PathLike, error: type[ValueError] = ValueError) -> str:
    """The text of a data file, a leading byte-order mark removed. A byte that is not UTF-8 is ``error``
    naming ``file:line`` and the fix: Python's own message names neither the file nor the line, and for a
    file read in chunks gives an offset into the chunk, not into the file."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise error(f"{path}:{line}: invalid UTF-8 at byte offset {err.start} ({err.reason}); "
                    "save the file as UTF-8") from None
    return text.removeprefix("\ufeff")


def read_jsonl_lines(path: str | os.PathLike) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line of ``path``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"JSONL file {path} does not exist")
    text = read_utf8(path, JsonlError)
    if not text.strip():
        raise JsonlError(f"{path}: the file is empty; expected one JSON object per line")
    rows = []
    lines = text.split("\n")  # not splitlines(): U+2028 inside a JSON string is not a line break
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = _DECODER.decode(line)
        except _DuplicateKey as err:
            raise JsonlError(f"{path}:{number}: key {err.args[0]!r} is given twice in one object; keep the one "
                             "that is meant (a JSON reader would keep the last without a word)") from None
        except json.JSONDecodeError as err:
            last = number == len(lines) or not any(x.strip() for x in lines[number:])
            hint = ("the file looks truncated (cut off mid-line); re-create it or restore it"
                    if last and not text.endswith("\n") else "each line must be one complete JSON object")
            raise JsonlError(f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno}); {hint}") from None
        if not isinstance(row, dict):
            raise JsonlError(f"{path}:{number}: expected a JSON object {{...}}, got {type(row).__name__}; "
                             "each line must be one JSON object")
        rows.append((number, row))
    return rows


def text_field(value, where: str, field: str, fix: str = "give it as a JSON string") -> str:
    """A JSONL field that is text, stripped; anything else (null, a number, a list) is a JsonlError naming
    ``where`` (``file:line``), the field and ``fix``: not an AttributeError from ``.strip()``, nor its repr
    in a prompt."""
    if not isinstance(value, str):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise JsonlError(f"{where}: {field} must be text, got {type(value).__name__} {shown}; {fix}")
    return value.strip()


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The objects of a JSONL file, in order; blank lines are skipped."""
    return [row for _, row in read_jsonl_lines(path)]
