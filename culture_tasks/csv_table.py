"""The one reader of the data's CSV tables (WVS respondent answers, Hofstede's scores).

The bytes are decoded by ``jsonl.read_utf8`` (a byte that is not UTF-8 is named by file and line), and
the header is checked before any row is read: a column a reader needs that is missing, or a column
given twice, is an error naming the file and the column.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence

from culture_tasks.jsonl import read_utf8


def read_table(path: str | os.PathLike, required: Sequence[str], expected: str,
               delimiter: str = ",") -> csv.DictReader:
    """The rows of ``path`` as mappings by column name; ``expected`` says in the error which columns are.

    A column named twice is refused: a mapping by name keeps only the last of the two (a second ``Q27``
    would replace every respondent's answer to Q27 without a word)."""
    reader = csv.DictReader(io.StringIO(read_utf8(path), newline=""), delimiter=delimiter)
    header = reader.fieldnames or []
    absent = [c for c in required if c not in header]
    if absent:
        raise ValueError(f"{path}: missing column(s) {absent}; expected {expected}")
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        raise ValueError(f"{path}: column(s) {twice} given twice in the header; a reader by name would keep only "
                         "the last: keep one")
    return reader
