"""sessionNetworkPolicy on the test bed: with SHOAL_SESSION_INGRESS_FROM set, a session of its own pod
and a session of a warm pod each get a NetworkPolicy that selects the pod it trains in and admits only
the configured peers; without the setting there is none. (The test bed's nodes are KWOK's: no network
plugin enforces policies here, so what is checked is the object, not dropped packets.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from shoal.k8s.client import Kube
from shoal.k8s.paths import kind_path, pods_path
from testbed import cluster as testbed
from testbed.kubelet import LocalKubelet
from tests.e2e.conftest import OperatorProcess, session_manifest, warm_pool_manifest
from tests.e2e.util import apply, idle, session, training, wait_until

PEERS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ml-tools"}}}]


@pytest.fixture
def fenced_operator(operator: OperatorProcess, tmp_path: Path) -> Iterator[OperatorProcess]:
    operator.stop()  # one leader at a time; the next running_operator restarts the shared one
    op = OperatorProcess(testbed.KUBECONFIG, tmp_path, SHOAL_SESSION_INGRESS_FROM=json.dumps(PEERS))
    try:
        op.start()
        yield op
    finally:
        op.stop()


def selects(policy: dict[str, Any], pod: dict[str, Any]) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in policy["spec"]["podSelector"]["matchLabels"].items())


def test_each_session_gets_a_policy_for_the_pod_it_trains_in(
    kube: Kube, namespace: str, fenced_operator: OperatorProcess, local_kubelet: LocalKubelet
) -> None:
    manifest = warm_pool_manifest("warm", 1, resources={"cpu": "1", "memory": "1Gi"})
    apply(manifest, namespace)
    wait_until(lambda: idle(kube, namespace, "warm"), 60, "an idle warm pod")
    apply(session_manifest("cold", videoRecording=True, totalTimesteps=100000), namespace)
    apply(session_manifest("hot", poolRef={"name": "warm"}, totalTimesteps=100000), namespace)
    for name, ports in (("cold", [6006, 8000, 9400]), ("hot", [6006, 9400])):
        st = wait_until(partial(training, kube, namespace, name), 120, f"{name} training")
        policy = kube.get(kind_path("NetworkPolicy", namespace, f"{name}-endpoints"))
        owner = policy["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"]) == (
            "TrainingSession",
            session(kube, namespace, name)["metadata"]["uid"],
        )
        assert selects(policy, kube.get(pods_path(namespace, st["podName"])))
        [rule] = policy["spec"]["ingress"]
        assert rule["from"] == PEERS and [p["port"] for p in rule["ports"]] == ports
    # The pool's other pods (none idle now) and other sessions' pods are not selected by either.
    others = [
        p
        for p in kube.list_items(pods_path(namespace))
        if not p["metadata"].get("labels", {}).get("shoal.dev/session")
    ]
    hot = kube.get(kind_path("NetworkPolicy", namespace, "hot-endpoints"))
    assert not any(selects(hot, p) for p in others)
