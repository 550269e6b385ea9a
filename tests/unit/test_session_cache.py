"""Sessions and claims read from the watch cache: a reconcile GETs nothing the watches (or its own
writes) already showed, and a late, older event never undoes what it wrote."""

from __future__ import annotations

import copy
import itertools
import json
from collections import Counter
from typing import Any

from shoal.config import Settings
from shoal.k8s.client import ApiError
from shoal.reconcile.session import SessionReconciler
from shoal.runtime.store import Store
from tests.unit.podfactory import apply_merge_patch

SPEC = {"algorithm": "PPO", "game": "CartPole-v1", "image": "trainer:1", "totalTimesteps": 10_000}


class FakeKube:
    """The API server as a session reconcile uses it: objects by path, requests counted by verb."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.rv = itertools.count(10)
        self.objects: dict[str, dict[str, Any]] = {}

    def put(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        obj["metadata"]["resourceVersion"] = str(next(self.rv))
        self.objects[path] = obj
        return copy.deepcopy(obj)

    def get_if_exists(self, path: str) -> dict[str, Any] | None:
        self.requests["GET"] += 1
        obj = self.objects.get(path)
        return copy.deepcopy(obj) if obj else None

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.requests["PATCH"] += 1
        base = path.removesuffix("/status")
        if base not in self.objects:
            raise ApiError(404, "NotFound", "gone")
        obj = copy.deepcopy(self.objects[base])
        apply_merge_patch(obj, patch)
        return self.put(base, obj)

    def merge_patch_if_exists(self, path: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self.merge_patch(path, patch)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    def list_items(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        self.requests["LIST"] += 1
        return []

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.requests["EVENT"] += 1


SESSION = "/apis/shoal.dev/v1alpha1/namespaces/ns/trainingsessions/s"
POD = "/api/v1/namespaces/ns/pods/s-1"


def running(kube: FakeKube, progress: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A session running on its own pod, as the API server holds them."""
    session = kube.put(
        SESSION,
        {
            "metadata": {"namespace": "ns", "name": "s", "uid": "su", "generation": 1},
            "spec": SPEC,
            "status": {"phase": "Running", "podName": "s-1", "observedGeneration": 1},
        },
    )
    annotations = {"shoal.dev/progress": json.dumps(progress)} if progress else {}
    pod = kube.put(
        POD,
        {
            "metadata": {"namespace": "ns", "name": "s-1", "uid": "pu", "annotations": annotations},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        },
    )
    return session, pod


def reconciler(kube: FakeKube) -> SessionReconciler:
    return SessionReconciler(kube, Settings())  # type: ignore[arg-type]


def test_a_session_and_its_pod_seen_by_their_watches_are_read_without_a_get() -> None:
    kube = FakeKube()
    session, pod = running(kube, {"timesteps": 512, "episodes": 3, "fps": 900.0})
    rec = reconciler(kube)
    assert rec.relevant("ADDED", session)
    rec.pods.event("ADDED", pod)
    rec.reconcile("ns", "s")
    assert kube.requests["GET"] == 0
    # The progress became status, and the store holds what was written, not the watch's older copy.
    assert kube.requests["PATCH"] == 1
    written = kube.objects[SESSION]
    assert written["status"]["metrics"]["timesteps"] == 512
    assert rec.store.get("ns", "s")[1] == written
    assert not rec.relevant("MODIFIED", session)  # the older event: no pass, and not kept
    assert rec.store.get("ns", "s")[1] == written
    rec.reconcile("ns", "s")
    assert kube.requests["PATCH"] == 1 and kube.requests["GET"] == 0  # nothing new: no write


def test_what_no_watch_has_shown_yet_is_read_once_and_then_kept() -> None:
    kube = FakeKube()
    running(kube)
    rec = reconciler(kube)
    rec.reconcile("ns", "s")  # a pod event before the session's own watch listed it
    assert kube.requests["GET"] == 2  # the session and its pod
    rec.reconcile("ns", "s")
    assert kube.requests["GET"] == 2


def test_a_pod_seen_deleted_is_not_read_again_and_a_later_older_event_does_not_bring_it_back() -> None:
    kube = FakeKube()
    session, pod = running(kube)
    rec = reconciler(kube)
    rec.relevant("ADDED", session)
    rec.pods.event("ADDED", pod)
    deleted = copy.deepcopy(pod)
    deleted["metadata"]["resourceVersion"] = str(int(pod["metadata"]["resourceVersion"]) + 5)
    rec.pods.event("DELETED", deleted)
    rec.pods.event("MODIFIED", pod)  # a relist's late, older copy
    assert rec.pods.get("ns", "s-1") == (True, None)
    assert rec._get_pod("ns", "s-1") is None
    assert kube.requests["GET"] == 0


def test_the_store_keeps_the_newest_and_forgets_a_dropped_object_without_a_tombstone() -> None:
    store = Store()

    def obj(rv: str, name: str = "a") -> dict[str, Any]:
        return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": rv}}

    assert store.put(obj("5"))
    assert not store.put(obj("4"))
    assert store.put(obj("6"))
    assert store.get("ns", "a")[1] == obj("6")
    store.drop("ns", "a")  # still exists, no longer this store's: read again when asked
    assert store.get("ns", "a") == (False, None)
    fetched: list[str] = []

    def fetch(rv: str) -> dict[str, Any]:
        fetched.append(rv)
        return obj(rv)

    assert store.read("ns", "a", lambda: fetch("7")) == obj("7")
    assert store.read("ns", "a", lambda: fetch("8")) == obj("7")
    assert fetched == ["7"]
    store.gone(obj("9"))
    assert not store.put(obj("8"))  # older than its deletion
    assert store.put(obj("10"))  # created again under the same name
    assert store.put({"metadata": {"namespace": "ns", "name": "b", "resourceVersion": "opaque"}})
    assert sorted(o["metadata"]["name"] for o in store.items("ns")) == ["a", "b"]


def test_a_bound_claim_reads_its_pod_from_the_pools_watch_cache() -> None:
    from shoal.reconcile.claim import ClaimReconciler
    from shoal.runtime.cache import ClaimIndex

    kube = FakeKube()
    index = ClaimIndex()
    claim = kube.put(
        "/apis/shoal.dev/v1alpha1/namespaces/ns/containerclaims/job",
        {
            "metadata": {"namespace": "ns", "name": "job", "uid": "cu", "generation": 1},
            "spec": {"poolRef": {"name": "rr"}},
            "status": {"phase": "Bound", "podName": "rr-1", "podIP": "10.0.0.7", "observedGeneration": 1},
        },
    )
    pod = kube.put(
        "/api/v1/namespaces/ns/pods/rr-1",
        {
            "metadata": {
                "namespace": "ns",
                "name": "rr-1",
                "uid": "pu",
                "labels": {"shoal.dev/pool": "rr"},
                "annotations": {"shoal.dev/claimed-by": "containerclaim/job"},
            },
            "spec": {"nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.0.0.7"},
        },
    )
    index.pod_event("ADDED", pod)
    rec = ClaimReconciler(kube, Settings(), index)  # type: ignore[arg-type]
    rec.relevant("ADDED", claim)
    rec.reconcile("ns", "job")
    assert kube.requests["GET"] == 0
    assert (
        kube.objects["/apis/shoal.dev/v1alpha1/namespaces/ns/containerclaims/job"]["status"]["phase"]
        == "Bound"
    )
    # Its pod deleted: no longer in the cache, so read once and found gone; the claim has lost it.
    del kube.objects["/api/v1/namespaces/ns/pods/rr-1"]
    index.pod_event("DELETED", {**pod, "metadata": {**pod["metadata"], "resourceVersion": "999"}})
    rec.reconcile("ns", "job")
    assert kube.requests["GET"] == 1
    after = rec.store.get("ns", "job")[1]
    assert after is not None and after["status"]["phase"] != "Bound"
