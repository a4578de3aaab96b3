"""The survey countries (countries.yaml): task-name slug, persona name, WVS file, Hofstede code, culture."""

from __future__ import annotations

from pathlib import Path

import yaml

COUNTRIES_FILE = Path(__file__).resolve().parent / "countries.yaml"


def listed_countries(path: Path = COUNTRIES_FILE) -> list[dict]:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))["countries"]


def culture_countries(path: Path = COUNTRIES_FILE) -> dict[str, tuple[str, ...]]:
    """Culture -> the slugs of the countries that stand for it, both in the file's order."""
    out: dict[str, list[str]] = {}
    for country in listed_countries(path):
        if country.get("culture"):
            out.setdefault(str(country["culture"]).lower(), []).append(country["slug"])
    return {culture: tuple(slugs) for culture, slugs in out.items()}
