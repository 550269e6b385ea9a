"""End-to-end fixtures: the process-based test bed, namespaces, and the operator as a subprocess.

If the test bed cannot start, every e2e test errors out; nothing here skips.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.k8s.client import ApiError, Kube, load_config
from testbed import cluster as testbed
from testbed import seed
from testbed.faultproxy import FaultProxy
from testbed.kubelet import LocalKubelet
from testbed.localpod import free_port, token_kubeconfig
from testbed.operator_process import OperatorProcess as Launcher
from tests.e2e.util import kubectl, render, wait_until


@pytest.fixture(scope="session")
def cluster() -> Iterator[Path]:
    code = testbed.main(["up"])
    if code != 0:
        pytest.fail(f"the test bed could not start (exit {code}); see {testbed.LOGS}", pytrace=False)
    os.environ["KUBECONFIG"] = str(testbed.KUBECONFIG)
    seed.install_crds()
    yield testbed.KUBECONFIG


@pytest.fixture(scope="session")
def kube(cluster: Path) -> Kube:
    return Kube(load_config())


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"e2e-{request.node.name[:30].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    labels = getattr(request, "param", None) or {}
    kube.create("/api/v1/namespaces", {"metadata": {"name": name, "labels": labels}})
    # Pods cannot be created before the namespace's default service account exists.
    wait_until(lambda: _exists(kube, f"/api/v1/namespaces/{name}/serviceaccounts/default"), 30, "default SA")
    yield name
    kube.delete(f"/api/v1/namespaces/{name}")


def _exists(kube: Kube, path: str) -> bool:
    try:
        kube.get(path)
    except ApiError as exc:
        if exc.not_found:
            return False
        raise
    return True


BANDIT = [sys.executable, "-m", "tests.doubles.bandit"]


@pytest.fixture
def local_kubelet(kube: Kube, namespace: str) -> Iterator[LocalKubelet]:
    """The namespace's session pods (and pods labelled testbed.shoal.dev/run=local) run the real agent
    here, with the bandit trainer double: seconds of numpy per run instead of torch. Reports every
    second, no TensorBoard (no test here opens it; test_agent_pod runs the real trainer with it). A warm
    pod's trainer waits in standby for its claim (the double supports it, as the SB3 trainer does)."""
    env = {
        "SHOAL_TENSORBOARD_PORT": "0",
        "SHOAL_REPORT_EVERY": "1",
        "SHOAL_SECONDSPEREPISODE": "0.005",
        "SHOAL_TRAINER_STANDBY": "on",
    }
    kubelet = LocalKubelet(kube, namespace, command=BANDIT, env=env).start()
    yield kubelet
    kubelet.stop()


class OperatorProcess(Launcher):
    """The shared launcher with the tests' settings: text logs a reader can grep, and a 4 s lease so a
    killed operator's successor takes over quickly; tests may SIGKILL and restart it."""

    def __init__(self, kubeconfig: Path, logdir: Path, **env: str) -> None:
        env = {"SHOAL_LOG_FORMAT": "text", "SHOAL_LEASE_DURATION_SECONDS": "4", **env}
        super().__init__(kubeconfig, logdir, env=env)


@pytest.fixture(scope="session")
def operator(cluster: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    logdir = tmp_path_factory.mktemp("operator-logs")
    op = OperatorProcess(cluster, logdir)
    op.start()
    yield op
    op.stop()


@pytest.fixture
def running_operator(operator: OperatorProcess) -> OperatorProcess:
    """The shared operator, restarted if an earlier test killed it."""
    if operator.proc is None or operator.proc.poll() is not None:
        operator.start()
    return operator


@pytest.fixture
def proxied_operator(
    operator: OperatorProcess, tmp_path: Path
) -> Iterator[tuple[OperatorProcess, FaultProxy]]:
    """An operator (not started yet) whose every API request passes through a fault proxy; the shared
    operator stands down meanwhile (one leader at a time) and the next `running_operator` restarts it."""
    operator.stop()
    op, proxy = behind_proxy(tmp_path, "proxied", int(os.environ.get("SHOAL_FAULT_SEED", "7")))
    yield op, proxy
    op.stop()
    proxy.stop()


def behind_proxy(tmp_path: Path, label: str, seed: int, **env: str) -> tuple[OperatorProcess, FaultProxy]:
    """An operator (not started yet) reaching the API server only through a fault proxy of its own
    (started, no faults yet); its logs under tmp_path/label."""
    proxy = FaultProxy(seed=seed)
    proxy.start()
    logs = tmp_path / label
    logs.mkdir()
    return OperatorProcess(proxy.kubeconfig(tmp_path / f"{label}.kubeconfig"), logs, **env), proxy


class ChartAccount:
    """The chart's RBAC and ServiceAccount (rendered with `values`, under a release name of its own so
    its cluster-scoped roles meet no other release's) applied to the test bed, and a token of that
    account: the operator runs with only what the chart grants."""

    def __init__(self, namespace: str, *values: str) -> None:
        self.release = f"rbac{random.randrange(10**6)}"
        self.docs = [d for d in render(namespace, *values, release=self.release) if d["kind"] != "Deployment"]
        kubectl(
            "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": self.docs})
        )
        self.account = f"{self.release}-shoal"
        self.token = kubectl("create", "token", self.account, "-n", namespace, "--duration=1h").stdout.strip()

    def kubeconfig(self, path: Path) -> Path:
        return token_kubeconfig(path, self.token)

    @contextlib.contextmanager
    def serving(self, op: OperatorProcess) -> Iterator[OperatorProcess]:
        """`op` started, then stopped and the chart's roles removed, even when it fails to start."""
        try:
            op.start()
            yield op
        finally:
            op.stop()
            self.remove()

    def remove(self) -> None:
        for d in self.docs:
            if d["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                kubectl("delete", d["kind"].lower(), d["metadata"]["name"], "--ignore-not-found", check=False)


def pool_manifest(name: str, replicas: int, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "shoal.dev/v1alpha1",
        "kind": "ContainerPool",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "worker", "image": "registry.example/worker:1"}]},
            },
            "resources": {"cpu": "100m", "memory": "64Mi"},
            **spec,
        },
    }


def warm_pool_manifest(name: str, replicas: int, **spec: Any) -> dict[str, Any]:
    """A pool sessions can claim (sessionAgent), whose pods the namespace's local_kubelet runs."""
    manifest = pool_manifest(name, replicas, sessionAgent={}, **spec)
    manifest["spec"]["template"]["metadata"]["labels"]["testbed.shoal.dev/run"] = "local"
    return manifest


class Exporter:
    """A Prometheus exporter on loopback, registered with the test bed's Prometheus."""

    def __init__(self, name: str) -> None:
        from prometheus_client import CollectorRegistry, Gauge, start_http_server

        self.id = f"{name}-{uuid.uuid4().hex[:8]}"
        self.registry = CollectorRegistry()
        self.gauge = Gauge("shoal_e2e_queue_depth", "Work waiting", ["test"], registry=self.registry)
        self.port = free_port()
        self.server, _ = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        self.target = testbed.PROM_TARGETS / f"{self.id}.json"
        self.target.write_text(f'[{{"targets": ["127.0.0.1:{self.port}"]}}]')

    @property
    def query(self) -> str:
        return f'sum(shoal_e2e_queue_depth{{test="{self.id}"}})'

    def set(self, value: float) -> None:
        self.gauge.labels(self.id).set(value)

    def close(self) -> None:
        self.target.unlink(missing_ok=True)
        self.server.shutdown()


@pytest.fixture
def exporter(request: pytest.FixtureRequest) -> Iterator[Exporter]:
    exp = Exporter(request.node.name[:20].replace("_", "-"))
    yield exp
    exp.close()


def scaler_manifest(
    name: str, target: dict[str, str], metrics: list[dict[str, Any]], **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "shoal.dev/v1alpha1",
        "kind": "WorkerScaler",
        "metadata": {"name": name},
        "spec": {
            "targetRef": target,
            "minReplicas": 1,
            "maxReplicas": 10,
            "pollIntervalSeconds": 2,
            "metrics": metrics,
            **spec,
        },
    }


OWN_RESOURCES = {"cpu": "1", "memory": "1Gi"}


def session_manifest(name: str, **spec: Any) -> dict[str, Any]:
    """A session of its own pod; with poolRef, of a warm pod, which brings its image and resources."""
    own = {} if "poolRef" in spec else {"image": "registry.example/trainer:1", "resources": OWN_RESOURCES}
    return {
        "apiVersion": "shoal.dev/v1alpha1",
        "kind": "TrainingSession",
        "metadata": {"name": name},
        "spec": {
            "game": "CartPole-v1",
            "algorithm": "PPO",
            "totalTimesteps": 100000,
            **own,
            "restartPolicy": {"initialBackoffSeconds": 1, "maxBackoffSeconds": 2},
            **spec,
        },
    }


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End the run without finalising the interpreter. The watches of the tests' daemon threads
    (local kubelets, pod histories: kubernetes client, urllib3, ssl) may still be inside C code when
    the interpreter tears its modules down; one CI run aborted (SIGABRT) right after "200 passed".
    Every fixture has finished and every report is written by now, so nothing is lost."""
    session_status = getattr(config, "_shoal_exit_status", None)
    if session_status is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(session_status))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config._shoal_exit_status = exitstatus  # type: ignore[attr-defined]
