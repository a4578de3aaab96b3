from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tiny_model import build_tiny_model

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("CULTURE_DATA_DIR", REPO.parent / "shared" / "data"))
TASKS_DIR = REPO / "culture_tasks"


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "culturellm").is_dir():
        pytest.fail(f"data root {DATA_ROOT} not found: set CULTURE_DATA_DIR or place shared/ beside the repo")
    return DATA_ROOT


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
