"""Per kind: read the world, call the pure logic, write the results."""

from __future__ import annotations

from typing import Any

from shoal import conditions
from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path


def write_status(
    kube: Kube, plural: str, obj: dict[str, Any], status: dict[str, Any]
) -> dict[str, Any] | None:
    """The one way every kind writes its status: merge-patch what changed from what `obj` holds
    (`conditions.status_patch`); the object as the API server returned it, or None when nothing was
    written (unchanged, or the object is already gone)."""
    patch = conditions.status_patch(obj.get("status") or {}, status)
    if not patch:
        return None
    meta = obj["metadata"]
    return kube.merge_patch_if_exists(
        custom_path(plural, meta["namespace"], meta["name"], "status"), {"status": patch}
    )
