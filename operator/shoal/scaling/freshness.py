"""When a scaler's next read will find new data, so it reads then instead of on a fixed phase.

metrics-server scrapes every node once per resolution (its --metric-resolution, 15 s by default) and
serves each pod's newest sample with its `timestamp` and `window` (the time between the two scrapes
the rate came from, about one resolution). A reader on a fixed cycle, as HPA's 15 s sync is, sees a
change the scrape after it plus up to a whole cycle later; a reader that looks just after a scrape is
served sees it at once. metrics-server does not publish its resolution, so the window stands for it.

The poll interval stays the cost a user chose: reads are paid for with a credit that grows by one
per poll interval (at most CAP held), and each read is placed just after the first sample arrival
it can pay for. With samples every 10 s and a 15 s poll, two of every three samples are read, right
as they land: as many reads as polling every 15 s makes, without its phase. (Reading every sample
cost 1.5x the evaluations, and at 500 scalers B4's operator could no longer keep up.) A read that
arrives before the scrape was served (its samples no newer than the last read's) looks again a
little later, a few times, paying as any read does.

Sources without sample times (Prometheus, Pool) keep the poll interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from shoal.scaling.types import MetricReading

# From a sample's timestamp + window to metrics-server serving the next one: measured 0.64-0.71 s on
# the test bed (scrape, decode and store of every node); reading earlier only costs a retry.
SERVED_AFTER = 0.8
RETRY = 0.25  # a read that found no newer sample looks again this soon...
RETRIES = 6  # ...this many times (1.5 s) before waiting for the next arrival
MIN_WINDOW = 1.0  # a window shorter than this is no cadence to follow
CAP = 2.0  # reads a scaler may hold in hand: enough to read two samples in a row


@dataclass(frozen=True)
class Freshness:
    """What the last read saw: its newest sample time (UTC seconds), how many reads in a row found
    nothing newer, and the read credit left after it, counted at wall time `at`."""

    sampled: float | None = None
    misses: int = 0
    credit: float = CAP
    at: float | None = None


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
    """Seconds until the next read, and what this read (made at wall time `wall`) saw and cost."""
    credit = seen.credit if seen.at is None else min(CAP, seen.credit + (wall - seen.at) / poll)
    credit -= 1.0  # this read
    newest = newest_sample(readings)
    if newest is None:
        return poll, Freshness(credit=credit, at=wall)
    sampled, window = newest
    late = seen.sampled is not None and sampled <= seen.sampled  # read before the scrape was served
    if late and seen.misses < RETRIES:
        return RETRY, Freshness(seen.sampled, seen.misses + 1, credit, wall)
    # The next arrival (after the expected one, if that one is late), or the first after it that the
    # credit pays for: it grows 1/poll a second, so a read is due by (1 - credit) x poll.
    due = sampled + window * (2 if late else 1) + SERVED_AFTER - wall
    short = (1.0 - credit) * poll - due
    if short > 0:
        due += math.ceil(short / window) * window
    return max(RETRY, due), Freshness(sampled, 0, credit, wall)
