"""WorkerScaler reconciler: resolve the target's /scale, read metrics, decide, patch /scale, report."""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from shoal import conditions, telemetry
from shoal.api.metrics import MetricSpec
from shoal.api.scaler import WorkerScalerSpec
from shoal.config import Settings
from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import custom_path, pods_path
from shoal.reconcile import write_status
from shoal.reconcile.history import HistoryStore, save_every
from shoal.reconcile.targets import PLURAL, ScaleTargets, TargetError
from shoal.runtime.store import Store, older
from shoal.scaling import record
from shoal.scaling.engine import config, decide
from shoal.scaling.freshness import Freshness, next_read
from shoal.scaling.schedule import valid_cron
from shoal.scaling.types import Decision, History, MetricReading, Observation
from shoal.sources import MetricSource, SourceContext
from shoal.times import parse_time
from shoal.vocab import ANN_DELETION_COST

log = logging.getLogger("shoal.scaler")


@dataclass
class _State:
    uid: str
    history: History
    last_eval: float = 0.0
    next_at: float = 0.0  # monotonic time of the next read: a poll on, or when fresh data lands
    fresh: Freshness = field(default_factory=Freshness)
    generation: int | None = None
    saved_at: float = 0.0  # monotonic time of the last history write
    saved_points: int = 0
    scaled_version: str | None = None  # the target's resourceVersion our last /scale patch answered


def startup_seconds(pods: list[dict[str, Any]]) -> float | None:
    durations = []
    for pod in pods:
        created = parse_time(pod["metadata"].get("creationTimestamp"))
        ready = next(
            (
                c
                for c in (pod.get("status") or {}).get("conditions") or []
                if c.get("type") == "Ready" and c.get("status") == "True"
            ),
            None,
        )
        became = parse_time(ready.get("lastTransitionTime")) if ready else None
        if created and became and became >= created:
            durations.append((became - created).total_seconds())
    return statistics.median(durations) if durations else None


class ScalerReconciler:
    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        sources: dict[str, MetricSource],
        clock: Callable[[], float] | None = None,
        wall: Callable[[], float] | None = None,
        pools: Callable[[str, str], Mapping[str, Any] | None] | None = None,
    ) -> None:
        """`clock` (monotonic) times polls, cooldowns and windows; `wall` what is written, matched
        against a calendar (status times, cron windows) or kept across processes (demand history).
        `pools` is the pool watch's cache: a ContainerPool target's scale is read from there."""
        self.kube = kube
        self.pools = pools
        self.settings = settings
        self.sources = sources
        self.clock = clock or time.monotonic
        self.wall = wall or time.time
        self.states: dict[tuple[str, str], _State] = {}
        self.lock = threading.Lock()
        self.targets = ScaleTargets(kube)
        self.history = HistoryStore(kube)
        # Each scaler as its watch or this process's own status write last showed it: an evaluation
        # reads its scaler from here, as HPA reads its objects from a lister (a GET less per poll).
        self.store = Store()

    # --- the loop --------------------------------------------------------------------------------------

    def relevant(self, event_type: str | None, obj: Mapping[str, Any]) -> bool:
        """Whether a watch event needs a reconcile. Each evaluation writes status, and the write comes
        back as an event of the same generation: it carries nothing new and the next poll is already
        queued, so skipping it halves the work of a large fleet of scalers."""
        meta = obj.get("metadata") or {}
        self.store.event(event_type, obj)
        if event_type in (None, "DELETED") or meta.get("deletionTimestamp"):
            return True
        with self.lock:
            state = self.states.get((meta.get("namespace", ""), meta.get("name", "")))
        return state is None or state.uid != meta.get("uid") or state.generation != meta.get("generation")

    def reconcile(self, namespace: str, name: str) -> float | None:
        """One evaluation, or none if the next is not due yet; the seconds until the next."""
        delay = self._reconcile(namespace, name)
        if delay is not None:
            with self.lock:
                state = self.states.get((namespace, name))
            if state is not None:
                state.next_at = self.clock() + delay
        return delay

    def _reconcile(self, namespace: str, name: str) -> float | None:
        key = (namespace, name)
        obj = self.store.read(
            namespace, name, lambda: self.kube.get_if_exists(custom_path(PLURAL, namespace, name))
        )
        if obj is None:
            with self.lock:
                self.states.pop(key, None)
            telemetry.forget_scaler(namespace, name)
            return None
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            return None
        now, wall = self.clock(), self.wall()
        try:
            spec = WorkerScalerSpec.model_validate(obj.get("spec") or {})
            bad_cron = [w.cron for w in spec.schedule if not valid_cron(w.cron)]
            if bad_cron:
                raise ValueError(f"invalid cron expression(s): {', '.join(bad_cron)}")
        except (ValidationError, ValueError) as exc:
            self._status(
                obj,
                wall,
                [
                    conditions.condition("AbleToScale", False, "InvalidSpec", str(exc)[:512]),
                    conditions.condition("ScalingActive", False, "InvalidSpec", "fix the spec"),
                ],
            )
            return None

        poll = float(spec.pollIntervalSeconds)
        with self.lock:
            state = self.states.get(key)
            fresh = state is None or state.uid != meta["uid"]
            if fresh:
                state = _State(
                    meta["uid"], record.seed_history(obj.get("status") or {}, now, wall), saved_at=now
                )
                self.states[key] = state
        assert state is not None
        if fresh and spec.predictive and spec.predictive.forecasting:
            fit = self.history.load(obj, config(spec), wall)  # learned by an earlier process
            if fit is not None:
                state.history = replace(state.history, fit=fit)
                state.saved_points = fit.n
        # Our own status writes come back as watch events: evaluate when the next read is due (a
        # poll on, or when the metric's next sample lands), or at once when the spec changed.
        due = state.next_at - now
        ends = spec.override.expiresAt if spec.override else None
        if ends is not None and ends.timestamp() > wall - (now - state.last_eval):
            # An override that ended since the last evaluation is handed back at its time, not a poll on.
            due = min(due, ends.timestamp() - wall)
        if state.generation == meta.get("generation") and due > 0.05:
            return due

        ref = spec.targetRef
        try:
            if ref.namespace and ref.namespace != namespace:
                raise TargetError(
                    "CrossNamespaceRefused",
                    f"targetRef.namespace {ref.namespace} differs from the scaler's namespace {namespace}",
                )
            path = self.targets.scale_path(namespace, ref.apiVersion, ref.kind, ref.name)
            conflict = self.targets.conflicts(obj, spec)
            if conflict:
                raise TargetError("ConflictingScaler", conflict)
            try:
                scale = self._scale(namespace, ref.apiVersion, ref.kind, ref.name, state) or self.kube.get(
                    path
                )
            except ApiError as exc:
                if exc.not_found:
                    raise TargetError("TargetNotFound", f"{ref.kind}/{ref.name} not found") from None
                raise
        except TargetError as exc:
            state.last_eval, state.generation = now, meta.get("generation")
            self._status(
                obj,
                wall,
                [
                    conditions.condition("AbleToScale", False, exc.reason, exc.message),
                    conditions.condition("ScalingActive", False, exc.reason, "target unavailable"),
                ],
            )
            if exc.reason in ("CrossNamespaceRefused", "ConflictingScaler"):
                self.kube.event(obj, "Warning", exc.reason, exc.message)
            return poll

        current = int(scale.get("spec", {}).get("replicas", 0) or 0)
        selector = scale.get("status", {}).get("selector", "") or ""
        state.last_eval, state.generation = now, meta.get("generation")
        if spec.paused:
            self._status(
                obj,
                wall,
                [
                    conditions.condition(
                        "AbleToScale", True, "Paused", "spec.paused is true: replicas left alone"
                    ),
                    conditions.condition("ScalingActive", False, "Paused", "spec.paused is true"),
                    conditions.condition("ScalingLimited", False, "Paused", ""),
                ],
                current=current,
            )
            return poll

        ctx = SourceContext(self.kube, namespace, selector, current, ref.name)
        readings = tuple(self._read(ctx, m) for m in spec.metrics)
        next_in, state.fresh = next_read(readings, state.fresh, poll, wall)
        startup = (
            self._startup_seconds(namespace, selector)
            if spec.predictive and spec.predictive.forecasting
            else None
        )
        decision, history = decide(
            config(spec), Observation(current, readings, startup), state.history, now, wall
        )
        state.history = history
        fit = history.fit
        if (
            fit is not None
            and fit.n > state.saved_points
            and now - state.saved_at >= save_every(poll)
            and self.history.save(obj, fit)
        ):
            state.saved_at, state.saved_points = now, fit.n
        if decision.changed:
            if decision.desired < current and ref.kind in ("Deployment", "ReplicaSet"):
                self._set_deletion_costs(namespace, readings)
            try:
                answer = self.kube.merge_patch(path, {"spec": {"replicas": decision.desired}})
                state.scaled_version = (answer.get("metadata") or {}).get("resourceVersion")
            except ApiError as exc:
                state.history = replace(history, events=history.events[:-1])
                self._status(
                    obj,
                    wall,
                    [
                        conditions.condition("AbleToScale", False, "FailedUpdateScale", exc.message[:512]),
                    ],
                    current=current,
                )
                self.kube.event(obj, "Warning", "FailedUpdateScale", exc.message)
                return poll
            self.kube.event(
                obj,
                "Normal",
                "Scaled",
                f"{ref.kind}/{ref.name} {current} -> {decision.desired}: {decision.reason}: {decision.message}",
            )
            telemetry.SCALER_DECISIONS.labels(decision.reason).inc()
        telemetry.SCALER_REPLICAS.labels(namespace, name, "current").set(current)
        telemetry.SCALER_REPLICAS.labels(namespace, name, "desired").set(decision.desired)
        telemetry.SCALER_AT_MAX.labels(namespace, name).set(1 if decision.limited_reason == "AtMax" else 0)
        ov = spec.override
        event = record.override_event(obj.get("status") or {}, decision, expired=ov is not None)
        self._status(obj, wall, record.conditions_of(decision), current=current, decision=decision)
        if event:
            self.kube.event(obj, *event)
        if ov is not None and ov.expiresAt is not None and decision.reason == "Override":
            return max(0.05, min(next_in, ov.expiresAt.timestamp() - wall))  # it ends by itself, on time
        return next_in

    def _scale(
        self, namespace: str, api_version: str, kind: str, name: str, state: _State
    ) -> dict[str, Any] | None:
        """A ContainerPool target's scale as the pool watch last showed the pool (the fields its CRD's
        scale subresource maps), as HPA reads from its informers; None (read /scale) for other kinds,
        a pool the cache does not hold, or one older than the answer to our own last scale patch."""
        if self.pools is None or (api_version, kind) != ("shoal.dev/v1alpha1", "ContainerPool"):
            return None
        pool = self.pools(namespace, name)
        if pool is None or older(pool, state.scaled_version):
            return None
        return {
            "spec": {"replicas": (pool.get("spec") or {}).get("replicas", 0)},
            "status": {"selector": (pool.get("status") or {}).get("selector", "")},
        }

    def _read(self, ctx: SourceContext, metric: MetricSpec) -> MetricReading:
        started = time.perf_counter()
        reading = self.sources[metric.type].read(ctx, metric)
        telemetry.SOURCE_SECONDS.labels(metric.type).observe(time.perf_counter() - started)
        if reading.error:
            telemetry.SOURCE_FAILURES.labels(metric.type).inc()
        return reading

    def _startup_seconds(self, namespace: str, selector: str) -> float | None:
        """Median creation-to-Ready time of the target's pods: how far ahead a forecast must look."""
        if not selector:
            return None
        try:
            pods = self.kube.list_items(pods_path(namespace), selector)
        except ApiError:
            return None
        return startup_seconds(pods)

    def _set_deletion_costs(self, namespace: str, readings: tuple[Any, ...]) -> None:
        """Least-used pods get the lowest deletion cost, so the ReplicaSet removes them first."""
        pods = [p for r in readings if r.kind == "Resource" for p in r.pods]
        for p in pods:
            cost = str(round((p.usage or 0.0) * 1000))
            try:
                self.kube.merge_patch(
                    pods_path(namespace, p.name), {"metadata": {"annotations": {ANN_DELETION_COST: cost}}}
                )
            except ApiError:
                continue

    def _status(
        self,
        obj: dict[str, Any],
        wall: float,
        conds: list[dict[str, Any]],
        current: int | None = None,
        decision: Decision | None = None,
    ) -> None:
        status = record.compose(obj, wall, conds, current, decision)
        written = write_status(self.kube, PLURAL, obj, status)
        if written is not None:
            self.store.put(written)  # the next poll composes on what was written, echo or not
