"""Whether a run learned: failed runs (diverged, or stuck at chance).

A run that never learned counts as failed like a diverged one: the report
counts such runs and keeps them out of its means. :func:`failure` reads a
stored record's per-epoch ``history``; :func:`record_failure` a whole
record; ``engine.fit`` marks a run ``failed`` with the same rule.

The rule, over a run's last epochs (the last half of them, at least the
last 2; a run of one epoch is not judged: "stays" needs two epochs, and
one-epoch smoke runs on tiny data are meant to be short): its accuracy
stays at chance (at most 1/C + ``ACC_MARGIN``), the validation accuracy
where the epoch measured one, else its training accuracy; an epoch that
recorded neither is judged by its training loss, stuck within
``LOSS_TOL`` (3%) of ln(C), the loss of a uniform guess over C classes.
The accuracy comes first: with label smoothing or a slow rate the loss can
stay within 3% of ln(C) while the accuracy is far above chance (Adam at
1e-4 with the step schedule: loss 2.251, validation accuracy 22.7%), and
such a run learned.

:func:`record_failure` judges a stored record again from its history, so
records stored under an earlier rule are read under this one.
"""
from __future__ import annotations

import math

LOSS_TOL = 0.03    # relative distance to ln(C) that counts as a uniform guess
ACC_MARGIN = 0.02  # accuracy above 1/C that still counts as chance


def _epochs(history) -> list[dict]:
    """A history as a list of epoch records (a list already, or a dict of
    per-epoch lists such as ``{"train_loss": [...], "val_acc": [...]}``)."""
    if isinstance(history, dict):
        n = max((len(v) for v in history.values() if isinstance(v, list)), default=0)
        return [{k: v[i] if isinstance(v, list) and i < len(v) else None
                 for k, v in history.items()} for i in range(n)]
    return list(history or [])


def window(n: int) -> int:
    """How many last epochs the rule reads in a run of ``n`` epochs (0:
    too short to judge)."""
    return 0 if n < 2 else max(2, math.ceil(n / 2))


def _stuck(rec: dict, num_classes: int) -> bool:
    """Whether one epoch looks untrained: its accuracy at chance
    (validation where measured, else training), or, with no accuracy
    recorded, its training loss at that of a uniform guess."""
    acc = rec.get("val_acc")
    if acc is None:
        acc = rec.get("train_acc")
    if acc is not None and acc == acc:
        return acc <= 1 / num_classes + ACC_MARGIN
    loss, uniform = rec.get("train_loss"), math.log(num_classes)
    return loss is not None and math.isfinite(loss) and abs(loss - uniform) <= LOSS_TOL * uniform


def _since(eps: list[dict], num_classes: int) -> int:
    """Where the trailing stretch of stuck epochs begins (an index): epochs
    whose validation accuracy rose above chance do not count (at the loss
    of a uniform guess, they still learned), unless no epoch is left."""
    def start(stuck) -> int:
        i = len(eps)
        while i > 0 and stuck(eps[i - 1]):
            i -= 1
        return i
    chance = 1 / num_classes + ACC_MARGIN
    strict = start(lambda r: _stuck(r, num_classes) and
                   (r.get("val_acc") is None or r["val_acc"] <= chance))
    return strict if strict < len(eps) else start(lambda r: _stuck(r, num_classes))


def failure(history: dict | list, num_classes: int = 10) -> str | None:
    """Why a run failed to learn ("at chance from epoch 2 (val acc 0.100,
    train loss 2.303)"), or None when it learned. Epochs without
    validation are judged on their training loss alone."""
    eps = _epochs(history)
    if not window(len(eps)):
        return None
    if not all(_stuck(r, num_classes) for r in eps[-window(len(eps)):]):
        return None
    first = _since(eps, num_classes)
    last = eps[-1]
    since = eps[first].get("epoch", first + 1)
    parts = [f"val acc {last['val_acc']:.3f}"] if last.get("val_acc") is not None else []
    if last.get("train_loss") is not None:
        parts.append(f"train loss {last['train_loss']:.3f}")
    return f"at chance from epoch {since} ({', '.join(parts)})"


def record_failure(record: dict) -> str | None:
    """Why a stored run failed: "diverged at epoch E" for a diverged run,
    the :func:`failure` reason for one that never learned, else None."""
    if record.get("status") == "diverged":
        at = record.get("diverged_at") or {}
        where = f" at epoch {at['epoch']}" if at.get("epoch") is not None else ""
        return f"diverged{where}"
    history = record.get("history") or []
    if record.get("failure") and not history:
        return record["failure"]  # nothing to judge again
    num_classes = (record.get("data") or {}).get("num_classes") or 10
    return failure(history, num_classes)


def learned(record: dict) -> bool:
    """Whether a stored run finished and learned (status ok or failed as
    stored, judged again by :func:`record_failure`)."""
    return record.get("status") in ("ok", "failed") and record_failure(record) is None
