"""The per-connection frame rate: a token bucket, beyond which a socket is closed 1008."""
from __future__ import annotations

import time


class FrameRate:
    """Token bucket of frames per second for one connection."""

    __slots__ = ("rate", "tokens", "stamp")

    def __init__(self, per_second: int) -> None:
        self.rate = float(per_second)
        self.tokens = float(per_second)
        self.stamp = time.monotonic()

    def allow(self) -> bool:
        """Take a token; False when the client sends faster than the limit."""
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
