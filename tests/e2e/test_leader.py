"""Two replicas, one lease: hand-overs with one replica's wall clock 60 s ahead (libfaketime), each
reaching the API server through its own lossy proxy (latency, dropped connections), and the leader
frozen (SIGSTOP) past its lease and then thawed, so that it resumes mid-work believing it leads.

The side-effect log is what each proxy saw reach the API server. Counted, for every write a replica
sent other than to the Lease: it reached the server within the lease term of that replica's last
renewal, and no other replica had acquired the Lease in between. Either failing is two leaders acting.

The fence lets a write *start* until the renew deadline and take until the lease could be taken over;
the journal sees a write *land*, after the client's serialisation, the scheduler (two cores) and the
proxy's latency, so the term, not the renew deadline, is the bound a landing can be held to. A write
the client gave up on at the term's end can still be forwarded by the proxy up to its latency later."""

from __future__ import annotations

import itertools
import json
import random
import signal
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from shoal.k8s.client import Kube
from shoal.k8s.paths import pods_path
from testbed.faultproxy import Fault, FaultProxy
from tests.e2e.conftest import OperatorProcess, behind_proxy, pool_manifest
from tests.e2e.util import apply, live_pods, wait_until

FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
LEASE_SECONDS, RENEW_DEADLINE, RETRY = 4.0, 2.5, 0.5
MAX_DELAY = 0.2


@pytest.fixture
def replicas(operator: OperatorProcess, tmp_path: Path) -> Iterator[list[tuple[OperatorProcess, FaultProxy]]]:
    assert FAKETIME.exists(), f"{FAKETIME} missing: run `make deps` (Debian package faketime)"
    operator.stop()  # the shared operator stands down; the next running_operator restarts it
    lease = f"leader-test-{random.randrange(10**6)}"
    out = []
    for i, skew in enumerate(("+60s", "")):
        env = {
            "SHOAL_LEASE_NAME": lease,
            "SHOAL_LEASE_DURATION_SECONDS": str(LEASE_SECONDS),
            "SHOAL_LEASE_RENEW_DEADLINE_SECONDS": str(RENEW_DEADLINE),
            "SHOAL_LEASE_RETRY_PERIOD_SECONDS": str(RETRY),
            "HOSTNAME": f"replica-{i}",
        }
        if skew:
            env |= {"LD_PRELOAD": str(FAKETIME), "FAKETIME": skew, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
        op, proxy = behind_proxy(tmp_path, f"replica-{i}", i, **env)
        proxy.add(Fault("latency", "*", r".", probability=0.3, delay=MAX_DELAY, passes=True))
        proxy.add(Fault("dropped", "*", r".", probability=0.03, drop=True))
        out.append((op, proxy))
    for op, _ in out:
        op.start()
    yield out
    for op, proxy in out:
        if op.proc and op.proc.poll() is None:
            op.proc.send_signal(signal.SIGCONT)
        op.stop()
        proxy.stop()


def holder(kube: Kube, lease: str) -> str:
    spec = kube.get(f"/apis/coordination.k8s.io/v1/namespaces/default/leases/{lease}").get("spec") or {}
    return str(spec.get("holderIdentity") or "")


def overlaps(
    journals: list[list[tuple[float, str, str, int, str | None]]], thaws: list[list[float]] | None = None
) -> dict[str, Any]:
    """Judge every non-Lease write against the Lease writes of all replicas (see the module doc).
    `thaws`: when each replica was resumed, so that a bad write says how long after its thaw it landed."""
    leases = sorted(
        (t, i, h)
        for i, j in enumerate(journals)
        for t, _, p, status, h in j
        if "/leases" in p and status < 300
    )
    bad: list[str] = []
    writes = 0
    for i, journal in enumerate(journals):
        for t, method, path, _, _ in journal:
            if "/leases" in path:
                continue
            writes += 1
            mine = [lt for lt, li, h in leases if li == i and h and lt <= t]
            why = ""
            if not mine or t - mine[-1] > LEASE_SECONDS + MAX_DELAY + 0.1:
                why = "outside its last renewal's term"
            elif any(li != i and h and mine[-1] < lt <= t for lt, li, h in leases):
                why = "after another acquired the lease"
            if why:
                thawed = [c for c in (thaws[i] if thaws else []) if c <= t]
                since = f", {t - thawed[-1]:.3f}s after its thaw" if thawed else ""
                bad.append(f"replica {i} {method} {path} at {t:.2f} {why}{since}")
    acquisitions = sum(1 for a, b in itertools.pairwise(leases) if b[2] and b[1] != a[1])
    return {"writes": writes, "handovers": acquisitions, "bad": bad}


def hand_overs(
    kube: Kube, ns: str, replicas: list[tuple[OperatorProcess, FaultProxy]], n: int
) -> dict[str, Any]:
    lease = replicas[0][0].extra_env["SHOAL_LEASE_NAME"]
    ids = {f"replica-{i}-{op.proc.pid}": op for i, (op, _) in enumerate(replicas) if op.proc}
    apply(pool_manifest("led", 3), ns)
    rng = random.Random(5)
    thaws: list[list[float]] = [[] for _ in replicas]
    done = 0
    while done < n:
        current = str(wait_until(lambda: holder(kube, lease) in ids and holder(kube, lease), 30, "a leader"))
        # Work for the leader: delete a pool pod; the replacement and the status are writes.
        pods = live_pods(kube, ns, "shoal.dev/pool=led")
        if pods:
            kube.delete(pods_path(ns, rng.choice(pods)["metadata"]["name"]))
        leader = ids[current]
        assert leader.proc is not None
        leader.proc.send_signal(signal.SIGSTOP)  # frozen mid-work, past its lease
        wait_until(
            partial(lambda was: holder(kube, lease) not in ("", was), current), 30, "the other leading"
        )
        # Thawed at a random moment of the other's term: it resumes believing it leads.
        time.sleep(rng.uniform(0.0, 1.0))  # the fault's timing, not a synchronisation
        leader.proc.send_signal(signal.SIGCONT)
        thaws[list(ids.values()).index(leader)].append(time.monotonic())
        done += 1
    wait_until(lambda: len(live_pods(kube, ns, "shoal.dev/pool=led")) == 3, 60, "the pool whole again")
    verdict = overlaps([list(p.journal) for _, p in replicas], thaws)
    verdict["injected"] = [dict(p.injected) for _, p in replicas]
    return verdict


def check(verdict: dict[str, Any], n: int) -> None:
    print(json.dumps({k: v for k, v in verdict.items() if k != "bad"} | {"bad": verdict["bad"][:5]}))
    assert verdict["handovers"] >= n, verdict["handovers"]
    assert verdict["writes"] > n, verdict["writes"]  # the leaders did act
    assert verdict["bad"] == [], verdict["bad"][:10]
    assert all(inj.get("dropped") and inj.get("latency") for inj in verdict["injected"])


def test_hand_overs_between_skewed_replicas_through_lossy_proxies_never_overlap(
    kube: Kube, namespace: str, replicas: list[tuple[OperatorProcess, FaultProxy]]
) -> None:
    check(hand_overs(kube, namespace, replicas, 4), 4)


@pytest.mark.chaos
def test_twenty_hand_overs_never_overlap(
    kube: Kube, namespace: str, replicas: list[tuple[OperatorProcess, FaultProxy]]
) -> None:
    check(hand_overs(kube, namespace, replicas, 20), 20)
