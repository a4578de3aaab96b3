from __future__ import annotations

import os
from pathlib import Path

# one thread per process, set before torch is imported (here and in the torchrun / lm_eval processes tests start):
# the tiny test models gain nothing from a second thread but its overhead (the scorer tests ran 2-3x slower with
# two), and two processes of two threads each would oversubscribe CI's two cores
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

from tests.tiny_model import build_tiny_model

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("CULTURE_DATA_DIR", REPO.parent / "shared" / "data")).expanduser().resolve()
REQUIRE_DATA = "CULTURE_REQUIRE_DATA"


def require_data_root(root: Path) -> Path:
    """The third-party data root, or a skip with the reason (a failure where CI says the data is there)."""
    if not (root / "culturellm").is_dir():
        if os.environ.get(REQUIRE_DATA) == "1":
            pytest.fail(f"data root {root} not found ({REQUIRE_DATA}=1): set CULTURE_DATA_DIR")
        pytest.skip(f"third-party data not found at {root} (no culturellm/ folder): set CULTURE_DATA_DIR "
                    "or place shared/ beside the repository to run this test")
    return root


@pytest.fixture(scope="session")
def data_root() -> Path:
    return require_data_root(DATA_ROOT)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch, tmp_path_factory):
    # the digest cache of large model files (culture_tasks.fingerprints) kept out of the user's home
    monkeypatch.setenv("CULTURE_DIGEST_CACHE", str(tmp_path_factory.getbasetemp() / "digests"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def _signature(path: Path) -> str:
    """The names and contents of the files under ``path`` (a few hundred small YAML files: milliseconds)."""
    import hashlib

    digest = hashlib.sha256()
    for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if f.is_file() and "__pycache__" not in f.parts:
            digest.update(f"{f}\0".encode() + f.read_bytes() + b"\0")
    return digest.hexdigest()


@pytest.fixture(scope="session", autouse=True)
def _lm_eval_builtin_index_once():
    """The ``lm_eval`` command indexes lm-eval's ~14,700 built-in task YAMLs on every run (7 s here): the
    tests that run it in-process (``culture_tasks.harness``) index that folder, which no test changes, once.
    Other paths are indexed again whenever a file in them changed, and the merge is ``TaskIndex.build``'s:
    defaults first, later paths win. lm-eval deep-copies an entry's config before it builds a task from it, so sharing entries is safe."""
    import lm_eval.tasks
    from lm_eval.tasks._index import TaskIndex

    builtin = Path(lm_eval.tasks.__file__).parent
    original = TaskIndex.build
    cached: dict = {}
    indexed: dict = {}

    def index(paths: list) -> dict:
        """The other paths' index, made again only when a file in them changed (by content): the project's own
        task folder is indexed by most tests (0.4 s each)."""
        key = tuple((str(p), _signature(Path(p))) for p in paths)
        if key not in indexed:
            indexed[key] = original(paths)
        return dict(indexed[key])

    def build(paths, *, resolve_includes=True):
        paths = list(paths)
        if not resolve_includes:
            return original(paths, resolve_includes=resolve_includes)
        if not paths or paths[0] != builtin:
            return index(paths)
        if not cached:
            cached.update(original([builtin]))
        return {**cached, **index(paths[1:])}

    TaskIndex.build = staticmethod(build)
    yield
    TaskIndex.build = staticmethod(original)



@pytest.fixture(scope="session", autouse=True)
def _no_environment_report():
    """lm-eval adds torch's environment report to every in-process evaluation's results: ``collect_env`` runs
    ``pip list`` and more in subprocesses, about 1.3 CPU-seconds per evaluation, for a field nothing here reads.
    The tests that run the ``lm_eval`` command itself still collect it."""
    import torch.utils.collect_env

    original = torch.utils.collect_env.get_pretty_env_info
    torch.utils.collect_env.get_pretty_env_info = lambda: "not collected in the tests"
    yield
    torch.utils.collect_env.get_pretty_env_info = original
