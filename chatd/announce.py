"""Announce stored changes on the bus: each on the channels whose connections must see it.

A message goes to the conversation's channel (joined connections); the conversation, as the
change left it, goes to every member's user channel (the sidebar of every tab). Each event is
built, and its frame encoded, once, however many channels carry it.
"""
from __future__ import annotations

from chatd.bus import Bus, conversation_channel, events, user_channel
from chatd.models import Conversation, Message


async def conversation(bus: Bus, conv: Conversation, seq: int, change: bool) -> None:
    """Tell every member's tabs how the conversation looks now (`change`: a change of its own)."""
    event = events.conversation_updated(conv, seq, change)
    for member in conv.member_ids:
        await bus.publish(user_channel(member), event)


async def message(bus: Bus, msg: Message, conv: Conversation | None) -> None:
    """A stored message or finished reply, then the sidebar update it causes (when `conv` is known)."""
    assert msg.seq is not None, "only stored messages are announced"
    await bus.publish(conversation_channel(msg.conversation_id), events.message_event(msg))
    if conv is not None and not conv.deleted:
        await conversation(bus, conv, msg.seq, change=False)
