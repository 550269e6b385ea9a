"""When a scaler's next read will find new data, so it reads then instead of on a fixed phase.

metrics-server scrapes every node once per resolution (its --metric-resolution, 15 s by default) and
serves each pod's newest sample with its `timestamp` and `window` (the time between the two scrapes
the rate came from, about one resolution). A reader on a fixed 15 s cycle, as HPA is, sees a change
the scrape after it plus up to a whole cycle later; a reader that looks just after each scrape lands
sees it one scrape after it. metrics-server does not publish its resolution, so the window stands for
it, and a read that arrives before the scrape (its samples no newer than the last read's) looks again
a little later, a few times, before falling back to the poll interval.

Sources without sample times (Prometheus, Pool) keep the poll interval.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shoal.scaling.types import MetricReading

# From a sample's timestamp + window to metrics-server serving the next one: measured 0.64-0.71 s on
# the test bed (scrape, decode and store of every node); reading earlier only costs a retry.
SERVED_AFTER = 0.8
RETRY = 0.25  # a read that found no newer sample looks again this soon...
RETRIES = 6  # ...this many times (1.5 s) before waiting for the poll interval
MIN_WINDOW = 1.0  # a window shorter than this is no cadence to follow


@dataclass(frozen=True)
class Freshness:
    """What the last read saw: its newest sample time (UTC seconds) and how many reads in a row
    found nothing newer."""

    sampled: float | None = None
    misses: int = 0


def newest_sample(readings: Iterable[MetricReading]) -> tuple[float, float] | None:
    """(timestamp, window) of the newest metrics.k8s.io sample among the readings' pods."""
    best: tuple[float, float] | None = None
    for reading in readings:
        for pod in reading.pods:
            if pod.sampled is None or pod.window is None or pod.window < MIN_WINDOW:
                continue
            if best is None or pod.sampled > best[0]:
                best = (pod.sampled, pod.window)
    return best


def next_read(
    readings: Iterable[MetricReading], seen: Freshness, poll: float, wall: float
) -> tuple[float, Freshness]:
    """Seconds until the next read (never more than `poll`), and what this read saw."""
    newest = newest_sample(readings)
    if newest is None:
        return poll, Freshness()
    sampled, window = newest
    if seen.sampled is not None and sampled <= seen.sampled:  # read before the scrape was served
        if seen.misses < RETRIES:
            return RETRY, Freshness(seen.sampled, seen.misses + 1)
        return poll, Freshness(seen.sampled)
    due = sampled + window + SERVED_AFTER - wall
    return min(poll, max(RETRY, due)), Freshness(sampled)
