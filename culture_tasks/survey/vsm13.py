"""Hofstede's Values Survey Module 2013: items, the six index formulas, targets and loss.

The aligner optimises ``vsm13_loss(vsm13_indices(...), target)`` and the lm-eval task reports
the same numbers: this module is the only place they are computed.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np

from culture_tasks.data_root import data_file
from culture_tasks.metadata import with_hints
from culture_tasks.csv_table import read_table
from culture_tasks.jsonl import read_jsonl_lines, text_field
from culture_tasks.survey.countries import HOFSTEDE_TO_ISO3, find_listed

log = logging.getLogger("culture_tasks")
SAFE_CODE = re.compile(r"[A-Za-z0-9]{2,4}")
DIMENSIONS = ("pdi", "idv", "mas", "uai", "lto", "ivr")
CONSTANT_NAMES = {"pdi": "C_pd", "idv": "C_ic", "mas": "C_mf", "uai": "C_ua", "lto": "C_ls", "ivr": "C_ir"}
# (weight, item a, item b) terms of each index: weight * (m_a - m_b); VSM 2013 manual.
FORMULAS: dict[str, tuple[tuple[float, int, int], ...]] = {
    "pdi": ((35, 7, 2), (25, 20, 23)),
    "idv": ((35, 4, 1), (35, 9, 6)),
    "mas": ((35, 5, 3), (35, 8, 10)),
    "uai": ((40, 18, 15), (25, 21, 24)),
    "lto": ((40, 13, 14), (25, 19, 22)),
    "ivr": ((35, 12, 11), (40, 17, 16)),
}
ITEMS_FILE = "vsm13/items.jsonl"
ITEM_KEYS = ("item", "stem", "text", "options")  # a row of the items file
HOFSTEDE_FILE = "hofstede/6-dimensions-for-website-2015-08-16.csv"
HOFSTEDE_COLUMNS = {"pdi": "pdi", "idv": "idv", "mas": "mas", "uai": "uai", "lto": "ltowvs", "ivr": "ivr"}


class UnknownCountryError(KeyError):
    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class Item:
    number: int
    stem: str
    text: str
    options: tuple[str, ...]  # option labels for the scores 1..5, in score order

    @property
    def values(self) -> tuple[float, ...]:
        return tuple(float(v) for v in range(1, len(self.options) + 1))


@dataclass(frozen=True)
class Target:
    """A country's published scores; dimensions the source lacks are absent."""

    name: str
    code: str
    scores: dict[str, float]


def load_items(data_dir: str | None = None) -> list[Item]:
    path = data_file(ITEMS_FILE, data_dir)
    items = []
    for line_no, row in read_jsonl_lines(path):
        unknown = [k for k in row if k not in ITEM_KEYS]  # a misspelt "stem" would be read as no stem
        if unknown:
            raise ValueError(f"{path}:{line_no}: unknown key(s) {with_hints(unknown, ITEM_KEYS)}; the keys are "
                             f"{', '.join(ITEM_KEYS)}")
        missing = [k for k in ("item", "text", "options") if k not in row]
        if missing:
            raise ValueError(f"{path}:{line_no}: missing field(s) {missing}; each line needs item, stem, text, options")
        number = row["item"]  # int() would read 7.9 as item 7 and True as item 1
        if isinstance(number, str) and number.strip().isdigit():
            number = int(number)
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 24:
            raise ValueError(f"{path}:{line_no}: item {number!r} is not an item number 1-24")
        # an option's key is its answer value (Item.values): a gap or another start would shift every value
        if not isinstance(row["options"], dict) or sorted(row["options"]) != [str(k) for k in range(1, 6)]:
            raise ValueError(f"{path}:{line_no}: item {row['item']} has options {row['options']!r}; the VSM 2013 "
                             "answers are 1-5: options keyed \"1\" to \"5\"")
        where = f"{path}:{line_no}"
        options = tuple(text_field(row["options"][str(k)], where, f'options["{k}"]') for k in range(1, 6))
        stem = text_field(row.get("stem", ""), where, "stem", 'leave it out, or give "", for an item without one')
        items.append(Item(number, stem, text_field(row["text"], where, "text"), options))
    numbers = sorted(i.number for i in items)
    if numbers != list(range(1, 25)):
        raise ValueError(f"{path}: expected the 24 content items 1..24, found {numbers}")
    return sorted(items, key=lambda i: i.number)


def _number(value):
    """A float, or a float array kept as one (one value per bootstrap resample)."""
    return value.astype(float) if isinstance(value, np.ndarray) else float(value)


def constants_by_dimension(constants: Mapping | None) -> dict[str, float]:
    """The additive constants keyed by dimension. A name that is neither a dimension nor the manual's
    (``pdx``) would otherwise add 0 without a word, so it is an error listing the valid names."""
    if constants is None:
        return {}
    if not isinstance(constants, Mapping):
        raise ValueError(f"constants must be a mapping such as {{\"pdi\": 20}}, got {constants!r}")
    names = {**{d: d for d in DIMENSIONS}, **{c: d for d, c in CONSTANT_NAMES.items()}}
    unknown = [k for k in constants if k not in names]
    if unknown:
        raise ValueError(f"constants: unknown name(s) {with_hints(unknown, names)}; use the dimensions "
                         f"{', '.join(DIMENSIONS)} or the manual's names {', '.join(CONSTANT_NAMES.values())}")
    out: dict[str, float] = {}
    for key, value in constants.items():
        dim = names[key]
        if dim in out:
            raise ValueError(f"constants: {dim} is given twice ({dim!r} and {CONSTANT_NAMES[dim]!r}); keep one")
        if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"constants: {key} must be a finite number, got {value!r}")
        out[dim] = float(value)
    return out


def vsm13_indices(item_means: Mapping[int, float], constants: Mapping[str, float] | None = None) -> dict[str, float]:
    """The six VSM 2013 indices from the mean score of each item (constants default to 0).

    ``constants`` may be keyed by dimension (``pdi``) or by the manual's name (``C_pd``). The
    means may also be equal-length arrays (the interval computes all resamples at once).
    """
    constants = constants_by_dimension(constants)
    missing = sorted({i for terms in FORMULAS.values() for _, a, b in terms for i in (a, b)} - set(item_means))
    if missing:
        raise ValueError(f"vsm13_indices needs the means of items {missing}")
    out = {}
    for dim, terms in FORMULAS.items():
        c = constants.get(dim, 0.0)
        out[dim] = sum(w * (_number(item_means[a]) - _number(item_means[b])) for w, a, b in terms) + c
    return out


def vsm13_loss(indices: Mapping[str, float], target: Mapping[str, float]) -> dict[str, float]:
    """L1 distance over the dimensions the target has, and the mean per-dimension error."""
    dims = [d for d in DIMENSIONS if d in target and target[d] is not None and not math.isnan(float(target[d]))]
    if not dims:
        raise ValueError("the target has none of the six dimensions")
    errors = [abs(_number(indices[d]) - float(target[d])) for d in dims]
    return {"l1": sum(errors), "mae": sum(errors) / len(errors), "dimensions": len(dims)}


def load_hofstede(data_dir: str | None = None) -> list[Target]:
    """Every row of Hofstede's file; a defective cell or row affects only itself, with a warning.

    A score that is not a number (an empty cell too) leaves that dimension out for that country,
    ``#NULL!`` silently (the file's mark of a missing score). Skipped: a row whose code is not 2-4
    letters or digits (codes become task and folder names elsewhere), a row with a field too few
    or too many (its scores may stand in the wrong columns), and a second row of a code (the
    target and the countries it is ranked among would otherwise come from different rows).
    """
    path = data_file(HOFSTEDE_FILE, data_dir)
    targets = []
    lines: dict[str, int] = {}  # code -> the line of its row
    reader = read_table(path, ("ctr", "country", *HOFSTEDE_COLUMNS.values()), "ctr;country;pdi;idv;mas;uai;ltowvs;ivr",
                        delimiter=";")
    for line_no, row in enumerate(reader, 2):
        code, name = (row.get("ctr") or "").strip(), (row.get("country") or "").strip()
        if not SAFE_CODE.fullmatch(code) or not name:
            log.warning("%s:%d: row skipped: country code %r is not 2-4 letters or digits, or the name is empty",
                        path, line_no, code)
            continue
        fields = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or ())
        if fields != len(reader.fieldnames):  # its scores may stand in the wrong columns
            log.warning("%s:%d: row skipped: %d fields, the header has %d", path, line_no, fields,
                        len(reader.fieldnames))
            continue
        if code in lines:
            log.warning("%s:%d: row skipped: country code %s is given twice (line %d is kept)",
                        path, line_no, code, lines[code])
            continue
        lines[code] = line_no
        scores = {}
        for dim, col in HOFSTEDE_COLUMNS.items():
            value = row[col].strip()
            if value == "#NULL!":  # the file's own mark of a missing score
                continue
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if not math.isfinite(number):
                log.warning("%s:%d: %s (%s) column %s is %r, not a number: %s left out for this country",
                            path, line_no, name, code, col, value, dim)
                continue
            scores[dim] = number
        targets.append(Target(name, code, scores))
    return targets


def find_target(country: str, data_dir: str | None = None) -> Target:
    """A country by Hofstede's code, ISO alpha-3 code or name (case-insensitive), or by any spelling
    countries.yaml gives it (``countries.find_listed``: "South Korea", "the United States"), so that
    culture-align takes every name culture-steer takes."""
    targets = load_hofstede(data_dir)
    key = country.strip().casefold()
    for match in (
        lambda t: t.code.casefold() == key,
        lambda t: HOFSTEDE_TO_ISO3.get(t.code, t.code).casefold() == key,
        lambda t: t.name.casefold() == key,
    ):
        found = [t for t in targets if match(t)]
        if len(found) > 1:  # codes are unique (load_hofstede): a name two rows share
            raise ValueError(f"{country.strip().casefold()!r} is the name of "
                             f"{' and '.join(t.code for t in found)} in {HOFSTEDE_FILE}; use the code")
        if found:
            return found[0]
    listed = find_listed(country)  # countries.yaml's spellings: "South Korea", "the United States"
    found = [t for t in targets if listed is not None and t.code == listed.get("hofstede")]
    if found:
        return found[0]
    known = ", ".join(f"{t.code} ({t.name})" for t in targets)
    raise UnknownCountryError(
        f"unknown country {country!r} in {HOFSTEDE_FILE}; use a code, ISO alpha-3 code or name "
        f"from: {known}; or pass six explicit scores (pdi, idv, mas, uai, lto, ivr)"
    )


def _score(dimension: str, value) -> float:
    """A finite number (true would read as 1, "x" fail without naming the dimension)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"explicit target score for {dimension} must be a finite number, got {value!r}")
    return float(value)


def resolve_target(country: str | None = None, scores: Sequence[float] | Mapping[str, float] | None = None,
                   data_dir: str | None = None) -> Target:
    """Explicit scores win over the file: six numbers, or a mapping of some dimensions."""
    if isinstance(scores, (str, bytes)):  # "404040" would be read digit by digit
        raise ValueError(f"explicit target scores must be six numbers or a mapping of dimensions, got {scores!r}")
    if scores is not None and len(scores) > 0:
        if isinstance(scores, Mapping):
            unknown = set(scores) - set(DIMENSIONS)
            if unknown:
                raise ValueError(f"unknown dimension(s) {sorted(unknown)}; use {DIMENSIONS}")
            values = {d: _score(d, v) for d, v in scores.items() if v is not None}
        else:
            if len(scores) != 6:
                raise ValueError(f"explicit scores need six numbers in the order {DIMENSIONS}, got {len(scores)}")
            values = {d: _score(d, v) for d, v in zip(DIMENSIONS, scores)}
        if len(values) < 2:  # no country can be ranked on fewer: refused now, not after the model has answered
            raise ValueError(f"explicit target scores need at least 2 dimensions, got {sorted(values) or 'none'}")
        return Target(country or "custom", target_code(country, data_dir), values)
    if not country:
        raise ValueError("name a country or give explicit scores")
    return find_target(country, data_dir)


def target_code(country: str | None, data_dir: str | None) -> str:
    """The file's code of a country it knows by any spelling, so that explicit scores replace its row
    (under another code that row would compete with the target and calibrate its spread); else the
    name with letters, digits and "_" only (the code may name a task or an output folder)."""
    if country:
        try:
            return find_target(country, data_dir).code
        except UnknownCountryError:
            pass
        listed = find_listed(country)  # a listed country the file lacks: its countries.yaml code
        if listed is not None and listed.get("hofstede"):
            return str(listed["hofstede"])
    return re.sub(r"[^A-Za-z0-9]+", "_", country or "").strip("_") or "custom"
