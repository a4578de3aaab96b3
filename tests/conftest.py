from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tiny_model import build_tiny_model

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("CULTURE_DATA_DIR", REPO.parent / "shared" / "data"))
REQUIRE_DATA = "CULTURE_REQUIRE_DATA"


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "culturellm").is_dir():
        if os.environ.get(REQUIRE_DATA) == "1":  # CI has the data: a missing root is a failure there
            pytest.fail(f"data root {DATA_ROOT} not found ({REQUIRE_DATA}=1): set CULTURE_DATA_DIR")
        pytest.skip(f"third-party data not found at {DATA_ROOT} (no culturellm/ folder): set CULTURE_DATA_DIR "
                    "or place shared/ beside the repository to run this test")
    return DATA_ROOT


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
