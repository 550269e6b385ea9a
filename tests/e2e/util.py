"""Helpers for end-to-end tests: waiting on conditions (never sleeping), kubectl, pod queries."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from shoal.k8s.client import Kube, custom_path, pods_path
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
        import kubernetes

        core = kubernetes.client.CoreV1Api(self.kube.api)
        first = self.kube.request("GET", pods_path(self.namespace), query={"labelSelector": self.selector})
        version = first["metadata"]["resourceVersion"]
        with self.lock:
            self.created |= {str(p["metadata"]["uid"]) for p in first.get("items", [])}
            self.most_alive = self.alive()
        self.ready.set()
        while not self.stop.is_set():
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
                    return
