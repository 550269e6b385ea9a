"""A local kubelet for the pods that must really run: it starts each one as a LocalPod when KWOK
reports it Running, and ends it when the pod goes.

Which pods: TrainingSession pods (label shoal.dev/session) and any pod labelled
testbed.shoal.dev/run=local (a pool template can carry it). KWOK keeps simulating every other pod.

A deleted pod is ended at once (KWOK removes it), or with `graceful` as a kubelet ends it: SIGTERM,
the pod kept until its process has exited or its grace period is over, then removed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from typing import Any

from shoal.builders.gang import JOB_NAME_LABEL, RENDEZVOUS_PORT
from shoal.builders.trainjob import JOBSET_NAME_LABEL
from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import pods_path
from testbed.localpod import LocalPod, free_port
from testbed.seed import GRACEFUL_LABEL

log = logging.getLogger("testbed.kubelet")
LABEL_SESSION = "shoal.dev/session"
LABEL_RUN = "testbed.shoal.dev/run"


def wanted(pod: dict[str, Any]) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return LABEL_SESSION in labels or labels.get(LABEL_RUN) == "local"


class LocalKubelet:
    def __init__(
        self,
        kube: Kube,
        namespace: str | None = None,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
        graceful: bool = False,
    ) -> None:
        """`namespace`: only that one's pods (all by default); `command`, `env`: as for LocalPod."""
        self.kube = kube
        self.graceful = graceful
        self.namespace = namespace
        self.command = command
        self.env = env
        self.pods: dict[str, LocalPod] = {}  # by pod uid
        self.ended: list[LocalPod] = []  # of deleted pods: their output and files stay readable
        self.rendezvous: dict[tuple[str, str], int] = {}  # (namespace, job) -> its gang's port here
        self.stopped = threading.Event()
        self.lock = threading.Lock()  # the watch thread starts pods while a test looks them up

    def start(self) -> LocalKubelet:
        threading.Thread(target=self._run, name="local-kubelet", daemon=True).start()
        return self

    def _sync(self, event_type: str, pod: dict[str, Any]) -> None:
        with self.lock:
            if not self.stopped.is_set():
                self._sync_locked(event_type, pod)

    def _sync_locked(self, event_type: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        gone = event_type == "DELETED" or bool(meta.get("deletionTimestamp"))
        running = (pod.get("status") or {}).get("phase") == "Running"
        if gone and uid in self.pods:
            self.ended.append(self.pods.pop(uid))
            if self.graceful and event_type != "DELETED":
                grace = float(pod["spec"].get("terminationGracePeriodSeconds", 30))
                threading.Thread(target=self._end, args=(self.ended[-1], grace), daemon=True).start()
                return
            self.ended[-1].stop()
            log.info("stopped %s/%s", meta["namespace"], meta["name"])
        elif not gone and running and wanted(pod) and uid not in self.pods:
            hosts, env = self._hosts(pod), dict(self.env or {})
            labels = meta.get("labels") or {}
            if JOBSET_NAME_LABEL in labels:  # a TrainJob's static rendezvous: this gang's port, not 29400
                env["PET_MASTER_PORT"] = str(self.rendezvous[(meta["namespace"], labels[JOB_NAME_LABEL])])
            if self.graceful:
                self.kube.merge_patch(
                    pods_path(meta["namespace"], meta["name"]),
                    {"metadata": {"labels": {GRACEFUL_LABEL: "true"}}},
                )
            local = LocalPod(self.kube, meta["namespace"], meta["name"], self.command, env, hosts)
            self.pods[uid] = local.start()
            log.info(
                "running %s/%s here: TensorBoard http://127.0.0.1:%d/, stream http://127.0.0.1:%d/",
                meta["namespace"],
                meta["name"],
                local.ports["tensorboard"],
                local.ports["video"],
            )

    def _end(self, local: LocalPod, grace: float) -> None:
        """A kubelet's end of a deleted pod: SIGTERM, the grace period, then the pod may go."""
        local.stop(grace)
        meta = local.meta
        log.info("stopped %s/%s gracefully", meta["namespace"], meta["name"])
        with contextlib.suppress(ApiError):  # gone already
            self.kube.merge_patch(
                pods_path(meta["namespace"], meta["name"]), {"metadata": {"labels": {GRACEFUL_LABEL: None}}}
            )

    def _hosts(self, pod: dict[str, Any]) -> dict[str, str]:
        """The cluster DNS's part for a Job's pods with a subdomain (a gang's workers): worker i's name
        `<job>-<i>.<subdomain>` is 127.0.0.<i+1> (all loopback here), and worker 0's rendezvous port a
        free port of this job's, so that gangs of several tests never meet on 29400."""
        job = (pod["metadata"].get("labels") or {}).get(JOB_NAME_LABEL)
        sub = pod["spec"].get("subdomain")
        if not job or not sub:
            return {}
        key = (pod["metadata"]["namespace"], job)
        port = self.rendezvous.setdefault(key, free_port())
        hosts = {f"{job}-{i}.{sub}": f"127.0.0.{i + 1}" for i in range(64)}
        hosts[f"{job}-0.{sub}:{RENDEZVOUS_PORT}"] = f"127.0.0.1:{port}"
        return hosts

    def _run(self) -> None:
        import kubernetes

        core = kubernetes.client.CoreV1Api(self.kube.api)
        if self.namespace:
            lister: Any = functools.partial(core.list_namespaced_pod, self.namespace)
        else:
            lister = core.list_pod_for_all_namespaces
        while not self.stopped.is_set():
            try:
                # The events' objects as plain dicts: a V1Pod model per event (every progress report
                # is one) would cost the shared cores more than handling the event here.
                watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
                for event in watch.stream(lister, timeout_seconds=300, deserialize=False):  # type: ignore[no-untyped-call]
                    if self.stopped.is_set():
                        return
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self._sync(event["type"], event["object"])
            except Exception as exc:  # an API restart: watch again
                log.warning("pod watch failed (%s); again in 1 s", exc)
                time.sleep(1)

    def pod(self, name: str) -> LocalPod | None:
        """The local run of the pod called `name` (the latest, if the name came back)."""
        with self.lock:
            runs = [p for p in (*self.ended, *self.pods.values()) if p.meta["name"] == name]
        return runs[-1] if runs else None

    def stop(self) -> None:
        with self.lock:
            self.stopped.set()
            for local in self.pods.values():
                local.stop()
            self.pods.clear()
