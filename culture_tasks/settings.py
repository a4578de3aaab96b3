"""Settings as dataclasses, read from a YAML file with command-line overrides on top."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import TypeVar

import yaml

T = TypeVar("T")


def from_sources(cls: type[T], yaml_path: str | None, overrides: dict, required: tuple[str, ...],
                 renames: dict[str, str] | None = None) -> T:
    """``renames`` maps a YAML key to the field it sets (e.g. ``country`` -> ``countries``)."""
    values: dict = {}
    if yaml_path:
        path = Path(yaml_path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of settings")
        for old, new in (renames or {}).items():
            if old in loaded:
                loaded[new] = loaded.pop(old)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(loaded) - known)
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {unknown}; known: {sorted(known)}")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    missing = [k for k in required if values.get(k) in (None, "", [])]
    if missing:
        raise ValueError(f"missing setting(s) {missing} (give them on the command line or in --config)")
    return cls(**values)
