"""ChatService: the domain rules — who may do what, sending messages, and changing conversations.

Replies are the reply manager's (`chatd.replies.manager`); this service authorizes a request,
then hands the reply over. Every stored change is announced through `chatd.announce`.
"""
from __future__ import annotations

from collections.abc import Callable

from chatd import announce
from chatd.auth import Principal
from chatd.bus import Bus, conversation_channel, events
from chatd.bus.events import Event
from chatd.config import Settings
from chatd.errors import Conflict, Forbidden, InvalidMessage, NotFound, RateLimited
from chatd.filters import FilterContext
from chatd.inflight import InflightRegistry
from chatd.limiter import Limiter
from chatd.metrics import Metrics
from chatd.models import Conversation, Id, Message
from chatd.plugins import PluginRegistry
from chatd.replies.manager import ReplyManager, Slot
from chatd.store import Store

#: The title of a conversation nobody named yet (the titler replaces it after the first exchange).
DEFAULT_TITLE = "New conversation"


class ChatService:
    """Every rule of the protocol that is not about one socket."""

    def __init__(self, settings: Settings, store: Store, bus: Bus, limiter: Limiter, plugins: PluginRegistry,
                 replies: ReplyManager, inflight: InflightRegistry, metrics: Metrics) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.limiter = limiter
        self.plugins = plugins
        self.replies = replies
        self.inflight = inflight
        self.metrics = metrics

    @property
    def closing(self) -> bool:
        """Whether the server is shutting down (no new replies)."""
        return self.replies.closing

    # Authorization.
    async def conversation_for_member(self, principal: Principal, conversation_id: Id) -> Conversation:
        """The conversation if the user is a member: FORBIDDEN otherwise, NOT_FOUND if deleted."""
        conv = await self.store.member_conversation(conversation_id, principal.user_id)
        if conv is None:
            raise Forbidden("You are not a member of this conversation")
        if conv.deleted:
            raise NotFound("Conversation not found")
        return conv

    # Messages.
    async def send_message(self, principal: Principal, conversation_id: Id, content: str, message_type: str,
                           client_msg_id: str | None, assistant_id: str | None,
                           on_stored: Callable[[Message], None] | None = None) -> tuple[Message, bool]:
        """Store and broadcast a message; for a user message, start the reply. (message, created).

        `on_stored` is called once the message is durably stored (or found as a resend), before
        anything is broadcast: the sender's ack then precedes its own `message_received`.
        """
        if message_type != "user" and not principal.is_privileged:
            raise Forbidden(f"Only admin or service tokens may post {message_type} messages")
        conv = await self.conversation_for_member(principal, conversation_id)
        if client_msg_id is not None:
            earlier = await self.store.find_by_client_msg_id(conversation_id, client_msg_id)
            if earlier is not None:
                if on_stored is not None:
                    on_stored(earlier)
                return earlier, False
        ctx = FilterContext(user_id=principal.user_id, conversation_id=conversation_id,
                            message_type=message_type, settings=self.settings)
        for filt in self.plugins.inbound_filters:
            content = await filt.inbound(content, ctx)
        wants_reply = message_type == "user"
        assistant = self.plugins.assistant(assistant_id or conv.assistant_id) if wants_reply else None
        if assistant_id is not None and not wants_reply:
            self.plugins.assistant(assistant_id)
        slot: Slot | None = await self.replies.reserve_slot(principal.user_id) if wants_reply else None
        try:
            retry = await self.limiter.hit(f"msg:{principal.user_id}", self.settings.rate_messages,
                                           self.settings.rate_window_s)
            if retry is not None:
                raise RateLimited("Too many messages; slow down", retry_after=retry)
            stored = await self.store.add_message(conversation_id, principal.user_id, content, message_type,
                                                  client_msg_id)
        except BaseException:
            if slot is not None:
                await slot.release()
            raise
        if on_stored is not None:
            on_stored(stored.message)
        if not stored.created:
            if slot is not None:
                await slot.release()
            return stored.message, False
        self.metrics.messages.labels(message_type=message_type).inc()
        await announce.message(self.bus, stored.message, stored.conversation)
        if slot is not None and assistant is not None:
            try:
                await self.replies.start_reply(principal.user_id, stored.conversation or conv, stored.message,
                                               assistant, slot)
            except Conflict:  # someone asked for this reply already (stream_response): that one runs
                pass
        return stored.message, True

    async def stream_response(self, principal: Principal, conversation_id: Id, message_id: Id,
                              assistant_id: str | None) -> Message:
        """Start a reply to a stored message; CONFLICT if one is already streaming."""
        conv = await self.conversation_for_member(principal, conversation_id)
        target = await self.store.get_message(message_id)
        if target is None or target.conversation_id != conv.id:
            raise NotFound("Message not found in this conversation")
        assistant = self.plugins.assistant(assistant_id or conv.assistant_id)
        slot = await self.replies.reserve_slot(principal.user_id)
        return await self.replies.start_reply(principal.user_id, conv, target, assistant, slot)

    async def stop_generation(self, principal: Principal, message_id: Id) -> None:
        """Cancel a reply wherever it runs (a no-op if it already ended)."""
        message = await self.store.get_message(message_id)
        if message is None or not await self.store.is_member(message.conversation_id, principal.user_id):
            raise Forbidden("You are not a member of this conversation")
        if message.status == "streaming":
            await self.replies.request_stop(message_id)

    # Replay and typing.
    async def latest_seq(self, conversation_id: Id) -> int:
        """The conversation's latest stored change (0 for none)."""
        conv = await self.store.get_conversation(conversation_id)
        return conv.seq if conv is not None else 0

    async def active_streams(self, conversation_id: Id) -> list[dict]:
        """`joined.active_streams` for the conversation."""
        return [r.snapshot() for r in await self.inflight.active(conversation_id)]

    async def events_since(self, conversation_id: Id, since_seq: int) -> list[Event]:
        """Stored changes to replay, as the events that announced them."""
        out = []
        for stored in await self.store.events_since(conversation_id, since_seq):
            if isinstance(stored.record, Message):
                out.append(events.message_event(stored.record))
            else:
                out.append(events.conversation_updated(stored.record, stored.seq, change=True))
        return out

    async def typing(self, principal: Principal, conversation_id: Id, is_typing: bool) -> None:
        """Relay a typing indicator to the conversation's other members."""
        await self.conversation_for_member(principal, conversation_id)
        await self.publish_typing(principal.user_id, conversation_id, is_typing)

    async def publish_typing(self, user_id: Id, conversation_id: Id, is_typing: bool) -> None:
        """Publish a typing indicator without checks (used on disconnect)."""
        await self.bus.publish(conversation_channel(conversation_id),
                               events.typing_indicator(conversation_id, user_id, is_typing, exclude_user=user_id))

    # Conversations (REST).
    async def _check_members(self, member_ids: list[Id]) -> None:
        """INVALID_MESSAGE naming the first id that is no user's (one store read for the whole list)."""
        if member_ids and (missing := await self.store.missing_users(member_ids)):
            raise InvalidMessage(f"Field `member_ids` names an unknown user: {missing[0]!r}")

    async def create_conversation(self, principal: Principal, title: str | None, assistant_id: str | None,
                                  member_ids: list[Id]) -> Conversation:
        """Create and announce a conversation (seq 0)."""
        assistant = self.plugins.assistant(assistant_id)
        await self._check_members(member_ids)
        conv = await self.store.create_conversation(principal.user_id, title or DEFAULT_TITLE, assistant.id,
                                                    member_ids)
        await announce.conversation(self.bus, conv, 0, change=False)
        return conv

    async def update_conversation(self, principal: Principal, conversation_id: Id, title: str | None,
                                  assistant_id: str | None, add_member_ids: list[Id] | None) -> Conversation:
        """A member renames, changes the assistant or adds members, as one change."""
        await self.conversation_for_member(principal, conversation_id)
        if assistant_id is not None:
            self.plugins.assistant(assistant_id)
        await self._check_members(add_member_ids or [])
        return await self._change(conversation_id, title=title, assistant_id=assistant_id,
                                  add_member_ids=add_member_ids)

    async def rename(self, conversation_id: Id, title: str) -> Conversation:
        """Rename on the server's own account (the titler): the same change as a member's rename."""
        return await self._change(conversation_id, title=title, assistant_id=None, add_member_ids=None)

    async def _change(self, conversation_id: Id, *, title: str | None, assistant_id: str | None,
                      add_member_ids: list[Id] | None) -> Conversation:
        conv = await self.store.update_conversation(conversation_id, title=title, assistant_id=assistant_id,
                                                    add_member_ids=add_member_ids)
        await announce.conversation(self.bus, conv, conv.seq, change=True)
        return conv

    async def delete_conversation(self, principal: Principal, conversation_id: Id) -> Conversation:
        """Delete (owner only) and tell every member's tabs."""
        conv = await self.conversation_for_member(principal, conversation_id)
        if conv.owner_id != principal.user_id and not principal.is_privileged:
            raise Forbidden("Only the owner may delete a conversation")
        conv = await self.store.delete_conversation(conversation_id)
        await announce.conversation(self.bus, conv, conv.seq, change=True)
        return conv
