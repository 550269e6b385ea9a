"""A scaler reads when its metric's next sample lands, not on a fixed phase."""

from __future__ import annotations

from shoal.scaling.freshness import RETRIES, RETRY, SERVED_AFTER, Freshness, newest_sample, next_read
from shoal.scaling.types import MetricReading, PodSample

POLL = 15.0


def resource(*samples: tuple[float | None, float | None]) -> MetricReading:
    pods = tuple(
        PodSample(f"p{i}", True, 0.5, 1.0, sampled=at, window=window)
        for i, (at, window) in enumerate(samples)
    )
    return MetricReading("cpu", "Resource", pods=pods, target_utilization=0.5)


def test_the_next_read_is_when_the_next_sample_is_served() -> None:
    # Samples at 1000.0 (10 s windows), read at 1000.7: the next lands at 1010.0, served 0.8 s later.
    delay, seen = next_read([resource((1000.0, 10.0), (999.5, 10.0))], Freshness(), POLL, 1000.7)
    assert delay == 1010.0 + SERVED_AFTER - 1000.7 and seen == Freshness(1000.0)
    # metrics-server at its default 15 s resolution: never later than the poll interval.
    delay, _ = next_read([resource((1000.0, 15.0))], Freshness(), 10.0, 1000.7)
    assert delay == 10.0


def test_a_read_before_the_scrape_was_served_looks_again_soon_then_falls_back_to_the_poll() -> None:
    seen = Freshness(1000.0)
    for miss in range(1, RETRIES + 1):
        delay, seen = next_read([resource((1000.0, 10.0))], seen, POLL, 1010.5)
        assert (delay, seen) == (RETRY, Freshness(1000.0, miss))
    delay, seen = next_read([resource((1000.0, 10.0))], seen, POLL, 1012.0)
    assert (delay, seen) == (POLL, Freshness(1000.0))  # the source stalled: no busy loop
    delay, seen = next_read([resource((1010.0, 10.0))], seen, POLL, 1012.0)  # it came back
    assert seen == Freshness(1010.0) and delay == 1020.0 + SERVED_AFTER - 1012.0


def test_a_late_read_never_schedules_the_next_in_the_past() -> None:
    delay, _ = next_read([resource((1000.0, 10.0))], Freshness(990.0), POLL, 1030.0)
    assert delay == RETRY


def test_sources_without_sample_times_keep_the_poll_interval() -> None:
    prometheus = MetricReading("q", "Prometheus", value=3.0, target_per_replica=1.0)
    assert next_read([prometheus], Freshness(), POLL, 1000.0) == (POLL, Freshness())
    assert next_read([resource((None, None))], Freshness(), POLL, 1000.0) == (POLL, Freshness())
    assert newest_sample([resource((1000.0, 0.2))]) is None  # no cadence to follow
    # Mixed: the Resource metric's cadence serves both.
    delay, _ = next_read([prometheus, resource((1000.0, 10.0))], Freshness(), POLL, 1001.0)
    assert delay == 1010.0 + SERVED_AFTER - 1001.0
