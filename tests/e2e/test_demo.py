"""What `make run` shows on the test bed: the sample queue scaler following the demo queue, and the
sample TrainingSession training for real in a pod the local kubelet runs."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

from shoal.k8s.client import Kube
from testbed import cluster as testbed
from testbed.kubelet import LocalKubelet
from testbed.run import DemoQueue
from tests.e2e.conftest import OperatorProcess
from tests.e2e.util import ROOT, kubectl, status, wait_until


@pytest.fixture
def demo() -> Iterator[DemoQueue]:
    queue = DemoQueue(cycle=60)  # the same workload, ten times as fast
    yield queue
    queue.stop()


@pytest.fixture
def kubelet(kube: Kube, namespace: str) -> Iterator[LocalKubelet]:
    # This namespace's pods only: claimed pool pods of an earlier test's namespace, still being
    # deleted, carry a session label too and are none of this test's business.
    local = LocalKubelet(kube, namespace).start()
    yield local
    local.stop()


def prometheus_value(query: str) -> float | None:
    url = f"http://127.0.0.1:{testbed.PORTS['prometheus']}/api/v1/query?" + urllib.parse.urlencode(
        {"query": query}
    )
    with urllib.request.urlopen(url, timeout=5) as r:
        result = json.loads(r.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_the_samples_come_alive_on_the_test_bed(
    kube: Kube, namespace: str, running_operator: OperatorProcess, demo: DemoQueue, kubelet: LocalKubelet
) -> None:
    samples = ROOT / "manifests" / "samples"
    kubectl("apply", "-n", namespace, "-f", str(samples / "queue-scaler.yaml"))
    kubectl("apply", "-n", namespace, "-f", str(samples / "gpu-training-session.yaml"))
    query = 'sum(job_queue_depth{queue="functions"})'
    wait_until(lambda: (prometheus_value(query) or 0) >= 20, 90, "the demo queue filling in Prometheus")

    def replicas() -> int:
        return int(
            kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/fn-workers")["spec"]["replicas"]
        )

    wait_until(
        lambda: replicas() >= 4, 90, "the queue scaler scaling fn-workers up"
    )  # 20+ jobs / 5 per replica
    scaler = kube.get(f"/apis/shoal.dev/v1alpha1/namespaces/{namespace}/workerscalers/fn-workers-queue")
    active = next(c for c in scaler["status"]["conditions"] if c["type"] == "ScalingActive")
    assert active["status"] == "True", active

    trained = wait_until(
        lambda: (status(kube, namespace, "cartpole-ppo").get("metrics") or {}).get("timesteps", 0) > 0,
        180,
        "the sample session training in a locally run pod",
    )
    assert trained
    pods = list(kubelet.pods.values())
    assert [p.meta["name"] for p in pods] == ["cartpole-ppo-1"]
