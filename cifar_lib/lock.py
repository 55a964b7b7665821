"""One job per output folder at a time.

    from cifar_lib.lock import output_lock
    with output_lock(profile.root):
        ...  # write figures/, results/, notebooks/ of this profile

A second job that asks for the same folder (another process, or another
thread of this one) gets :class:`FolderBusy` at once, whose message names the
folder, the holder's pid and since when it holds it ("another job is using
runs/cpu (pid 4242) since 2025-01-31 14:03:12; wait for it or stop it");
``wait=`` seconds lets it wait that long first.

The lock is an OS file lock (``filelock``: ``flock`` on Linux and macOS) on
``<folder>/.running/job.lock``, so a job that dies, even by SIGKILL, frees
it: there is no stale lock to clear by hand. Beside it ``job.json`` names the
holder (pid, start time, command) while it holds the lock. Both live in a
``.running/`` folder, which git ignores.

Within the job the lock is re-entrant: the same thread may take it again
(nested calls), and child processes (the notebook kernels a job starts)
inherit it through the environment variable ``CIFAR_LIB_HELD_LOCKS``, so a
kernel that takes the lock of its job's folder goes on instead of waiting
for its own parent.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

LOCK_DIR = ".running"
LOCK_NAME = "job.lock"
HOLDER_NAME = "job.json"
ENV = "CIFAR_LIB_HELD_LOCKS"

_state = threading.local()   # per thread: {realpath: depth} of the locks it holds
_env_lock = threading.Lock()  # guards the edits of os.environ[ENV]


class FolderBusy(RuntimeError):
    """Another job holds the output folder's lock; the message says which
    (pid, since when) and what to do."""

    def __init__(self, folder: Path, holder: dict | None):
        self.folder, self.holder = Path(folder), holder
        super().__init__(busy_message(folder, holder))


def _shown(folder: Path) -> str:
    """``folder`` relative to the repository (``runs/cpu``), else as given."""
    from cifar_lib.profiles import REPO
    real, repo = Path(os.path.realpath(folder)), Path(os.path.realpath(REPO))
    if real != repo and real.is_relative_to(repo):
        return real.relative_to(repo).as_posix()
    return str(folder)


def _when(started: str | None) -> str:
    try:
        t = _dt.datetime.fromisoformat(started)
    except (TypeError, ValueError):
        return "an unknown time"
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def busy_message(folder, holder: dict | None) -> str:
    pid = (holder or {}).get("pid", "unknown")
    text = (f"another job is using {_shown(Path(folder))} (pid {pid}) since "
            f"{_when((holder or {}).get('started'))}; wait for it or stop it")
    if holder and holder.get("command"):
        text += f" (its command: {holder['command']})"
    return text


def lock_path(folder) -> Path:
    return Path(folder) / LOCK_DIR / LOCK_NAME


def holder(folder) -> dict | None:
    """Who holds the lock of ``folder`` as its ``job.json`` says (None: no
    one said so; the file is only there while a job holds the lock)."""
    try:
        return json.loads((Path(folder) / LOCK_DIR / HOLDER_NAME).read_text())
    except (OSError, ValueError):
        return None


def _holder_soon(folder: Path, tries: int = 10) -> dict | None:
    """The holder's ``job.json``, waiting a moment for a job that has just
    taken the lock to write it."""
    for _ in range(tries):
        found = holder(folder)
        if found is not None:
            return found
        time.sleep(0.05)
    return None


def _held() -> dict[str, int]:
    if not hasattr(_state, "held"):
        _state.held = {}
    return _state.held


def _env_tokens() -> dict[str, str]:
    try:
        tokens = json.loads(os.environ.get(ENV) or "{}")
    except ValueError:
        return {}
    return tokens if isinstance(tokens, dict) else {}


def _set_env_token(key: str, token: str | None) -> None:
    with _env_lock:
        tokens = _env_tokens()
        if token is None:
            tokens.pop(key, None)
        else:
            tokens[key] = token
        if tokens:
            os.environ[ENV] = json.dumps(tokens)
        else:
            os.environ.pop(ENV, None)


def _inherited(key: str, folder: Path) -> bool:
    """The lock is held by a parent of this process (it passed its token down)."""
    token = _env_tokens().get(key)
    h = holder(folder)
    return bool(token and h and h.get("token") == token and h.get("pid") != os.getpid())


def _try_lock(folder: Path, timeout: float):
    """The acquired file lock, or None when another job holds it."""
    from filelock import FileLock, Timeout
    path = lock_path(folder)
    for attempt in range(5):
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path), timeout=timeout)
        try:
            lock.acquire()
            return lock
        except Timeout:
            return None
        except FileNotFoundError:  # the folder was removed by a job that just ended
            if attempt == 4:
                raise
            time.sleep(0.01)


def _write_holder(folder: Path, info: dict) -> None:
    from cifar_lib.fsutil import atomic_write
    text = json.dumps(info, indent=1) + "\n"
    atomic_write(folder / LOCK_DIR / HOLDER_NAME, lambda tmp: tmp.write_text(text))


def _drop_holder(folder: Path, token: str) -> None:
    path = folder / LOCK_DIR / HOLDER_NAME
    try:
        if (holder(folder) or {}).get("token") == token:
            path.unlink(missing_ok=True)
    except OSError:  # never hide the error of the block it guarded
        pass


@contextmanager
def output_lock(folder, wait: float = 0):
    """Hold the lock of output folder ``folder`` for the ``with`` block.

    Raises :class:`FolderBusy` when another job holds it and has not let go
    within ``wait`` seconds (0: at once; None: wait as long as it takes).
    Re-entrant in the thread that holds it and in the processes it starts
    (module doc). The folder is created if missing."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(folder)
    held = _held()
    if held.get(key):  # nested in the same thread
        held[key] += 1
        try:
            yield folder
        finally:
            held[key] -= 1
        return
    lock = _try_lock(folder, 0)
    if lock is None and _inherited(key, folder):  # our parent job holds it
        held[key] = 1
        try:
            yield folder
        finally:
            held.pop(key, None)
        return
    if lock is None and wait != 0:
        lock = _try_lock(folder, -1 if wait is None else wait)
    if lock is None:
        raise FolderBusy(folder, _holder_soon(folder))
    token = secrets.token_hex(8)
    try:
        _write_holder(folder, {
            "pid": os.getpid(), "token": token,
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]})
        _set_env_token(key, token)
        held[key] = 1
        yield folder
    finally:
        held.pop(key, None)
        _set_env_token(key, None)
        try:
            _drop_holder(folder, token)
        finally:
            lock.release()
            try:  # empty once the lock file is gone (filelock >= 4 removes it)
                (folder / LOCK_DIR).rmdir()
            except OSError:
                pass
