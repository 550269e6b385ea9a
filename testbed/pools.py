"""What the e2e tests and the benchmarks read of a pool's pods, judged the same way by both."""

from __future__ import annotations

from typing import Any


def is_idle(pod: dict[str, Any]) -> bool:
    """Unclaimed and ready: what a claim can take (the shoal.dev/state label says Unclaimed from the
    pod's creation on; its Ready condition says whether it has started)."""
    meta = pod["metadata"]
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )
    return (
        (meta.get("labels") or {}).get("shoal.dev/state") == "Unclaimed"
        and ready
        and not meta.get("deletionTimestamp")
    )
