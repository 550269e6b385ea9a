"""Pure manifest builders: plain dicts in, plain dicts out."""

from typing import Any

from shoal import API_VERSION

# On every pod Shoal creates (pool and session pods): the operator's one pod watch selects on it in
# the API server, so no other pod's event ever reaches the operator.
LABEL_MANAGED = "shoal.dev/managed"
MANAGED = f"{LABEL_MANAGED}=true"


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
