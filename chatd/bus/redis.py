"""The Redis bus: PUBLISH on the shared client, one PubSub connection whose reader task calls the
handlers synchronously in arrival order (so events of one publisher stay in publish order)."""
from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chatd.aio import cancel_and_wait
from chatd.bus import Bus, Handler
from chatd.bus.events import Event
from chatd.errors import BusUnavailable

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT_S = 5.0
RETRY_MIN_S = 0.05
RETRY_MAX_S = 1.0
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0


class RedisBus(Bus):
    """Channels `<prefix><name>` on Redis pub/sub; `subscribe` returns once Redis confirmed it."""

    def __init__(self, client: aioredis.Redis, prefix: str = "chatd:", publish_timeout_s: float = 5.0) -> None:
        self.client = client
        self.prefix = prefix
        self.publish_timeout_s = publish_timeout_s
        self._handlers: dict[str, list[Handler]] = {}
        self._live: dict[str, asyncio.Future] = {}  # channel → done once Redis confirmed the subscription
        self._pending: dict[str, int] = {}  # SUBSCRIBEs sent and not yet confirmed, per channel
        self._pubsub: Any = None
        self._reader: asyncio.Task | None = None
        self._closed = False
        self._own = f"{prefix}__bus__:{uuid.uuid4().hex}"  # keeps the PubSub subscribed (and is our ping)
        self._outbox: list[tuple[Callable[[Pipeline], object], asyncio.Future[object]]] = []
        self._sender: asyncio.Task | None = None
        self.reconnects = 0

    def key(self, channel: str) -> str:
        """The Redis channel a bus channel is published on."""
        return self.prefix + channel

    async def start(self) -> None:
        """Open the PubSub connection and start the reader."""
        await self._open()
        self._reader = asyncio.create_task(self._read_loop(), name="redis-bus-reader")

    async def _open(self) -> None:
        """A fresh PubSub subscribed to our own channel and every channel with handlers."""
        ps = self.client.pubsub()
        channels = [self.key(c) for c in self._handlers]
        for c in self._handlers:
            self._pending[c] = 1
        await ps.subscribe(self._own, *channels)
        self._pubsub = ps

    async def close(self) -> None:
        """Stop the reader and close the PubSub connection; no handler is called afterwards."""
        self._closed = True
        self._handlers.clear()
        await cancel_and_wait(self._sender)
        for _, fut in self._outbox:
            if not fut.done():
                fut.set_exception(BusUnavailable("The event bus is closed"))
        self._outbox.clear()
        await cancel_and_wait(self._reader)
        self._reader = None
        if self._pubsub is not None:
            try:
                await self._pubsub.aclose()
            except Exception:
                log.debug("pubsub close failed", exc_info=True)
            self._pubsub = None
        for fut in self._live.values():
            if not fut.done():
                fut.cancel()
        self._live.clear()

    async def publish(self, channel: str, event: Event) -> None:
        """PUBLISH the event (batched with this process's other publishes); BusUnavailable if it cannot go out.

        An event is never dropped silently: it goes out, or the caller learns it did not.
        """
        key, data = self.key(channel), event.to_wire()
        await self.submit(lambda pipe: pipe.publish(key, data))

    async def submit(self, add: Callable[[Pipeline], object]) -> object:
        """Queue one command (`add(pipe)` adds it to a pipeline) for the outbox; its result.

        Every command submitted here goes out in submission order on one connection, batched into
        one pipeline per round trip: the more publishers, the bigger the batches, never the more
        connections. A batch whose connection fails is retried, with backoff, for up to
        `publish_timeout_s` (commands must be safe to repeat); then its commands get BusUnavailable.
        """
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._outbox.append((add, fut))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_outbox(), name="redis-bus-outbox")
        return await fut

    async def _send_outbox(self) -> None:
        while self._outbox:
            batch, self._outbox = self._outbox, []
            try:
                results = await self._execute(batch)
                if len(results) != len(batch):
                    raise RuntimeError(f"a pipeline of {len(batch)} commands answered {len(results)}")
            except Exception as e:  # BusUnavailable, or a bug: no submitter may wait for ever
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)

    async def _execute(self, batch: list[tuple[Callable[[Pipeline], object], asyncio.Future[object]]]) -> list:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout_s
        delay = RETRY_MIN_S
        while True:
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for add, _ in batch:
                        queued = add(pipe)
                        if inspect.isawaitable(queued):  # a Lua script registers itself asynchronously
                            await queued
                    return list(await pipe.execute(raise_on_error=False))
            except (RedisConnectionError, RedisTimeoutError, OSError) as e:
                if loop.time() + delay > deadline:
                    log.error("bus publish of %d events failed for %.1fs (%s); giving up", len(batch),
                              self.publish_timeout_s, type(e).__name__)
                    raise BusUnavailable("The event bus (Redis) is unavailable; try again shortly") from e
                log.warning("bus publish failed (%s); retrying in %.2fs", type(e).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)

    async def subscribe(self, channel: str, handler: Handler) -> None:
        """Add a handler; the first for a channel SUBSCRIBEs and waits for Redis's confirmation."""
        self._handlers.setdefault(channel, []).append(handler)
        fut = self._live.get(channel)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._live[channel] = fut
            self._pending[channel] = self._pending.get(channel, 0) + 1
            ps = self._pubsub
            try:
                if ps is not None:  # else the reconnecting reader subscribes every channel with handlers
                    await ps.subscribe(self.key(channel))
            except (RedisError, OSError):
                log.warning("SUBSCRIBE %s failed; the reader re-subscribes after reconnecting", channel)
        await asyncio.wait_for(asyncio.shield(fut), SUBSCRIBE_TIMEOUT_S)

    async def unsubscribe(self, channel: str, handler: Handler) -> None:
        """Remove a handler; the last one UNSUBSCRIBEs (without waiting)."""
        handlers = self._handlers.get(channel)
        if handlers and handler in handlers:
            handlers.remove(handler)
        if handlers is not None and not handlers:
            del self._handlers[channel]
            fut = self._live.pop(channel, None)
            if fut is not None and not fut.done():
                fut.cancel()
            if self._pubsub is not None and not self._closed:
                try:
                    await self._pubsub.unsubscribe(self.key(channel))
                except (RedisError, OSError):
                    log.debug("UNSUBSCRIBE %s failed", channel, exc_info=True)

    async def ping(self) -> bool:
        """Redis answers and the reader runs."""
        try:
            ok = bool(await self.client.ping())
        except (RedisError, OSError):
            return False
        return ok and self._reader is not None and not self._reader.done()

    def subscriber_count(self) -> int:
        """Handlers registered, over all channels (for leak tests)."""
        return sum(len(h) for h in self._handlers.values())

    # The reader.
    async def _read_loop(self) -> None:
        backoff = BACKOFF_MIN_S
        while not self._closed:
            try:
                msg = await self._pubsub.get_message(ignore_subscribe_messages=False, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, RuntimeError) as e:
                log.warning("Redis bus connection lost (%s); reconnecting", type(e).__name__)
                await self._reconnect(backoff)
                backoff = BACKOFF_MIN_S
                continue
            if msg is not None:
                self._dispatch(msg)

    async def _reconnect(self, backoff: float) -> None:
        old, self._pubsub = self._pubsub, None
        if old is not None:
            try:
                await old.aclose()
            except Exception:
                log.debug("closing the broken pubsub failed", exc_info=True)
        while not self._closed:
            await asyncio.sleep(backoff)
            try:
                await self._open()
            except (RedisError, OSError) as e:
                log.warning("Redis bus reconnect failed (%s); retrying in %.1fs", type(e).__name__, backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)
                continue
            self.reconnects += 1
            log.info("Redis bus reconnected; re-subscribed %d channels", len(self._handlers))
            return

    def _dispatch(self, msg: dict) -> None:
        kind = msg.get("type")
        raw = msg.get("channel")
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        if not name.startswith(self.prefix):
            return
        channel = name[len(self.prefix):]
        if kind in (b"subscribe", "subscribe"):
            left = self._pending.get(channel, 0) - 1
            if left > 0:
                self._pending[channel] = left
                return
            self._pending.pop(channel, None)
            fut = self._live.get(channel)
            if fut is not None and not fut.done():
                fut.set_result(None)
            return
        if kind not in (b"message", "message"):
            return
        handlers = self._handlers.get(channel)
        if not handlers:
            return
        try:
            event = Event.from_wire(msg["data"])
        except msgspec.DecodeError:
            log.warning("undecodable event on %s dropped", channel)
            return
        for handler in list(handlers):
            try:
                handler(event)
            except Exception:
                log.exception("bus handler failed on %s", channel)
