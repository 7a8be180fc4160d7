"""The in-process bus: one process, handlers called synchronously in publish order."""
from __future__ import annotations

import logging

from chatd.bus import Bus, Handler
from chatd.bus.events import Event

log = logging.getLogger(__name__)


class LocalBus(Bus):
    """Channel → handlers in memory."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Drop every subscription."""
        self._handlers.clear()

    async def publish(self, channel: str, event: Event) -> None:
        """Call each handler now; a failing handler is logged and skipped."""
        for handler in list(self._handlers.get(channel, ())):
            try:
                handler(event)
            except Exception:
                log.exception("bus handler failed on %s", channel)

    async def subscribe(self, channel: str, handler: Handler) -> None:
        """Add a handler."""
        self._handlers.setdefault(channel, []).append(handler)

    async def unsubscribe(self, channel: str, handler: Handler) -> None:
        """Remove a handler."""
        handlers = self._handlers.get(channel)
        if handlers and handler in handlers:
            handlers.remove(handler)
            if not handlers:
                del self._handlers[channel]

    def subscriber_count(self) -> int:
        """Handlers registered, over all channels (for leak tests)."""
        return sum(len(h) for h in self._handlers.values())
