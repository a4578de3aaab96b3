"""The survey countries (countries.yaml): task-name slug, persona name, WVS file, Hofstede code."""

from __future__ import annotations

from pathlib import Path

import yaml

COUNTRIES_FILE = Path(__file__).resolve().parent / "countries.yaml"


def listed_countries() -> list[dict]:
    return yaml.safe_load(COUNTRIES_FILE.read_text(encoding="utf-8"))["countries"]
