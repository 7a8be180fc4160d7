"""The event bus interface: fan-out of conversation, user and control events between processes."""
from __future__ import annotations

import abc
from collections.abc import Callable

from chatd.bus.events import Event

#: A subscriber gets each event synchronously and must not block.
Handler = Callable[[Event], None]


def conversation_channel(conversation_id: object) -> str:
    """Events every connection joined to a conversation gets."""
    return f"conv:{conversation_id}"


def user_channel(user_id: object) -> str:
    """Events every connection of a user gets (the sidebar)."""
    return f"user:{user_id}"


CONTROL_CHANNEL = "ctl"


class Bus(abc.ABC):
    """Publish/subscribe by channel name. Events of one publisher arrive in publish order."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect; no handler is called afterwards."""

    @abc.abstractmethod
    async def publish(self, channel: str, event: Event) -> None:
        """Deliver an event to every subscriber of the channel in every process."""

    @abc.abstractmethod
    async def subscribe(self, channel: str, handler: Handler) -> None:
        """Call handler for each event on the channel from now on (live once this returns)."""

    @abc.abstractmethod
    async def unsubscribe(self, channel: str, handler: Handler) -> None:
        """Stop calling handler for the channel."""

    async def ping(self) -> bool:
        """Whether the bus answers (for /readyz)."""
        return True
