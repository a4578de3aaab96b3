"""The survey countries (countries.yaml): task-name slug, persona name, WVS file, Hofstede code, culture."""

from __future__ import annotations

from pathlib import Path

import yaml

from culture_tasks.metadata import with_hints

COUNTRIES_FILE = Path(__file__).resolve().parent / "countries.yaml"


KEYS = ("slug", "name", "wvs_csv", "hofstede", "culture")


def listed_countries(path: Path = COUNTRIES_FILE) -> list[dict]:
    """The file's countries; an unknown key (a misspelt ``hofstede`` would drop the country's VSM13
    tasks without a word), a missing slug or name, or a slug given twice is an error."""
    entries = yaml.safe_load(Path(path).read_text(encoding="utf-8"))["countries"]
    slugs: set[str] = set()
    for i, entry in enumerate(entries, 1):
        where = f"{path}: country #{i} ({entry.get('slug', '?')})"
        unknown = [k for k in entry if k not in KEYS]
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {with_hints(unknown, KEYS)}; the keys are {', '.join(KEYS)}")
        missing = [k for k in ("slug", "name") if not entry.get(k)]
        if missing:
            raise ValueError(f"{where} lacks {', '.join(missing)}")
        if entry["slug"] in slugs:
            raise ValueError(f"{where}: slug {entry['slug']} is given twice")
        slugs.add(entry["slug"])
    return entries


def culture_countries(path: Path = COUNTRIES_FILE) -> dict[str, tuple[str, ...]]:
    """Culture -> the slugs of the countries that stand for it, both in the file's order."""
    out: dict[str, list[str]] = {}
    for country in listed_countries(path):
        if country.get("culture"):
            out.setdefault(str(country["culture"]).lower(), []).append(country["slug"])
    return {culture: tuple(slugs) for culture, slugs in out.items()}
