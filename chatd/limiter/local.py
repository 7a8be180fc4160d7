"""The in-process limiter: sliding-window logs and slot counters in memory."""
from __future__ import annotations

import time
from collections import deque

from chatd.limiter import Limiter


class LocalLimiter(Limiter):
    """Exact sliding windows for one process."""

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._slots: dict[str, int] = {}

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        """Allow at most `limit` hits in any `window_s` seconds."""
        now = time.monotonic()
        log = self._hits.setdefault(key, deque())
        while log and log[0] <= now - window_s:
            log.popleft()
        if len(log) >= limit:
            return round(log[0] + window_s - now, 3) or 0.001
        log.append(now)
        return None

    async def acquire(self, key: str, cap: int) -> bool:
        """Take a slot if one is free."""
        used = self._slots.get(key, 0)
        if used >= cap:
            return False
        self._slots[key] = used + 1
        return True

    async def release(self, key: str) -> None:
        """Free a slot."""
        used = self._slots.get(key, 0) - 1
        if used > 0:
            self._slots[key] = used
        else:
            self._slots.pop(key, None)
