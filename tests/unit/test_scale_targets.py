"""Target resolution and conflicts, against a fake API that counts its reads."""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

import pytest

from shoal.api.scaler import WorkerScalerSpec
from shoal.k8s.client import Kube
from shoal.reconcile.targets import ScaleTargets, TargetError


class FakeApi:
    def __init__(self, scalers: list[dict[str, Any]], hpas: list[dict[str, Any]]) -> None:
        self.items = {"workerscalers": scalers, "horizontalpodautoscalers": hpas}
        self.reads: Counter[str] = Counter()

    def get(self, path: str) -> dict[str, Any]:
        self.reads[path] += 1
        resources = [
            {"name": "deployments", "kind": "Deployment"},
            {"name": "deployments/scale", "kind": "Scale"},
        ]
        resources += [{"name": "daemonsets", "kind": "DaemonSet"}]
        return {"resources": resources}

    def list_items(self, path: str) -> list[dict[str, Any]]:
        self.reads[path] += 1
        return self.items[path.rsplit("/", 1)[1]]


def scaler(name: str, created: str, target: str) -> dict[str, Any]:
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}
    return {
        "metadata": {"namespace": "ns", "name": name, "creationTimestamp": created},
        "spec": {"targetRef": ref},
    }


def spec_of(obj: dict[str, Any]) -> WorkerScalerSpec:
    return WorkerScalerSpec.model_validate(
        {**obj["spec"], "maxReplicas": 5, "metrics": [{"type": "Resource", "resource": {"name": "cpu"}}]}
    )


def test_the_earlier_scaler_keeps_the_target_and_one_listing_serves_every_scaler() -> None:
    first = scaler("a", "2027-01-01T00:00:00Z", "web")
    second = scaler("b", "2027-01-01T00:01:00Z", "web")
    other = scaler("c", "2027-01-01T00:02:00Z", "api")
    api = FakeApi([first, second, other], [])
    targets = ScaleTargets(cast(Kube, api))
    assert targets.conflicts(first, spec_of(first)) is None
    assert targets.conflicts(second, spec_of(second)) == "WorkerScaler a already scales Deployment/web"
    assert targets.conflicts(other, spec_of(other)) is None
    assert api.reads["/apis/shoal.dev/v1alpha1/namespaces/ns/workerscalers"] == 1  # shared for LIST_TTL


def test_an_hpa_on_the_target_makes_the_scaler_stand_down() -> None:
    hpa = {"metadata": {"name": "web-hpa"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}}}
    mine = scaler("a", "2027-01-01T00:00:00Z", "web")
    targets = ScaleTargets(cast(Kube, FakeApi([mine], [hpa])))
    assert (
        targets.conflicts(mine, spec_of(mine))
        == "HorizontalPodAutoscaler web-hpa already scales Deployment/web"
    )


def test_scale_paths_come_from_discovery_once_per_kind_and_unscalable_kinds_are_refused() -> None:
    api = FakeApi([], [])
    targets = ScaleTargets(cast(Kube, api))
    for name in ("web", "api"):
        path = targets.scale_path("ns", "apps/v1", "Deployment", name)
        assert path == f"/apis/apps/v1/namespaces/ns/deployments/{name}/scale"
    assert api.reads["/apis/apps/v1"] == 1
    with pytest.raises(TargetError) as err:
        targets.scale_path("ns", "apps/v1", "DaemonSet", "x")
    assert err.value.reason == "TargetNotScalable"
    with pytest.raises(TargetError) as err:
        targets.scale_path("ns", "apps/v1", "StatefulThing", "x")
    assert err.value.reason == "TargetKindUnknown"
