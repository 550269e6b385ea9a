"""A scaler reads when its metric's next sample lands, not on a fixed phase, and no more often than
its poll interval pays for."""

from __future__ import annotations

from shoal.scaling.freshness import CAP, RETRIES, RETRY, SERVED_AFTER, Freshness, newest_sample, next_read
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
    assert delay == 1010.0 + SERVED_AFTER - 1000.7
    assert seen == Freshness(1000.0, 0, CAP - 1, 1000.7)


def test_reads_land_right_after_samples_and_cost_what_the_poll_interval_does() -> None:
    """metrics-server every 10 s, a 15 s poll: two of every three samples read as they are served."""
    seen, wall, reads = Freshness(), 0.75, []
    for _ in range(60):
        served = max(k * 10.0 for k in range(200) if k * 10.0 + 0.7 <= wall)
        reads.append((wall, served))
        delay, seen = next_read([resource((served, 10.0))], seen, POLL, wall)
        wall += delay
    assert all(abs(at - (sample + SERVED_AFTER)) < 1e-6 for at, sample in reads[1:])  # just after
    span = reads[-1][0] - reads[0][0]
    assert len(reads) - 1 <= span / POLL + CAP  # never more reads than polling would make
    assert len(reads) - 1 >= span / POLL - 1  # and the credit is spent, not hoarded
    samples = {sample for _, sample in reads}
    assert len(samples) == len(reads)  # no sample read twice


def test_a_slower_source_is_read_once_per_sample() -> None:
    # metrics-server at 60 s with a 15 s poll: polling would read each sample four times.
    delay, seen = next_read([resource((1000.0, 60.0))], Freshness(), POLL, 1000.8)
    assert delay == 1060.0 + SERVED_AFTER - 1000.8 and seen.credit == CAP - 1


def test_a_read_before_the_scrape_was_served_looks_again_soon_then_at_the_next_arrival() -> None:
    seen = Freshness(1000.0, 0, CAP, 1010.0)
    for miss in range(1, RETRIES + 1):
        delay, seen = next_read([resource((1000.0, 10.0))], seen, POLL, 1010.5)
        assert (delay, seen.sampled, seen.misses) == (RETRY, 1000.0, miss)
    delay, seen = next_read([resource((1000.0, 10.0))], seen, POLL, 1012.0)
    # The source stalled: no busy loop; the arrival after the missed one, once the retries are paid.
    assert seen.misses == 0 and seen.credit < 0
    assert delay > 1020.0 + SERVED_AFTER - 1012.0
    assert delay <= (1.0 - seen.credit) * POLL + 10.0


def test_a_late_read_never_schedules_the_next_in_the_past() -> None:
    # Read 30 s after the sample: the next arrival on its 10 s grid still ahead, at 1030.8.
    delay, _ = next_read([resource((1000.0, 10.0))], Freshness(990.0), POLL, 1030.0)
    assert abs(delay - 0.8) < 1e-9


def test_sources_without_sample_times_keep_the_poll_interval() -> None:
    prometheus = MetricReading("q", "Prometheus", value=3.0, target_per_replica=1.0)
    assert next_read([prometheus], Freshness(), POLL, 1000.0)[0] == POLL
    assert next_read([resource((None, None))], Freshness(), POLL, 1000.0)[0] == POLL
    assert newest_sample([resource((1000.0, 0.2))]) is None  # no cadence to follow
    # Mixed: the Resource metric's cadence serves both.
    delay, _ = next_read([prometheus, resource((1000.0, 10.0))], Freshness(), POLL, 1001.0)
    assert delay == 1010.0 + SERVED_AFTER - 1001.0
