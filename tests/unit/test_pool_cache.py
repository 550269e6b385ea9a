"""Pools plan from the watch cache: no list per pass, their own creates and deletes held by
expectations until the watch shows them, and no pass for the echo of their own writes."""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from shoal import telemetry
from shoal.config import Settings
from shoal.k8s.client import Kube
from shoal.reconcile.pool import PoolReconciler
from shoal.reconcile.poolpods import prime
from shoal.runtime.cache import ClaimIndex
from shoal.runtime.expectations import Expectations
from tests.unit.podfactory import apply_merge_patch

NOW = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
SPEC = {"replicas": 3, "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}


def pool_obj(rv: str = "1", generation: int = 1, replicas: int = 3, status: Any = None) -> dict[str, Any]:
    meta = {
        "name": "warm",
        "namespace": "ns",
        "uid": "pool-uid",
        "resourceVersion": rv,
        "generation": generation,
    }
    return {
        "metadata": meta,
        "spec": {**SPEC, "replicas": replicas},
        **({"status": status} if status else {}),
    }


class FakeKube:
    """The API server as the pool reconciler uses it; counts its requests by verb."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.pods: dict[str, dict[str, Any]] = {}
        self.rv = itertools.count(100)
        self.status_writes: list[dict[str, Any]] = []
        self.pool = pool_obj()

    def set_pool(self, index: ClaimIndex, generation: int = 1, replicas: int = 3) -> bool:
        """The pool as a user's write leaves it, delivered by its watch."""
        self.pool = {**pool_obj(str(next(self.rv)), generation, replicas), "status": self.pool.get("status")}
        return index.pool_event("MODIFIED", self.pool)

    def list_items(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        self.requests["LIST"] += 1
        return [copy.deepcopy(p) for p in self.pods.values()] if path.endswith("/pods") else []

    def list_paged(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        return self.list_items(path, label_selector)  # one page: these tests hold a few pods

    def get_if_exists(self, path: str) -> dict[str, Any] | None:
        self.requests["GET"] += 1
        return None

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.requests["POST"] += 1
        pod = copy.deepcopy(body)
        meta = pod["metadata"]
        meta["name"] = meta.get("name") or f"{meta.get('generateName', 'pod-')}{len(self.pods)}"
        meta.update(namespace="ns", uid=f"uid-{meta['name']}", resourceVersion=str(next(self.rv)))
        meta["creationTimestamp"] = "2026-01-01T00:00:00Z"
        self.pods[meta["name"]] = pod
        return copy.deepcopy(pod)

    def delete(self, path: str, uid: str | None = None, resource_version: str | None = None) -> bool:
        self.requests["DELETE"] += 1
        return self.pods.pop(path.rsplit("/", 1)[1], None) is not None

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.requests["PATCH"] += 1
        if path.endswith("/status"):
            self.status_writes.append(patch["status"])
            self.pool = copy.deepcopy(self.pool)
            apply_merge_patch(self.pool, {"status": patch["status"]})
            self.pool["metadata"] = {**self.pool["metadata"], "resourceVersion": str(next(self.rv))}
            return copy.deepcopy(self.pool)
        pod = self.pods[path.rsplit("/", 1)[1]]
        pod["metadata"].setdefault("labels", {}).update(patch["metadata"].get("labels") or {})
        pod["metadata"]["resourceVersion"] = str(next(self.rv))
        return copy.deepcopy(pod)

    def merge_patch_if_exists(self, path: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        return self.merge_patch(path, patch)  # nothing here is ever gone

    def event(self, *args: Any) -> None:
        pass


def start() -> tuple[FakeKube, ClaimIndex, PoolReconciler]:
    """A pool of 3 with no pods yet, its cache primed from one list."""
    kube, index = FakeKube(), ClaimIndex()
    index.pool_event("ADDED", kube.pool)
    prime(cast(Kube, kube), index, ["ns"])
    return kube, index, PoolReconciler(cast(Kube, kube), Settings(), clock=lambda: NOW, index=index)


def ready(pod: dict[str, Any], rv: str) -> dict[str, Any]:
    out = copy.deepcopy(pod)
    out["metadata"]["resourceVersion"] = rv
    out["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    return out


def test_expectations_hold_until_seen_and_expire_with_a_count() -> None:
    t = [0.0]
    exp = Expectations(ttl=300, clock=lambda: t[0])
    key = ("ns", "warm")
    assert exp.satisfied(key)
    exp.expect(key, creates=2, deletes=["u1"])
    exp.created(key)
    exp.deleted(key, "u1")
    assert not exp.satisfied(key) and exp.pending(key) == (1, 0)
    exp.created(key)
    assert exp.satisfied(key) and exp.pending(key) == (0, 0)
    exp.expect(key, creates=1)
    t[0] = 299.0
    assert not exp.satisfied(key)
    before = telemetry.EXPECTATIONS_EXPIRED._value.get()
    t[0] = 301.0
    assert exp.satisfied(key)
    assert telemetry.EXPECTATIONS_EXPIRED._value.get() == before + 1


def test_a_second_pass_before_the_watch_creates_nothing_and_lists_nothing() -> None:
    kube, index, pools = start()  # nothing there yet: one list, then the cache
    pools.reconcile("ns", "warm")
    assert kube.requests["POST"] == 3 and kube.requests["LIST"] == 1
    held = telemetry.POOL_PASSES_HELD._value.get()
    pools.reconcile("ns", "warm")  # the watch has shown none of the three: hold
    assert kube.requests["POST"] == 3 and telemetry.POOL_PASSES_HELD._value.get() == held + 1
    created = list(kube.pods.values())
    for pod in created[:2]:
        index.pod_event("ADDED", pod)
    pools.reconcile("ns", "warm")  # two seen, one not: still held
    assert kube.requests["POST"] == 3
    index.pod_event("ADDED", created[2])
    del kube.pods[created[2]["metadata"]["name"]]  # deleted by someone else before the next pass
    index.pod_event(
        "DELETED", {**created[2], "metadata": {**created[2]["metadata"], "resourceVersion": "999"}}
    )
    pools.reconcile("ns", "warm")  # all seen: one pod short, one created
    assert kube.requests["POST"] == 4 and kube.requests["LIST"] == 1  # never listed again


def test_deletions_are_held_by_uid_and_a_refused_delete_releases_its_hold() -> None:
    kube, index, pools = start()  # nothing there yet: one list, then the cache
    pools.reconcile("ns", "warm")
    for pod in kube.pods.values():
        index.pod_event("ADDED", ready(pod, str(next(kube.rv))))
    kube.set_pool(index, generation=2, replicas=1)
    pools.reconcile("ns", "warm")
    assert kube.requests["DELETE"] == 2 and len(kube.pods) == 1
    assert index.expectations.pending(("ns", "warm")) == (0, 2)
    kube.set_pool(index, generation=3, replicas=0)
    pools.reconcile("ns", "warm")  # the two deletions not yet seen: the third waits
    assert kube.requests["DELETE"] == 2


def test_own_label_writes_and_status_writes_cause_no_pass() -> None:
    kube, index, pools = start()  # nothing there yet: one list, then the cache
    pools.reconcile("ns", "warm")
    pods = list(kube.pods.values())
    assert all(index.pod_event("ADDED", p) for p in pods)  # new pods: the pool looks
    assert all(index.pod_event("MODIFIED", ready(p, str(next(kube.rv)))) for p in pods)  # turned ready
    patches = kube.requests["PATCH"]
    pools.reconcile("ns", "warm")  # relabels them Idle and writes status
    assert kube.requests["PATCH"] > patches
    for name in list(kube.pods):  # the relabels' echoes
        assert not index.pod_event("MODIFIED", ready(kube.pods[name], str(next(kube.rv)) + "0"))
    assert not index.pool_event("MODIFIED", copy.deepcopy(kube.pool))  # the status write's echo
    assert kube.set_pool(index, generation=2, replicas=4)  # a spec change


def test_older_versions_never_replace_newer_ones_nor_bring_a_gone_pod_back() -> None:
    index = ClaimIndex()
    pod: dict[str, Any] = {
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "uid": "u",
            "resourceVersion": "10",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"shoal.dev/pool": "warm"},
            "ownerReferences": [{"controller": True, "uid": "pool-uid"}],
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    index.prime([pod])
    assert index.synced.is_set()
    assert not index.pod_event(None, pod)  # the watch's own initial event for the same version
    stale = copy.deepcopy(pod)
    stale["metadata"]["resourceVersion"] = "9"
    stale["status"] = {"phase": "Pending"}
    assert not index.pod_event("MODIFIED", stale)
    assert index.pods("ns", "warm")[0].view.ready
    gone = copy.deepcopy(pod)
    gone["metadata"]["resourceVersion"] = "11"
    index.pod_event("DELETED", gone)
    index.pod_event(None, pod)  # a relist's older version, after the deletion
    assert index.pods("ns", "warm") == []


def test_status_is_written_once_when_nothing_changed() -> None:
    kube, _, pools = start()  # nothing there yet: one list, then the cache
    pools.reconcile("ns", "warm")  # creates three: Scaling is ScalingUp
    pools.reconcile("ns", "warm")  # held: Scaling turns PodsStarting
    writes = len(kube.status_writes)
    pools.reconcile("ns", "warm")  # nothing changed: compared with the status as written
    pools.reconcile("ns", "warm")
    assert len(kube.status_writes) == writes == 2


def test_a_create_or_delete_without_an_answer_holds_nothing_until_expiry() -> None:
    """A dropped connection or lost leadership mid-pass raises: as client-go, the pool waits for none of
    the writes it has no answer for (it used to wait out the 300 s expiry, a pool short of pods)."""
    kube, index, pools = start()
    real_create, real_delete = kube.create, kube.delete

    def dropped(*_: Any, **__: Any) -> Any:
        raise OSError("connection dropped")

    kube.create = dropped  # type: ignore[method-assign]
    with pytest.raises(OSError):
        pools.reconcile("ns", "warm")
    assert index.expectations.pending(("ns", "warm")) == (0, 0)
    kube.create = real_create  # type: ignore[method-assign]
    pools.reconcile("ns", "warm")  # not held: the three are created now
    assert len(kube.pods) == 3
    for pod in kube.pods.values():
        index.pod_event("ADDED", ready(pod, str(next(kube.rv))))
    kube.set_pool(index, generation=2, replicas=1)
    kube.delete = dropped  # type: ignore[method-assign]
    with pytest.raises(OSError):
        pools.reconcile("ns", "warm")
    assert index.expectations.pending(("ns", "warm")) == (0, 0)
    kube.delete = real_delete  # type: ignore[method-assign]
    pools.reconcile("ns", "warm")
    assert len(kube.pods) == 1
