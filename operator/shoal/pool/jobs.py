"""Job signatures and what a pod remembers of the jobs it served: the data Affinity ranks pods by
(claims/affinity.py).

A signature is a small map (`{"repo": "web", "toolchain": "node22"}`; a session's is its game and
algorithm), kept as compact JSON with sorted keys so it compares as text and parses back. On every
release the pod's `shoal.dev/history` gains the job: its signature, whether it succeeded (True,
False, or None when nothing said) and how long it held the pod; the last HISTORY jobs are kept.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

HISTORY = 8
_MAX_SIGNATURE = 2048  # a signature longer than this is not remembered (annotations are bounded)


@dataclass(frozen=True)
class Job:
    signature: str
    ok: bool | None
    seconds: float


def signature_text(signature: Mapping[str, str] | None) -> str | None:
    """A job signature as one comparable string: JSON, keys sorted."""
    if not signature:
        return None
    return json.dumps(dict(sorted(signature.items())), separators=(",", ":"))


def parse_history(text: str | None) -> tuple[Job, ...]:
    try:
        raw = json.loads(text or "[]")
    except ValueError:
        return ()
    out = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, list) and len(item) == 3 and isinstance(item[0], str):
            ok = item[1] if isinstance(item[1], bool) else None
            seconds = float(item[2]) if isinstance(item[2], (int, float)) else 0.0
            out.append(Job(item[0], ok, seconds))
    return tuple(out[-HISTORY:])


def with_job(
    history: Sequence[Job], signature: str | None, ok: bool | None, claimed: datetime | None, now: datetime
) -> str | None:
    """The history annotation after a release, or None when there is nothing to remember."""
    if not signature or len(signature) > _MAX_SIGNATURE:
        return None
    seconds = round(max(0.0, (now - claimed).total_seconds()), 1) if claimed else 0.0
    jobs = [*history, Job(signature, ok, seconds)][-HISTORY:]
    return json.dumps([[j.signature, j.ok, j.seconds] for j in jobs], separators=(",", ":"))


def outcome(text: str | None) -> bool | None:
    """What a job said of itself on its pod (shoal.dev/job-outcome)."""
    return {"succeeded": True, "failed": False}.get((text or "").strip().lower())
