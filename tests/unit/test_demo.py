"""The demo workload of `make run`: a queue that fills and drains once per cycle."""

from __future__ import annotations

from testbed.run import CYCLE, queue_depth


def test_the_demo_queue_rises_holds_falls_and_rests_each_cycle() -> None:
    values = [queue_depth(t) for t in range(int(2 * CYCLE))]
    first = values[: int(CYCLE)]
    assert first[:60] == [0.0] * 60  # a minute empty
    rising = first[60:180]
    assert rising == sorted(rising) and rising[-1] >= 59
    assert first[180:240] == [60.0] * 60
    falling = first[240:300]
    assert falling == sorted(falling, reverse=True) and falling[-1] <= 1
    assert first[300:] == [0.0] * 60
    assert values[int(CYCLE) :] == first  # and again
    assert max(queue_depth(t, cycle=60, peak=30) for t in range(60)) == 30
