"""Atomic file writes: a temp file beside the target, then a rename over it."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def atomic_write(path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` for a temp file beside ``path``, then rename it
    over ``path``. A failure or an interrupt leaves no temp file and never a
    half-written ``path``; its error (OSError or torch's RuntimeError) passes on."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
