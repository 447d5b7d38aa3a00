"""Per-listener rate limiting with the ``limits`` library (https://limits.readthedocs.io).

Each listener may send ``burst`` requests in any moving window of ``burst / rate`` seconds
(:class:`limits.strategies.MovingWindowRateLimiter`): ``burst`` at once, and ``rate`` per
second in the long run. The counters live in a ``limits`` storage given by URI: ``memory://``
(the default; one per app process) or a store that every worker of a multi-process deployment
shares, e.g. ``redis://host:6379`` or ``memcached://host:11211`` (these need the ``limits``
extra of that store: ``pip install "limits[redis]"``).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter


class ListenerRateLimiter:
    """``burst`` requests per moving window of ``burst / rate`` seconds (at least 1 s), per listener.

    Args:
        rate: long-run requests per second (> 0).
        burst: requests a listener may send at once (>= 1).
        storage_uri: the ``limits`` storage (``memory://``, ``redis://...``, ``memcached://...``).

    Raises:
        ValueError: ``rate`` <= 0, ``burst`` < 1, or an unknown storage scheme.
    """

    def __init__(self, rate: float, burst: int, storage_uri: str = "memory://") -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got {rate} and {burst}")
        self.item = RateLimitItemPerSecond(int(burst), max(1, round(burst / rate)))
        try:
            storage = storage_from_string(storage_uri)
        except Exception as exc:  # limits raises ConfigurationError for unknown schemes or missing drivers
            raise ValueError(f"rate-limit storage {storage_uri!r}: {exc}") from exc
        self.limiter = MovingWindowRateLimiter(storage)

    def take(self, key: str) -> float:
        """Count one request of ``key``.

        Returns:
            0.0 when the request may go ahead, else the seconds until the window lets one through.
        """
        if self.limiter.hit(self.item, key):
            return 0.0
        reset_time, _ = self.limiter.get_window_stats(self.item, key)
        return max(reset_time - time.time(), 1e-3)


def retry_after(wait_seconds: float) -> str:
    """The ``Retry-After`` header value (whole seconds, at least 1) for a wait in seconds."""
    return str(max(1, math.ceil(wait_seconds)))
