"""Fakes shared by unit tests: an in-memory API server for the claim path (pods of a RoundRobin pool),
raw pods as the API returns them, and real HTTP servers on loopback."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import kubernetes

from shoal.api.pool import ContainerPoolSpec
from shoal.api.session import TrainingSessionSpec
from shoal.builders.pod import build_pod, template_hash
from shoal.k8s.client import ApiError, transport_retries
from tests.unit.podfactory import apply_merge_patch

T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)

POOL = {
    "replicas": 4,
    "selection": "RoundRobin",
    "template": {"spec": {"containers": [{"name": "w", "image": "w:1"}]}},
    "resources": {"cpu": "2", "memory": "2Gi"},
    "sessionAgent": {},
}


class Api:
    """Pods and one pool, with merge patches and resourceVersion conflicts as the API server has them."""

    def __init__(self) -> None:
        spec = ContainerPoolSpec.model_validate(POOL)
        self.pool = {"metadata": {"name": "rr", "namespace": "ns", "uid": "pool-uid"}, "spec": POOL}
        self.pods: dict[str, dict[str, Any]] = {}
        for i, letter in enumerate("dcba"):  # created in reverse: name order is not creation order
            pod = build_pod("rr", "pool-uid", spec, template_hash(spec), name=f"rr-{letter}")
            pod["metadata"].update(
                namespace="ns",
                uid=f"uid-{letter}",
                resourceVersion="1",
                creationTimestamp=(T0 - timedelta(minutes=10 - i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
            pod["metadata"]["labels"]["shoal.dev/state"] = "Idle"
            pod["metadata"]["ownerReferences"][0]["uid"] = "pool-uid"
            ready = (T0 - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
            pod["status"] = {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ready}],
            }
            pod["spec"]["nodeName"] = "node-1"
            self.pods[pod["metadata"]["name"]] = pod

    def get_if_exists(self, path: str) -> dict[str, Any] | None:
        if path.endswith("/containerpools/rr"):
            return self.pool
        return self.pods.get(path.rsplit("/", 1)[1]) if "/pods/" in path else None

    def list_items(self, path: str, selector: str | None = None) -> list[dict[str, Any]]:
        return [p for p in self.pods.values() if p["metadata"]["labels"].get("shoal.dev/pool") == "rr"]

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        pod = self.pods[path.rsplit("/", 1)[1]]
        meta = patch.get("metadata") or {}
        if "resourceVersion" in meta and meta["resourceVersion"] != pod["metadata"]["resourceVersion"]:
            raise ApiError(409, "conflict", "Conflict")
        body = {**patch, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}
        apply_merge_patch(pod, body)
        pod["metadata"]["resourceVersion"] = str(int(pod["metadata"]["resourceVersion"]) + 1)
        return pod

    def merge_patch_if_exists(self, path: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        return self.merge_patch(path, patch)


SPEC = TrainingSessionSpec.model_validate(
    {"game": "CartPole-v1", "algorithm": "PPO", "totalTimesteps": 10, "poolRef": {"name": "rr"}}
)


def raw_pod(
    name: str, rv: str = "1", claimed_by: str | None = None, pool: str = "warm", **meta: Any
) -> dict[str, Any]:
    annotations = {"shoal.dev/claimed-by": claimed_by} if claimed_by else {}
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "resourceVersion": rv,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"shoal.dev/pool": pool, "shoal.dev/state": "Claimed" if claimed_by else "Idle"},
            "annotations": annotations,
            "ownerReferences": [{"controller": True, "uid": "pool-uid"}],
            **meta,
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


class JsonHandler(BaseHTTPRequestHandler):
    """Answers every GET with `reply` (code, JSON body), as Prometheus' API does."""

    reply: ClassVar[tuple[int, dict[str, Any]]] = (200, {})

    def do_GET(self) -> None:
        self.answer(*type(self).reply)

    def answer(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        pass


@contextlib.contextmanager
def loopback(handler: type[BaseHTTPRequestHandler]) -> Iterator[kubernetes.client.Configuration]:
    """An HTTP server on a free loopback port answering with `handler`; the client configuration for it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cfg = kubernetes.client.Configuration()
    cfg.host = f"http://127.0.0.1:{server.server_address[1]}"
    cfg.retries = transport_retries()  # as load_config sets it
    try:
        yield cfg
    finally:
        server.shutdown()
