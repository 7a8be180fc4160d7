"""The rate limiter interface: windowed counts and concurrency slots, shared by processes."""
from __future__ import annotations

import abc


class Limiter(abc.ABC):
    """Counts hits per key in a sliding window and holds concurrency slots per key."""

    async def start(self) -> None:
        """Connect."""

    async def close(self) -> None:
        """Disconnect."""

    @abc.abstractmethod
    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        """Record a hit; None if allowed, else seconds until one would be (nothing recorded)."""

    @abc.abstractmethod
    async def acquire(self, key: str, cap: int) -> bool:
        """Take one of `cap` slots for the key; False when all are taken."""

    @abc.abstractmethod
    async def release(self, key: str) -> None:
        """Give a slot back."""
