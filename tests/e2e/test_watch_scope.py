"""The operator watches only its own pods: the pod watch carries a label selector the API server
applies, so a namespace full of other pods costs it nothing. 2,000 foreign pods are created on the
KWOK nodes (they run) and deleted, beside a pool the operator keeps working on."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from shoal.k8s.client import Kube
from shoal.k8s.paths import pods_path
from tests.e2e.conftest import OperatorProcess, pool_manifest
from tests.e2e.util import apply, live_pods, sample, wait_until

FOREIGN = 2000


def test_two_thousand_foreign_pods_never_reach_the_operator(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("ours", 2), namespace)
    wait_until(lambda: len(live_pods(kube, namespace, "shoal.dev/pool=ours")) == 2, 60, "the pool")
    nodes = [
        n["metadata"]["name"] for n in kube.list_items("/api/v1/nodes") if "kwok" in n["metadata"]["name"]
    ]
    assert nodes, "no KWOK nodes"
    before = running_operator.metrics()

    def create(i: int) -> None:
        kube.create(
            pods_path(namespace),
            {
                "metadata": {"name": f"foreign-{i}", "labels": {"app": "foreign"}},
                "spec": {
                    "nodeName": nodes[i % len(nodes)],  # straight onto a node: they run, more events
                    "containers": [{"name": "c", "image": "registry.example/other:1"}],
                },
            },
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(create, range(FOREIGN)))

    def running() -> int:
        pods = kube.list_items(pods_path(namespace), "app=foreign")
        return sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running")

    wait_until(lambda: running() == FOREIGN, 180, f"{FOREIGN} foreign pods running")
    kube.request("DELETE", f"{pods_path(namespace)}?labelSelector=app%3Dforeign")
    wait_until(lambda: not kube.list_items(pods_path(namespace), "app=foreign"), 180, "the foreign pods gone")
    # The pool is still served (its pods' events arrive), and not one foreign event did.
    kube.merge_patch(
        f"/apis/shoal.dev/v1alpha1/namespaces/{namespace}/containerpools/ours", {"spec": {"replicas": 3}}
    )
    wait_until(lambda: len(live_pods(kube, namespace, "shoal.dev/pool=ours")) == 3, 60, "the pool scaled")
    foreign = 'shoal_pod_watch_events_total{owner="foreign"}'
    ours = 'shoal_pod_watch_events_total{owner="shoal"}'

    # The counter counts: the new pod's events reach the operator (its watch may deliver them a
    # moment after the create's answer, which is what the pool count above saw).
    def counted() -> str:
        now = running_operator.metrics()
        return now if sample(now, ours) > sample(before, ours) else ""

    after = wait_until(counted, 30, "the new pod's watch events counted")
    assert sample(after, foreign) - sample(before, foreign) == 0
