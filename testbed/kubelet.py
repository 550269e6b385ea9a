"""A local kubelet for the pods that must really run: it starts each one as a LocalPod when KWOK
reports it Running, and ends it when the pod goes.

Which pods: TrainingSession pods (label shoal.dev/session) and any pod labelled
testbed.shoal.dev/run=local (a pool template can carry it). KWOK keeps simulating every other pod.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from shoal.k8s.client import Kube
from testbed.localpod import LocalPod

log = logging.getLogger("testbed.kubelet")
LABEL_SESSION = "shoal.dev/session"
LABEL_RUN = "testbed.shoal.dev/run"


def wanted(pod: dict[str, Any]) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return LABEL_SESSION in labels or labels.get(LABEL_RUN) == "local"


class LocalKubelet:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.pods: dict[str, LocalPod] = {}  # by pod uid
        self.stopped = threading.Event()

    def start(self) -> LocalKubelet:
        threading.Thread(target=self._run, name="local-kubelet", daemon=True).start()
        return self

    def _sync(self, event_type: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        gone = event_type == "DELETED" or bool(meta.get("deletionTimestamp"))
        running = (pod.get("status") or {}).get("phase") == "Running"
        if gone and uid in self.pods:
            self.pods.pop(uid).stop()
            log.info("stopped %s/%s", meta["namespace"], meta["name"])
        elif not gone and running and wanted(pod) and uid not in self.pods:
            local = LocalPod(self.kube, meta["namespace"], meta["name"])
            self.pods[uid] = local.start()
            log.info(
                "running %s/%s here: TensorBoard http://127.0.0.1:%d/, stream http://127.0.0.1:%d/",
                meta["namespace"],
                meta["name"],
                local.ports["tensorboard"],
                local.ports["video"],
            )

    def _run(self) -> None:
        import kubernetes

        core = kubernetes.client.CoreV1Api(self.kube.api)
        while not self.stopped.is_set():
            try:
                for event in kubernetes.watch.Watch().stream(  # type: ignore[no-untyped-call]
                    core.list_pod_for_all_namespaces, timeout_seconds=300
                ):
                    if self.stopped.is_set():
                        return
                    self._sync(event["type"], event["raw_object"])
            except Exception as exc:  # an API restart: watch again
                log.warning("pod watch failed (%s); again in 1 s", exc)
                time.sleep(1)

    def stop(self) -> None:
        self.stopped.set()
        for local in self.pods.values():
            local.stop()
        self.pods.clear()
