"""TrainingSession reconciler: reads the session, its pod and (when asked) capacity or a claim, calls
the pure lifecycle (sessions/lifecycle.py), carries out its actions, then writes status and Events."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from shoal import telemetry
from shoal.api.session import TrainingSessionSpec
from shoal.builders.session import (
    agent_role,
    endpoints,
    session_pod,
    signature,
    supporting_objects,
)
from shoal.claims.holders import SESSION, Holder
from shoal.config import Settings
from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import custom_path, pods_path
from shoal.reconcile import write_status
from shoal.reconcile.capacity import Capacity
from shoal.reconcile.claimer import Claimer
from shoal.reconcile.gang import GANG_RECHECK, JOB, Gangs
from shoal.runtime.cache import ClaimIndex
from shoal.runtime.store import Store
from shoal.sessions import record, starts, warm
from shoal.sessions.admission import SessionView, Verdict, decide_warm
from shoal.sessions.lifecycle import (
    ACTIVE,
    ANN_COMMAND,
    ANN_COMMAND_ID,
    FINAL,
    CreatePod,
    EnsureService,
    Event,
    Inputs,
    LetGo,
    PodState,
    Preempt,
    SendCommand,
    Step,
    decide,
)
from shoal.times import parse_time
from shoal.vocab import ANN_PROGRESS, FORMER_FINALIZER

__all__ = ["SessionReconciler", "seen_key"]
log = logging.getLogger("shoal.session")
PLURAL = "trainingsessions"
# Reasons of a session waiting for a pool pod: it stays registered with the pool, woken by an idle pod
# (a warm session's preemption included: the victim's pod coming back is its turn).
WAITING = ("NoIdlePod", "NoFittingPod", "PoolNotFound", "Preempting", "WaitingForPreemption")


def seen_key(obj: Mapping[str, Any]) -> tuple[str, int, str | None]:
    meta = obj.get("metadata") or {}
    return (
        str(meta.get("uid")),
        int(meta.get("generation") or 0),
        (obj.get("status") or {}).get("preemptedBy"),
    )


class SessionReconciler:
    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        clock: Callable[[], datetime] | None = None,
        index: ClaimIndex | None = None,
        pods: Store | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.claims = Claimer(kube, settings, index)
        self.capacity = Capacity(kube, settings)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.first_seen: dict[str, float] = {}
        # (namespace, name) -> when this process first saw a session not yet started, and when it started it (wall
        # clock, beside the agent's): logged with the agent's moments once status shows the trainer's
        # first progress (sessions/starts.py).
        self.starts: dict[tuple[str, str], dict[str, float]] = {}
        # What a reconcile last read of each session: uid, generation, and the one status field that
        # another session's reconcile writes (a preemption).
        self.seen: dict[tuple[str, str], tuple[str, int, str | None]] = {}
        # Each session as its watch or this process's own writes last showed it: reconciles read it
        # from here, as does the pools' check of who still holds their pods (which reads afresh any
        # session it would give a pod back from).
        self.store = Store()
        # The pods labelled with a session (its own, or claimed from a pool), fed by the pod watch.
        self.pods = pods if pods is not None else Store()
        self.gangs = Gangs(kube, settings, self.pods)

    def relevant(self, event_type: str | None, obj: Mapping[str, Any]) -> bool:
        """Only a new object, a spec change (a new generation), a preemption by another session or a
        deletion needs a reconcile from the session's own watch: everything else it does follows its
        pod's events and its own requeues. So the echo of each status write is skipped, and a
        progress report costs one reconcile, not two. (Matching the echo by resourceVersion would
        race the patch's response.)"""
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        self.store.event(event_type, obj)
        if event_type in (None, "ADDED", "DELETED") or meta.get("deletionTimestamp"):
            if event_type == "DELETED":
                self.seen.pop(key, None)
            return True
        return self.seen.get(key) != seen_key(obj)

    def cached(self, namespace: str) -> list[dict[str, Any]]:
        """The namespace's sessions as their watch last delivered them."""
        return self.store.items(namespace)

    def reconcile(self, namespace: str, name: str) -> float | None:
        path = custom_path(PLURAL, namespace, name)
        obj = self.store.read(namespace, name, lambda: self.kube.get_if_exists(path))
        holder = Holder(SESSION, name)
        if obj is None:
            self.seen.pop((namespace, name), None)
            self.starts.pop((namespace, name), None)
            self.claims.unwait(namespace, holder)
            return None
        meta = obj["metadata"]
        self.seen[(namespace, name)] = seen_key(obj)
        if meta["uid"] not in self.first_seen and not (obj.get("status") or {}).get("podName"):
            self.starts[(namespace, name)] = {"seen": time.time()}
        self.first_seen.setdefault(meta["uid"], time.monotonic())
        if FORMER_FINALIZER in (meta.get("finalizers") or []):
            # The one write guarded by a resourceVersion: read afresh for it.
            fresh = self.kube.get_if_exists(path)
            obj = fresh and self.kube.remove_finalizer(path, fresh, FORMER_FINALIZER)
            if obj is None:
                return None
            self.store.put(obj)
            meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            self._let_go(obj)  # held up by someone else's finalizer: its pod need not wait for that
            return None
        st: dict[str, Any] = dict(obj.get("status") or {})
        now = self.clock()
        try:
            spec = TrainingSessionSpec.model_validate(obj.get("spec") or {})
        except ValidationError as exc:
            self._write(
                obj, {**st, "phase": "Failed", "reason": "InvalidSpec", "message": str(exc)[:512]}, now
            )
            return None
        if st.get("phase") in FINAL:
            self.starts.pop((namespace, name), None)
            return None  # the record is kept; nothing runs any more

        gang = spec.workers > 1
        if gang:
            kind = st.get("gangKind") or JOB
            pod = self.gangs.view(namespace, st["podName"], spec, obj, kind) if st.get("podName") else None
            st.update(workerPods=pod and pod["workerPods"], readyWorkers=pod and pod["readyWorkers"])
        else:
            pod = self._get_pod(namespace, st.get("podName"))
        st["endpoints"] = endpoints(name, namespace, spec.videoRecording)
        inputs = Inputs(name, spec, st, PodState.of(pod) if pod else None, now)
        step = decide(inputs)
        if step.needs == "admission":
            verdict = self._warm_verdict(obj, spec, now) if spec.poolRef else self.capacity.verdict(obj, spec)
            if verdict.admit:
                self._mark(namespace, name, "admitted")
            inputs = replace(inputs, admission=verdict)
            step = decide(inputs)
        if step.needs == "claim":
            # A warm start's admission is its pool's: the attempt that gets a pod is when it was admitted.
            self._mark(namespace, name, "admitted", again=True)
            started = self.first_seen[meta["uid"]]
            outcome = self.claims.claim_session(
                namespace, name, spec, st.get("lastCheckpoint"), started, now, st.get("checkpointPod")
            )
            if outcome.pod:
                self._mark(namespace, name, "started")
            step = decide(replace(inputs, claim=outcome))
        if step.status.get("phase") != "Pending" or step.status.get("reason") not in WAITING:
            self.claims.unwait(namespace, holder)  # bound, paused, finished: no longer counted by its pool
        events = self._carry_out(obj, spec, step, now)
        if gang and step.status.get("phase") in ACTIVE:
            step.requeue = min(step.requeue or GANG_RECHECK, GANG_RECHECK)
        elif gang and step.status.get("phase") in FINAL:
            self.gangs.ended(namespace, name, st)
        if not step.status.get("podName"):
            step.status.update(workerPods=None, readyWorkers=None)
        self._write(obj, step.status, now)
        if pod is not None and (namespace, name) in self.starts:
            self._log_start(obj, pod)
        for e in events:  # after the status they describe: a retried reconcile does not repeat them
            self.kube.event(obj, e.type, e.reason, e.message)
        return step.requeue

    def _warm_verdict(self, obj: dict[str, Any], spec: TrainingSessionSpec, now: datetime) -> Verdict:
        """A warm session's turn at its pool, from the watches (sessions/admission.decide_warm)."""
        assert spec.poolRef is not None
        meta, pool = obj["metadata"], spec.poolRef.name
        ns, name = meta["namespace"], meta["name"]
        turns = self.claims.pool_turns(ns, pool, spec, now)
        if turns is None:
            return Verdict(True, reason="Admitted")  # the claim says what is wrong, or waits
        waiting, holding = warm.queue_at(self.store.items(ns), name, pool, turns.pins, now, turns.holders)
        created = parse_time(meta.get("creationTimestamp"))
        me = SessionView(name, spec.priority, created.timestamp() if created else 0.0, {})
        verdict = decide_warm(me, waiting, holding, turns.idle, turns.can_grow)
        if not verdict.admit:
            self.claims.wait(ns, pool, Holder(SESSION, name))  # woken when one of its pods turns idle
        return verdict

    def _mark(self, namespace: str, name: str, moment: str, again: bool = False) -> None:
        """Record a start's moment once (or, with `again`, at its latest attempt) while it is followed."""
        mine = self.starts.get((namespace, name))
        if mine is not None and (again or moment not in mine):
            mine[moment] = time.time()

    def _log_start(self, obj: dict[str, Any], pod: dict[str, Any]) -> None:
        """Once status shows the trainer's first progress: where this start's time went."""
        meta = obj["metadata"]
        raw = (pod["metadata"].get("annotations") or {}).get(ANN_PROGRESS)
        try:
            progress = json.loads(raw) if raw else None
        except ValueError:
            return
        key = (meta["namespace"], meta["name"])
        moments = starts.timeline(self.starts[key], progress, time.time())
        if moments is None:
            return
        del self.starts[key]
        kind = "warm" if (obj.get("spec") or {}).get("poolRef") else "cold"
        spent = starts.durations(moments)
        for stage, seconds in spent.items():
            if stage != "total":
                telemetry.SESSION_START_SECONDS.labels(kind, stage).observe(max(0.0, seconds))
        log.info(
            "session %s/%s started %s in %.3f s",
            meta["namespace"],
            meta["name"],
            kind,
            spent["total"],
            extra={
                "session": f"{meta['namespace']}/{meta['name']}",
                "start": kind,
                "moments": moments,
                "stages": spent,
            },
        )

    # --- actions -----------------------------------------------------------------------------------------

    def _carry_out(
        self, obj: dict[str, Any], spec: TrainingSessionSpec, step: Step, now: datetime
    ) -> list[Event]:
        meta = obj["metadata"]
        ns = meta["namespace"]
        events: list[Event] = []
        for action in step.actions:
            if isinstance(action, Event):
                events.append(action)
            elif isinstance(action, CreatePod):
                failed = (
                    self.gangs.create(obj, spec, action.name, action.resume_from, step.status)
                    if spec.workers > 1
                    else self._create_pod(obj, spec, action)
                )
                if not failed:
                    self._mark(ns, meta["name"], "started")
                if failed:
                    step.status.update(phase="Pending", reason="PodCreateFailed", message=failed[:512])
                    step.status.pop("podName", None)
                    events.append(Event("Warning", "PodCreateFailed", failed))
            elif isinstance(action, SendCommand):
                target = self.gangs.command_target(ns, action.pod) if spec.workers > 1 else action.pod
                command = {ANN_COMMAND: action.verb, ANN_COMMAND_ID: str(action.id)}
                if target is not None:  # else worker 0 is not made yet: the command's deadline stands
                    self._patch(self.pods, pods_path(ns, target), {"metadata": {"annotations": command}})
                if spec.workers > 1:
                    self.gangs.commanded(ns, action.pod, action.verb, step.status)
            elif isinstance(action, LetGo):
                if action.to_pool:
                    ended = {"Succeeded": True, "Failed": False}.get(step.status.get("phase", ""))
                    self.claims.release(
                        ns, action.pod, Holder(SESSION, meta["name"]), signature(spec), now, ended
                    )
                elif not action.keep and spec.workers > 1:
                    self.gangs.let_go(ns, action.pod, action.uid, step.status)
                elif not action.keep:
                    self.kube.delete(pods_path(ns, action.pod), uid=action.uid or None)
            elif isinstance(action, Preempt):
                if self._patch(
                    self.store,
                    custom_path(PLURAL, ns, action.victim, "status"),
                    {"status": {"preemptedBy": meta["name"]}},
                ):
                    events.append(
                        Event(
                            "Normal", "Preempting", f"pausing lower-priority session {action.victim} to fit"
                        )
                    )
            elif isinstance(action, EnsureService):
                # The Service selects the session's label, which the claim put on the pod: the endpoints
                # in status answer from a warm pod as from a pod of the session's own.
                ingress = self.settings.session_ingress_from
                for body in supporting_objects(meta["name"], meta["uid"], ns, spec, ingress):
                    if body["kind"] in ("Service", "NetworkPolicy"):  # who may reach the pod, and how
                        self.kube.apply(ns, body, create_only=True)
        return events

    def _create_pod(self, obj: dict[str, Any], spec: TrainingSessionSpec, action: CreatePod) -> str:
        """Create the session's pod with what it needs first; the API server's refusal, or ""."""
        meta = obj["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        # Config, checkpoint claim, Service: created when a pod is about to need them, not re-posted
        # on every pass over a queued or running session.
        for body in supporting_objects(name, uid, ns, spec, self.settings.session_ingress_from):
            # The config follows the spec (an edit while paused or a restart to apply one); the
            # claim, Service, account and network policy only need to exist.
            self.kube.apply(ns, body, create_only=body["kind"] != "ConfigMap")
        for role in agent_role(name, uid, action.name):
            self.kube.apply(ns, role)
        body = session_pod(
            name,
            uid,
            action.name,
            spec,
            self.settings.gpu_resource,
            self.settings.gpu_memory_resource,
            resume_from=action.resume_from,
        )
        try:
            self.pods.put(self.kube.create(pods_path(ns), body))
        except ApiError as exc:
            if exc.status != 409:
                return exc.message
        return ""

    def _get_pod(self, namespace: str, pod_name: str | None) -> dict[str, Any] | None:
        if not pod_name:
            return None
        pod = self.pods.read(
            namespace, pod_name, lambda: self.kube.get_if_exists(pods_path(namespace, pod_name))
        )
        return None if pod is None or pod["metadata"].get("deletionTimestamp") else pod

    def _let_go(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        st = obj.get("status") or {}
        gang = int((obj.get("spec") or {}).get("workers") or 1) > 1
        if gang and st.get("podName"):
            self.gangs.delete(meta["namespace"], st["podName"], kind=st.get("gangKind") or JOB)
        # A gang's podName is its Job's: no pod of that name to look up.
        pod = None if gang else self._get_pod(meta["namespace"], st.get("podName"))
        if pod is not None:
            try:
                spec: TrainingSessionSpec | None = TrainingSessionSpec.model_validate(obj.get("spec") or {})
            except ValidationError:
                spec = None
            if st.get("claimedFromPool"):
                self.claims.release(
                    meta["namespace"],
                    pod["metadata"]["name"],
                    Holder(SESSION, meta["name"]),
                    signature(spec) if spec else None,
                    self.clock(),
                )
            else:
                self.kube.delete(pods_path(meta["namespace"], pod["metadata"]["name"]))
        self.first_seen.pop(meta["uid"], None)
        self.starts.pop((meta["namespace"], meta["name"]), None)
        telemetry.forget_session(meta["namespace"], meta["name"])  # deleted while queued

    def _write(self, obj: dict[str, Any], new: dict[str, Any], now: datetime) -> None:
        meta = obj["metadata"]
        old = obj.get("status") or {}
        usage = record.resource_conditions(
            obj.get("spec") or {}, new.get("metrics") or {}, self.settings.gpu_memory_resource
        )
        new = record.complete(old, new, meta.get("generation"), now, usage)
        since = record.queued_since(new)
        if since is not None:
            telemetry.SESSION_QUEUED_SINCE.labels(meta["namespace"], meta["name"]).set(since.timestamp())
        else:
            telemetry.forget_session(meta["namespace"], meta["name"])
        written = write_status(self.kube, PLURAL, obj, new)
        if written is None:
            return
        self.store.put(written)  # the next reconcile reads what this one wrote, echo or not
        event = record.phase_event(old, new)
        for e in ([event] if event else []) + record.condition_events(old, new):
            # After the write it describes, as the lifecycle's own Events are.
            self.kube.event(obj, e.type, e.reason, e.message)

    def _patch(self, store: Store, path: str, patch: dict[str, Any]) -> bool:
        """Merge-patch an object and keep the API server's answer in `store`, so the next reconcile
        reads what this one wrote even before its watch event arrives; False when it is gone."""
        answer = self.kube.merge_patch_if_exists(path, patch)
        if answer is not None:
            store.put(answer)
        return answer is not None
