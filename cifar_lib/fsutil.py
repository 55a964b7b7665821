"""Atomic file writes: a temp file beside the target, then a rename over it."""
from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path
from typing import Callable


def temp_name(path: Path) -> Path:
    """A temp path beside ``path`` that no other writer uses: hidden, named
    after the target, the process and thread, and a random token, ending in
    ``.tmp`` (ignored by git; never matched by ``*.pt`` or ``*.json``)."""
    path = Path(path)
    token = f"{os.getpid()}-{threading.get_ident() % 10**6}-{secrets.token_hex(4)}"
    return path.with_name(f".{path.name}.{token}.tmp")


def atomic_write(path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` for a temp file beside ``path``, then rename it
    over ``path``. A failure or an interrupt leaves no temp file and never a
    half-written ``path``; its error (OSError such as a full disk, or torch's
    RuntimeError) passes on, never replaced by an error of the clean-up.

    Each call has its own temp name (:func:`temp_name`), so two writers of
    the same target at once (threads or processes) never touch each other's
    temp file: the last rename wins and ``path`` is always one whole write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # the original error is the one to report
            pass
        raise
    return path
