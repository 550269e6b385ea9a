"""TrainingSession reconciler: admission, pods (own or claimed from a pool), pause/resume, restarts."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from shoal import conditions, telemetry
from shoal.api.common import parse_quantity
from shoal.api.pool import ContainerPoolSpec
from shoal.api.session import TrainingSessionSpec
from shoal.builders.pod import template_hash
from shoal.builders.session import (
    LABEL_SESSION,
    agent_role,
    endpoints,
    requests,
    session_pod,
    supporting_objects,
    training_config,
)
from shoal.config import Settings
from shoal.k8s.client import ApiError, Kube, custom_path, pods_path
from shoal.pool.pods import (
    ANN_CLAIMED_BY,
    ANN_CLAIMS,
    ANN_LAST_RELEASED,
    ANN_LAST_SIGNATURE,
    CLAIMED,
    LABEL_POOL,
    LABEL_STATE,
    format_time,
    parse_time,
)
from shoal.pool.selection import ClaimRequest, claimable, select_pod
from shoal.runtime.cache import CachedPod, CachedPool, ClaimIndex
from shoal.sessions.admission import SessionView, backoff_seconds, decide_admission

log = logging.getLogger("shoal.session")
PLURAL = "trainingsessions"
FINALIZER = "shoal.dev/session-cleanup"
ANN_COMMAND = "shoal.dev/command"
ANN_COMMAND_ID = "shoal.dev/command-id"
ANN_PROGRESS = "shoal.dev/progress"
ANN_SESSION_CONFIG = "shoal.dev/session-config"
PENDING_RECHECK = 3.0
MAX_VIDEOS = 10
ACTIVE = ("Starting", "Running", "Stopping")
INF = Decimal("Infinity")


def progress_of(pod: dict[str, Any] | None) -> dict[str, Any]:
    if not pod:
        return {}
    try:
        data = json.loads((pod["metadata"].get("annotations") or {}).get(ANN_PROGRESS, "{}"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def metrics_of(progress: Mapping[str, Any]) -> dict[str, Any]:
    """The agent's report as status.metrics: numbers only, each kept only when reported."""

    def num(key: str, cast: Callable[[Any], Any] = float) -> Any:
        value = progress.get(key)
        try:
            return None if value is None else cast(value)
        except (TypeError, ValueError):
            return None

    gpus = [g for g in progress.get("gpu") or [] if isinstance(g, dict)]
    out = {
        "timesteps": num("timesteps", int) or 0,
        "episodes": num("episodes", int) or 0,
        "meanReward": num("meanReward"),
        "loss": num("loss"),
        "fps": num("fps"),
        "gpuUtilization": round(sum(float(g.get("utilization", 0)) for g in gpus) / len(gpus), 1)
        if gpus
        else None,
        "gpuMemoryUsedBytes": int(sum(float(g.get("memoryUsed", 0)) for g in gpus)) if gpus else None,
        "device": str(progress["device"])[:32] if progress.get("device") else None,
    }
    return {k: v for k, v in out.items() if v is not None}


def seen_key(obj: Mapping[str, Any]) -> tuple[str, int, str | None]:
    meta = obj.get("metadata") or {}
    return (
        str(meta.get("uid")),
        int(meta.get("generation") or 0),
        (obj.get("status") or {}).get("preemptedBy"),
    )


def _decimal_requests(spec: TrainingSessionSpec, settings: Settings) -> dict[str, Decimal]:
    return {
        k: parse_quantity(v)
        for k, v in requests(spec, settings.gpu_resource, settings.gpu_memory_resource).items()
    }


class SessionReconciler:
    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        clock: Callable[[], datetime] | None = None,
        index: ClaimIndex | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.index = index  # the watches' view of pools and their pods; None: list on every claim
        self.clock = clock or (lambda: datetime.now(UTC))
        self.first_seen: dict[str, float] = {}
        # What a reconcile last read of each session: uid, generation, and the one status field that
        # another session's reconcile writes (a preemption).
        self.seen: dict[tuple[str, str], tuple[str, int, str | None]] = {}

    def relevant(self, event_type: str | None, obj: Mapping[str, Any]) -> bool:
        """Only a new object, a spec change (a new generation), a preemption by another session or a
        deletion needs a reconcile from the session's own watch: everything else it does follows its
        pod's events and its own requeues. So the echo of each status write is skipped, and a
        progress report costs one reconcile, not two. (Matching the echo by resourceVersion would
        race the patch's response.)"""
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type in (None, "ADDED", "DELETED") or meta.get("deletionTimestamp"):
            if event_type == "DELETED":
                self.seen.pop(key, None)
            return True
        return self.seen.get(key) != seen_key(obj)

    # --- the state machine ---------------------------------------------------------------------------

    def reconcile(self, namespace: str, name: str) -> float | None:
        try:
            obj = self.kube.get(custom_path(PLURAL, namespace, name))
        except ApiError as exc:
            if exc.not_found:
                self.seen.pop((namespace, name), None)
                return None
            raise
        meta = obj["metadata"]
        self.seen[(namespace, name)] = seen_key(obj)
        self.first_seen.setdefault(meta["uid"], time.monotonic())
        if meta.get("deletionTimestamp"):
            self._finalize(obj)
            return None
        if FINALIZER not in (meta.get("finalizers") or []):
            # The patched object comes back: carry on with it rather than waiting for the next event.
            obj = self.kube.json_patch(
                custom_path(PLURAL, namespace, name),
                [
                    {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
                    {
                        "op": "add",
                        "path": "/metadata/finalizers",
                        "value": [*(meta.get("finalizers") or []), FINALIZER],
                    },
                ],
            )
            meta = obj["metadata"]
        st: dict[str, Any] = dict(obj.get("status") or {})
        now = self.clock()
        try:
            spec = TrainingSessionSpec.model_validate(obj.get("spec") or {})
        except ValidationError as exc:
            self._write(
                obj, {**st, "phase": "Failed", "reason": "InvalidSpec", "message": str(exc)[:512]}, now
            )
            return None
        phase = st.get("phase") or "Pending"
        if phase in ("Succeeded", "Failed", "Stopped"):
            return None  # the record is kept; nothing runs any more

        pod = self._get_pod(namespace, st.get("podName"))
        new = dict(st)
        new["endpoints"] = endpoints(name, namespace, spec.videoRecording)
        progress = progress_of(pod)
        if progress:
            self._apply_progress(new, progress, spec)

        want_run = spec.runState == "Running" and not st.get("preemptedBy")
        if pod is not None:
            requeue = self._with_pod(obj, spec, new, pod, progress, want_run, now)
        else:
            requeue = self._without_pod(obj, spec, new, want_run, now)
        self._write(obj, new, now)
        return requeue

    def _with_pod(
        self,
        obj: dict[str, Any],
        spec: TrainingSessionSpec,
        new: dict[str, Any],
        pod: dict[str, Any],
        progress: dict[str, Any],
        want_run: bool,
        now: datetime,
    ) -> float | None:
        ns = obj["metadata"]["namespace"]
        ann = pod["metadata"].get("annotations") or {}
        on_pod = int(ann.get(ANN_COMMAND_ID) or 0)
        if on_pod > int(new.get("commandId") or 0) and ann.get(ANN_COMMAND):
            # The command reached the pod but its status write did not (a crash in between): the pod
            # is the record. Its deadline counts from now, the first moment this replica knows of it.
            new.update(commandId=on_pod, command=ann[ANN_COMMAND], commandTime=format_time(now))
        pod_phase = (pod.get("status") or {}).get("phase", "Pending")
        exit_code = progress.get("exitCode")
        if new.get("claimedFromPool") and pod_phase == "Running" and exit_code is not None:
            # A warm pod's agent outlives its trainer (it waits for the next claim): the trainer's exit
            # is this session's end of the pod.
            pod_phase = "Succeeded" if exit_code == 0 else "Failed"
        outstanding = new.get("command") in ("pause", "stop")
        acked = int(progress.get("ack", 0)) >= int(new.get("commandId", 0)) > 0
        if new.get("claimedFromPool") and exit_code is None:
            acked = False  # released only once the trainer is gone: no report of it lands after the release
        error = progress.get("error")
        if isinstance(error, dict) and error.get("reason"):
            # The trainer refused its config or checkpoint: restarting would only repeat that.
            self._let_go(obj, spec, new, pod, now, keep_own=True)
            new.update(
                phase="Failed",
                reason=str(error["reason"])[:128],
                message=str(error.get("message") or "")[:1024],
                endTime=format_time(now),
                podName=None,
            )
            return None
        # A trainer that says whether it finished is believed; one that does not, by its exit code.
        finished = bool(progress.get("done")) if "done" in progress else not outstanding
        if pod_phase == "Succeeded" and finished:
            self._let_go(obj, spec, new, pod, now, keep_own=True)
            new.update(
                phase="Succeeded",
                reason="Completed",
                message="training finished",
                endTime=format_time(now),
                progress="100%",
            )
            return None
        if pod_phase == "Failed" or (pod_phase == "Succeeded" and not outstanding):
            return self._restart_or_fail(obj, spec, new, pod, now)
        if want_run:
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (pod.get("status") or {}).get("conditions") or []
            )
            new["phase"] = "Running" if pod_phase == "Running" and ready else "Starting"
            new["reason"] = "PodRunning" if new["phase"] == "Running" else "PodStarting"
            new["message"] = f"pod {pod['metadata']['name']} is {pod_phase.lower()}"
            new.setdefault("startTime", format_time(now))
            return None

        # Paused, Stopped or preempted: checkpoint first, then let the pod go.
        verb = "stop" if spec.runState == "Stopped" else "pause"
        deadline = spec.checkpoint.ackDeadlineSeconds
        if not outstanding:
            new["commandId"] = int(new.get("commandId", 0)) + 1
            new.update(command=verb, commandTime=format_time(now))
            self.kube.merge_patch_if_exists(
                pods_path(ns, pod["metadata"]["name"]),
                {"metadata": {"annotations": {ANN_COMMAND: verb, ANN_COMMAND_ID: str(new["commandId"])}}},
            )
            new.update(
                phase="Stopping",
                reason="Checkpointing",
                message=f"asked the agent to checkpoint and {verb} (command {new['commandId']})",
            )
            return float(deadline)
        sent = parse_time(new.get("commandTime")) or now
        overdue = (now - sent).total_seconds() >= deadline
        if not acked and pod_phase != "Succeeded" and not overdue:
            return max(0.5, deadline - (now - sent).total_seconds())
        if acked or pod_phase == "Succeeded":
            new["checkpointAcknowledged"] = True
            msg = f"checkpoint acknowledged: {new.get('lastCheckpoint')}"
        else:
            msg = f"no checkpoint acknowledgement within {deadline}s: released anyway"
            self.kube.event(obj, "Warning", "CheckpointTimeout", msg)
        self._let_go(obj, spec, new, pod, now)
        preempted = new.get("preemptedBy")
        if spec.runState == "Stopped":
            new.update(phase="Stopped", reason="Stopped", message=msg, endTime=format_time(now))
        elif preempted:
            new.update(
                phase="Pending",
                reason="Preempted",
                message=f"paused for {preempted}; {msg}",
                preemptedBy=None,
            )
        else:
            new.update(phase="Paused", reason="Paused", message=msg)
        new.update(podName=None, command=None)
        return PENDING_RECHECK if preempted else None

    def _without_pod(
        self,
        obj: dict[str, Any],
        spec: TrainingSessionSpec,
        new: dict[str, Any],
        want_run: bool,
        now: datetime,
    ) -> float | None:
        if new.get("podName"):
            # Deleted by someone else while running: a failure, restarted from the checkpoint.
            if new.get("phase") in ACTIVE and want_run:
                return self._restart_or_fail(obj, spec, new, None, now)
            new["podName"] = None
        if not want_run:
            if spec.runState == "Stopped":
                new.update(
                    phase="Stopped",
                    reason="Stopped",
                    message="stopped before it ran",
                    endTime=format_time(now),
                )
            elif new.get("phase") != "Paused":  # already Paused: keep what the pause said
                new.update(phase="Paused", reason="Paused", message="paused before it ran")
            new["preemptedBy"] = None
            return None
        restart_at = parse_time(new.get("nextRestartTime"))
        if restart_at and restart_at > now:
            return (restart_at - now).total_seconds()
        if spec.poolRef:
            return self._claim(obj, spec, new, now)
        verdict = self._admission(obj, spec)
        if not verdict.admit:
            for victim in verdict.preempt:
                self._preempt(obj, victim)
            if new.get("reason") == "Preempted":
                # Still waiting because it was preempted: say so until it is admitted again.
                first = (new.get("message") or "").split("; waiting:")[0]
                new.update(phase="Pending", message=f"{first}; waiting: {verdict.message or verdict.reason}")
            else:
                new.update(phase="Pending", reason=verdict.reason, message=verdict.message)
            return PENDING_RECHECK
        self._start_pod(obj, spec, new, now)
        return None

    # --- pods --------------------------------------------------------------------------------------------

    def _start_pod(
        self, obj: dict[str, Any], spec: TrainingSessionSpec, new: dict[str, Any], now: datetime
    ) -> None:
        meta = obj["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        attempt = int(new.get("attempts", 0)) + 1
        pod_name = f"{name}-{attempt}"
        # Config, checkpoint claim, Service: created when a pod is about to need them, not re-posted
        # on every pass over a queued or running session.
        self._ensure_objects(obj, spec)
        for role in agent_role(name, uid, pod_name):
            self._apply(ns, role)
        body = session_pod(
            name,
            uid,
            pod_name,
            spec,
            self.settings.gpu_resource,
            self.settings.gpu_memory_resource,
            resume_from=new.get("lastCheckpoint"),
        )
        try:
            self.kube.create(pods_path(ns), body)
        except ApiError as exc:
            if exc.status != 409:
                new.update(phase="Pending", reason="PodCreateFailed", message=exc.message[:512])
                self.kube.event(obj, "Warning", "PodCreateFailed", exc.message)
                return
        new.update(
            attempts=attempt,
            podName=pod_name,
            phase="Starting",
            reason="PodCreated",
            message=f"created pod {pod_name}"
            + (f", resuming from {new['lastCheckpoint']}" if new.get("lastCheckpoint") else ""),
            nextRestartTime=None,
            command=None,
        )

    def _restart_or_fail(
        self,
        obj: dict[str, Any],
        spec: TrainingSessionSpec,
        new: dict[str, Any],
        pod: dict[str, Any] | None,
        now: datetime,
    ) -> float | None:
        rp = spec.restartPolicy
        restarts = int(new.get("restarts", 0))
        why = (
            "pod deleted"
            if pod is None
            else f"pod {pod['metadata']['name']} {pod['status'].get('phase', '').lower()}"
        )
        if pod is not None:
            self._let_go(obj, spec, new, pod, now)
        new["podName"] = None
        if restarts >= rp.backoffLimit:
            new.update(
                phase="Failed",
                reason="BackoffLimitExceeded",
                endTime=format_time(now),
                message=f"{why}; {restarts} restarts used of backoffLimit {rp.backoffLimit}",
            )
            return None
        delay = backoff_seconds(restarts + 1, rp.initialBackoffSeconds, rp.maxBackoffSeconds)
        new.update(
            restarts=restarts + 1,
            phase="Pending",
            reason="BackoffRestart",
            nextRestartTime=format_time(now + timedelta(seconds=delay)),
            message=f"{why}; restart {restarts + 1}/{rp.backoffLimit} in {delay:.0f}s from "
            f"{new.get('lastCheckpoint') or 'the beginning'}",
        )
        self.kube.event(obj, "Warning", "Restarting", new["message"])
        return delay

    def _let_go(
        self,
        obj: dict[str, Any],
        spec: TrainingSessionSpec,
        new: dict[str, Any],
        pod: dict[str, Any],
        now: datetime,
        keep_own: bool = False,
    ) -> None:
        """A claimed pool pod goes back to its pool; the session's own pod is deleted, or kept (logs) at the end."""
        if new.get("claimedFromPool"):
            self._release(obj, spec, pod, now)
        elif not keep_own:
            self.kube.delete(
                pods_path(obj["metadata"]["namespace"], pod["metadata"]["name"]),
                uid=pod["metadata"].get("uid"),
            )

    def _get_pod(self, namespace: str, pod_name: str | None) -> dict[str, Any] | None:
        if not pod_name:
            return None
        try:
            pod = self.kube.get(pods_path(namespace, pod_name))
        except ApiError as exc:
            if exc.not_found:
                return None
            raise
        return None if pod["metadata"].get("deletionTimestamp") else pod

    # --- warm pools -----------------------------------------------------------------------------------

    def _claim(
        self, obj: dict[str, Any], spec: TrainingSessionSpec, new: dict[str, Any], now: datetime
    ) -> float | None:
        ns = obj["metadata"]["namespace"]
        assert spec.poolRef is not None
        pool_name = spec.poolRef.name
        pool = self.index.pool(ns, pool_name) if self.index else None
        if pool is None:
            try:
                raw_pool = self.kube.get(custom_path("containerpools", ns, pool_name))
            except ApiError as exc:
                if not exc.not_found:
                    raise
                new.update(
                    phase="Pending", reason="PoolNotFound", message=f"ContainerPool {pool_name} not found"
                )
                return PENDING_RECHECK
            pool = CachedPool(raw_pool["metadata"]["uid"], raw_pool["spec"])
        pool_spec = ContainerPoolSpec.model_validate(pool.spec)
        req = ClaimRequest(
            signature=f"{spec.game}/{spec.algorithm}",
            requests=requests(spec, self.settings.gpu_resource, self.settings.gpu_memory_resource),
        )
        hashed = template_hash(pool_spec)
        uid = pool.uid

        def choose(pods: Sequence[CachedPod]) -> str | None:
            owned = [p.view for p in pods if p.view.controller_uid == uid]
            choice = select_pod(pool_spec.selection, claimable(owned, pool_spec.recycle, hashed, now), req)
            return choice.name if choice else None

        # First the watch index (no reads on the way to the claim), then a fresh list of the pool.
        claimed = self._claim_from(self.index, obj, spec, new, pool_name, choose) if self.index else None
        if claimed is None:
            listed = ClaimIndex()
            # Claimed pods can never be chosen: leave them out of the list.
            for p in self.kube.list_items(
                pods_path(ns), f"{LABEL_POOL}={pool_name},{LABEL_STATE}!={CLAIMED}"
            ):
                listed.pod_event(None, p)
            claimed = self._claim_from(listed, obj, spec, new, pool_name, choose)
            if claimed is not None and self.index is not None:
                self.index.pod_event("MODIFIED", claimed)
        if claimed is not None:
            self._claimed(obj, new, claimed["metadata"]["name"], pool_name, now)
            # The Service selects the session's label, which the claim put on the pod: the endpoints
            # in status answer from the warm pod as from a pod of the session's own.
            meta = obj["metadata"]
            for body in supporting_objects(meta["name"], meta["uid"], ns, spec):
                if body["kind"] == "Service":
                    self._apply(ns, body, create_only=True)
            return None
        new.update(phase="Pending", reason="NoIdlePod", message=f"no idle pod in pool {pool_name}")
        return 1.0

    def _claim_from(
        self,
        index: ClaimIndex,
        obj: dict[str, Any],
        spec: TrainingSessionSpec,
        new: dict[str, Any],
        pool_name: str,
        choose: Callable[[Sequence[CachedPod]], str | None],
    ) -> dict[str, Any] | None:
        """Claim the pod `choose` picks from `index`, trying the next one when another claim wins;
        the claimed pod as the API server returned it, or None."""
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        lost: set[str] = set()
        for _ in range(3):
            picked = index.pick(ns, pool_name, choose, exclude=lost)
            if picked is None:
                return None
            pod_name = picked.view.name
            try:
                claimed = self.kube.merge_patch(
                    pods_path(ns, pod_name), self._claim_patch(spec, new, name, picked)
                )
            except ApiError as exc:
                index.release(ns, pod_name)
                if exc.conflict or exc.not_found:
                    lost.add(pod_name)  # someone else was faster, or it is gone: the next one
                    continue
                raise
            index.release(ns, pod_name, claimed)
            return claimed
        return None

    def _claim_patch(
        self, spec: TrainingSessionSpec, new: dict[str, Any], session: str, pod: CachedPod
    ) -> dict[str, Any]:
        return {
            "metadata": {
                "resourceVersion": pod.resource_version,  # lose the race cleanly, never double-claim
                "labels": {LABEL_STATE: CLAIMED, LABEL_SESSION: session},
                "annotations": {
                    ANN_CLAIMED_BY: session,
                    ANN_CLAIMS: str(pod.view.claims + 1),
                    ANN_COMMAND: None,
                    ANN_COMMAND_ID: None,
                    ANN_PROGRESS: None,
                    ANN_SESSION_CONFIG: json.dumps(
                        {**training_config(spec), "resumeFrom": new.get("lastCheckpoint")}
                    ),
                },
            }
        }

    def _claimed(
        self, obj: dict[str, Any], new: dict[str, Any], pod_name: str, pool_name: str, now: datetime
    ) -> None:
        meta = obj["metadata"]
        latency = time.monotonic() - self.first_seen.get(meta["uid"], time.monotonic())
        telemetry.CLAIM_SECONDS.observe(latency)
        new.update(
            podName=pod_name,
            claimedFromPool=pool_name,
            phase="Running",
            reason="ClaimedWarmPod",
            message=f"bound to warm pod {pod_name} of pool {pool_name}",
            startTime=format_time(now),
            commandId=0,
            command=None,
        )
        self.kube.event(obj, "Normal", "Claimed", f"bound to warm pod {pod_name} in {latency * 1000:.0f} ms")

    def _release(
        self, obj: dict[str, Any], spec: TrainingSessionSpec, pod: dict[str, Any], now: datetime
    ) -> None:
        self.kube.merge_patch_if_exists(
            pods_path(obj["metadata"]["namespace"], pod["metadata"]["name"]),
            {
                "metadata": {
                    "labels": {LABEL_SESSION: None},
                    "annotations": {
                        ANN_CLAIMED_BY: None,
                        ANN_LAST_RELEASED: format_time(now),
                        ANN_SESSION_CONFIG: None,
                        ANN_PROGRESS: None,
                        ANN_LAST_SIGNATURE: f"{spec.game}/{spec.algorithm}",
                        ANN_COMMAND: None,
                        ANN_COMMAND_ID: None,
                    },
                }
            },
        )

    # --- capacity ---------------------------------------------------------------------------------------

    def _admission(self, obj: dict[str, Any], spec: TrainingSessionSpec) -> Any:
        ns = obj["metadata"]["namespace"]
        mine = self._view(obj, spec)
        waiting, running = [], []
        for other in self.kube.list_items(custom_path(PLURAL, ns)):
            if other["metadata"]["name"] == obj["metadata"]["name"]:
                continue
            try:
                ospec = TrainingSessionSpec.model_validate(other.get("spec") or {})
            except ValidationError:
                continue
            if ospec.poolRef:
                continue
            ost = other.get("status") or {}
            view = self._view(other, ospec)
            if ost.get("podName") and ost.get("phase") in ACTIVE:
                running.append(view)
            elif ost.get("phase", "Pending") == "Pending" and ospec.runState == "Running":
                waiting.append(view)
        return decide_admission(mine, waiting, running, self._free(ns, mine.requests))

    def _view(self, obj: dict[str, Any], spec: TrainingSessionSpec) -> SessionView:
        created = parse_time(obj["metadata"].get("creationTimestamp"))
        return SessionView(
            obj["metadata"]["name"],
            spec.priority,
            created.timestamp() if created else 0.0,
            _decimal_requests(spec, self.settings),
            preempting=bool((obj.get("status") or {}).get("preemptedBy")),
        )

    def _free(self, namespace: str, want: Mapping[str, Decimal]) -> dict[str, Decimal]:
        """The namespace's ResourceQuota headroom if it has one, else unreserved node capacity."""
        quotas = self.kube.list_items(f"/api/v1/namespaces/{namespace}/resourcequotas")
        if quotas:
            free = {k: INF for k in want}
            for q in quotas:
                hard = (q.get("status") or {}).get("hard") or q.get("spec", {}).get("hard", {})
                used = (q.get("status") or {}).get("used") or {}
                for key, value in hard.items():
                    res = key.removeprefix("requests.")
                    if key.startswith(("limits.", "count/")) or res in ("pods", "services", "configmaps"):
                        continue
                    left = parse_quantity(value) - parse_quantity(used.get(key, "0"))
                    free[res] = min(free.get(res, INF), left)
            return free
        free = {}
        for node in self.kube.list_items("/api/v1/nodes"):
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (node.get("status") or {}).get("conditions") or []
            )
            if not ready or node.get("spec", {}).get("unschedulable"):
                continue
            for k, v in ((node.get("status") or {}).get("allocatable") or {}).items():
                free[k] = free.get(k, Decimal(0)) + parse_quantity(v)
        for pod in self.kube.list_items("/api/v1/pods"):
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            for c in pod.get("spec", {}).get("containers", []):
                for k, v in ((c.get("resources") or {}).get("requests") or {}).items():
                    free[k] = free.get(k, Decimal(0)) - parse_quantity(v)
        return free

    def _preempt(self, obj: dict[str, Any], victim: str) -> None:
        ns, me = obj["metadata"]["namespace"], obj["metadata"]["name"]
        if not self.kube.merge_patch_if_exists(
            custom_path(PLURAL, ns, victim, "status"), {"status": {"preemptedBy": me}}
        ):
            return
        self.kube.event(obj, "Normal", "Preempting", f"pausing lower-priority session {victim} to fit")

    # --- supporting objects, progress, status -------------------------------------------------------------

    def _ensure_objects(self, obj: dict[str, Any], spec: TrainingSessionSpec) -> None:
        meta = obj["metadata"]
        for body in supporting_objects(meta["name"], meta["uid"], meta["namespace"], spec):
            self._apply(meta["namespace"], body, create_only=True)

    def _apply(self, namespace: str, body: dict[str, Any], create_only: bool = False) -> None:
        kind = body["kind"]
        group = "/apis/rbac.authorization.k8s.io/v1" if kind in ("Role", "RoleBinding") else "/api/v1"
        plural = {
            "PersistentVolumeClaim": "persistentvolumeclaims",
            "ConfigMap": "configmaps",
            "Service": "services",
            "ServiceAccount": "serviceaccounts",
            "Role": "roles",
            "RoleBinding": "rolebindings",
        }[kind]
        path = f"{group}/namespaces/{namespace}/{plural}"
        try:
            self.kube.create(path, body)
        except ApiError as exc:
            if not exc.conflict:
                raise
            if not create_only:
                self.kube.merge_patch(f"{path}/{body['metadata']['name']}", body)

    def _apply_progress(
        self, new: dict[str, Any], progress: dict[str, Any], spec: TrainingSessionSpec
    ) -> None:
        new["metrics"] = metrics_of(progress)
        steps = new["metrics"].get("timesteps", 0)
        new["progress"] = f"{min(100.0, 100.0 * steps / spec.totalTimesteps):.0f}%"
        last = progress.get("lastCheckpoint") or {}
        if last.get("path"):
            new["lastCheckpoint"] = last["path"]
        videos = progress.get("videos")
        if isinstance(videos, list):
            new["videos"] = [str(v)[:253] for v in videos[-MAX_VIDEOS:]] or None

    def _finalize(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        st = obj.get("status") or {}
        pod = self._get_pod(meta["namespace"], st.get("podName"))
        if pod is not None:
            try:
                spec = TrainingSessionSpec.model_validate(obj.get("spec") or {})
            except ValidationError:
                spec = None
            if st.get("claimedFromPool") and spec is not None:
                self._release(obj, spec, pod, self.clock())
            else:
                self.kube.delete(pods_path(meta["namespace"], pod["metadata"]["name"]))
        finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        self.kube.merge_patch_if_exists(
            custom_path(PLURAL, meta["namespace"], meta["name"]),
            {"metadata": {"finalizers": finalizers or None}},
        )
        self.first_seen.pop(meta["uid"], None)

    def _write(self, obj: dict[str, Any], new: dict[str, Any], now: datetime) -> None:
        meta = obj["metadata"]
        old = obj.get("status") or {}
        phase = new.get("phase") or "Pending"
        new["phase"] = phase
        new["observedGeneration"] = meta.get("generation")
        new.pop("checkpointAcknowledged", None)
        conds = [
            conditions.condition(
                "Admitted",
                phase not in ("Pending",) or new.get("reason") == "Preempted",
                new.get("reason") or "",
                new.get("message") or "",
            ),
            conditions.condition(
                "Running", phase == "Running", new.get("reason") or "", new.get("message") or ""
            ),
        ]
        if new.get("lastCheckpoint"):
            conds.append(
                conditions.condition("Checkpointed", True, "CheckpointWritten", new["lastCheckpoint"])
            )
        new["conditions"] = conditions.merge(old.get("conditions"), conds, meta.get("generation"), now)
        waiting = phase == "Pending" and new.get("reason") not in ("BackoffRestart",)
        if waiting:
            since = parse_time(
                next(c["lastTransitionTime"] for c in new["conditions"] if c["type"] == "Admitted")
            )
            telemetry.SESSION_QUEUED_SINCE.labels(meta["namespace"], meta["name"]).set(
                since.timestamp() if since else 0
            )
        else:
            with contextlib.suppress(KeyError):
                telemetry.SESSION_QUEUED_SINCE.remove(meta["namespace"], meta["name"])
        changed = {k: v for k, v in new.items() if old.get(k) != v}
        if not changed:
            return
        if old.get("phase", "Pending") != phase or old.get("reason") != new.get("reason"):
            level = "Warning" if phase == "Failed" else "Normal"
            self.kube.event(obj, level, phase, new.get("message") or phase)
        # Fields cleared this round are sent as null so merge-patch removes them.
        patch = {k: new.get(k) for k in set(changed) | {k for k in old if k not in new}}
        self.kube.merge_patch_if_exists(
            custom_path(PLURAL, meta["namespace"], meta["name"], "status"), {"status": patch}
        )
