"""What a warm pod can give a session (sessions/warm.py), on pods the pool's own builder makes: the
refusals, and what the claim hands the pod. The claim path refuses before it claims anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shoal.agent.handover import unreachable
from shoal.api.pool import ContainerPoolSpec
from shoal.api.session import TrainingSessionSpec
from shoal.builders.pod import build_pod, template_hash
from shoal.builders.session import claim_request
from shoal.claims.holders import SESSION as SESSION_HOLDER
from shoal.claims.holders import Holder
from shoal.config import Settings
from shoal.pool.pods import pod_view
from shoal.reconcile.claimer import Claimer
from shoal.runtime.cache import ClaimIndex
from shoal.sessions import record
from shoal.sessions.warm import pinned, refusal
from tests.unit.fakes import POOL as POOL_RR
from tests.unit.fakes import T0, Api

POOL: dict[str, Any] = {
    "replicas": 2,
    "template": {"spec": {"containers": [{"name": "trainer", "image": "trainer:1"}]}},
    "resources": {"cpu": "2", "memory": "4Gi"},
    "sessionAgent": {},
}
SESSION: dict[str, Any] = {
    "game": "CartPole-v1",
    "algorithm": "PPO",
    "totalTimesteps": 10,
    "poolRef": {"name": "p"},
}


def judge(pool: dict[str, Any], **spec: Any) -> tuple[str, str] | None:
    pool_spec = ContainerPoolSpec.model_validate(pool)
    template = pod_view(build_pod("p", "uid", pool_spec, template_hash(pool_spec), name="new"))
    session = TrainingSessionSpec.model_validate({**SESSION, **spec})
    req, _ = claim_request(session, None, Settings())
    return refusal(session, pool_spec, template, req)


@pytest.mark.parametrize(
    ("pool", "spec", "reason", "fragment"),
    [
        (POOL, {}, None, ""),
        (POOL, {"image": "trainer:1"}, None, ""),  # the pool's own image, said again
        (POOL, {"resources": {"cpu": "2", "memory": "1Gi"}}, None, ""),  # covered exactly
        ({**POOL, "sessionAgent": None}, {}, "NoSessionAgent", "no spec.sessionAgent"),
        (POOL, {"image": "trainer:2"}, "ImageMismatch", "spec.image trainer:2 is not the image its pods run"),
        # CPU and memory too: the session's own pod would have them as requests and limits.
        (POOL, {"resources": {"cpu": "3"}}, "ResourcesUnfit", "asks for cpu 3; its pods have cpu 2"),
        (POOL, {"resources": {"memory": "8Gi"}}, "ResourcesUnfit", "memory 8Gi; its pods have memory 4Gi"),
        (
            POOL,
            {"resources": {"gpu": 1}},
            "ResourcesUnfit",
            "nvidia.com/gpu 1; its pods have nvidia.com/gpu none",
        ),
        (
            {**POOL, "resources": None},
            {"resources": {"cpu": "1"}},
            "ResourcesUnfit",
            "its pods have cpu none",
        ),
    ],
)
def test_what_a_warm_pod_cannot_give_is_refused_naming_the_field(
    pool: dict[str, Any], spec: dict[str, Any], reason: str | None, fragment: str
) -> None:
    got = judge({k: v for k, v in pool.items() if v is not None}, **spec)
    assert (got[0] if got else None) == reason, got
    assert fragment in (got[1] if got else "")


def test_the_claim_hands_the_pod_the_sessions_env_and_resume_point() -> None:
    spec = TrainingSessionSpec.model_validate({**SESSION, "env": [{"name": "SEED", "value": "7"}]})
    req, handed = claim_request(spec, "/checkpoints/s/ckpt-1", Settings())
    config = json.loads(handed["shoal.dev/session-config"] or "{}")
    assert config["env"] == {"SEED": "7"} and config["resumeFrom"] == "/checkpoints/s/ckpt-1"
    assert config["game"] == "CartPole-v1" and not req.burstable
    bare = json.loads(
        claim_request(TrainingSessionSpec.model_validate(SESSION), None, Settings())[1][
            "shoal.dev/session-config"
        ]
        or "{}"
    )
    assert "env" not in bare and bare["resumeFrom"] is None


def test_a_refused_session_claims_nothing_and_is_not_counted_as_waiting() -> None:
    api = Api()  # a RoundRobin pool of four idle pods with sessionAgent, cpu 2 each
    index = ClaimIndex()
    index.pool_event(None, api.pool)
    for pod in api.pods.values():
        index.pod_event(None, pod)
    claimer = Claimer(api, Settings(), index)  # type: ignore[arg-type]
    index.wait("ns", "rr", Holder(SESSION_HOLDER, "greedy"), grows=True)  # it waited before its spec changed
    greedy = TrainingSessionSpec.model_validate(
        {**SESSION, "poolRef": {"name": "rr"}, "resources": {"cpu": "3"}}
    )
    out = claimer.claim_session("ns", "greedy", greedy, None, 0.0, T0)
    assert (out.pod, out.reason) == (None, "ResourcesUnfit"), out
    assert not any(p["metadata"]["annotations"].get("shoal.dev/claimed-by") for p in api.pods.values())
    assert index.waiters("ns", "rr") == [] and index.waiting("ns", "rr") == 0  # the pool grows not for it
    # Its status: Pending, with the Admitted condition False for that reason.
    st = record.complete(
        {}, {"phase": "Pending", "reason": out.reason, "message": f"pool rr: {out.message}"}, 1, T0
    )
    admitted = next(c for c in st["conditions"] if c["type"] == "Admitted")
    assert (admitted["status"], admitted["reason"]) == ("False", "ResourcesUnfit")


def test_a_resume_claims_the_pod_that_holds_its_checkpoint_and_waits_while_it_serves_another() -> None:
    api = Api()  # RoundRobin would hand out rr-a first
    claimer = Claimer(api, Settings())  # type: ignore[arg-type]
    spec = TrainingSessionSpec.model_validate({**SESSION, "poolRef": {"name": "rr"}})
    ckpt = "/checkpoints/s/ckpt-000000001000.npz"
    assert claimer.claim_session("ns", "s", spec, ckpt, 0.0, T0, checkpoint_pod="rr-c").pod == "rr-c"
    assert claimer.release("ns", "rr-c", Holder(SESSION_HOLDER, "s"), None, T0)
    # Not resuming: not pinned, RoundRobin goes on after rr-c.
    assert claimer.claim_session("ns", "other", spec, None, 0.0, T0, checkpoint_pod="rr-c").pod == "rr-d"
    assert [claimer.claim_session("ns", n, spec, None, 0.0, T0).pod for n in ("x", "y", "thief")] == [
        "rr-a",
        "rr-b",
        "rr-c",
    ]
    waits = claimer.claim_session("ns", "s", spec, ckpt, 0.0, T0, checkpoint_pod="rr-c")
    assert (waits.pod, waits.reason) == (None, "NoIdlePod"), waits
    assert "rr-c, which holds its checkpoint" in (waits.message or "")
    # Its pod gone: any idle pod, whose agent will say the checkpoint is unreachable (never step 0).
    assert claimer.release("ns", "rr-a", Holder(SESSION_HOLDER, "x"), None, T0)
    assert claimer.claim_session("ns", "s", spec, ckpt, 0.0, T0, checkpoint_pod="rr-gone").pod == "rr-a"


def test_a_pool_with_a_shared_checkpoint_claim_pins_no_pod() -> None:
    pool = ContainerPoolSpec.model_validate({**POOL, "sessionAgent": {"checkpointClaimName": "shared"}})
    assert pinned(pool, "p-1") is None
    assert pinned(ContainerPoolSpec.model_validate(POOL), "p-1") == "p-1"


@pytest.mark.parametrize(
    ("resume", "on_volume", "exists", "reachable"),
    [
        (None, True, True, True),
        ("s3://bucket/run/ckpt-7", False, False, True),  # not a path: the trainer's own business
        ("ckpt", True, True, True),
        ("volume", True, True, True),
        ("volume", True, False, False),  # on the volume, gone
        ("elsewhere", False, True, False),  # another pod's files: what a test bed's host shares
    ],
)
def test_a_checkpoint_is_reachable_only_on_the_pods_own_volume(
    tmp_path: Path, resume: str | None, on_volume: bool, exists: bool, reachable: bool
) -> None:
    volume = tmp_path / "checkpoints"
    where = (volume if on_volume else tmp_path / "other-pod") / "s" / "ckpt-1"
    if exists:
        where.mkdir(parents=True)
    named = str(where) if resume in ("volume", "elsewhere") else resume
    lost = unreachable(named, volume, warm=True)
    assert (lost is None) == reachable, lost
    if lost is not None:
        assert lost.reason == "CheckpointUnreachable" and str(where) in lost.message


def test_a_pools_turns_come_from_the_watch_index() -> None:
    api = Api()  # four idle pods, no maxReplicas, checkpoints in each pod's emptyDir
    index = ClaimIndex()
    index.pool_event(None, api.pool)
    for pod in api.pods.values():
        index.pod_event(None, pod)
    claimer = Claimer(api, Settings(), index)  # type: ignore[arg-type]
    spec = TrainingSessionSpec.model_validate({**SESSION, "poolRef": {"name": "rr"}})
    assert claimer.pool_turns("ns", "rr", spec, T0) == (4, True, True, frozenset())
    assert claimer.claim_session("ns", "a", spec, None, 0.0, T0).pod == "rr-a"
    meta = {"name": "rr", "namespace": "ns", "uid": "pool-uid", "resourceVersion": "2"}
    index.pool_event("MODIFIED", {"metadata": meta, "spec": {**POOL_RR, "maxReplicas": 4}})
    # "a" holds its pod as the pod says, before its own status does.
    assert claimer.pool_turns("ns", "rr", spec, T0) == (3, False, True, frozenset({"a"}))
    # What the pool can never serve is left to the claim, which names the field.
    greedy = TrainingSessionSpec.model_validate(
        {**SESSION, "poolRef": {"name": "rr"}, "resources": {"gpu": 1}}
    )
    assert claimer.pool_turns("ns", "rr", greedy, T0) is None
    assert Claimer(api, Settings()).pool_turns("ns", "rr", spec, T0) is None  # type: ignore[arg-type]
