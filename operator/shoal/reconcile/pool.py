"""ContainerPool reconciler: read the pool's pods from the watch cache, plan, act, report."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from shoal import telemetry
from shoal.api.pool import ContainerPoolSpec
from shoal.builders import controller_ref
from shoal.builders.pod import (
    agent_account,
    agent_pod_name,
    build_pod,
    own_pod_access,
    pod_ref,
    template_hash,
)
from shoal.claims.holders import holder_of
from shoal.claims.selection import LIVE_USAGE
from shoal.config import Settings
from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import custom_path, kind_path, pods_path
from shoal.pool import record
from shoal.pool.plan import plan
from shoal.reconcile import write_status
from shoal.reconcile.poolpods import Stranded, label_managed
from shoal.reconcile.usage import PoolUsage
from shoal.runtime.cache import ClaimIndex, cached_pod
from shoal.vocab import LABEL_LOAD_STATE, LABEL_POOL, LABEL_STATE, STATES

log = logging.getLogger("shoal.pool")
PLURAL = "containerpools"
RETRY_AFTER_CREATE_FAILURE = 10.0
USAGE_RECHECK = 15.0  # metrics-server resolves 10-15 s: a pool labelling load by it looks this often


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
        sessions_cache: Callable[[str], list[dict[str, Any]]] | None = None,
        usage: PoolUsage | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.clock = clock or (lambda: datetime.now(UTC))
        self.index = index  # who waits for a pod of which pool (the claim path records it)
        self.stranded = Stranded(kube, index, claims_cache, sessions_cache)
        self.usage = usage or PoolUsage(kube)

    def reconcile(self, namespace: str, name: str) -> float | None:
        # The pool as its watch delivered it (kcm's controllers read their informers the same way):
        # each pass was preceded by that event, and a status written from a view a step behind is
        # followed by the echo's pass. Read from the API only when the watch has not shown it.
        pool = self.index.pool_object(namespace, name) if self.index is not None else None
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
            self._write_status(pool, record.compose(pool, None, record.invalid_spec(str(exc)), now))
            return None

        uid = pool["metadata"]["uid"]
        key = (namespace, name)
        # From the watch cache once it is primed (kcm's informer lister); a list before that.
        cache = self.index if self.index is not None and self.index.synced.is_set() else None
        if cache is not None:
            entries = cache.pods(namespace, name)
        else:
            listed = self.kube.list_items(pods_path(namespace), f"{LABEL_POOL}={name}")
            entries = [cached_pod(label_managed(self.kube, pod)) for pod in listed]
        entries = self.stranded.release(pool, entries, now)
        thash = template_hash(spec)
        views = [e.view for e in entries]
        holding = [holder_of(h) for v in views for h in v.holders]
        waiting = self.index.waiting(namespace, name, holding) if self.index is not None else 0
        # Pools that rank claims by live usage also label their claimed pods by it (a read per 5 s at most).
        usage = self.usage.read(namespace, name) if spec.selection in LIVE_USAGE else None
        p = plan(spec, uid, views, thash, now, waiting, usage)
        # Its own creates and deletes not yet in the cache: plan nothing more until they are.
        expect = cache.expectations if cache is not None else None
        if expect is not None and (p.create or p.delete or p.adopt) and not expect.satisfied(key):
            telemetry.POOL_PASSES_HELD.inc()
            p = replace(p, create=0, delete=[], adopt=[])

        for pod_name in p.adopt:
            self._patch_pod(
                namespace,
                pod_name,
                {"metadata": {"ownerReferences": [controller_ref("ContainerPool", name, uid)]}},
            )
        deleted: dict[str, list[str]] = defaultdict(list)
        # Each delete names the version the plan was made from: a pod claimed (or otherwise changed)
        # since gets a 409 and stays; the next pass plans again on what is there then.
        versions = {e.view.name: e.resource_version for e in entries}
        if expect is not None:
            expect.expect(key, deletes=[d.uid for d in p.delete])
        for i, d in enumerate(p.delete):
            try:
                gone = self.kube.delete(
                    pods_path(namespace, d.pod), uid=d.uid, resource_version=versions.get(d.pod)
                )
            except BaseException:
                # No answer (a dropped connection, leadership lost): as client-go's controllers do,
                # wait for none of these deletions, or the pool would hold until they expire.
                if expect is not None:
                    for rest in p.delete[i:]:
                        expect.deleted(key, rest.uid)
                raise
            if gone:
                deleted[d.reason].append(d.pod)
                telemetry.POOL_EVENTS.labels("delete", d.reason).inc()
            else:
                if expect is not None:
                    expect.deleted(key, d.uid)  # it stays (or was gone already): nothing to wait for
                telemetry.POOL_EVENTS.labels("delete-skipped", d.reason).inc()
        # Independent writes (a pool whose pods all turned ready at once has one each): side by side.
        labels: dict[str, dict[str, str | None]] = defaultdict(dict)
        for pod_name, state in p.relabel.items():
            labels[pod_name][LABEL_STATE] = state
        for pod_name, load in p.load_labels.items():
            labels[pod_name][LABEL_LOAD_STATE] = load
        list(
            WRITERS.map(
                lambda item: self._patch_pod(namespace, item[0], {"metadata": {"labels": item[1]}}),
                labels.items(),
            )
        )
        if expect is not None:
            expect.expect(key, creates=p.create)
        done = [0]  # creations answered so far, kept if a later one raises
        try:
            created, create_error = self._create(namespace, name, uid, spec, thash, p.create, done)
        finally:
            # Refused, never tried, or no answer (a dropped connection, leadership lost): wait for
            # none of them (client-go lowers its expectations on any create error the same way).
            if expect is not None and done[0] < p.create:
                expect.created(key, p.create - done[0])

        for type_, reason, message in record.events_of(p, created, deleted, create_error):
            self.kube.event(pool, type_, reason, message)
        conds = record.conditions_of(p, spec, waiting, created, deleted, create_error)
        scaled = created > 0 or bool(deleted.get("ScaleDown"))
        self._write_status(
            pool, record.compose(pool, p, conds, now, scaled=scaled, created=created, waiting=waiting)
        )

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
        telemetry.POOL_WAITING.labels(namespace, name).set(waiting)
        telemetry.POOL_OVERLOADED.labels(namespace, name).set(c.overloaded)
        if create_error:
            return RETRY_AFTER_CREATE_FAILURE
        if usage is not None and c.claimed:
            # Live usage changes with no event of its own: look again as often as metrics-server resolves.
            return min(p.requeue_after or USAGE_RECHECK, USAGE_RECHECK)
        return p.requeue_after

    def _patch_pod(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        """Merge-patch a pod and put the answer in the cache (a pass before the watch's echo plans on
        it, not on the pod as it was); None when the pod is gone."""
        try:
            pod = self.kube.merge_patch(pods_path(namespace, name), patch)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise
        if self.index is not None:
            self.index.pod_event("MODIFIED", pod, from_watch=False)
        return pod

    def _create(
        self,
        namespace: str,
        name: str,
        uid: str,
        spec: ContainerPoolSpec,
        thash: str,
        count: int,
        done: list[int],
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
                if exc.status in (403, 404, 409, 422, 429) or exc.status >= 500:
                    # Quota, admission, a namespace being deleted or gone, a missing service account:
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
            done[0] = created
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
        account = kind_path("ServiceAccount", namespace, pod_name)
        self.kube.create(kind_path("ServiceAccount", namespace), agent_account(name, uid, pod_name))
        try:
            pod = self.kube.create(
                pods_path(namespace), build_pod(name, uid, spec, thash, self.settings.gpu_resource, pod_name)
            )
        except ApiError:
            self.kube.delete(account)
            raise
        owner = pod_ref(pod_name, pod["metadata"]["uid"])
        try:
            role, binding = own_pod_access(pod_name, pod_name, owner, {LABEL_POOL: name})
            self.kube.create(kind_path("Role", namespace), role)
            self.kube.create(kind_path("RoleBinding", namespace), binding)
            self.kube.merge_patch(account, {"metadata": {"ownerReferences": [owner]}})
        except ApiError:
            self.kube.delete(pods_path(namespace, pod_name))  # no pod whose agent cannot reach it
            raise

    def _write_status(self, pool: dict[str, Any], status: dict[str, Any]) -> None:
        written = write_status(self.kube, PLURAL, pool, status)
        if written is not None and self.index is not None:
            # The next pass (before the echo arrives) compares with what was written, not writes it again.
            self.index.pool_event("MODIFIED", written, from_watch=False)
