"""RoundRobin on the data production supplies: the real claim path (reconcile.claimer.Claimer) against
an in-memory API that applies its merge patches, pods built by the pool's own builder. The cursor is
never handed in: it comes from the pods' last-claimed times, so a new operator process goes on where
the last one stopped."""

from __future__ import annotations

from datetime import datetime, timedelta

from shoal.builders.session import signature
from shoal.claims.holders import SESSION, Holder
from shoal.config import Settings
from shoal.reconcile.claimer import Claimer
from tests.unit.fakes import SPEC, T0, Api


def claim_and_release(claimer: Claimer, session: str, when: datetime) -> str:
    out = claimer.claim_session("ns", session, SPEC, None, 0.0, when)
    assert out.pod is not None, out
    assert claimer.release(
        "ns", out.pod, Holder(SESSION, session), signature(SPEC), when + timedelta(seconds=5)
    )
    return out.pod


def test_round_robin_rotates_through_the_pool_by_name_and_goes_on_after_a_restart() -> None:
    api = Api()
    first = Claimer(api, Settings())  # type: ignore[arg-type]
    picked = [claim_and_release(first, f"s{i}", T0 + timedelta(minutes=i)) for i in range(6)]
    assert picked == ["rr-a", "rr-b", "rr-c", "rr-d", "rr-a", "rr-b"]
    # A new process: nothing in memory, the cursor read back from the pods.
    restarted = Claimer(api, Settings())  # type: ignore[arg-type]
    assert claim_and_release(restarted, "s6", T0 + timedelta(minutes=6)) == "rr-c"


def test_round_robin_skips_a_claimed_pod_and_wraps() -> None:
    api = Api()
    claimer = Claimer(api, Settings())  # type: ignore[arg-type]
    held = claimer.claim_session("ns", "long", SPEC, None, 0.0, T0)
    assert held.pod == "rr-a"
    picked = [claim_and_release(claimer, f"s{i}", T0 + timedelta(minutes=1 + i)) for i in range(4)]
    assert picked == ["rr-b", "rr-c", "rr-d", "rr-b"]  # rr-a is held throughout


def test_a_gpu_session_is_not_handed_a_cpu_only_pod_and_says_why() -> None:
    api = Api()
    gpu_spec = SPEC.model_copy(update={"resources": SPEC.resources.model_copy(update={"gpu": 1})})
    out = Claimer(api, Settings()).claim_session("ns", "gpu-job", gpu_spec, None, 0.0, T0)  # type: ignore[arg-type]
    assert (out.pod, out.reason) == (None, "ResourcesUnfit")
    assert (
        out.message
        and "spec.resources asks for nvidia.com/gpu 1; its pods have nvidia.com/gpu none" in out.message
    )
    assert not any(p["metadata"]["annotations"].get("shoal.dev/claimed-by") for p in api.pods.values())
