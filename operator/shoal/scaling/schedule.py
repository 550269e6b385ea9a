"""Cron windows that raise the replica floor (business hours)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from croniter import croniter


def valid_cron(expr: str) -> bool:
    return bool(croniter.is_valid(expr))


def floor_at(schedule: tuple[tuple[str, float, int], ...], now: float) -> int | None:
    """The highest minReplicas of the windows open at `now` (UTC), or None if none is open."""
    at = datetime.fromtimestamp(now, tz=UTC)
    floors = []
    for expr, duration, minimum in schedule:
        # The window opened at the last fire time at or before now (+1 s so a fire at now counts).
        start = croniter(expr, at + timedelta(seconds=1)).get_prev(datetime)
        if at < start + timedelta(seconds=duration):
            floors.append(minimum)
    return max(floors) if floors else None
