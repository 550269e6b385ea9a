"""The client-side token bucket: client-go's semantics (burst at once, then qps per second)."""

from __future__ import annotations

import pytest

from shoal.k8s.ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_burst_goes_at_once_then_requests_are_spaced_at_qps() -> None:
    clock = Clock()
    bucket = TokenBucket(20, 30, clock)
    assert [bucket.reserve() for _ in range(30)] == [0.0] * 30
    delays = [bucket.reserve() for _ in range(3)]
    assert delays == pytest.approx([0.05, 0.10, 0.15])
    clock.t += 10  # idle: the bucket refills, but never beyond the burst
    assert [bucket.reserve() for _ in range(30)] == [0.0] * 30
    assert bucket.reserve() == pytest.approx(0.05)


def test_over_time_the_rate_is_qps() -> None:
    clock = Clock()
    bucket = TokenBucket(5, 1, clock)
    went = 0.0
    for _ in range(50):
        went = clock.t + bucket.reserve()
        clock.t = went
    assert went - 100.0 == pytest.approx(49 / 5)


def test_bad_limits_are_refused() -> None:
    for qps, burst in ((0, 1), (-1, 5), (5, 0)):
        with pytest.raises(ValueError):
            TokenBucket(qps, burst)
