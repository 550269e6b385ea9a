"""Pure manifest builders: plain dicts in, plain dicts out."""

from typing import Any

from shoal import API_VERSION


def controller_ref(kind: str, name: str, uid: str) -> dict[str, Any]:
    """The ownerReference of an object Shoal controls: garbage-collected with its owner."""
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
