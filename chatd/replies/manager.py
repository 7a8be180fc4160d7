"""The replies of this process: start them, stop them wherever they run, release their slots, announce them."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from chatd import announce
from chatd.bus import CONTROL_CHANNEL, Bus, events
from chatd.bus.events import Event
from chatd.config import Settings
from chatd.context import build_context
from chatd.errors import BusUnavailable, Conflict, ProviderUnavailable, RateLimited
from chatd.filters import FilterContext
from chatd.inflight import InflightRegistry, InflightReply
from chatd.inflight.sweeper import OrphanSweeper
from chatd.limiter import Limiter
from chatd.metrics import Metrics
from chatd.models import Conversation, Id, Message
from chatd.plugins import PluginRegistry
from chatd.providers import Assistant, CompletionRequest
from chatd.replies.reply import SHUTDOWN, Reply, ReplyTiming
from chatd.store import Store

log = logging.getLogger(__name__)

#: A subscriber to finished replies (stored in full, whatever their status). It runs after the
#: reply is announced and its slot released; it must not raise (the titler runs in the background).
FinishedSubscriber = Callable[[Message, Conversation], object]


class Slot:
    """One of a user's concurrent-reply slots; released exactly once, whoever releases it."""

    def __init__(self, limiter: Limiter, key: str) -> None:
        self.limiter = limiter
        self.key = key
        self.released = False

    async def release(self) -> None:
        """Give the slot back (a second call does nothing)."""
        if not self.released:
            self.released = True
            await self.limiter.release(self.key)


class ReplyManager:
    """Every reply this process generates, and the control channel that stops replies on any process."""

    def __init__(self, settings: Settings, store: Store, bus: Bus, limiter: Limiter, plugins: PluginRegistry,
                 inflight: InflightRegistry, metrics: Metrics, owner: str) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.limiter = limiter
        self.plugins = plugins
        self.inflight = inflight
        self.metrics = metrics
        self.owner = owner
        self.closing = False
        self.sweeper = OrphanSweeper(store, inflight, owner, settings.owner_lease_s, self._announce)
        self._replies: dict[Id, Reply] = {}
        self._subscribers: list[FinishedSubscriber] = []
        self._timing = ReplyTiming(coalesce_s=settings.coalesce_ms / 1000.0,
                                   coalesce_max_chars=settings.coalesce_max_chars,
                                   checkpoint_s=settings.checkpoint_interval_s)

    # Life cycle.
    async def start(self) -> None:
        """Listen for stop requests, take this process's owner lease, interrupt replies of dead processes."""
        await self.bus.subscribe(CONTROL_CHANNEL, self._on_control)
        await self.inflight.start(self.owner)
        await self.sweeper.start()

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
        await self.sweeper.close()
        await self.inflight.close()
        await self.bus.unsubscribe(CONTROL_CHANNEL, self._on_control)

    def on_finished(self, subscriber: FinishedSubscriber) -> None:
        """Call `subscriber(message, conversation)` after each reply of this process is stored and announced."""
        self._subscribers.append(subscriber)

    @property
    def active_count(self) -> int:
        """Replies running in this process."""
        return len(self._replies)

    # Slots.
    async def reserve_slot(self, user_id: Id) -> Slot:
        """One of the user's `max_concurrent_replies` slots, or RATE_LIMITED."""
        if self.closing:
            raise ProviderUnavailable("The server is shutting down; try again in a moment")
        key = f"replies:{user_id}"
        if not await self.limiter.acquire(key, self.settings.max_concurrent_replies):
            raise RateLimited("Too many replies in progress; wait for one to finish", retry_after=1.0)
        return Slot(self.limiter, key)

    # Starting and stopping.
    async def start_reply(self, user_id: Id, conv: Conversation, target: Message, assistant: Assistant,
                          slot: Slot) -> Message:
        """Claim the message, store a streaming placeholder and run the reply in the background.

        The slot belongs to the reply from here on: it is released when the reply ends, or at once
        when the reply cannot start (CONFLICT when the message is already being answered).
        """
        try:
            return await self._start(user_id, conv, target, assistant, slot)
        except BaseException:
            await slot.release()
            raise

    async def _start(self, user_id: Id, conv: Conversation, target: Message, assistant: Assistant,
                     slot: Slot) -> Message:
        cid = conv.id
        if not await self.inflight.claim(cid, target.id):
            raise Conflict("A reply to this message is already streaming")
        try:
            provider = self.plugins.provider_for(assistant)
            history = await self.store.history(cid, target.id, self.settings.history_messages)
            request = CompletionRequest(assistant=assistant, messages=build_context(assistant, history),
                                        model=assistant.model, max_tokens=assistant.max_tokens,
                                        temperature=assistant.temperature)
            placeholder = await self.store.create_reply(cid, target.id, assistant.id, self.owner)
        except BaseException:
            await self.inflight.unclaim(cid, target.id)
            raise
        state = InflightReply(message_id=placeholder.id, conversation_id=cid, reply_to=target.id, owner=self.owner)
        await self.inflight.add(state)
        ctx = FilterContext(user_id=user_id, conversation_id=cid, message_type="assistant", settings=self.settings)

        async def finished(message: Message, conversation: Conversation | None, reply: Reply) -> None:
            self._replies.pop(reply.message_id, None)
            self.metrics.replies_active.set(len(self._replies))
            await slot.release()
            await self._announce_sidebar(message, conversation)

        reply = Reply(state=state, assistant_id=assistant.id, provider=provider, request=request,
                      outbound=[f.session(ctx) for f in self.plugins.outbound_filters], timing=self._timing,
                      publish=self.bus.publish, store=self.store, inflight=self.inflight,
                      on_finished=finished, metrics=self.metrics, release_slot=slot.release)
        self._replies[reply.message_id] = reply
        self.metrics.replies_active.set(len(self._replies))
        reply.task = asyncio.create_task(self._run(reply, slot), name=f"reply-{reply.message_id}")
        return placeholder

    async def _run(self, reply: Reply, slot: Slot) -> None:
        try:
            await reply.run()
        except Exception:
            log.exception("reply %s failed while finishing", reply.message_id)
        finally:  # whatever happened, the reply is over here and its slot free
            if self._replies.pop(reply.message_id, None) is not None:
                self.metrics.replies_active.set(len(self._replies))
            await slot.release()

    async def request_stop(self, message_id: Id) -> None:
        """Ask whichever process runs the reply to stop it."""
        await self.bus.publish(CONTROL_CHANNEL, events.stop_request(message_id))

    def _on_control(self, event: Event) -> None:
        if event.type == "stop":
            reply = self._replies.get(event.msg) if event.msg is not None else None
            if reply is not None:
                reply.stop("user")

    # Announcing.
    async def _announce_sidebar(self, message: Message, conversation: Conversation | None) -> None:
        """The reply itself went out with its stream; now the members' sidebars, then the subscribers."""
        if conversation is not None and not conversation.deleted and message.seq is not None:
            try:
                await announce.conversation(self.bus, conversation, message.seq, change=False)
            except BusUnavailable:  # the sidebars catch up with the next update or a reload
                log.warning("the sidebar update for reply %s could not be published", message.id)
        self._notify(message, conversation)

    async def _announce(self, message: Message, conversation: Conversation | None) -> None:
        """A reply stored by the orphan sweep: the reply and its sidebar update."""
        await announce.message(self.bus, message, conversation)

    def _notify(self, message: Message, conversation: Conversation | None) -> None:
        if conversation is None:
            return
        for subscriber in self._subscribers:
            try:
                subscriber(message, conversation)
            except Exception:
                log.exception("a finished-reply subscriber failed")
