"""Status bookkeeping, pure: status.conditions (Kubernetes API conventions) and the merge patch that
writes a status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shoal.times import format_time


def condition(type_: str, ok: bool, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": "True" if ok else "False", "reason": reason, "message": message}


def merge(
    old: list[dict[str, Any]] | None, new: list[dict[str, Any]], generation: int | None, now: datetime
) -> list[dict[str, Any]]:
    """New conditions, keeping lastTransitionTime of those whose status did not change."""
    previous = {c.get("type"): c for c in old or []}
    out = []
    for cond in new:
        prior = previous.get(cond["type"])
        changed = prior is None or prior.get("status") != cond["status"]
        stamp = (
            format_time(now) if changed or not prior else prior.get("lastTransitionTime", format_time(now))
        )
        out.append({**cond, "lastTransitionTime": stamp, "observedGeneration": generation})
    return out


def merge_keeping(
    old: list[dict[str, Any]] | None, new: list[dict[str, Any]], generation: int | None, now: datetime
) -> list[dict[str, Any]]:
    """`merge`, then the old conditions `new` says nothing of, kept as they were (a pass that speaks of
    some conditions does not erase the others)."""
    merged = merge(old, new, generation, now)
    spoken = {c["type"] for c in merged}
    return merged + [c for c in old or [] if c.get("type") not in spoken]


def turned_false(old: list[dict[str, Any]] | None, cond: dict[str, Any]) -> bool:
    """`cond` is False and was not among `old` as False: the moment for its one Warning Event."""
    before = [c.get("status") for c in old or [] if c.get("type") == cond["type"]]
    return cond["status"] == "False" and before != ["False"]


def same(a: list[dict[str, Any]] | None, b: list[dict[str, Any]]) -> bool:
    def key(cs: list[dict[str, Any]] | None) -> list[tuple[Any, ...]]:
        return sorted(
            (c.get("type"), c.get("status"), c.get("reason"), c.get("message"), c.get("observedGeneration"))
            for c in cs or []
        )

    return key(a) == key(b)


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The merge patch taking status `old` to `new`: the fields that changed (conditions compared
    without their timestamps), a field that is None in `new` cleared (sent as null), a field `new`
    leaves out kept. Empty when nothing changed: nothing to write."""
    out: dict[str, Any] = {}
    for key, value in new.items():
        if key == "conditions":
            if not same(old.get(key), value):
                out[key] = value
        elif old.get(key) != value:
            out[key] = value
    return out
