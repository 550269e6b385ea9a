"""Per kind: read the world, call the pure logic, write the results."""

from __future__ import annotations

from typing import Any

from shoal import conditions
from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path


def write_status(
    kube: Kube, plural: str, obj: dict[str, Any], status: dict[str, Any]
) -> dict[str, Any] | None:
    """Merge-patch `status` (with its merged `conditions`) unless nothing changed; the object as the API
    server returned it, or None when nothing was written (unchanged, or the object is already gone)."""
    old = obj.get("status") or {}
    fields = {k: v for k, v in status.items() if k != "conditions"}
    if all(old.get(k) == v for k, v in fields.items()) and conditions.same(
        old.get("conditions"), status["conditions"]
    ):
        return None
    meta = obj["metadata"]
    return kube.merge_patch_if_exists(
        custom_path(plural, meta["namespace"], meta["name"], "status"), {"status": status}
    )
