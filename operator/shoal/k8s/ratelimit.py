"""A client-side request rate limit, as client-go's token bucket (flowcontrol.NewTokenBucketRateLimiter).

Off by default: the API server protects itself with API Priority and Fairness, and controller-runtime
too ships without a client-side limit. It exists so the operator can be run under the same limits as
a Kubernetes controller it is compared with (kube-controller-manager's --kube-api-qps 20, burst 30),
and for clusters whose operators are asked to stay under a budget. Hand-written: the Python client
has no rate limiter of its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """`qps` requests per second on average, up to `burst` at once."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("qps must be > 0 and burst >= 1")
        self.qps, self.burst, self.clock = qps, burst, clock
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a token; the seconds the caller must wait before using it (0: at once)."""
        with self._lock:
            now = self.clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1.0
            return max(0.0, -self._tokens / self.qps)
