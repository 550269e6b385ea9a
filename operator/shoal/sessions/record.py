"""What a session's status write says, pure: the conditions that follow from the phase, the fields
it clears, and the Event a phase change posts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shoal import conditions
from shoal.sessions.steps import STARTING_WELL, Event
from shoal.times import parse_time


def complete(
    old: dict[str, Any], new: dict[str, Any], generation: int | None, now: datetime
) -> dict[str, Any]:
    """`new` with its phase defaulted, observedGeneration, the conditions derived from it, and every
    field of `old` that `new` no longer has set to None: a session's status is replaced, not merged."""
    out = dict(new)
    phase = out["phase"] = out.get("phase") or "Pending"
    out["observedGeneration"] = generation
    out.pop("checkpointAcknowledged", None)  # a step's scratch, not part of the record
    reason, message = out.get("reason") or "", out.get("message") or ""
    conds = [
        conditions.condition("Admitted", phase != "Pending" or reason == "Preempted", reason, message),
        conditions.condition("Running", phase == "Running", reason, message),
    ]
    if out.get("lastCheckpoint"):
        conds.append(conditions.condition("Checkpointed", True, "CheckpointWritten", out["lastCheckpoint"]))
    out["conditions"] = conditions.merge(old.get("conditions"), conds, generation, now)
    return {**{k: None for k in old if k not in out}, **out}


def queued_since(status: dict[str, Any]) -> datetime | None:
    """When a waiting session started waiting (for the queue-age gauge); None when it is not waiting."""
    if status.get("phase") != "Pending" or status.get("reason") == "BackoffRestart":
        return None
    admitted = next((c for c in status.get("conditions") or [] if c["type"] == "Admitted"), None)
    return parse_time(admitted["lastTransitionTime"]) if admitted else None


def phase_event(old: dict[str, Any], new: dict[str, Any]) -> Event | None:
    """A phase or reason change is an Event named after the new phase."""
    if old.get("phase", "Pending") == new["phase"] and old.get("reason") == new.get("reason"):
        return None
    trouble = new["phase"] == "Failed" or (
        new["phase"] == "Starting" and new.get("reason") not in STARTING_WELL
    )
    level = "Warning" if trouble else "Normal"
    return Event(level, new["phase"], new.get("message") or new["phase"])
