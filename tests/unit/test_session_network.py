"""A session's NetworkPolicy (sessionNetworkPolicy / SHOAL_SESSION_INGRESS_FROM): only the operator's
configured peers reach what its agent serves, and a setting that is not a list of peers stops the
operator at start with a message naming it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shoal.builders.session import supporting_objects
from shoal.config import Settings, SettingsError
from tests.unit.fakes import SPEC

PEERS = ({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ml-tools"}}},)


def policy(spec: Any = SPEC, peers: tuple[dict[str, Any], ...] | None = PEERS) -> dict[str, Any] | None:
    return next(
        (o for o in supporting_objects("cart", "uid-1", "ml", spec, peers) if o["kind"] == "NetworkPolicy"),
        None,
    )


def test_the_peers_reach_tensorboard_the_stream_and_the_metrics_of_the_sessions_pod_only() -> None:
    video = SPEC.model_copy(update={"videoRecording": True})
    body = policy(video)
    assert body is not None
    assert body["metadata"]["name"] == "cart-endpoints"
    assert body["metadata"]["ownerReferences"][0]["kind"] == "TrainingSession"
    assert body["spec"]["podSelector"] == {"matchLabels": {"shoal.dev/session": "cart"}}
    assert body["spec"]["policyTypes"] == ["Ingress"]
    [rule] = body["spec"]["ingress"]
    assert rule["from"] == list(PEERS)
    assert [p["port"] for p in rule["ports"]] == [6006, 8000, 9400]
    quiet = policy(SPEC.model_copy(update={"videoRecording": False}))
    assert quiet is not None and [p["port"] for p in quiet["spec"]["ingress"][0]["ports"]] == [6006, 9400]


def test_no_peers_admits_nobody_and_no_setting_makes_no_policy() -> None:
    closed = policy(peers=())
    assert (
        closed is not None
        and closed["spec"]["ingress"] == []
        and closed["spec"]["policyTypes"] == ["Ingress"]
    )
    assert policy(peers=None) is None


def test_the_setting_is_read_from_the_environment_and_refused_with_its_name_when_wrong() -> None:
    assert (
        Settings.from_env({"SHOAL_SESSION_INGRESS_FROM": json.dumps(list(PEERS))}).session_ingress_from
        == PEERS
    )
    assert Settings.from_env({}).session_ingress_from is None
    assert Settings.from_env({"SHOAL_SESSION_INGRESS_FROM": "[]"}).session_ingress_from == ()
    for bad in (
        "{",
        '{"namespaceSelector": {}}',
        '[{"namespace": "x"}]',
        "[{}]",
        '[{"podSelector": "app=x"}]',
    ):
        with pytest.raises(SettingsError, match="SHOAL_SESSION_INGRESS_FROM"):
            Settings.from_env({"SHOAL_SESSION_INGRESS_FROM": bad})
