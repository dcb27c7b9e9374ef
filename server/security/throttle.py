"""Failed-authentication throttle, per client address and per key id.

Each key (an address, or a key id) may fail `limit` times per sliding `window_s`; after that it is
refused at once, with no hashing, until its oldest failure leaves the window. Memory is bounded:
at most `max_tracked` keys are remembered, the least recently failing forgotten first.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class FailureThrottle:
    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        max_tracked: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._max_tracked = max_tracked
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str) -> float | None:
        """Seconds until `key` may try again, or None when it may try now."""
        now = self._clock()
        with self._lock:
            times = self._failures.get(key)
            if times is None:
                return None
            while times and now - times[0] >= self.window_s:
                times.popleft()
            if not times:
                del self._failures[key]
                return None
            if len(times) < self.limit:
                return None
            return max(0.0, self.window_s - (now - times[0]))

    def fail(self, key: str) -> None:
        now = self._clock()
        with self._lock:
            times = self._failures.pop(key, None) or deque(maxlen=self.limit)
            times.append(now)
            self._failures[key] = times  # re-inserted last: the most recently failing
            while len(self._failures) > self._max_tracked:
                self._failures.popitem(last=False)
