"""Every manifest under tests/data/invalid is refused: by the API server (schema, CEL) with a message
naming the field, or, where only the operator can judge, with a False condition. The operator never
crashes and nothing else changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import custom_path
from tests.e2e.conftest import OperatorProcess, pool_manifest
from tests.e2e.util import ROOT, apply, condition, kubectl, live_pods, sample, wait_until

CORPUS = ROOT / "tests" / "data" / "invalid"
REJECTED = sorted(CORPUS.glob("*.yaml"))
JUDGED = sorted((CORPUS / "condition").glob("*.yaml"))
PLURALS = {
    "ContainerPool": "containerpools",
    "WorkerScaler": "workerscalers",
    "TrainingSession": "trainingsessions",
    "ContainerClaim": "containerclaims",
}


def expectation(path: Path, key: str) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith(f"# {key}: "), f"{path.name} lacks its '# {key}:' line"
    return first.split(": ", 1)[1]


def test_the_corpus_is_large_and_covers_every_kind() -> None:
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in REJECTED}
    assert len(REJECTED) + len(JUDGED) >= 40 and kinds == set(PLURALS)


@pytest.mark.parametrize("path", REJECTED, ids=[p.stem for p in REJECTED])
def test_rejected_by_the_api_server_naming_the_field(kube: Kube, namespace: str, path: Path) -> None:
    want = expectation(path, "expect")
    result = kubectl("apply", "-n", namespace, "-f", str(path), check=False)
    assert result.returncode != 0, f"accepted: {path.name}"
    assert want in result.stderr, result.stderr
    doc = yaml.safe_load(path.read_text())
    assert kube.list_items(custom_path(PLURALS[doc["kind"]], namespace)) == []


def test_operator_judged_inputs_get_a_false_condition_and_nothing_else_changes(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("sentinel-pool", 2), namespace)
    kube.create(
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        {
            "metadata": {"name": "sentinel"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "s"}},
                "template": {
                    "metadata": {"labels": {"app": "s"}},
                    "spec": {
                        "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "10m"}}}]
                    },
                },
            },
        },
    )
    wait_until(
        lambda: len(live_pods(kube, namespace, "shoal.dev/pool=sentinel-pool")) == 2, 60, "sentinel pool"
    )
    before = kube.get(custom_path("containerpools", namespace, "sentinel-pool"))["metadata"]["generation"]
    starts = running_operator.starts
    errors = 'shoal_reconcile_errors_total{kind="WorkerScaler"}'
    errors_before = sample(running_operator.metrics(), errors)
    for path in JUDGED:
        kubectl("apply", "-n", namespace, "-f", str(path))
    for path in JUDGED:
        cond_type, status_reason = expectation(path, "expect-condition").split("=", 1)
        status, reason, fragment = ([*status_reason.split(" ", 2), ""])[:3]
        doc = yaml.safe_load(path.read_text())
        plural, name = PLURALS[doc["kind"]], doc["metadata"]["name"]

        def judged(name: str = name, cond_type: str = cond_type, plural: str = plural) -> dict[str, str]:
            try:
                obj = kube.get(custom_path(plural, namespace, name))
            except ApiError:
                return {}
            return condition(obj, cond_type)

        cond = wait_until(judged, 30, f"{cond_type} on {name}")
        assert (cond["status"], cond["reason"]) == (status, reason), (path.name, cond)
        assert fragment in cond["message"], (path.name, cond)
    assert running_operator.healthy() and running_operator.starts == starts  # never crashed
    # Judged, not failing: a reconcile that raised on bad input (and so retried in a loop) counts here.
    assert sample(running_operator.metrics(), errors) == errors_before
    assert kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/sentinel")["spec"]["replicas"] == 2
    pool = kube.get(custom_path("containerpools", namespace, "sentinel-pool"))
    pods = live_pods(kube, namespace, "shoal.dev/pool=sentinel-pool")
    assert pool["metadata"]["generation"] == before and len(pods) == 2
    # A session its pool cannot train is refused before any pod is claimed for it.
    assert not any((p["metadata"].get("annotations") or {}).get("shoal.dev/claimed-by") for p in pods)
    print(json.dumps({"rejected_by_api_server": len(REJECTED), "refused_by_condition": len(JUDGED)}))
