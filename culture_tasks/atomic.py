"""Write a file so that readers see the old content or the new, never half of it."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to (same suffix, so writers that go by the
    extension work); renamed over ``path`` if the block succeeds, removed otherwise. It gets the
    mode the user's umask gives a new file (``mkstemp`` alone would leave it 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def temporary_names(names: Iterable[str]) -> re.Pattern:
    """The names ``replacing`` gives the temporary files of ``names`` (``state.json``:
    ``.state.json.k1ll3d00.json``, mkstemp's eight random characters): a process killed before its
    rename (SIGKILL skips the cleanup) leaves one behind."""
    return re.compile("|".join(rf"\.{re.escape(n)}\.[a-z0-9_]{{8}}{re.escape(Path(n).suffix)}" for n in names))


# the prefix of ``staged_files``' folders (the one culture-align's adapters have always been staged under, so that a
# resume removes those an earlier version left too)
STAGING = ".adapter."


@contextmanager
def staged_files(folder: Path) -> Iterator[Path]:
    """A temporary folder ``.adapter.XXXXXXXX`` inside ``folder`` for a writer of several files (peft's and
    transformers' ``save_pretrained``, which write in place); once the block succeeds each file is renamed into
    ``folder`` with the mode a new file gets. A kill leaves no file cut short in ``folder``, only the staging
    folder, which the next run removes (``outputs.remove_killed_writes``); a failure removes it at once."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=STAGING))
    try:
        yield tmp
        publish_staged(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def gathered_staging(folder: Path) -> Path:
    """The staging folder that every process of a sharded (FSDP) run names alike, unlike ``staged_files``'
    random one: all of them take part in gathering the adapter, the main process alone writes it there, then
    moves it into ``folder`` with ``publish_staged``. A kill leaves it for the next run to remove, as
    ``staged_files``' folders (the name fits ``staging_names``)."""
    return Path(folder) / f"{STAGING}gathered"


def publish_staged(tmp: Path, folder: Path) -> None:
    """Rename each file written in the staging folder ``tmp`` into ``folder``, with the mode of a new file."""
    open_like_new_files(tmp)
    for f in sorted(Path(tmp).iterdir()):
        os.replace(f, Path(folder) / f.name)


def staging_names() -> re.Pattern:
    """The names ``staged_files`` gives its folders (``.adapter.x1y2z3w4``: mkdtemp's eight random characters)."""
    return re.compile(rf"{re.escape(STAGING)}[a-z0-9_]{{8}}")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def open_like_new_files(folder: Path, *, folder_too: bool = False) -> None:
    """Give the files in ``folder`` the mode the umask gives a new file: safetensors (and so peft's and
    transformers' ``save_pretrained``) writes its files 0600, which a shared cluster's group cannot read.
    ``folder_too``: the folder as well (a ``mkdtemp`` staging folder is 0700)."""
    mode = 0o666 & ~_umask()
    if folder_too:
        os.chmod(folder, 0o777 & ~_umask())
    for path in Path(folder).iterdir():
        if path.is_file() and not path.is_symlink() and (path.stat().st_mode & 0o777) != mode:
            os.chmod(path, mode)
