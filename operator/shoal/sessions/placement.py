"""Whether one node can take a session's pod, as the scheduler would judge it: Ready and schedulable,
the nodeSelector's labels, every NoSchedule/NoExecute taint tolerated, and the requests (GPUs
included) within what the node's pods leave of its allocatable. Pure: nodes and pods in, answer out.

Hand-written rather than asking the scheduler: admission must answer before a pod exists (a pod that
cannot be placed would hold quota and a name), and the scheduler has no dry-run API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from shoal.api.common import parse_quantity

Resources = Mapping[str, Decimal]


ENDED = ("Succeeded", "Failed")  # a pod in these phases holds nothing on its node


def pod_requests(pod: Mapping[str, Any]) -> dict[str, Decimal]:
    """A pod's effective requests, as the scheduler counts them: the sum over its containers, or the
    largest init container's where that is more (init containers run one at a time)."""
    spec = pod.get("spec") or {}

    def of(containers: Iterable[Mapping[str, Any]]) -> list[dict[str, Decimal]]:
        return [
            {k: parse_quantity(v) for k, v in ((c.get("resources") or {}).get("requests") or {}).items()}
            for c in containers
        ]

    total: dict[str, Decimal] = {}
    for req in of(spec.get("containers") or []):
        for k, v in req.items():
            total[k] = total.get(k, Decimal(0)) + v
    for req in of(spec.get("initContainers") or []):
        for k, v in req.items():
            total[k] = max(total.get(k, Decimal(0)), v)
    return total


def tolerates(taint: Mapping[str, Any], tolerations: Iterable[Mapping[str, Any]]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator", "Equal") == "Exists":
            if not t.get("key") or t["key"] == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def schedulable(node: Mapping[str, Any]) -> bool:
    """Ready and not cordoned: a node the scheduler would place a pod on."""
    conds = (node.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
    return ready and not (node.get("spec") or {}).get("unschedulable")


def node_free(
    nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> dict[str, tuple[Mapping[str, Any], dict[str, Decimal]]]:
    """Per Ready, schedulable node: the node and its allocatable less its live pods' requests."""
    out: dict[str, tuple[Mapping[str, Any], dict[str, Decimal]]] = {}
    for node in nodes:
        if schedulable(node):
            allocatable = (node.get("status") or {}).get("allocatable") or {}
            out[node["metadata"]["name"]] = (node, {k: parse_quantity(v) for k, v in allocatable.items()})
    for pod in pods:
        bound = (pod.get("spec") or {}).get("nodeName")
        if bound in out and (pod.get("status") or {}).get("phase") not in ENDED:
            free = out[bound][1]
            for k, v in pod_requests(pod).items():
                free[k] = free.get(k, Decimal(0)) - v
    return out


def fitting_node(
    free: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Decimal]]],
    want: Resources,
    selector: Mapping[str, str] | None = None,
    tolerations: Iterable[Mapping[str, Any]] = (),
) -> tuple[str | None, str]:
    """The first node that takes `want`, or None and why none does."""
    tolerations = list(tolerations)
    placeable = 0
    best: tuple[tuple[int, Decimal], str, str] | None = None  # fewest resources short, then least short
    for name, (node, left) in sorted(free.items()):
        labels = (node.get("metadata") or {}).get("labels") or {}
        if any(labels.get(k) != v for k, v in (selector or {}).items()):
            continue
        taints = [
            t
            for t in (node.get("spec") or {}).get("taints") or []
            if t.get("effect") in ("NoSchedule", "NoExecute")
        ]
        if not all(tolerates(t, tolerations) for t in taints):
            continue
        placeable += 1
        short = {k: v - left.get(k, Decimal(0)) for k, v in want.items() if v > left.get(k, Decimal(0))}
        if not short:
            return name, ""
        score = (len(short), sum((v / want[k] for k, v in short.items()), Decimal(0)))
        if best is None or score < best[0]:
            text = ", ".join(f"{k} {v.normalize()} short" for k, v in sorted(short.items()))
            best = (score, name, text)
    if not placeable:
        return None, "no Ready node matches the nodeSelector and tolerations"
    assert best is not None
    return None, f"no single node fits the session (closest: {best[1]}, {best[2]})"


def fitting_nodes(
    free: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Decimal]]],
    want: Resources,
    count: int,
    selector: Mapping[str, str] | None = None,
    tolerations: Iterable[Mapping[str, Any]] = (),
) -> tuple[list[str] | None, str]:
    """A node for each of `count` workers (a gang: all or none), first fit over what the ones placed
    before took, or None and why. First fit, not the scheduler's scoring: admission only asks whether
    the gang can fit now; the scheduler places the pods."""
    left = {name: (node, dict(res)) for name, (node, res) in free.items()}
    nodes: list[str] = []
    for worker in range(count):
        node, why = fitting_node(left, want, selector, tolerations)
        if node is None:
            return None, f"worker {worker} of {count}: {why}" if count > 1 else why
        nodes.append(node)
        for k, v in want.items():
            left[node][1][k] = left[node][1].get(k, Decimal(0)) - v
    return nodes, ""
