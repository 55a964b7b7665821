"""A run's claim: the OS file lock a worker holds while it trains the run.

``results/.claims/<key>.lock`` is locked with ``flock`` (the ``filelock``
package) for as long as a worker trains that run; ``<key>.json`` beside it
names the worker meanwhile. Two workers never hold the same claim, and the
OS drops the lock of a worker that dies (even by SIGKILL), so the claim is
free again for a relaunch: no stale claim to clear by hand.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path

CLAIMS = ".claims"   # under the profile's results/


@contextmanager
def claimed(results, key: str, about: dict | None = None):
    """Hold the claim ``key`` under ``results``: yields True when this
    worker holds it, False when another worker does."""
    from filelock import FileLock, Timeout
    folder = Path(results) / CLAIMS
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / f"{key}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    who = folder / f"{key}.json"
    try:
        who.write_text(json.dumps({**(about or {}), "pid": os.getpid(),
                                   "host": socket.gethostname(),
                                   "since": _dt.datetime.now().isoformat(timespec="seconds")}))
        yield True
    finally:
        who.unlink(missing_ok=True)
        lock.release()
