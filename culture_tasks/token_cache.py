"""Token ids of request strings kept on disk, keyed by the tokenizer and the string's content.

Every evaluation of the suite with the same tokenizer encodes the same 209,026 strings again
(about 40 s of ``hf-prompt``'s batched tokenisation on 2 CPU cores, more than 100 s in lm-eval's own
loop); a base model and each of its checkpoints share that tokenizer. ``hf-prompt`` with
``--model_args ...,token_cache=DIR`` looks each string up here first and encodes only the misses.

A cache entry can only be used by the tokenizer that made it: the folder is named by a digest of
the tokenizer's whole serialised state (vocabulary, added tokens, normaliser, pre-tokeniser,
post-processor; not the padding and truncation settings a previous call left there, which our calls
reset), ``split_special_tokens``, the special-token settings of the call and the transformers /
tokenizers versions, and each entry
by a 16-byte BLAKE2b digest of the string. New entries go to a new shard file written under a
temporary name and renamed, so concurrent runs (or the processes of one ``accelerate launch``)
never see half a file; a folder this user cannot write is read only (a warning says so); a shard that cannot be read (cut short, damaged, inconsistent) stops the run
naming it, and a ``token_cache=`` that is not a folder stops the model before anything is loaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from culture_tasks.atomic import write_bytes_atomic

# the model argument (``--model_args ...,token_cache=DIR``); it changes no result, so it is not
# part of a run's identity in the leaderboard
MODEL_ARG = "token_cache"
DIGEST_BYTES = 16
log = logging.getLogger(__name__)


class TokenCacheError(ValueError):
    """A cache folder or shard that cannot be used; nothing was written."""


def tokenizer_fingerprint(tokenizer, call_kwargs: Mapping) -> str:
    """A digest of everything that decides the ids a fast tokenizer gives for a string with ``call_kwargs``."""
    import tokenizers
    import transformers

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TokenCacheError(f"{MODEL_ARG}: {type(tokenizer).__name__} is not a fast tokenizer; drop {MODEL_ARG}=")
    state = json.loads(backend.to_str())
    # padding and truncation are set on the backend by each call (a padded generation batch leaves its
    # settings there) and reset by ours, which neither pads nor truncates: no part of the ids
    state.pop("padding", None)
    state.pop("truncation", None)
    # split_special_tokens (tokenizer_config.json) is set on the backend at each call and not serialised:
    # with it "<s>" in a text is three tokens, not one
    split = bool(getattr(tokenizer, "split_special_tokens", False))
    h = hashlib.blake2b(digest_size=16)
    for part in (type(tokenizer).__name__, transformers.__version__, tokenizers.__version__,
                 json.dumps(dict(call_kwargs), sort_keys=True, default=str), f"split_special_tokens={split}",
                 json.dumps(state, sort_keys=True)):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def check_root(root: str | os.PathLike) -> Path:
    """``root`` as a cache folder: an existing folder, or one that can be made; else a one-line error
    (checked when the model is built, before anything is loaded)."""
    path = Path(root).expanduser()
    if path.exists():
        if not path.is_dir():
            raise TokenCacheError(f"{MODEL_ARG}={root}: exists and is not a folder; choose another {MODEL_ARG}=")
        return path
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise TokenCacheError(f"{MODEL_ARG}={root}: cannot be created ({parent} is not a writable folder); "
                              f"choose another {MODEL_ARG}=")
    return path


def string_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=DIGEST_BYTES).digest()


class TokenCache:
    """The cached ids of one tokenizer fingerprint under ``root``; ``encode`` fills the gaps."""

    def __init__(self, root: str | os.PathLike, fingerprint: str):
        self.folder = check_root(root) / fingerprint
        if self.folder.exists() and not self.folder.is_dir():
            raise TokenCacheError(f"{MODEL_ARG}: {self.folder} exists and is not a folder; choose another {MODEL_ARG}=")
        self._index: dict[bytes, tuple[np.ndarray, int, int]] = {}
        self._read: set[str] = set()
        self.hits = self.misses = 0
        # a cache another user filled and this one may only read: its hits serve, its misses are not kept
        existing = next(p for p in (self.folder, *self.folder.parents) if p.exists())
        self.writable = os.access(existing, os.W_OK | os.X_OK)
        if not self.writable:
            log.warning("%s=%s: %s is not writable; cached ids are read, new ones are not kept",
                        MODEL_ARG, root, existing)

    def _load(self) -> None:
        """Read the shards not read yet (another process may have added some)."""
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("shard-*.npz")):
            if path.name in self._read:
                continue
            try:
                with np.load(path) as shard:
                    keys, lengths, ids = shard["keys"], shard["lengths"], shard["ids"]
            except Exception as err:  # noqa: BLE001 - a cut or damaged zip raises BadZipFile, EOFError, zlib.error...
                raise TokenCacheError(f"{path}: unreadable token cache shard ({type(err).__name__}: {err}); "
                                      "delete it") from err
            if (keys.dtype != np.uint8 or keys.ndim != 2 or keys.shape[1] != DIGEST_BYTES or lengths.ndim != 1
                    or ids.ndim != 1 or len(keys) != len(lengths) or not np.issubdtype(lengths.dtype, np.integer)
                    or not np.issubdtype(ids.dtype, np.integer) or (lengths < 0).any() or int(lengths.sum()) != len(ids)):
                raise TokenCacheError(f"{path}: inconsistent token cache shard (keys, lengths and ids disagree); delete it")
            ends = np.cumsum(lengths)
            for key, end, length in zip(keys, ends.tolist(), lengths.tolist()):
                self._index.setdefault(key.tobytes(), (ids, end - length, end))
            self._read.add(path.name)

    def encode(self, strings: Sequence[str], encode_misses) -> list[list[int]]:
        """``encode_misses(strings)`` for every string, calling it only for those not cached and
        storing what it returns in a new shard."""
        self._load()
        keys = [string_key(s) for s in strings]
        out: list[list[int] | None] = [None] * len(strings)
        missing: dict[bytes, list[int]] = {}
        for i, key in enumerate(keys):
            entry = self._index.get(key)
            if entry is None:
                missing.setdefault(key, []).append(i)
            else:
                ids, start, end = entry
                out[i] = ids[start:end].tolist()
        # hits: strings found on disk; misses: distinct strings to encode
        self.hits, self.misses = len(strings) - sum(map(len, missing.values())), len(missing)
        if missing:
            first = [positions[0] for positions in missing.values()]
            encoded = encode_misses([strings[i] for i in first])
            for positions, enc in zip(missing.values(), encoded):
                for i in positions:
                    out[i] = list(enc)
            self._store(list(missing), encoded)
        return out  # type: ignore[return-value]

    def _store(self, keys: list[bytes], encoded: Sequence[Sequence[int]]) -> None:
        if not self.writable:
            return
        lengths = np.array([len(e) for e in encoded], dtype=np.int64)
        flat = [t for e in encoded for t in e]
        top = max(flat, default=0)  # the narrowest type that holds every id: half the disk for vocabularies < 65,536
        ids = np.array(flat, dtype=np.uint16 if top < 2**16 else np.uint32 if top < 2**32 else np.int64)
        buffer = io.BytesIO()
        np.savez(buffer, keys=np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), DIGEST_BYTES),
                 lengths=lengths, ids=ids)
        path = self.folder / f"shard-{uuid.uuid4().hex}.npz"
        write_bytes_atomic(path, buffer.getvalue())
        ends = np.cumsum(lengths)
        for key, end, length in zip(keys, ends.tolist(), lengths.tolist()):
            self._index[key] = (ids, end - length, end)
        self._read.add(path.name)
