"""A per-listener token bucket, in memory (one per app process)."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBucketLimiter:
    """Token buckets keyed by listener: ``burst`` requests at once, refilled at ``rate`` per second.

    Buckets live in memory, least recently used first out beyond ``max_keys``;
    each process of a multi-worker deployment keeps its own.

    Args:
        rate: tokens added per second (> 0).
        burst: bucket capacity, tokens (>= 1).
        max_keys: most buckets kept.
        clock: monotonic time in seconds (tests may pass their own).
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got {rate} and {burst}")
        self.rate, self.burst, self.max_keys, self.clock = float(rate), int(burst), int(max_keys), clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one token of ``key``'s bucket.

        Returns:
            0.0 when the request may go ahead, else the seconds to wait for the next token.
        """
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return wait


def retry_after(wait_seconds: float) -> str:
    """The ``Retry-After`` header value (whole seconds, at least 1) for a wait in seconds."""
    return str(max(1, math.ceil(wait_seconds)))
