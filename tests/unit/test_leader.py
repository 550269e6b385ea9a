"""Leader election's rules (client-go's), against an in-memory Lease with resourceVersions and a
hand-driven monotonic clock: nothing here reads the wall clock."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shoal.k8s.client import ApiError
from shoal.runtime.leader import LeaderElector


class Leases:
    """The API server's side: one Lease, optimistic concurrency, and an outage switch."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.down = False
        self.writes = 0

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> dict[str, Any]:
        if self.down:
            raise OSError("connection refused")
        if method == "GET":
            if self.lease is None:
                raise ApiError(404, "NotFound", "no lease")
            return copy.deepcopy(self.lease)
        if method == "POST" and self.lease is not None:
            raise ApiError(409, "AlreadyExists", "lease exists")
        if method == "PUT" and body["metadata"].get("resourceVersion") != str(self.version):
            raise ApiError(409, "Conflict", "stale resourceVersion")
        self.version += 1
        self.writes += 1
        self.lease = {**body, "metadata": {**body.get("metadata", {}), "resourceVersion": str(self.version)}}
        return copy.deepcopy(self.lease)


def elector(leases: Leases, identity: str, clock: list[float]) -> LeaderElector:
    return LeaderElector(leases, "ns", "lease", identity, 15.0, 10.0, 2.0, clock=lambda: clock[0])  # type: ignore[arg-type]


def test_a_standby_waits_a_full_lease_from_when_it_saw_the_record_change_whatever_renewTime_says() -> None:
    leases, clock = Leases(), [1000.0]
    a, b = elector(leases, "a", clock), elector(leases, "b", clock)
    assert a._try()
    # a's renewTime as b's wall clock reads it is irrelevant: make it an hour old.
    assert leases.lease is not None
    leases.lease["spec"]["renewTime"] = "2020-01-01T00:00:00.000000Z"
    assert not b._try()  # first sight of this record: it has a full lease from now
    clock[0] += 14.9
    assert not b._try()
    clock[0] += 0.2  # 15.1 s since b saw the record change
    assert b._try() and leases.lease["spec"]["holderIdentity"] == "b"
    assert leases.lease["spec"]["leaseTransitions"] == 1


def test_a_renewal_seen_by_the_standby_restarts_its_wait() -> None:
    leases, clock = Leases(), [0.0]
    a, b = elector(leases, "a", clock), elector(leases, "b", clock)
    assert a._try() and not b._try()
    for _ in range(10):  # a renews every 2 s; b looks every 2 s and never sees 15 s of silence
        clock[0] += 2.0
        assert a._try() and not b._try()


def test_a_leader_that_cannot_renew_stops_writing_at_the_renew_deadline_before_anyone_may_take_over() -> None:
    leases, clock = Leases(), [0.0]
    a, b = elector(leases, "a", clock), elector(leases, "b", clock)
    assert a._try() and not b._try()
    assert a.leading() and a.write_budget() == pytest.approx(15.0)
    leases.down = True  # a's renewals fail from here on; b (say, elsewhere) still reads the lease
    clock[0] += 9.9
    assert a.leading() and a.write_budget() == pytest.approx(5.1)  # a write now must end by 15 s
    clock[0] += 0.2
    assert not a.leading() and a.write_budget() == 0.0  # 10.1 s: a stops before b could start
    leases.down = False
    assert not b._try()  # b saw the record at 0 s: 10.1 s is not yet a lease
    clock[0] += 5.0
    assert b._try()  # 15.1 s


def test_the_timings_must_nest() -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        LeaderElector(Leases(), "ns", "l", "a", duration=10.0, renew_deadline=12.0)  # type: ignore[arg-type]
    e = LeaderElector(Leases(), "ns", "l", "a", duration=15.0)  # type: ignore[arg-type]
    assert (e.renew_deadline, e.retry_period) == (10.0, 2.0) and e.request_timeout < e.renew_deadline
