"""ContainerPool reconciler: list the pool's pods, plan, act, report."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from shoal import conditions, telemetry
from shoal.api.pool import ContainerPoolSpec
from shoal.builders import LABEL_MANAGED, controller_ref
from shoal.builders.pod import (
    agent_account,
    agent_pod_name,
    build_pod,
    own_pod_access,
    pod_ref,
    template_hash,
)
from shoal.config import Settings
from shoal.k8s.client import ApiError, Kube, custom_path, pods_path
from shoal.pool.claims import CLAIM_PREFIX, held_signature, holder_of, release_patch, stranded
from shoal.pool.plan import Plan, plan, size_limit
from shoal.pool.pods import ANN_CLAIMED_BY, LABEL_POOL, LABEL_STATE, STATES, pod_view
from shoal.reconcile import write_status
from shoal.runtime.cache import ClaimIndex
from shoal.times import format_time

log = logging.getLogger("shoal.pool")
PLURAL = "containerpools"
RETRY_AFTER_CREATE_FAILURE = 10.0


def _names(items: list[str], limit: int = 5) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


# Shared by every pool's pod writes (kcm's slow-start batches run as goroutines; these are threads,
# as each write waits on the API server, not on this process).
WRITERS = ThreadPoolExecutor(8, thread_name_prefix="pod-writes")


class PoolReconciler:
    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        clock: Callable[[], datetime] | None = None,
        index: ClaimIndex | None = None,
        claims_cache: Callable[[str], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.clock = clock or (lambda: datetime.now(UTC))
        self.index = index  # who waits for a pod of which pool (the claim path records it)
        # namespace -> its ContainerClaims as the claim watch last showed them (None: always list)
        self.claims_cache = claims_cache

    def reconcile(self, namespace: str, name: str) -> float | None:
        # The pool as its watch delivered it (kcm's controllers read their informers the same way):
        # each pass was preceded by that event, and a status written from a view a step behind is
        # followed by the echo's pass. Read from the API only when the watch has not shown it.
        pool = self.index.pool_object(namespace, name) if self.index else None
        if pool is None:
            pool = self.kube.get_if_exists(custom_path(PLURAL, namespace, name))
        if pool is None:
            telemetry.forget_pool(namespace, name)
            return None  # deleted: its pods go with it (ownerReferences)
        if pool["metadata"].get("deletionTimestamp"):
            return None
        now = self.clock()
        try:
            spec = ContainerPoolSpec.model_validate(pool.get("spec") or {})
        except ValidationError as exc:
            # The CRD schema rejects nearly everything; this catches what it cannot express.
            self._write_status(
                pool,
                None,
                [
                    conditions.condition("Ready", False, "InvalidSpec", str(exc)[:512]),
                    conditions.condition("Degraded", True, "InvalidSpec", str(exc)[:512]),
                ],
                now,
            )
            return None

        uid = pool["metadata"]["uid"]
        pods = self.kube.list_items(pods_path(namespace), f"{LABEL_POOL}={name}")
        pods = [self._managed(namespace, pod) for pod in pods]
        pods = self._release_stranded(pool, pods, now)
        thash = template_hash(spec)
        views = [pod_view(x) for x in pods]
        holding = [holder_of(v.claimed_by) for v in views if v.claimed_by]
        waiting = self.index.waiting(namespace, name, holding) if self.index else 0
        p = plan(spec, uid, views, thash, now, waiting)

        for pod_name in p.adopt:
            self.kube.merge_patch_if_exists(
                pods_path(namespace, pod_name),
                {"metadata": {"ownerReferences": [controller_ref("ContainerPool", name, uid)]}},
            )
        deleted: dict[str, list[str]] = defaultdict(list)
        # Each delete names the version the plan was made from: a pod claimed (or otherwise changed)
        # since the list gets a 409 and stays; the next pass plans again on what is there then.
        versions = {x["metadata"]["name"]: x["metadata"].get("resourceVersion") for x in pods}
        for d in p.delete:
            if self.kube.delete(pods_path(namespace, d.pod), uid=d.uid, resource_version=versions.get(d.pod)):
                deleted[d.reason].append(d.pod)
                telemetry.POOL_EVENTS.labels("delete", d.reason).inc()
            else:
                telemetry.POOL_EVENTS.labels("delete-skipped", d.reason).inc()
        # Independent writes (a pool whose pods all turned ready at once has one each): side by side.
        list(
            WRITERS.map(
                lambda item: self.kube.merge_patch_if_exists(
                    pods_path(namespace, item[0]), {"metadata": {"labels": {LABEL_STATE: item[1]}}}
                ),
                p.relabel.items(),
            )
        )
        created, create_error = self._create(namespace, name, uid, spec, thash, p.create)

        self._events(pool, p, created, deleted, create_error)
        limit = size_limit(spec, p.counts.claimed, waiting)
        conds = [
            conditions.condition(
                "Ready",
                p.counts.ready >= p.desired,
                "AllReplicasReady" if p.counts.ready >= p.desired else "ReplicasNotReady",
                f"{p.counts.ready}/{p.desired} pods ready",
            ),
            self._scaling_condition(p, created, deleted),
            conditions.condition(
                "ScalingLimited",
                limit is not None,
                limit[0] if limit else "WithinBounds",
                limit[1] if limit else f"spec.replicas {spec.replicas} is within the pool's bounds",
            ),
            conditions.condition(
                "Degraded",
                bool(create_error or p.counts.failed),
                "CreateFailed" if create_error else ("PodsFailing" if p.counts.failed else "AsExpected"),
                create_error
                or (f"{p.counts.failed} pod(s) failed or never became ready" if p.counts.failed else ""),
            ),
        ]
        scaled = created > 0 or bool(deleted.get("ScaleDown"))
        self._write_status(pool, p, conds, now, scaled=scaled, created=created)

        c = p.counts
        by_state = {
            "Idle": c.idle,
            "Claimed": c.claimed,
            "Pending": c.pending - p.create + created,
            "Warming": c.warming,
            "Failed": c.failed,
        }
        for state in STATES:
            telemetry.POOL_PODS.labels(namespace, name, state).set(by_state.get(state, 0))
        telemetry.POOL_DESIRED.labels(namespace, name).set(p.desired)
        if create_error:
            return RETRY_AFTER_CREATE_FAILURE
        return p.requeue_after

    def _managed(self, namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
        """`pod` with the label the operator's pod watch selects on (pods made before it existed)."""
        if (pod["metadata"].get("labels") or {}).get(LABEL_MANAGED) == "true":
            return pod
        try:
            return self.kube.merge_patch(
                pods_path(namespace, pod["metadata"]["name"]),
                {"metadata": {"labels": {LABEL_MANAGED: "true"}}},
            )
        except ApiError as exc:
            if not exc.not_found:
                raise
            return pod

    def _release_stranded(
        self, pool: dict[str, Any], pods: list[dict[str, Any]], now: datetime
    ) -> list[dict[str, Any]]:
        """Give back claims no live holder holds (its session or ContainerClaim deleted, or a claim
        its holder went on without); the pods as they are after that."""
        claims = {
            p["metadata"]["name"]: ann[ANN_CLAIMED_BY]
            for p in pods
            if (ann := p["metadata"].get("annotations") or {}).get(ANN_CLAIMED_BY)
        }
        if not claims:
            return pods
        namespace = pool["metadata"]["namespace"]
        kinds = {c.startswith(CLAIM_PREFIX) for c in claims.values()}  # True: a ContainerClaim's
        sessions = self.kube.list_items(custom_path("trainingsessions", namespace)) if False in kinds else []
        by_claims = self._container_claims(namespace, claims) if True in kinds else []
        freed = stranded(claims, sessions, by_claims)
        out = []
        for p in pods:
            name = p["metadata"]["name"]
            if name in freed:
                rv = str(p["metadata"].get("resourceVersion", ""))
                patch = release_patch(now, held_signature(p), pod_view(p), resource_version=rv)
                try:
                    p = self.kube.merge_patch(pods_path(namespace, name), patch)
                except ApiError as exc:
                    if exc.not_found:
                        continue
                    if not exc.conflict:
                        raise
                    # Changed since this pass listed it (released and claimed again, say): the
                    # claim it has now is judged on the next pass, not undone on this one's read.
                    fresh = self.kube.get_if_exists(pods_path(namespace, name))
                    if fresh is not None:
                        out.append(fresh)
                    freed.remove(name)
                    continue
                telemetry.POOL_EVENTS.labels("release", "Stranded").inc()
            out.append(p)
        if freed:
            self.kube.event(
                pool, "Normal", "Released", f"Released pod(s) {_names(freed)}: no session or claim holds them"
            )
        return out

    def _container_claims(self, namespace: str, claims: dict[str, str]) -> list[dict[str, Any]]:
        """The namespace's ContainerClaims, from the claim watch's cache when it knows every holder
        (a stale entry can only keep a pod a pass longer: a final phase or a podName never reverts);
        listed when a holder is missing from it (not seen yet, e.g. just after a start)."""
        cached = self.claims_cache(namespace) if self.claims_cache else None
        if cached is not None:
            known = {c["metadata"]["name"] for c in cached}
            holders = {c[len(CLAIM_PREFIX) :] for c in claims.values() if c.startswith(CLAIM_PREFIX)}
            if holders <= known:
                return cached
        return self.kube.list_items(custom_path("containerclaims", namespace))

    def _create(
        self, namespace: str, name: str, uid: str, spec: ContainerPoolSpec, thash: str, count: int
    ) -> tuple[int, str]:
        """Create `count` pods in kube-controller-manager's slow-start batches (1, 2, 4, ... at once):
        a pool of 50 is not 50 round trips one after the other, and a refusal (quota, admission) is
        met by the first pod, not by fifty."""

        def one() -> str:
            try:
                if spec.sessionAgent is None and not spec.ownPodAccess:
                    body = build_pod(name, uid, spec, thash, self.settings.gpu_resource)
                    self.kube.create(pods_path(namespace), body)
                else:
                    self._create_own_account_pod(namespace, name, uid, spec, thash)
            except ApiError as exc:
                if exc.status in (403, 409, 422, 429) or exc.status >= 500:
                    # Quota, admission, a namespace being deleted, a missing service account:
                    # report it and try again later rather than spin.
                    return f"creating pods: {exc.message}"
                raise
            telemetry.POOL_EVENTS.labels("create", "ScaleUp").inc()
            return ""

        created, batch = 0, 1
        while created < count:
            size = min(batch, count - created)
            answers = list(WRITERS.map(lambda _: one(), range(size))) if size > 1 else [one()]
            created += sum(1 for a in answers if not a)
            failed = next((a for a in answers if a), "")
            if failed:
                return created, failed
            batch *= 2
        return created, ""

    def _create_own_account_pod(
        self, namespace: str, name: str, uid: str, spec: ContainerPoolSpec, thash: str
    ) -> None:
        """A pod that may reach itself only (its agent, or a runner's job hooks): a ServiceAccount of its
        own first (the pod names it), then the pod, then its Role; the pod owns all three, so they go with it. A crash between
        the account and the pod leaves an account the pool owns (collected with the pool)."""
        pod_name = agent_pod_name(name)
        accounts = f"/api/v1/namespaces/{namespace}/serviceaccounts"
        rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
        self.kube.create(accounts, agent_account(name, uid, pod_name))
        try:
            pod = self.kube.create(
                pods_path(namespace), build_pod(name, uid, spec, thash, self.settings.gpu_resource, pod_name)
            )
        except ApiError:
            self.kube.delete(f"{accounts}/{pod_name}")
            raise
        owner = pod_ref(pod_name, pod["metadata"]["uid"])
        try:
            role, binding = own_pod_access(pod_name, pod_name, owner, {LABEL_POOL: name})
            self.kube.create(f"{rbac}/roles", role)
            self.kube.create(f"{rbac}/rolebindings", binding)
            self.kube.merge_patch(f"{accounts}/{pod_name}", {"metadata": {"ownerReferences": [owner]}})
        except ApiError:
            self.kube.delete(pods_path(namespace, pod_name))  # no pod whose agent cannot reach it
            raise

    @staticmethod
    def _scaling_condition(p: Plan, created: int, deleted: dict[str, list[str]]) -> dict[str, Any]:
        if created:
            return conditions.condition(
                "Scaling", True, "ScalingUp", f"creating {created} pod(s) towards {p.desired}"
            )
        if deleted.get("ScaleDown"):
            return conditions.condition(
                "Scaling", True, "ScalingDown", f"removing {len(deleted['ScaleDown'])} idle pod(s)"
            )
        if p.counts.pending or p.counts.warming:
            return conditions.condition(
                "Scaling", True, "PodsStarting", f"{p.counts.pending + p.counts.warming} pod(s) starting"
            )
        return conditions.condition("Scaling", False, "Stable", f"{p.counts.replicas} pod(s), as desired")

    def _events(
        self, pool: dict[str, Any], p: Plan, created: int, deleted: dict[str, list[str]], create_error: str
    ) -> None:
        ev = self.kube.event
        if created:
            ev(pool, "Normal", "ScaledUp", f"Created {created} pod(s); desired {p.desired}")
        if deleted.get("ScaleDown"):
            pods = deleted["ScaleDown"]
            ev(
                pool,
                "Normal",
                "ScaledDown",
                f"Deleted {len(pods)} idle pod(s) ({_names(pods)}); desired {p.desired}",
            )
        for reason in ("MaxAge", "MaxClaims", "TemplateChanged"):
            if deleted.get(reason):
                ev(pool, "Normal", "Recycled", f"Replacing pod(s) {_names(deleted[reason])}: {reason}")
        for reason in ("Failed", "NotReadyTimeout"):
            if deleted.get(reason):
                ev(
                    pool,
                    "Warning",
                    "PodFailed",
                    f"Replacing unhealthy pod(s) {_names(deleted[reason])}: {reason}",
                )
        if deleted.get("Orphan"):
            ev(
                pool,
                "Normal",
                "OrphanRemoved",
                f"Deleted unowned pod(s) {_names(deleted['Orphan'])} from an older template",
            )
        if p.adopt:
            ev(pool, "Normal", "Adopted", f"Adopted pod(s) {_names(p.adopt)}")
        if create_error:
            ev(pool, "Warning", "CreateFailed", create_error)

    def _write_status(
        self,
        pool: dict[str, Any],
        p: Plan | None,
        conds: list[dict[str, Any]],
        now: datetime,
        scaled: bool = False,
        created: int = 0,
    ) -> None:
        meta = pool["metadata"]
        old = pool.get("status") or {}
        generation = meta.get("generation")
        status: dict[str, Any] = {"observedGeneration": generation}
        if p is not None:
            c = p.counts
            status.update(
                replicas=c.replicas - p.create + created,
                desiredReplicas=p.desired,
                readyReplicas=c.ready,
                idleReplicas=c.idle,
                claimedReplicas=c.claimed,
                selector=f"{LABEL_POOL}={meta['name']}",
                utilization=c.utilization,
            )
        if scaled:
            status["lastScaleTime"] = format_time(now)
        status["conditions"] = conditions.merge(old.get("conditions"), conds, generation, now)
        write_status(self.kube, PLURAL, pool, status)
