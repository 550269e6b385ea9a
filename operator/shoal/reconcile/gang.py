"""The I/O of a session's gang (workers > 1): its Job or TrainJob, its pods as one (sessions/gang.py),
its agent's Role.

The session reconciler calls this where a single-pod session would create, read, command or delete its
pod; the lifecycle cannot tell the difference. Which engine runs a gang is decided when it is created:
a Kubeflow Trainer TrainJob where the cluster serves that kind (builders/trainjob.py), else an Indexed
Job of Shoal's own (builders/gang.py). A TrainJob is paused by suspending it and resumed by
unsuspending it; a Job is deleted and made again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shoal.api.session import TrainingSessionSpec
from shoal.builders.gang import gang_job, gang_service
from shoal.builders.session import agent_role, supporting_objects
from shoal.builders.trainjob import node_job, suspension, train_job, training_runtime
from shoal.config import Settings
from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import TRAINER, kind_path
from shoal.runtime.store import Store
from shoal.sessions.gang import gang_pod
from shoal.sessions.steps import spec_hash
from shoal.times import format_time
from shoal.vocab import ANN_SPEC_HASH, ANN_STARTED, LABEL_SESSION

JOB, TRAINJOB = "Job", "TrainJob"  # status.gangKind

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

    def trainer_served(self) -> bool:
        """Whether the cluster serves Kubeflow Trainer's TrainJob. Asked as each gang is made (a rare
        event), so an install or removal of the Trainer counts from the next gang on."""
        try:
            found = self.kube.get_if_exists(TRAINER)
        except ApiError:
            return False
        return any(r.get("name") == "trainjobs" for r in (found or {}).get("resources") or [])

    def view(
        self, namespace: str, job_name: str, spec: TrainingSessionSpec, obj: dict[str, Any], kind: str = JOB
    ) -> dict[str, Any] | None:
        """The gang as one pod (sessions/gang.gang_pod); worker 0's agent gets its Role once its pod exists."""
        job = self.kube.get_if_exists(kind_path(kind, namespace, job_name))
        if job is None:
            self.leaders.pop((namespace, job_name), None)
            return None
        if kind == TRAINJOB:
            pod = gang_pod(
                job,
                self.pods.items(namespace),
                spec.workers,
                job_name=node_job(job_name),
                suspended=bool((job.get("spec") or {}).get("suspend")),
                started=(job["metadata"].get("annotations") or {}).get(ANN_STARTED),
            )
        else:
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
        self,
        obj: dict[str, Any],
        spec: TrainingSessionSpec,
        job_name: str,
        resume_from: str | None,
        status: dict[str, Any],
    ) -> str:
        """Make the gang, or resume it; the API server's refusal, or "". `status` learns the engine
        (gangKind) and, for a TrainJob a pause suspended and this resumes, its name (podName)."""
        kind, running, failed = self._create(obj, spec, job_name, resume_from)
        status["gangKind"] = kind
        if running != job_name:
            resumed = f"resumed TrainJob {running}" + (f" from {resume_from}" if resume_from else "")
            status.update(podName=running, message=resumed)
        return failed

    def _create(
        self, obj: dict[str, Any], spec: TrainingSessionSpec, job_name: str, resume_from: str | None
    ) -> tuple[str, str, str]:
        """The gang's engine, the name it runs under, and the API server's refusal (or "").

        A TrainJob this session suspended to pause is resumed under its own name (when the spec is the
        one it was made for); otherwise the gang is made afresh as `job_name`."""
        meta = obj["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        kind = TRAINJOB if self.trainer_served() else JOB
        ingress = self.settings.session_ingress_from
        in_config = resume_from if kind == TRAINJOB else None  # a Job's pods have it in their env
        for body in supporting_objects(name, uid, ns, spec, ingress, in_config):
            self.kube.apply(ns, body, create_only=body["kind"] != "ConfigMap")
        try:
            if kind == TRAINJOB:
                return kind, *self._train_job(obj, spec, job_name)
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
            self.kube.create(job_path(ns), body)
        except ApiError as exc:
            if exc.status != 409:
                return kind, job_name, exc.message
        return kind, job_name, ""

    def _train_job(self, obj: dict[str, Any], spec: TrainingSessionSpec, job_name: str) -> tuple[str, str]:
        meta = obj["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        now, want = format_time(datetime.now(UTC)), spec_hash(spec)
        s = self.settings
        refused = self._own_runtime(
            ns, training_runtime(name, uid, spec, s.gpu_resource, s.gpu_memory_resource)
        )
        if refused:
            return job_name, refused
        resumed = ""
        for tj in self.kube.list_items(kind_path(TRAINJOB, ns), f"{LABEL_SESSION}={name}"):
            tj_meta = tj["metadata"]
            if not (tj.get("spec") or {}).get("suspend") or tj_meta.get("deletionTimestamp"):
                continue
            if not resumed and (tj_meta.get("annotations") or {}).get(ANN_SPEC_HASH) == want:
                self.kube.merge_patch(kind_path(TRAINJOB, ns, tj_meta["name"]), suspension(False, now))
                resumed = tj_meta["name"]
            else:  # made for another spec: JobSet would refuse the new pod template
                self.delete(ns, tj_meta["name"], tj_meta["uid"], TRAINJOB)
        if resumed:
            return resumed, ""
        self.kube.create(kind_path(TRAINJOB, ns), train_job(name, uid, job_name, spec, want, now))
        return job_name, ""

    def _own_runtime(self, ns: str, runtime: dict[str, Any]) -> str:
        """Write the session's TrainingRuntime; one of that name that is not the session's (a platform
        team's own) is never overwritten: the refusal, or ""."""
        try:
            self.kube.create(kind_path("TrainingRuntime", ns), runtime)
            return ""
        except ApiError as exc:
            if not exc.conflict:
                raise
        name = runtime["metadata"]["name"]
        path = kind_path("TrainingRuntime", ns, name)
        mine = runtime["metadata"]["ownerReferences"][0]["uid"]
        if not any(
            ref.get("uid") == mine for ref in self.kube.get(path)["metadata"].get("ownerReferences") or []
        ):
            return f"TrainingRuntime {name} exists and is not this session's"
        self.kube.merge_patch(path, runtime)  # the runtime follows the session's spec
        return ""

    def command_target(self, namespace: str, job_name: str) -> str | None:
        """The pod a command for the gang goes to: worker 0's."""
        return self.leaders.get((namespace, job_name))

    def suspend(self, namespace: str, name: str) -> None:
        """Pause a TrainJob: JobSet's Jobs end its pods with SIGTERM (the agents checkpoint on it)."""
        path = kind_path(TRAINJOB, namespace, name)
        self.kube.merge_patch_if_exists(path, suspension(True, format_time(datetime.now(UTC))))

    def commanded(self, namespace: str, name: str, verb: str, status: dict[str, Any]) -> None:
        """A TrainJob is paused by suspending it: its pods end with SIGTERM, and worker 0's agent, told
        why just before, checkpoints and acknowledges as for any pause."""
        if verb == "pause" and status.get("gangKind") == TRAINJOB:
            self.suspend(namespace, name)

    def let_go(self, namespace: str, name: str, uid: str, status: dict[str, Any]) -> None:
        """A paused or preempted TrainJob stays, suspended, to be resumed; any other gang goes."""
        kind = status.get("gangKind") or JOB
        if kind == TRAINJOB and (status.get("phase") == "Paused" or status.get("reason") == "Preempted"):
            self.suspend(namespace, name)
        else:
            self.delete(namespace, name, uid, kind)

    def delete(self, namespace: str, job_name: str, uid: str | None = None, kind: str = JOB) -> None:
        """The Job or TrainJob and, through the garbage collector, its pods (each agent passes SIGTERM on)."""
        self.kube.delete(kind_path(kind, namespace, job_name), uid=uid or None, propagation="Background")
        self.leaders.pop((namespace, job_name), None)

    def ended(self, namespace: str, session: str, before: dict[str, Any]) -> None:
        """A session that ends while paused (`before`: its status until now): its suspended TrainJob
        goes, as nothing will resume it. A finished gang's TrainJob stays, as a Job does (its logs)."""
        if before.get("gangKind") != TRAINJOB or before.get("podName"):
            return
        for tj in self.kube.list_items(kind_path(TRAINJOB, namespace), f"{LABEL_SESSION}={session}"):
            self.delete(namespace, tj["metadata"]["name"], tj["metadata"]["uid"], TRAINJOB)


__all__ = ["GANG_RECHECK", "JOB", "TRAINJOB", "Gangs", "job_path"]
