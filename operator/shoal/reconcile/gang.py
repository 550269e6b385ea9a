"""The I/O of a session's gang (workers > 1): its Job, its pods as one (sessions/gang.py), its agent's Role.

The session reconciler calls this where a single-pod session would create, read, command or delete its
pod; the lifecycle cannot tell the difference.
"""

from __future__ import annotations

from typing import Any

from shoal.api.session import TrainingSessionSpec
from shoal.builders.gang import gang_job, gang_service
from shoal.builders.session import agent_role, supporting_objects
from shoal.config import Settings
from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import kind_path
from shoal.runtime.store import Store
from shoal.sessions.gang import gang_pod

# How often an active gang is looked at even when none of its pods changed: a worker deleted with its
# node shows as the Job's failure, which no pod event announces.
GANG_RECHECK = 5.0


def job_path(namespace: str, name: str | None = None) -> str:
    return kind_path("Job", namespace, name)


class Gangs:
    def __init__(self, kube: Kube, settings: Settings, pods: Store) -> None:
        self.kube, self.settings, self.pods = kube, settings, pods
        # (namespace, job) -> worker 0's pod, which commands reach and whose agent the Role admits.
        self.leaders: dict[tuple[str, str], str] = {}

    def view(
        self, namespace: str, job_name: str, spec: TrainingSessionSpec, obj: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The gang as one pod (sessions/gang.gang_pod); worker 0's agent gets its Role once its pod exists."""
        job = self.kube.get_if_exists(job_path(namespace, job_name))
        if job is None:
            self.leaders.pop((namespace, job_name), None)
            return None
        pod = gang_pod(job, self.pods.items(namespace), spec.workers)
        leader = pod and pod.get("leader")
        if pod is not None and leader and self.leaders.get((namespace, job_name)) != leader:
            meta = obj["metadata"]
            # Only now is worker 0's name known (the Job names its pods): its agent retries until this lands.
            for body in agent_role(meta["name"], meta["uid"], leader):
                self.kube.apply(namespace, body)
            self.leaders[(namespace, job_name)] = leader
        return pod

    def create(
        self, obj: dict[str, Any], spec: TrainingSessionSpec, job_name: str, resume_from: str | None
    ) -> str:
        """The gang's Service, its supporting objects and its Job; the API server's refusal, or ""."""
        meta = obj["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        for body in supporting_objects(name, uid, ns, spec, self.settings.session_ingress_from):
            self.kube.apply(ns, body, create_only=body["kind"] != "ConfigMap")
        self.kube.apply(ns, gang_service(name, uid), create_only=True)
        body = gang_job(
            name,
            uid,
            job_name,
            spec,
            self.settings.gpu_resource,
            self.settings.gpu_memory_resource,
            resume_from,
        )
        try:
            self.kube.create(job_path(ns), body)
        except ApiError as exc:
            if exc.status != 409:
                return exc.message
        return ""

    def command_target(self, namespace: str, job_name: str) -> str | None:
        """The pod a command for the gang goes to: worker 0's."""
        return self.leaders.get((namespace, job_name))

    def delete(self, namespace: str, job_name: str, uid: str | None = None) -> None:
        """The Job and, through the garbage collector, its pods (each agent passes SIGTERM on)."""
        self.kube.delete(job_path(namespace, job_name), uid=uid or None, propagation="Background")
        self.leaders.pop((namespace, job_name), None)


__all__ = ["GANG_RECHECK", "Gangs", "job_path"]
