"""ChatService: the domain rules — send, replay, typing, start and stop replies, conversations."""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from typing import Any, Callable

from chatd.auth import Principal
from chatd.bus import CONTROL_CHANNEL, Bus, conversation_channel, user_channel
from chatd.config import Settings
from chatd.context import build_context
from chatd.errors import (Conflict, Forbidden, InvalidMessage, NotFound, ProviderUnavailable,
                          RateLimited)
from chatd.filters import FilterContext
from chatd.inflight import InflightRegistry, InflightReply
from chatd.limiter import Limiter
from chatd.metrics import Metrics
from chatd.plugins import PluginRegistry
from chatd.providers import CompletionRequest
from chatd.replies import SHUTDOWN, Reply, ReplyTiming, envelope
from chatd.store import StoredEvent, Store
from chatd.titles import Titler

log = logging.getLogger(__name__)

DEFAULT_TITLE = "New conversation"


def make_owner_id() -> str:
    """This process's identity as the owner of replies: host, pid and a random nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_alive(owner: str | None) -> bool:
    """Whether a reply's owning process may still run (False only when certainly dead)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another machine's process: its lease is not ours to judge
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ChatService:
    """Every rule of the protocol that is not about one socket."""

    def __init__(self, settings: Settings, store: Store, bus: Bus, limiter: Limiter,
                 plugins: PluginRegistry, inflight: InflightRegistry, metrics: Metrics) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.limiter = limiter
        self.plugins = plugins
        self.inflight = inflight
        self.metrics = metrics
        self.owner = make_owner_id()
        self.closing = False
        self._replies: dict[Any, Reply] = {}
        self._suspects: dict[Any, float] = {}  # orphan candidates (message id → first seen dead)
        self._sweeper: asyncio.Task | None = None
        self.titles = Titler(self)
        self._timing = ReplyTiming(coalesce_s=settings.coalesce_ms / 1000.0,
                                   coalesce_max_chars=settings.coalesce_max_chars,
                                   checkpoint_s=settings.checkpoint_interval_s)

    # Life cycle.
    async def start(self) -> None:
        """Listen for stop requests and mark replies of dead processes as interrupted."""
        await self.bus.subscribe(CONTROL_CHANNEL, self._on_control)
        await self.inflight.start(self.owner)
        await self.sweep_orphans()
        if self.inflight.shared:  # other processes may die at any time: sweep periodically
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="orphan-sweeper")

    async def _sweep_loop(self) -> None:
        interval = self.settings.owner_lease_s / 2
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep_orphans()
            except Exception:  # Redis or the store briefly away: try again next round
                log.warning("orphan sweep failed", exc_info=True)

    async def _owner_dead(self, msg: dict) -> bool:
        """Whether the reply's owner is certainly gone (with shared leases: absent for a grace period,
        so a Redis that restarted empty does not orphan live replies before their owners re-lease)."""
        owner = msg.get("owner")
        if owner == self.owner:
            return False
        alive = await self.inflight.owner_alive(owner)
        if alive is None:
            return not owner_is_alive(owner)
        if alive:
            self._suspects.pop(msg["id"], None)
            return False
        loop = asyncio.get_running_loop()
        first = self._suspects.setdefault(msg["id"], loop.time())
        return loop.time() - first >= self.settings.owner_lease_s / 2

    async def sweep_orphans(self) -> int:
        """Store replies whose owner died as `interrupted`, keeping the checkpointed text."""
        count = 0
        streaming = await self.store.streaming_replies()
        live_ids = {msg["id"] for msg in streaming}
        for mid in [m for m in self._suspects if m not in live_ids]:
            del self._suspects[mid]
        for msg in streaming:
            if not await self._owner_dead(msg):
                continue
            self._suspects.pop(msg["id"], None)
            if not await self.inflight.claim_sweep(msg["id"]):
                continue  # another process's sweep finishes it
            stored = await self.store.finish_reply(msg["id"], msg["content"], "interrupted", None, "error")
            await self._publish_message_added(stored)
            count += 1
        if count:
            log.info("marked %d orphaned replies as interrupted", count)
        return count

    async def close(self) -> None:
        """Refuse new replies, let running ones finish within the grace period, then interrupt them."""
        self.closing = True
        running = [r.task for r in self._replies.values() if r.task is not None]
        if running:
            await asyncio.wait(running, timeout=self.settings.shutdown_grace_s)
        for reply in list(self._replies.values()):
            reply.stop(SHUTDOWN)
        remaining = [r.task for r in self._replies.values() if r.task is not None]
        if remaining:
            await asyncio.wait(remaining, timeout=5)
        await self.titles.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except (asyncio.CancelledError, Exception):
                pass
            self._sweeper = None
        await self.inflight.close()
        await self.bus.unsubscribe(CONTROL_CHANNEL, self._on_control)

    @property
    def active_reply_count(self) -> int:
        """Replies running in this process."""
        return len(self._replies)

    # Authorization.
    async def conversation_for_member(self, principal: Principal, conversation_id: Any) -> dict:
        """The conversation if the user is a member: FORBIDDEN otherwise, NOT_FOUND if deleted."""
        if not await self.store.is_member(conversation_id, principal.user_id):
            raise Forbidden("You are not a member of this conversation")
        conv = await self.store.get_conversation(conversation_id)
        if conv is None or conv.get("deleted"):
            raise NotFound("Conversation not found")
        return conv

    # Publishing.
    async def _publish_to_members(self, conv: dict, seq: int, change: bool) -> None:
        env = envelope("conversation_updated", {"conversation": conv, "seq": seq}, conv=conv["id"], seq=seq,
                       change=change)
        for member in conv["member_ids"]:
            await self.bus.publish(user_channel(member), env)

    async def _publish_message_added(self, message: dict) -> None:
        cid = message["conversation_id"]
        await self.bus.publish(conversation_channel(cid), envelope(
            "message_added", {"message": message, "seq": message["seq"]}, conv=cid, seq=message["seq"]))
        await self._publish_last_message(cid, message["seq"])

    async def _publish_last_message(self, conversation_id: Any, seq: int) -> None:
        conv = await self.store.get_conversation(conversation_id)
        if conv is not None and not conv.get("deleted"):
            await self._publish_to_members(conv, seq, change=False)

    # Messages.
    async def send_message(self, principal: Principal, conversation_id: Any, content: str, message_type: str,
                           client_msg_id: str | None, assistant_id: str | None,
                           on_stored: Callable[[dict], None] | None = None) -> tuple[dict, bool]:
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
        assistant = self.plugins.assistant(assistant_id or conv["assistant_id"]) if wants_reply else None
        if assistant_id is not None and not wants_reply:
            self.plugins.assistant(assistant_id)
        if wants_reply and self.closing:
            raise ProviderUnavailable("The server is shutting down; try again in a moment")
        slot_key = f"replies:{principal.user_id}"
        if wants_reply and not await self.limiter.acquire(slot_key, self.settings.max_concurrent_replies):
            raise RateLimited("Too many replies in progress; wait for one to finish", retry_after=1.0)
        retry = await self.limiter.hit(f"msg:{principal.user_id}", self.settings.rate_messages,
                                       self.settings.rate_window_s)
        if retry is not None:
            if wants_reply:
                await self.limiter.release(slot_key)
            raise RateLimited("Too many messages; slow down", retry_after=retry)
        try:
            message, created = await self.store.add_message(conversation_id, principal.user_id, content,
                                                            message_type, client_msg_id)
        except BaseException:
            if wants_reply:
                await self.limiter.release(slot_key)
            raise
        if on_stored is not None:
            on_stored(message)
        if not created:
            if wants_reply:
                await self.limiter.release(slot_key)
            return message, False
        self.metrics.messages.labels(message_type=message_type).inc()
        await self.bus.publish(conversation_channel(conversation_id), envelope(
            "message_received", {"message": message, "seq": message["seq"]}, conv=conversation_id,
            seq=message["seq"]))
        await self._publish_last_message(conversation_id, message["seq"])
        if wants_reply:
            assert assistant is not None
            try:
                await self._start_reply(principal, conv, message, assistant.id, slot_key)
            except Conflict:
                await self.limiter.release(slot_key)
        return message, True

    async def stream_response(self, principal: Principal, conversation_id: Any, message_id: Any,
                              assistant_id: str | None) -> dict:
        """Start a reply to a stored message; CONFLICT if one is already streaming."""
        conv = await self.conversation_for_member(principal, conversation_id)
        target = await self.store.get_message(message_id)
        if target is None or target["conversation_id"] != conv["id"]:
            raise NotFound("Message not found in this conversation")
        assistant = self.plugins.assistant(assistant_id or conv["assistant_id"])
        if self.closing:
            raise ProviderUnavailable("The server is shutting down; try again in a moment")
        slot_key = f"replies:{principal.user_id}"
        if not await self.limiter.acquire(slot_key, self.settings.max_concurrent_replies):
            raise RateLimited("Too many replies in progress; wait for one to finish", retry_after=1.0)
        try:
            return await self._start_reply(principal, conv, target, assistant.id, slot_key)
        except BaseException:
            await self.limiter.release(slot_key)
            raise

    async def _start_reply(self, principal: Principal, conv: dict, target: dict, assistant_id: str,
                           slot_key: str) -> dict:
        cid = conv["id"]
        if not await self.inflight.claim(cid, target["id"]):
            raise Conflict("A reply to this message is already streaming")
        try:
            assistant = self.plugins.assistant(assistant_id)
            provider = self.plugins.provider_for(assistant)
            history = await self.store.history(cid, target["id"], self.settings.history_messages)
            request = CompletionRequest(assistant=assistant, messages=build_context(assistant, history),
                                        model=assistant.model, max_tokens=assistant.max_tokens,
                                        temperature=assistant.temperature)
            placeholder = await self.store.create_reply(cid, target["id"], assistant.id, self.owner)
        except BaseException:
            await self.inflight.unclaim(cid, target["id"])
            raise
        state = InflightReply(message_id=placeholder["id"], conversation_id=cid, reply_to=target["id"],
                              owner=self.owner)
        await self.inflight.add(state)
        ctx = FilterContext(user_id=principal.user_id, conversation_id=cid, message_type="assistant",
                            settings=self.settings)

        async def finished(message: dict, reply: Reply) -> None:
            self._replies.pop(reply.message_id, None)
            self.metrics.replies_active.set(len(self._replies))
            await self.limiter.release(slot_key)
            await self._publish_last_message(cid, message["seq"])
            self.titles.schedule(cid, message)  # a background task; it never fails the reply

        reply = Reply(state=state, assistant_id=assistant.id, provider=provider, request=request,
                      outbound=[f.session(ctx) for f in self.plugins.outbound_filters], timing=self._timing,
                      publish=self.bus.publish, store=self.store, inflight=self.inflight,
                      on_finished=finished, metrics=self.metrics)
        self._replies[reply.message_id] = reply
        self.metrics.replies_active.set(len(self._replies))
        reply.task = asyncio.create_task(self._run_reply(reply), name=f"reply-{reply.message_id}")
        return placeholder

    async def _run_reply(self, reply: Reply) -> None:
        try:
            await reply.run()
        except Exception:
            log.exception("reply %s failed while finishing", reply.message_id)
            self._replies.pop(reply.message_id, None)

    async def stop_generation(self, principal: Principal, message_id: Any) -> None:
        """Cancel a reply wherever it runs (a no-op if it already ended)."""
        message = await self.store.get_message(message_id)
        if message is None or not await self.store.is_member(message["conversation_id"], principal.user_id):
            raise Forbidden("You are not a member of this conversation")
        if message["status"] == "streaming":
            await self.bus.publish(CONTROL_CHANNEL, {"op": "stop", "message_id": message_id})

    def _on_control(self, event: dict) -> None:
        if event.get("op") == "stop":
            reply = self._replies.get(event.get("message_id"))
            if reply is not None:
                reply.stop("user")

    # Replay and typing.
    async def active_streams(self, conversation_id: Any) -> list[dict]:
        """`joined.active_streams` for the conversation."""
        return [r.snapshot() for r in await self.inflight.active(conversation_id)]

    async def events_since(self, conversation_id: Any, since_seq: int) -> list[StoredEvent]:
        """Stored changes to replay."""
        return await self.store.events_since(conversation_id, since_seq)

    async def typing(self, principal: Principal, conversation_id: Any, is_typing: bool) -> None:
        """Relay a typing indicator to the conversation's other members."""
        await self.conversation_for_member(principal, conversation_id)
        await self.publish_typing(principal.user_id, conversation_id, is_typing)

    async def publish_typing(self, user_id: Any, conversation_id: Any, is_typing: bool) -> None:
        """Publish a typing indicator without checks (used on disconnect)."""
        await self.bus.publish(conversation_channel(conversation_id), envelope(
            "typing_indicator", {"conversation_id": conversation_id, "user_id": user_id, "is_typing": is_typing},
            conv=conversation_id, exclude_user=user_id))

    # Conversations (REST).
    async def create_conversation(self, principal: Principal, title: str | None, assistant_id: str | None,
                                  member_ids: list[Any]) -> dict:
        """Create and announce a conversation (seq 0)."""
        assistant = self.plugins.assistant(assistant_id)
        for member in member_ids:
            if await self.store.get_user(member) is None:
                raise InvalidMessage(f"Field `member_ids` names an unknown user: {member!r}")
        conv = await self.store.create_conversation(principal.user_id, title or DEFAULT_TITLE, assistant.id,
                                                    member_ids)
        await self._publish_to_members(conv, 0, change=False)
        return conv

    async def update_conversation(self, principal: Principal, conversation_id: Any, title: str | None,
                                  assistant_id: str | None, add_member_ids: list[Any] | None) -> dict:
        """Rename, change the assistant or add members, as one change."""
        await self.conversation_for_member(principal, conversation_id)
        if assistant_id is not None:
            self.plugins.assistant(assistant_id)
        for member in add_member_ids or []:
            if await self.store.get_user(member) is None:
                raise InvalidMessage(f"Field `member_ids` names an unknown user: {member!r}")
        conv, seq = await self.store.update_conversation(conversation_id, title=title, assistant_id=assistant_id,
                                                         add_member_ids=add_member_ids)
        await self._publish_to_members(conv, seq, change=True)
        return conv

    async def delete_conversation(self, principal: Principal, conversation_id: Any) -> dict:
        """Delete (owner only) and tell every member's tabs."""
        conv = await self.conversation_for_member(principal, conversation_id)
        if conv["owner_id"] != principal.user_id and not principal.is_privileged:
            raise Forbidden("Only the owner may delete a conversation")
        conv, seq = await self.store.delete_conversation(conversation_id)
        await self._publish_to_members(conv, seq, change=True)
        return conv
