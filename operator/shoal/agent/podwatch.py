"""The agent's view of its own pod: commands and, for warm pool pods, the session's config.

A watch on the pod's own name (a field selector, so the agent's Role can name that one pod) hears an
annotation within milliseconds of its write; the downward-API file it replaces is refreshed only on
the kubelet's sync period, a minute or more. The file source stays for local runs without an API.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

log = logging.getLogger("shoal.agent.watch")
WATCH_SECONDS = 300  # a watch ends now and then; the next starts from a fresh GET
RETRY_SECONDS = (0.5, 1, 2, 5)


class Annotations(Protocol):
    """Where the agent hears its pod's annotations: `updates` yields each new set as it arrives."""

    updates: queue.Queue[dict[str, str]]

    def start(self) -> None: ...

    def fresh(self) -> dict[str, str] | None:
        """The annotations as they are now, read afresh (None when that fails)."""
        ...


class PodWatch:
    def __init__(self, namespace: str, name: str) -> None:
        from shoal.k8s.client import Kube

        self.kube = Kube()
        self.namespace, self.name = namespace, name
        self.updates: queue.Queue[dict[str, str]] = queue.Queue()

    def start(self) -> None:
        threading.Thread(target=self._run, name="pod-watch", daemon=True).start()

    def _publish(self, pod: Mapping[str, object]) -> None:
        self.updates.put(_annotations(pod))

    def fresh(self) -> dict[str, str] | None:
        from shoal.k8s.paths import pods_path

        try:
            return _annotations(self.kube.get(pods_path(self.namespace, self.name)))
        except Exception as exc:  # the API unreachable: the caller goes by what the watch said
            log.warning("reading pod %s failed: %s", self.name, exc)
            return None

    def _run(self) -> None:
        import kubernetes

        from shoal.k8s.paths import pods_path

        core = kubernetes.client.CoreV1Api(self.kube.api)
        failures = 0
        while True:
            try:
                pod = self.kube.get(pods_path(self.namespace, self.name))
                self._publish(pod)
                stream = kubernetes.watch.Watch().stream(  # type: ignore[no-untyped-call]
                    core.list_namespaced_pod,
                    self.namespace,
                    field_selector=f"metadata.name={self.name}",
                    resource_version=pod["metadata"]["resourceVersion"],
                    timeout_seconds=WATCH_SECONDS,
                )
                for event in stream:
                    failures = 0
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._publish(event["raw_object"])
            except Exception as exc:  # API restarts, expired resourceVersions (410), network: start over
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.warning("watching pod %s failed (%s); again in %ss", self.name, exc, delay)
                time.sleep(delay)


def _annotations(pod: Mapping[str, object]) -> dict[str, str]:
    meta = pod.get("metadata")
    ann = (meta.get("annotations") if isinstance(meta, Mapping) else None) or {}
    return {str(k): str(v) for k, v in dict(ann).items()}


class FileWatch:
    """Annotations as a JSON object in a file, polled: for running the agent without a cluster."""

    def __init__(self, path: Path, interval: float = 0.1) -> None:
        self.path = path
        self.interval = interval
        self.updates: queue.Queue[dict[str, str]] = queue.Queue()

    def start(self) -> None:
        threading.Thread(target=self._run, name="file-watch", daemon=True).start()

    def fresh(self) -> dict[str, str] | None:
        try:
            data = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return None
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else None

    def _run(self) -> None:
        seen: dict[str, str] | None = None
        while True:
            data = self.fresh()
            if data is not None and data != seen:
                seen = data
                self.updates.put(seen)
            time.sleep(self.interval)
