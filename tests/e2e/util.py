"""Helpers for end-to-end tests: waiting on conditions (never sleeping), kubectl, pod queries."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import psutil
import urllib3
import yaml

from shoal.api.common import parse_quantity
from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import custom_path, pods_path
from testbed import cluster as testbed
from testbed.kubelet import LocalKubelet
from testbed.pools import is_idle as is_idle  # the tests take it from here

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def sample(text: str, series: str) -> float:
    """One series' value in Prometheus text format (`name{labels}` exactly as exposed); 0 if absent."""
    line = next((x for x in text.splitlines() if x.startswith(series + " ")), f"{series} 0")
    return float(line.rsplit(" ", 1)[1])


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll `check` until it returns something truthy; fail with `what` and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def kubectl_path() -> str:
    from testbed import cluster

    return str(cluster.binary("kubectl"))


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([kubectl_path(), *args], input=stdin, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
    return result


def apply(manifest: dict[str, Any], namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(manifest))


def live_pods(kube: Kube, namespace: str, selector: str) -> list[dict[str, Any]]:
    return [
        p
        for p in kube.list_items(pods_path(namespace), selector)
        if not p["metadata"].get("deletionTimestamp")
    ]


def running(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if p.get("status", {}).get("phase") == "Running"]


def pool(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return kube.get(custom_path("containerpools", namespace, name))


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def events_where(
    kube: Kube, namespace: str, match: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30
) -> list[dict[str, Any]]:
    """Events are recorded after the state they describe, so wait for them like any other state."""
    return wait_until(
        lambda: [e for e in kube.list_items(f"/api/v1/namespaces/{namespace}/events") if match(e)],
        timeout,
        what,
    )


class PodHistory:
    """Every pod of a selector as a watch reports it, from before the test acts: creations, deletions,
    and the most pods alive at once. What end-state checks cannot see (a duplicate the operator made
    and then removed itself) shows here."""

    def __init__(self, kube: Kube, namespace: str, selector: str) -> None:
        import threading

        self.kube, self.namespace, self.selector = kube, namespace, selector
        self.created: set[str] = set()
        self.gone: set[str] = set()
        self.at_deletion: dict[str, dict[str, str]] = {}  # uid -> its annotations when its deletion began
        self.most_alive = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ready = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()
        if not self.ready.wait(10):
            raise AssertionError("pod watch did not start")

    def alive(self) -> int:
        return len(self.created - self.gone)

    def _watch(self) -> None:
        core = kubernetes.client.CoreV1Api(self.kube.api)
        first = self.kube.request("GET", pods_path(self.namespace), query={"labelSelector": self.selector})
        version = first["metadata"]["resourceVersion"]
        with self.lock:
            self.created |= {str(p["metadata"]["uid"]) for p in first.get("items", [])}
            self.most_alive = self.alive()
        self.ready.set()
        while not self.stop.is_set():
            try:
                version = self._follow(core, version)
            except (urllib3.exceptions.HTTPError, OSError):
                # The API server restarting (the chaos tests): resume from the last version seen.
                self.stop.wait(0.5)

    def _follow(self, core: Any, version: str) -> str:
        """One watch from `version` until it times out (or the history stops); the last version seen."""
        w = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
        for event in w.stream(  # type: ignore[no-untyped-call]
            core.list_namespaced_pod,
            self.namespace,
            label_selector=self.selector,
            resource_version=version,
            timeout_seconds=30,
            allow_watch_bookmarks=True,  # keeps `version` recent, so a quiet namespace never gets 410
        ):
            meta = event["raw_object"]["metadata"]
            version = meta["resourceVersion"]
            if event["type"] == "BOOKMARK":
                continue
            with self.lock:
                self.created.add(meta["uid"])
                if event["type"] == "DELETED" or meta.get("deletionTimestamp"):
                    self.gone.add(meta["uid"])
                    self.at_deletion.setdefault(meta["uid"], dict(meta.get("annotations") or {}))
                self.most_alive = max(self.most_alive, self.alive())
            if self.stop.is_set():
                break
        return version


# --- reading what the operator did, per kind; the docs; the chart ----------------------------------


def session(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    return kube.get(custom_path("trainingsessions", ns, name))


def status(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    return dict(session(kube, ns, name).get("status") or {})


def reason_is(kube: Kube, ns: str, name: str, reason: str) -> dict[str, Any]:
    st = status(kube, ns, name)
    return st if st.get("reason") == reason else {}


def phase_is(kube: Kube, ns: str, name: str, phase: str) -> dict[str, Any]:
    st = status(kube, ns, name)
    return st if st.get("phase") == phase else {}


def get_pod(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    return kube.get_if_exists(pods_path(ns, name))


CKPT = re.compile(r"/ckpt-(\d{12})\.npz$")


def checkpoint_steps(path: str) -> int:
    """The timesteps a checkpoint holds, from its name; fails on anything that is not one."""
    found = CKPT.search(path or "")
    assert found and Path(path).exists(), f"not a checkpoint on disk: {path!r}"
    return int(found.group(1))


def training(kube: Kube, ns: str, name: str, more_than: int = 0) -> dict[str, Any]:
    """Status once the agent's reports show more than `more_than` timesteps trained."""
    st = status(kube, ns, name)
    return st if int((st.get("metrics") or {}).get("timesteps") or 0) > more_than else {}


def claim_manifest(name: str, pool: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "shoal.dev/v1alpha1",
        "kind": "ContainerClaim",
        "metadata": {"name": name},
        "spec": {"poolRef": {"name": pool}, **spec},
    }


def claim_status(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return kube.get(custom_path("containerclaims", namespace, name)).get("status") or {}


def claim_phase_is(kube: Kube, namespace: str, name: str, phase: str) -> dict[str, Any]:
    st = claim_status(kube, namespace, name)
    return st if st.get("phase") == phase else {}


def idle(kube: Kube, namespace: str, pool: str) -> list[dict[str, Any]]:
    pods = live_pods(kube, namespace, f"shoal.dev/pool={pool}")
    return [p for p in pods if is_idle(p)]


def scaler(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    return kube.get(custom_path("workerscalers", ns, name))


def deployment(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    return kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")


def create_deployment(kube: Kube, ns: str, name: str, replicas: int) -> None:
    kube.create(
        f"/apis/apps/v1/namespaces/{ns}/deployments",
        {
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "containers": [
                            {
                                "name": "w",
                                "image": "registry.example/w:1",
                                "resources": {"requests": {"cpu": "100m"}},
                            }
                        ]
                    },
                },
            },
        },
    )


def pod_cpu(kube: Kube, ns: str, selector: str) -> dict[str, Decimal]:
    try:
        items = kube.list_items(f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods", selector)
    except ApiError:
        return {}
    return {
        m["metadata"]["name"]: sum((parse_quantity(c["usage"]["cpu"]) for c in m["containers"]), Decimal(0))
        for m in items
    }


def decisions(kube: Kube, ns: str, name: str) -> list[dict[str, Any]]:
    return list(scaler(kube, ns, name).get("status", {}).get("decisions", []))


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    version = testbed.versions()["HELM_VERSION"]
    binary = testbed.CACHE / "bin" / f"helm-{version}" / "helm"
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120)


def render(namespace: str, *values: str, release: str = "shoal") -> list[dict[str, Any]]:
    out = helm("template", release, str(ROOT / "helm" / "shoal"), "--namespace", namespace, *values)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


README = (ROOT / "README.md").read_text()

# The README and the pages it links to, in that order: what a user reads and runs.
DOCS = "\n".join([README, *(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))])


def sh_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", DOCS, flags=re.S)


SEL = "shoal.dev/pool={}"


def converged(kube: Kube, ns: str, name: str, n: int) -> bool:
    live = live_pods(kube, ns, SEL.format(name))
    st = pool(kube, ns, name).get("status", {})
    return len(live) == n and st.get("replicas") == n and st.get("readyReplicas") == n


def assert_no_duplicates_or_orphans(kube: Kube, ns: str, name: str, n: int) -> None:
    uid = pool(kube, ns, name)["metadata"]["uid"]
    live = live_pods(kube, ns, SEL.format(name))
    assert len(live) == n, f"{len(live)} pods, want {n}"
    for p in live:
        owners = [o for o in p["metadata"].get("ownerReferences", []) if o.get("controller")]
        assert [o["uid"] for o in owners] == [uid], f"orphan or foreign pod {p['metadata']['name']}"


def kube_as(kubeconfig: str) -> Kube:
    """A client with the credentials of `kubeconfig` (a pod's own token, say)."""
    cfg = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)  # type: ignore[no-untyped-call]
    return Kube(kubernetes.client.ApiClient(cfg))


# --- the processes a pod runs (the local kubelet's agents) ---------------------------------------------


def trainers(kubelet: LocalKubelet, pod_name: str) -> list[int]:
    """The pids of the trainers under a pod's agent (none while it is not running)."""
    agent = kubelet.pod(pod_name)
    if agent is None or agent.proc is None:
        return []
    try:
        return [c.pid for c in psutil.Process(agent.proc.pid).children()]
    except psutil.Error:
        return []


def kill_trainer(kubelet: LocalKubelet, pod_name: str) -> None:
    """SIGKILL the trainer under the pod's agent, as the kernel's OOM killer would: the agent reports
    the exit and exits non-zero, and the pod fails."""
    agent = kubelet.pod(pod_name)
    assert agent is not None and agent.proc is not None
    procs = wait_until(lambda: psutil.Process(agent.proc.pid).children(), 30, "the agent's trainer")  # type: ignore[union-attr]
    assert len(procs) == 1, procs
    procs[0].kill()
