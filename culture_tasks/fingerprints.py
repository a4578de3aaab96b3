"""Which model a run read: a local folder's content fingerprint, exact, and cheap after its first reading.

A fingerprint is ``sha256-full:<hex>`` over the name, size and SHA-256 of every file it covers: two folders
share one only if every byte of those files is the same, so a model edited in one middle layer (a merged
adapter, a model edit) is another model. Hashing a large model costs a full read (SHA-256 runs at about
1.3 GB/s on one of the 2 CPU cores here: about 6 s for a 7 GB model, plus the read), so the digest of each
large file is kept in a cache folder (``CULTURE_DIGEST_CACHE``, by default ``~/.cache/culture-align/digests``)
under the file's device, inode, size, modification time and status-change time. Any write to a file changes
its status-change time, which no user-space call sets back (``touch -d`` sets it to now), so an edited file is
hashed again; a file changed in the last seconds (a coarse filesystem clock) or while it was read is not cached.

Every byte counts, the writers' version stamps too. SmolLM2's GGUF converted under transformers 5.18 and 5.25 gives
byte-identical weights and tokenizer files, but config.json and generation_config.json record
``transformers_version`` and gguf_source.json the converting version: another fingerprint. That stamp is not left
out, because it is not inert: transformers reads config.json's ``transformers_version`` when it loads a tokenizer
(a folder written before 5.0 gets its Mistral pre-tokenizer fix), so two folders differing only in it need not
load as one model.

Runs stored before this scheme recorded ``sha256:<hex>``: names and sizes, small files whole, large ones'
first and last MiB. Such a fingerprint is compared in its own scheme, with a warning that it cannot see a
change inside a large file (``check_settings``, the leaderboard), so those runs still resume and check.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from culture_tasks.atomic import write_text_atomic

log = logging.getLogger("culture_tasks")

FULL = "sha256-full:"  # every byte of every file covered
SAMPLED = "sha256:"  # the earlier scheme: large files by their first and last MiB only
SCHEMES = (FULL, SAMPLED)
CACHE_ENV = "CULTURE_DIGEST_CACHE"
# where each task records the fingerprints of the model and adapter folders it was run with (its metadata)
FINGERPRINTS_KEY = "loaded_fingerprints"
CACHE_MIN_BYTES = 16 << 20  # smaller files are hashed each time (milliseconds)
CACHE_SETTLE_NS = 3_000_000_000  # a file changed more recently than this is hashed but not cached
BLOCK = 1 << 20

# what transformers and peft read from a model or adapter folder: its top-level weights, configs, tokenizer
# and chat template files (not a README, an evaluation's output folder or a token cache kept beside them)
LOADED_SUFFIXES = (".json", ".safetensors", ".bin", ".model", ".txt", ".jinja", ".tiktoken")

# the model arguments that name a folder the run loads (lm-eval's hf loads a tokenizer= in place of the model's)
MODEL_FOLDER_ARGS = ("pretrained", "peft", "tokenizer")
# the arguments lm-eval's hf loads from inside subfolder= (peft= is loaded as named)
IN_SUBFOLDER = ("pretrained", "tokenizer")

# full fingerprints this process made -> (folder, loaded): a stored earlier-scheme fingerprint is compared by
# making that scheme's fingerprint of the same folder
_MADE: dict[str, tuple[Path, bool]] = {}
_WARNED: set[str] = set()
_MEMO: dict[str, str] = {}  # this process's digests by stat key


def model_fingerprint(model: str | os.PathLike, scheme: str = FULL) -> str | None:
    """A local model folder's identity for resume checks: every file in it (hidden ones, a lock, left out).
    None for a hub id, which names no local content."""
    return _of(model, loaded=False, scheme=scheme)


def loaded_fingerprint(model: str | os.PathLike, scheme: str = FULL) -> str | None:
    """The fingerprint of the files a model or adapter is loaded from (``LOADED_SUFFIXES``, top level): which
    weights an evaluation read, unchanged by files written beside them later. None for a hub id."""
    return _of(model, loaded=True, scheme=scheme)


def loaded_folders(model_args) -> dict[str, str]:
    """The folder each of ``MODEL_FOLDER_ARGS`` names, as lm-eval's hf loads it: ``pretrained=`` and ``tokenizer=``
    inside ``subfolder=``, whose top level alone may hold no weights, or another model's. A hub id or an object
    passes as given (no local folder: no fingerprint)."""
    sub = model_args.get("subfolder")
    return {k: str(Path(model_args[k], sub) if sub and isinstance(sub, str) and k in IN_SUBFOLDER else model_args[k])
            for k in MODEL_FOLDER_ARGS if isinstance(model_args.get(k), (str, os.PathLike)) and str(model_args[k])}


def folder_fingerprints(model_args) -> dict[str, str]:
    """``{argument: loaded_fingerprint}`` of the local folders of ``loaded_folders``: what the run's answers were
    computed from, a tokenizer edited under the same path included."""
    found = {k: loaded_fingerprint(folder) for k, folder in loaded_folders(model_args).items()}
    return {k: v for k, v in found.items() if v}


def scheme_of(fingerprint) -> str | None:
    """The scheme prefix of a recorded fingerprint; None for anything else (a hub commit, a missing value)."""
    if isinstance(fingerprint, str):
        return next((s for s in SCHEMES if fingerprint.startswith(s)), None)
    return None


def _of(model, *, loaded: bool, scheme: str) -> str | None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown fingerprint scheme {scheme!r}; one of {', '.join(SCHEMES)}")
    folder = Path(model)
    if not folder.is_dir():
        return None
    if loaded:
        files = sorted(x for x in folder.iterdir() if x.is_file() and x.suffix in LOADED_SUFFIXES)
    else:
        files = sorted(x for x in folder.rglob("*") if x.is_file())
    files = [f for f in files if not any(p.startswith(".") for p in f.relative_to(folder).parts)]
    if scheme == SAMPLED:
        return _sampled(folder, files)
    made = _full(folder, files)
    _MADE[made] = (folder, loaded)
    return made


def _full(folder: Path, files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(folder).as_posix()}\0{f.stat().st_size}\0{file_sha256(f)}\0".encode())
    return FULL + h.hexdigest()


def _sampled(folder: Path, files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.relative_to(folder).as_posix()}\0{size}\0".encode())
        with f.open("rb") as fh:
            if size <= 2 * BLOCK:
                h.update(fh.read())
            else:
                h.update(fh.read(BLOCK))
                fh.seek(-BLOCK, os.SEEK_END)
                h.update(fh.read())
    return SAMPLED + h.hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "culture-align" / "digests").expanduser()


def _stat_key(path: Path, st: os.stat_result) -> str:
    return f"{path.resolve()}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}"


def file_sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes; from this process's memo or, for a large file, the digest cache when the
    file is unchanged since (every task of a run fingerprints the same model folder)."""
    path = Path(path)
    before = path.stat()
    key = _stat_key(path, before)
    if key in _MEMO:
        return _MEMO[key]
    started = time.time_ns()
    entry = cache_dir() / (hashlib.sha256(key.encode()).hexdigest()[:40] + ".json")
    kept = _kept(entry, before.st_size) if before.st_size >= CACHE_MIN_BYTES else None
    digest = kept or _hash(path, before.st_size)
    if _settled(path, key, started):
        _MEMO[key] = digest
        if before.st_size >= CACHE_MIN_BYTES and kept is None:  # new, or a damaged entry replaced
            try:
                write_text_atomic(entry, json.dumps({"path": str(path.resolve()), "size": before.st_size,
                                                     "sha256": digest}))
            except OSError as err:  # a read-only home: hashed again by the next run
                log.debug("digest cache %s not written: %s", entry, err)
    return digest


def _kept(entry: Path, size: int) -> str | None:
    try:
        kept = json.loads(entry.read_text(encoding="utf-8"))
        if kept.get("size") == size and isinstance(kept.get("sha256"), str) and len(kept["sha256"]) == 64:
            return kept["sha256"]
    except (OSError, ValueError, AttributeError):
        pass
    return None


def _settled(path: Path, key: str, started: int) -> bool:
    """Unchanged while it was read, and last changed well before: its digest may be kept under its stat key."""
    after = path.stat()
    return _stat_key(path, after) == key and after.st_ctime_ns < started - CACHE_SETTLE_NS


def _hash(path: Path, size: int) -> str:
    h = hashlib.sha256()
    bar = None
    if size >= 1 << 30:  # a full read of a large model: say what the wait is
        from tqdm.auto import tqdm

        bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"fingerprint {path.name}", leave=False)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(8 * BLOCK), b""):
            h.update(block)
            if bar is not None:
                bar.update(len(block))
    if bar is not None:
        bar.close()
    return h.hexdigest()


def as_recorded(recorded, given):
    """``given`` (settings of this run, any nesting) with each full fingerprint this process made put in the
    scheme of the earlier-scheme fingerprint ``recorded`` holds at the same place, so runs stored before the
    full scheme are compared with what they recorded (warned once per folder: it cannot see a change inside
    a large file)."""
    if isinstance(recorded, Mapping) and isinstance(given, Mapping):
        return {k: as_recorded(recorded.get(k), v) for k, v in given.items()}
    if isinstance(recorded, list) and isinstance(given, list) and len(recorded) == len(given):
        return [as_recorded(r, g) for r, g in zip(recorded, given)]
    if scheme_of(recorded) == SAMPLED and scheme_of(given) == FULL and given in _MADE:
        folder, loaded = _MADE[given]
        warn_sampled(folder)
        return _of(folder, loaded=loaded, scheme=SAMPLED)
    return given


def warn_sampled(folder) -> None:
    if str(folder) not in _WARNED:
        _WARNED.add(str(folder))
        log.warning("%s: the run recorded its fingerprint in the earlier scheme (%s: each large file's first and "
                    "last MiB); it is compared in that scheme, which cannot see a change inside a large file",
                    folder, SAMPLED)
