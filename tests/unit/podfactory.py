"""Builds PodViews for the pure pool tests, and applies merge patches for the fake API servers."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from shoal.pool.pods import PodView, state_label

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POOL_UID = "pool-uid"
HASH = "hash1"
_ids = itertools.count()


def apply_merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """A JSON merge patch (RFC 7386) applied in place, as the API server applies one: null removes."""
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict):
            apply_merge_patch(target.setdefault(k, {}), v)
        else:
            target[k] = v


def pod(state: str = "Idle", age: float = 60.0, now: datetime = T0, **kw: Any) -> PodView:
    """A pod of the pool in a given observed state, `age` seconds old at `now`."""
    n = next(_ids)
    base: dict[str, Any] = dict(
        name=kw.pop("name", f"p{n:03d}"),
        uid=f"uid{n}",
        created=now - timedelta(seconds=age),
        controller_uid=POOL_UID,
        template_hash=HASH,
        state_label=state_label(state),
    )
    if state in ("Idle", "Claimed"):
        base.update(phase="Running", scheduled=True, ready=True, ready_changed=base["created"])
    elif state == "Warming":
        base.update(phase="Running", scheduled=True)
    elif state == "Failed":
        base.update(phase="Failed", scheduled=True)
    if state == "Claimed":
        base["claimed_by"] = "session-x"
    base.update(kw)
    return PodView(**base)
