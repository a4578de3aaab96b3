"""The one reader of JSON Lines files: every problem is reported as ``file:line`` and a fix."""

from __future__ import annotations

import json
import os
from pathlib import Path


class JsonlError(ValueError):
    """A JSONL file that cannot be read as one JSON object per line."""


def read_jsonl_lines(path: str | os.PathLike) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line of ``path``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"JSONL file {path} does not exist")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise JsonlError(f"{path}:{line}: invalid UTF-8 at byte offset {err.start} ({err.reason}); "
                         "save the file as UTF-8") from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise JsonlError(f"{path}: the file is empty; expected one JSON object per line")
    rows = []
    lines = text.split("\n")  # not splitlines(): U+2028 inside a JSON string is not a line break
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
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


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The objects of a JSONL file, in order; blank lines are skipped."""
    return [row for _, row in read_jsonl_lines(path)]
