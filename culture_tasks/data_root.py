"""Where the benchmark data lives: one folder the user names, never a copy in this repository.

The data root holds each source as its publisher ships it (``culturellm/``, ``vsm13/``,
``hofstede/``). It is named through lm-eval's ``--metadata '{"data_dir": ...}'``, the
``--data-dir`` flag of this project's commands, or the environment variable ``CULTURE_DATA_DIR``;
whatever is missing is reported once, with the ways to name it and where the data comes from.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "CULTURE_DATA_DIR"

SOURCES = {
    "culturellm": "the `data/` folder of the CultureLLM repository, https://github.com/Scarelette/CultureLLM",
    "vsm13": "the 24 content items of the Values Survey Module 2013 as `items.jsonl` "
    "(Hofstede & Minkov, VSM 2013 manual, https://geerthofstede.com/research-and-vsm/vsm-2013/)",
    "hofstede": "Hofstede's six-dimension country scores, `6-dimensions-for-website-2015-08-16.csv` "
    "(https://geerthofstede.com/research-and-vsm/dimension-data-matrix/)",
}


class DataRootError(FileNotFoundError):
    """The data root or a file under it is missing."""


def _how_to_name() -> str:
    return (
        "Name the data root with --data-dir /path/to/data (culture-align, culture-steer, culture-train, "
        f"culture_tasks.sampling), lm-eval's --metadata '{{\"data_dir\": \"/path/to/data\"}}' "
        f"or the environment variable {ENV_VAR}=/path/to/data."
    )


def _source_hint(relative: str) -> str:
    top = Path(relative).parts[0] if relative else ""
    source = SOURCES.get(top)
    if source is None:
        return "Expected subfolders: " + "; ".join(f"{k}/ = {v}" for k, v in SOURCES.items()) + "."
    return f"`{top}/` under the data root is {source}."


def resolve_data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The data root from an explicit value (``--metadata``) or the environment."""
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise DataRootError(f"data_dir must be a folder path, got {data_dir!r}. " + _how_to_name())
    chosen = data_dir if data_dir not in (None, "") else os.environ.get(ENV_VAR)
    if not chosen:
        raise DataRootError("No data root given. " + _how_to_name() + " " + _source_hint(""))
    root = Path(chosen).expanduser()
    if not root.is_dir():
        raise DataRootError(
            f"The data root {root} does not exist or is not a folder. " + _how_to_name() + " " + _source_hint("")
        )
    return root


def data_file(relative: str, data_dir: str | os.PathLike | None = None) -> Path:
    """A file under the data root, or one clear error naming the missing path and its source."""
    root = resolve_data_root(data_dir)
    path = root / relative
    if not path.exists():
        raise DataRootError(
            f"Missing data file {path} (data root {root}, file `{relative}`). "
            + _source_hint(relative)
            + " "
            + _how_to_name()
        )
    return path
