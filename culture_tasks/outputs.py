"""Where a run writes: claim an output, lock it against a second run, resume only the same run.

One guard for the aligner, the LoRA trainer, the augmentation and ``culture-train data``:

- ``claim_output``: an existing output is refused unless ``--resume`` or ``--overwrite`` says
  what to do with it; an output that is, holds or lies inside one of the run's inputs is always refused.
- ``OutputLock``: a lock file (pid, host and the process's start) created atomically, so two runs
  cannot mix results in one output; the lock of a process that died on this host (or whose pid
  now names a later process), or an empty one left by a run killed while creating it, is taken over
  with a message. An output inside a folder another live run has locked (a fold folder of a running
  k-fold, a country folder of a running several-country alignment) is refused too.
- ``check_settings``: the settings a run was made with are stored with it and compared on
  resume, so a resumed run is the run that was started, or a one-line error.
- ``set_aside``: ``--overwrite`` moves the old output beside it and deletes it only once the new run
  has finished, so a failed or killed run loses nothing.
- ``safe_join``: a name taken from data or flags stays inside the output folder.
- ``remove_killed_writes``: a resumed run ends with the files an uninterrupted one has, without the
  temporary files of the writes a kill cut short.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from culture_tasks.atomic import staging_names, temporary_names, write_text_atomic
from culture_tasks.fingerprints import as_recorded

log = logging.getLogger("culture_tasks")

LOCK_NAME = ".lock"
# a run writes its pid into the lock file it has just created within microseconds: an empty lock file
# older than this (seconds) is the lock of a run killed between creating and writing it
LOCK_WRITE_GRACE = 10


class OutputError(ValueError):
    """An output that cannot be written as asked; nothing was changed."""


def error_line(command: str, err: BaseException) -> str:
    """A command's error as the one line it prints: a message that spans lines (a library's, quoted inside ours)
    has its lines joined, so the line a log or a shell keeps is the whole error."""
    text = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    return f"{command}: {text}"


def os_error_line(command: str, err: OSError) -> str:
    """An OSError met mid-run (a full disk, a folder that cannot be written) as one line naming the file and the
    fix: a traceback says no more."""
    return error_line(command, f"{err}; fix that (free space, permissions) and run again")


def safe_join(root: str | os.PathLike, name: str, error: type[Exception] = OutputError) -> Path:
    """``root / name``, refusing a name that would leave ``root`` (``..``, absolute, a link out)."""
    root = Path(root)
    text = str(name)
    parts = Path(text).parts
    if not text or Path(text).is_absolute() or ".." in parts or text.startswith("~") or "\x00" in text:
        raise error(f"{text!r} is not a plain name inside {root}: names from data or flags may not be absolute "
                    "or contain '..'; choose another name")
    path = root / text
    if not _inside(path.resolve(), root.resolve()):
        raise error(f"{text!r} resolves to {path.resolve()}, outside {root}; choose another name")
    return path


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _occupied(path: Path, ignore: Iterable[str]) -> bool:
    if path.is_dir():
        return any(p.name not in set(ignore) for p in path.iterdir())
    return path.exists()


def claim_output(path: str | os.PathLike, *, overwrite: bool = False, resume: bool = False,
                 inputs: Iterable[str | os.PathLike | None] = (), folder: bool = True,
                 ignore: Iterable[str] = (LOCK_NAME,), error: type[Exception] = OutputError,
                 resumable: bool = True, models: Iterable[str | os.PathLike | None] = ()) -> str:
    """What to do with ``path``: ``"new"``, ``"resume"`` or ``"replace"``; raises when neither flag
    allows an existing output, when the output is one of ``inputs`` (or, for a folder that
    would be replaced, holds one), when it lies inside one of ``models`` (folders whose
    ``model_fingerprint`` the run stores) or inside an input that is a folder (the data root), or
    when ``--overwrite`` finds the backup of an earlier unfinished replacement. Nothing is moved here:
    call ``set_aside`` once every other check has passed."""
    path = Path(path)
    if overwrite and resume:
        raise error(f"{path}: --resume continues the run there and --overwrite replaces it; give only one")
    target = path.expanduser().resolve()
    for source in inputs:
        if source in (None, ""):
            continue
        src = Path(source).expanduser().resolve()
        if src == target:
            raise error(f"output {path} is also an input of this run; writing it would destroy the input, "
                        "choose another --output")
        if folder and _inside(src, target) and path.is_dir():
            raise error(f"output folder {path} holds the input {source}; replacing or filling it could destroy "
                        "the input, choose another --output")
    for model in models:  # after the inputs: an output that *is* the model is named as an input
        if model not in (None, "") and Path(model).is_dir() and _inside(target, Path(model).expanduser().resolve()):
            raise error(f"output {path} lies inside the model folder {model}: the run's files would change that "
                        "model (and its fingerprint, so --resume would refuse); choose an --output outside it")
    for source in inputs:  # a folder the run reads (the data root): its files and the run's would mix
        if source not in (None, "") and Path(source).is_dir() and _inside(target, Path(source).expanduser().resolve()):
            raise error(f"output {path} lies inside the input folder {source}: the run's files would mix with the "
                        "ones it reads (and --overwrite would move those away); choose an --output outside it")
    if folder and path.exists() and not path.is_dir():
        raise error(f"output {path} is a file, not a folder; choose another --output")
    if not folder and path.is_dir():
        raise error(f"output {path} is a folder, not a file; choose another --output")
    kept = [b for b in kept_backups(path, folder) if b not in _SET_ASIDE]  # not this run's own
    if not _occupied(path, ignore) or resume:
        if kept and (resume or overwrite) and _HELD_LOCKS[0]:  # this run completes the replacement
            _SET_ASIDE.extend(b for b in kept if b not in _SET_ASIDE)
            log.warning("%s: %s holds what an earlier --overwrite replaced, kept because that run did not finish; it "
                        "is deleted once this run has finished", path, kept[0])
        elif kept:
            log.warning("%s holds the output an earlier --overwrite of %s replaced, kept because that run did not "
                        "finish; delete it once it is no longer needed", kept[0], path)
        return "resume" if resume and _occupied(path, ignore) else "new"
    if overwrite:
        if kept:
            of = kept[0].parent / kept[0].name[1:-len(".replaced")]
            raise error(f"{kept[0]} holds the output an earlier --overwrite of {of} replaced and did not finish; "
                        f"move it back to {of} or delete it, then run again")
        _check_movable(path, error)
        return "replace"
    kind = "folder" if folder else "file"
    state = "is not empty" if folder else "already exists"
    resume_hint = "--resume to continue the run there, " if resumable else ""
    raise error(f"output {kind} {path} {state}; pass {resume_hint}--overwrite to replace it, or choose another "
                "--output")


def replaced_path(path: str | os.PathLike) -> Path:
    """Where ``--overwrite`` keeps the output it replaces until the new run has finished: a hidden
    sibling of the real folder or file (links resolved), ``<parent>/.<name>.replaced``."""
    path = Path(path).expanduser().resolve()
    return path.parent / f".{path.name}.replaced"


def kept_backups(path: str | os.PathLike, folder: bool = True) -> list[Path]:
    """Backups of earlier unfinished replacements of ``path``: its own, and for a folder those of what it holds
    (a country's or a fold's output inside it), which replacing the folder would otherwise sweep away."""
    own = replaced_path(path)
    found = [own] if own.exists() or own.is_symlink() else []
    if folder and Path(path).is_dir():
        found += sorted(p for p in Path(path).resolve().rglob(".*.replaced"))
    return found


def _check_movable(path: str | os.PathLike, error: type[Exception]) -> None:
    """``set_aside`` renames the old output beside itself: refuse, before any work, where that would be a copy (the
    output is a mount point of another file system) or is not allowed (its parent is not writable)."""
    real = Path(path).expanduser().resolve()
    if not os.access(real.parent, os.W_OK):
        raise error(f"--overwrite keeps the old output beside it until the new run has finished, but {real.parent} is "
                    "not writable; move the old output away yourself, or choose another --output")
    if real.stat().st_dev != real.parent.stat().st_dev:
        raise error(f"--overwrite keeps the old output beside it until the new run has finished, but {real} is on "
                    f"another file system than {real.parent} (a mount point); empty it yourself, or choose another "
                    "--output")


# outputs this process set aside for --overwrite; discarded when its outermost lock is released after success
_SET_ASIDE: list[Path] = []
_HELD_LOCKS = [0]
_HELD_TOKENS: set[str] = set()  # the tokens of the locks this process holds: a lock inside one of them is its own


def set_aside(path: str | os.PathLike, keep: Iterable[str] = (LOCK_NAME,)) -> None:
    """Move a claimed output (a folder's contents but ``keep``, or a file) to ``replaced_path``: the old
    result survives a run that fails or is killed, and is deleted only once the new run has finished
    (``OutputLock`` releasing after success). ``claim_output`` refused a ``--overwrite`` while an
    earlier backup exists, so none is overwritten here."""
    if not _HELD_LOCKS[0]:
        raise RuntimeError(f"set_aside({path}) without an output lock held: nothing would delete or report the backup")
    path = Path(path)
    backup = replaced_path(path)
    if path.is_dir():
        children = [c for c in path.iterdir() if c.name not in set(keep)]
        if not children:
            return
        backup.mkdir()
        _SET_ASIDE.append(backup)  # before moving: a move that fails halfway is reported too
        for child in children:
            shutil.move(str(child), str(backup / child.name))
    elif path.exists() or path.is_symlink():
        _SET_ASIDE.append(backup)
        shutil.move(str(path), str(backup))
    else:
        return
    log.info("--overwrite: moved the old %s to %s; it is deleted once this run has finished", path, backup)


def set_aside_around(path: str | os.PathLike, folders: Iterable[str | os.PathLike]) -> None:
    """``set_aside`` of an output whose sub-folders ``folders`` (a country's, a fold's) the run holds locked: the
    output's other contents and each folder's contents are set aside, the locks stay where they are."""
    folders = [Path(f) for f in folders]
    set_aside(path, keep=(LOCK_NAME, *(f.name for f in folders)))
    for folder in folders:
        set_aside(folder)


def _discard_set_aside(finished: bool) -> None:
    """Delete what ``set_aside`` kept once the run has finished; after a failure keep it and say where."""
    for backup in _SET_ASIDE:
        if not (backup.exists() or backup.is_symlink()):
            continue
        if not finished:
            log.warning("the run failed: the output it was replacing stays in %s; move it back, or delete it before "
                        "the next --overwrite", backup)
        elif backup.is_dir() and not backup.is_symlink():
            shutil.rmtree(backup, ignore_errors=True)
        else:
            backup.unlink(missing_ok=True)
    _SET_ASIDE.clear()


def remove_killed_writes(folder: str | os.PathLike, names: Iterable[str], staged: bool = False) -> None:
    """Remove the temporary files of atomic writes of ``names`` in ``folder`` (``atomic.temporary_names``) that a
    run killed while writing one left, and with ``staged`` the folders of ``atomic.staged_files`` (a whole adapter
    each), naming each; anything else is left. Called with the output's lock held, so no live run is writing them."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    files, folders = temporary_names(names), staging_names() if staged else None
    for path in sorted(folder.iterdir()):
        if path.is_symlink():
            continue
        if files.fullmatch(path.name) and path.is_file():
            path.unlink()
        elif folders is not None and folders.fullmatch(path.name) and path.is_dir():
            shutil.rmtree(path)
        else:
            continue
        log.warning("removed %s from %s, left by a run killed while writing it", path.name, folder)


def launch_number(name: str, default: int, least: int = 0) -> int:
    """A count the launcher put in the environment (``RANK``, ``WORLD_SIZE``, ...), ``default`` where it is unset or
    empty; anything but a whole number from ``least`` on (``"2 "``, ``"abc"``, ``"-1"``) is an error naming the
    variable: ``int()``'s own names none, and would take ``" 2"`` and ``"1_0"``."""
    text = os.environ.get(name, "")
    if text == "":
        return default
    if not (text.isascii() and text.isdigit()) or int(text) < least:
        raise OutputError(f"the environment variable {name}={text!r} is not a whole number from {least} on, as "
                          "torchrun and accelerate launch set it; unset it, or launch through them")
    return int(text)


def main_process() -> bool:
    """False in the other processes of a ``torchrun`` / ``accelerate launch`` run (``RANK`` > 0):
    only the main process locks, checks and writes the output."""
    return launch_number("RANK", 0) == 0


def launched_world_size() -> int:
    """The number of processes ``torchrun`` / ``accelerate launch`` started (``WORLD_SIZE``; 1 unset or empty),
    read before any process group exists: the one reading of the launcher's environment."""
    return launch_number("WORLD_SIZE", 1, least=1)


def launched_on_node() -> int:
    """How many of the launched processes run on this node (``LOCAL_WORLD_SIZE``, which torchrun and accelerate
    launch set; the whole launch where it is unset)."""
    return launch_number("LOCAL_WORLD_SIZE", 0, least=1) or launched_world_size()


def check_single_process(command: str, error: type[Exception] = OutputError) -> None:
    """Refuse a launch of several processes for a command that does not share its work among them: each
    process would run all of it into the same output, and only the main one holds the output's lock
    (``OutputLock``), so the others would claim, fill and replace it unguarded, racing the main one."""
    world = launched_world_size()
    if world > 1:
        raise error(f"{command} runs in one process, but torchrun / accelerate launch started {world} (WORLD_SIZE="
                    f"{world}), each of which would run all of it into the same output; run {command} without a "
                    "launcher")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _process_start(pid: int) -> str | None:
    """``<boot id>:<start time>`` of a running process (Linux ``/proc``), None where unknown: a
    later process given the same pid (a restarted container's run is often pid 1) has another."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the name in parentheses may hold spaces
    return f"{boot}:{fields[19]}" if len(fields) > 19 else None


def _gone(owner: dict) -> bool:
    """True when the lock's owner ran on this host and no longer runs: its pid is free, or now
    belongs to a process that started at another time. A lock from another host is never gone. An
    empty lock file (``{"empty": True, ...}``) is gone once older than ``LOCK_WRITE_GRACE``, on any host."""
    if owner.get("empty"):
        return time.time_ns() - owner["mtime"] > LOCK_WRITE_GRACE * 1_000_000_000
    pid = owner.get("pid")
    if owner.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    if not _alive(pid):
        return True
    start = owner.get("start")
    return start is not None and _process_start(pid) not in (None, start)


def _read_lock(path: Path) -> dict:
    """The owner a lock file names; ``{}`` when there is none; an empty file (its run created it and
    has not written it yet, or was killed in between) by its inode and time, which tell it from a new
    empty lock made after it."""
    try:
        with open(path, "rb") as fh:
            data, st = fh.read(), os.fstat(fh.fileno())
    except FileNotFoundError:
        return {}
    except OSError:
        return {"unreadable": True}
    if not data:
        return {"empty": True, "inode": st.st_ino, "mtime": st.st_mtime_ns}
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError is one
        return {"unreadable": True}


class OutputLock:
    """An exclusive lock file holding the owner's pid, host and process start, released on exit.

    ``OutputLock.for_folder(out)`` locks ``out/.lock``; ``OutputLock.for_file(f)`` locks ``f.lock``.
    """

    def __init__(self, lock_path: str | os.PathLike, what: str | os.PathLike, error: type[Exception] = OutputError):
        self.path, self.what, self.error = Path(lock_path), Path(what), error
        self.token = uuid.uuid4().hex
        self.created: list[Path] = []
        self.held = False

    @classmethod
    def for_folder(cls, folder, error: type[Exception] = OutputError) -> OutputLock:
        return cls(Path(folder) / LOCK_NAME, folder, error)

    @classmethod
    def for_file(cls, file, error: type[Exception] = OutputError) -> OutputLock:
        file = Path(file)
        return cls(file.with_name(file.name + ".lock"), file, error)

    def _mkdirs(self) -> None:
        missing = []
        parent = self.path.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for folder in reversed(missing):
            folder.mkdir(exist_ok=True)
            self.created.append(folder)

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "token": self.token,
                       "start": _process_start(os.getpid())}, fh)
        return True

    def _owner(self) -> dict:
        return _read_lock(self.path)

    def _take_over(self, owner: dict) -> bool:
        """Remove the lock of ``owner``, found gone; False when the lock file is no longer its: another
        run took it over and locked the output in the meantime, and its lock is put back."""
        stale = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(self.path, stale)  # only one of several takers wins the rename
        except FileNotFoundError:
            return False
        try:
            if _read_lock(stale) == owner:
                return True
            try:
                os.link(stale, self.path)  # never over a lock made since
            except FileExistsError:
                pass
            except OSError:  # a file system without hard links
                os.rename(stale, self.path)
            return False
        finally:
            stale.unlink(missing_ok=True)

    def _enclosing_owner(self) -> tuple[Path, dict] | None:
        """The lock file of a folder enclosing this output that another live run holds, and its owner; None where
        there is none. The locks of this process (a k-fold run training its fold's adapter), of runs that no
        longer run, and files named .lock that no ``OutputLock`` wrote (no pid and host in them: pytest's, say)
        do not count."""
        for folder in Path(self.what).expanduser().resolve().parents:
            lock = folder / LOCK_NAME
            owner = _read_lock(lock) if lock.is_file() else {}
            if isinstance(owner, dict) and {"pid", "host"} <= set(owner) and owner.get("token") not in _HELD_TOKENS \
                    and not _gone(owner):
                return lock, owner
        return None

    def acquire(self) -> OutputLock:
        if not main_process():  # the main process of this launch holds the lock for all of them
            return self
        self._mkdirs()
        for _ in range(5):
            if self._create():
                # after creating this lock: a run locking the enclosing folder meanwhile finds it when it
                # locks its own sub-folders (a k-fold's folds, a several-country alignment's countries)
                enclosing = self._enclosing_owner()
                if enclosing:
                    self.path.unlink(missing_ok=True)
                    self._cleanup_created()
                    lock, owner = enclosing
                    raise self.error(f"{self.what} lies inside {lock.parent}, which is in use by another run (process "
                                     f"{owner.get('pid')} on host {owner.get('host')}, lock file {lock}); wait for it "
                                     "to finish, or delete the lock file if that run is gone")
                self.held = True
                _HELD_LOCKS[0] += 1
                _HELD_TOKENS.add(self.token)
                return self
            owner = self._owner()
            if not owner:
                continue  # released meanwhile
            pid, host = owner.get("pid"), owner.get("host")
            if _gone(owner):
                if self._take_over(owner):
                    if owner.get("empty"):
                        log.warning("%s: took over the empty lock file of a run killed while creating it", self.what)
                    else:
                        log.warning("%s: took over the lock of process %s on %s, which no longer runs", self.what,
                                    pid, host)
                continue
            self._cleanup_created()
            who = ("an unreadable owner" if owner.get("unreadable") else
                   "a run that has not yet written its pid into it" if owner.get("empty") else
                   f"process {pid} on host {host}")
            raise self.error(f"{self.what} is in use by another run ({who}, lock file {self.path}); wait for it to "
                             "finish, or delete the lock file if that run is gone")
        self._cleanup_created()
        raise self.error(f"could not lock {self.what} (lock file {self.path} keeps changing)")

    def _cleanup_created(self) -> None:
        for folder in reversed(self.created):
            try:
                folder.rmdir()  # only if the run left it empty
            except OSError:
                break
        self.created = []

    def release(self, *, finished: bool) -> None:
        """Unlock; the outermost lock of this process also deletes the outputs ``set_aside`` replaced when
        the run ``finished``, and keeps them (saying where) when it did not."""
        if self.held:
            _HELD_LOCKS[0] -= 1
            _HELD_TOKENS.discard(self.token)
            if _HELD_LOCKS[0] == 0:
                _discard_set_aside(finished)
            if self._owner().get("token") == self.token:
                self.path.unlink(missing_ok=True)
            self.held = False
        self._cleanup_created()

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, exc_type, *exc) -> None:
        self.release(finished=exc_type is None)


def file_digest(path: str | os.PathLike) -> str:
    """``sha256:<hex>`` of a file's bytes: data are compared by content, not by name."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


# a setting naming a local folder -> the setting holding that folder's fingerprint, recorded beside it
FOLDER_FINGERPRINTS = {"model": "model_fingerprint", "generator": "generator_fingerprint",
                       "embedding_model": "embedding_fingerprint"}


def _norm(value):
    return json.loads(json.dumps(value))  # tuples vs lists, int vs float keys


def same_folder_content(saved: Mapping, given: Mapping, key: str) -> bool:
    """Whether ``key`` names, in both settings, a local folder of the same recorded content: then its spelling
    (``tiny`` from one working directory, ``../tiny`` or ``/abs/tiny`` from another) is no difference. A hub id,
    or a run stored without the fingerprint, has none: its name is compared as it is."""
    fingerprint = FOLDER_FINGERPRINTS.get(key)
    if fingerprint is None or saved.get(fingerprint) is None or given.get(fingerprint) is None:
        return False
    return _norm(saved[fingerprint]) == _norm(given[fingerprint])


def settings_differences(saved: Mapping, given: Mapping, keys: Iterable[str] | None = None) -> list[str]:
    """``key: saved X, given Y`` for every key whose value differs (JSON-normalised); a local folder is compared
    by its content where both record it (``same_folder_content``), not by how its path was written."""
    names = list(keys) if keys is not None else sorted(set(saved) | set(given))
    return [f"{k}: saved {_norm(saved.get(k))!r}, given {_norm(given.get(k))!r}" for k in names
            if _norm(saved.get(k)) != _norm(given.get(k)) and not same_folder_content(saved, given, k)]


def check_settings(saved: Mapping, given: Mapping, where: str | os.PathLike, *, keys: Iterable[str] | None = None,
                   error: type[Exception] = OutputError, later: Iterable[str] = ()) -> None:
    """Refuse a resume whose settings differ from the stored ones, naming each difference. ``later``:
    settings added to the stored ones after runs were already made; a run stored without one is
    resumed unchecked on it, with a warning (refusing would strand every such run)."""
    given = as_recorded(saved, given)  # a fingerprint stored in the earlier scheme is compared in it
    missing = [k for k in later if k not in saved and k in given]
    if missing:
        log.warning("--resume: %s was stored without %s; that is not checked", where, ", ".join(missing))
        given = {k: v for k, v in given.items() if k not in missing}
        keys = None if keys is None else [k for k in keys if k not in missing]
    diff = settings_differences(saved, given, keys)
    if diff:
        raise error(f"--resume: the run in {where} was made with other settings ({'; '.join(diff)}); resume with "
                    "the saved settings, pass --overwrite to start again, or choose another --output")


def save_settings(path: str | os.PathLike, settings: Mapping) -> None:
    write_text_atomic(Path(path), json.dumps(settings, indent=1, sort_keys=True))


def read_json(path: Path, who: str, fix: str, error: type[Exception] = OutputError) -> dict:
    """A JSON object from ``path``; json's own error names no file, so this one names it and the fix."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise error(f"{who}: {path} is not readable JSON ({err}); {fix}") from None
    if not isinstance(data, dict):
        raise error(f"{who}: {path} holds a JSON {type(data).__name__}, not an object; {fix}")
    return data


def load_settings(path: str | os.PathLike, error: type[Exception] = OutputError) -> dict | None:
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise error(f"{path}: stored run settings are unreadable ({err}); restore the file or start again "
                    "with --overwrite") from None
