"""Build the Tornado application with its services, start it, and shut it down gracefully."""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import tornado.httpserver
import tornado.web

from chatd import context, extras, protocol, startup
from chatd.addresses import parse_networks
from chatd.aio import finished_within
from chatd.auth import PasswordHasher, TokenService
from chatd.bus import Bus
from chatd.chat import ChatService
from chatd.config import Settings
from chatd.connections import ConnectionRegistry
from chatd.errors import ConfigError
from chatd.inflight import InflightRegistry
from chatd.inflight.sweeper import make_owner_id
from chatd.limiter import Limiter
from chatd.metrics import Metrics
from chatd.plugins import PluginRegistry
from chatd.replies.manager import ReplyManager
from chatd.store import Store
from chatd.titles import Titler
from chatd.web import api, health, static, ws
from chatd.web.base import NotFoundHandler, log_request

log = logging.getLogger(__name__)


HARD_BODY_CAP_FACTOR = 8

#: The longest one shutdown step may take (beyond the replies' grace period).
STEP_TIMEOUT_S = 15.0


def api_body_limit(settings: Settings) -> int:
    """The largest REST request body accepted (bytes)."""
    return max(settings.max_frame_bytes, 1 << 20)


def make_store(settings: Settings) -> Store:
    """The configured store back-end."""
    from chatd.store.urls import open_store

    url = settings.db_path if settings.store == "sqlite" else settings.store_url
    return open_store(settings.store, url, pool_size=settings.store_pool_size)


def make_redis(settings: Settings) -> Any:
    """The process's one `redis.asyncio` client (None unless the bus, the limiter or in-flight replies use Redis)."""
    users = [name for name in ("bus", "limiter", "inflight") if getattr(settings, name) == "redis"]
    if not users:
        return None
    aioredis: Any = extras.require("redis.asyncio", " and ".join(f'{name} = "redis"' for name in users))

    # A blocking pool: a command that finds every connection busy waits for one (up to
    # redis_timeout_s) instead of failing at once, which under load used to drop events.
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=settings.redis_pool_size, timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s, decode_responses=False, health_check_interval=10,
        socket_connect_timeout=2, socket_keepalive=True)
    return aioredis.Redis.from_pool(pool)


def make_bus(settings: Settings, redis_client: Any = None) -> Bus:
    """The configured bus back-end."""
    if settings.bus == "local":
        from chatd.bus.local import LocalBus

        return LocalBus()
    if settings.bus == "redis" and redis_client is not None:
        from chatd.bus.redis import RedisBus

        return RedisBus(redis_client, settings.redis_prefix, publish_timeout_s=settings.redis_timeout_s)
    raise ConfigError(f"bus {settings.bus!r} is not available in this build")


def make_limiter(settings: Settings, redis_client: Any = None) -> Limiter:
    """The configured limiter back-end."""
    if settings.limiter == "local":
        from chatd.limiter.local import LocalLimiter

        return LocalLimiter()
    if settings.limiter == "redis" and redis_client is not None:
        from chatd.limiter.redis import RedisLimiter

        return RedisLimiter(redis_client, settings.redis_prefix)
    raise ConfigError(f"limiter {settings.limiter!r} is not available in this build")


def make_inflight(settings: Settings, bus: Bus, redis_client: Any = None) -> InflightRegistry:
    """The configured in-flight reply registry."""
    if settings.inflight == "local":
        from chatd.inflight.local import LocalInflight

        if settings.bus == "redis":
            log.warning("bus = \"redis\" with inflight = \"local\": a client that joins on another process "
                        "will not see replies running here until they finish; set inflight = \"redis\"")
        return LocalInflight(bus)
    if settings.inflight == "redis" and redis_client is not None:
        from chatd.inflight.redis import RedisInflight

        return RedisInflight(redis_client, bus, settings.redis_prefix, settings.owner_lease_s)
    raise ConfigError(f"inflight {settings.inflight!r} is not available in this build")


@dataclass
class ChatdServer:
    """A running chatd: the application, its HTTP server and its services."""

    settings: Settings
    app: tornado.web.Application
    store: Store
    bus: Bus
    limiter: Limiter
    plugins: PluginRegistry
    chat: ChatService
    replies: ReplyManager
    titler: Titler
    connections: ConnectionRegistry
    http: tornado.httpserver.HTTPServer | None = None
    port: int = 0
    redis: Any = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    async def stop(self) -> None:
        """Graceful shutdown: stop accepting, finish or interrupt replies, close sockets with 1001.

        The sockets close first when in-flight replies are shared (`inflight = "redis"`), last otherwise.
        """
        if self.replies.closing:
            await self.stopped.wait()
            return
        replies: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("replies", self.replies.close),
            ("titles", self.titler.close),
        ]
        sockets: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("last frames", lambda: self.connections.flush_all(1.0)),  # before the close frames
            ("sockets", self._close_sockets),
        ]
        # With in-flight replies shared through Redis, a client can follow a running reply from
        # any process: close the sockets at once (clients reconnect elsewhere and rejoin) while the
        # replies finish here. Without it, the sockets stay open until the replies are done.
        handoff = self.settings.inflight == "redis"
        steps = (sockets + replies if handoff else replies + sockets) + [
            ("http", self._close_http),
            ("bus", self.bus.close),
            ("limiter", self.limiter.close),
            ("redis", self._close_redis),
            ("plugins", self.plugins.aclose),
            ("store", self.store.close),
        ]
        if self.http is not None:
            self.http.stop()
        for name, step in steps:
            log.debug("shutdown: %s", name)
            # Bounded: a step that hangs must not keep the process from exiting (systemd restarts it).
            limit = self.settings.shutdown_grace_s + STEP_TIMEOUT_S if name == "replies" else STEP_TIMEOUT_S
            if not await finished_within(step(), limit):
                log.error("shutdown: %s did not finish within %.0fs; going on", name, limit)
        self.stopped.set()


    async def _close_sockets(self) -> None:
        """Close every socket with 1001, after the frames being handled (they use the store)."""
        self.connections.accepting_frames = False
        for sock in list(self.app.settings["sockets"]):
            try:
                sock.close(protocol.CLOSE_GOING_AWAY, "Server shutting down")
            except Exception:
                log.debug("close failed", exc_info=True)
        if not await self.connections.wait_idle(5.0):
            log.warning("%d frames still being handled at shutdown", self.connections.frames_in_flight)
        await asyncio.sleep(0.05)  # let close frames go out

    async def _close_http(self) -> None:
        if self.http is not None:
            await self.http.close_all_connections()

    async def _close_redis(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


async def build_server(settings: Settings, extra_plugins: list[Any] | None = None,
                       load_entry_points: bool = True) -> ChatdServer:
    """Open every service and build the application (not yet listening)."""
    plugins = PluginRegistry(extra_plugins=extra_plugins, load_entry_points=load_entry_points)
    plugins.configure(settings.providers, settings.assistants, plugin_settings=settings.plugins,
                      max_message_chars=settings.max_message_chars)
    await plugins.discover()  # a server that cannot be asked logs one line and keeps the configured models
    context.prepare_tokenizers((a.id, a.model) for a in plugins.assistants.values())
    async with contextlib.AsyncExitStack() as opened:  # closes what was opened if a later step fails
        opened.push_async_callback(plugins.aclose)
        store = make_store(settings)
        await startup.open_store(store, settings)
        opened.push_async_callback(store.close)
        redis_client = make_redis(settings)
        if redis_client is not None:
            opened.push_async_callback(redis_client.aclose)
            await startup.check_redis(redis_client, settings)
        bus = make_bus(settings, redis_client)
        await bus.start()
        opened.push_async_callback(bus.close)
        limiter = make_limiter(settings, redis_client)
        await limiter.start()
        opened.push_async_callback(limiter.close)
        opened.pop_all()
    metrics = Metrics()
    inflight = make_inflight(settings, bus, redis_client)
    replies = ReplyManager(settings, store, bus, limiter, plugins, inflight, metrics, make_owner_id())
    chat = ChatService(settings, store, bus, limiter, plugins, replies, inflight, metrics)
    titler = Titler(plugins, store, chat.rename)
    replies.on_finished(titler.schedule)
    connections = ConnectionRegistry(bus, metrics, source=chat)
    tokens = TokenService(settings)
    if tokens.jwks_url:
        try:
            await tokens.refresh_jwks()
        except Exception as e:  # the IdP may come up later: keys are fetched again on first use
            log.warning("could not fetch JWKS at start-up (%s); will retry on first token", type(e).__name__)
    app_settings: dict[str, Any] = {
        "chatd_settings": settings,
        "store": store,
        "bus": bus,
        "limiter": limiter,
        "plugins": plugins,
        "chat": chat,
        "replies": replies,
        "connections": connections,
        "tokens": tokens,
        "passwords": PasswordHasher(),
        "metrics": metrics,
        "sockets": set(),
        "trusted_proxies": parse_networks(settings.trusted_proxies),
        "log_function": log_request,
        "websocket_max_message_size": settings.max_frame_bytes,
        "websocket_ping_interval": settings.heartbeat_interval_s or None,
        "websocket_ping_timeout": settings.heartbeat_timeout_s or None,
        "default_handler_class": NotFoundHandler,
        "xsrf_cookies": False,
    }
    handlers = ws.routes() + api.routes() + health.routes() + [(r"/api/.*", NotFoundHandler)]
    handlers += static.routes(app_settings)
    app = tornado.web.Application(handlers, **app_settings)
    await replies.start()
    return ChatdServer(settings=settings, app=app, store=store, bus=bus, limiter=limiter, plugins=plugins,
                       chat=chat, replies=replies, titler=titler, connections=connections, redis=redis_client)


async def start_server(settings: Settings, **kw: Any) -> ChatdServer:
    """Build and listen on settings.host:settings.port (port 0 picks a free one)."""
    # Bind first: a port in use or a bad host fails before anything is opened (nothing left to close).
    sockets = startup.bind(settings)
    try:
        server = await build_server(settings, **kw)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    # The hard cap of the HTTP layer sits above the API's own limit (ApiHandler.prepare), so a
    # too-large JSON body gets a JSON 413 rather than Tornado's bare 400.
    http = tornado.httpserver.HTTPServer(server.app, xheaders=False,
                                         max_body_size=HARD_BODY_CAP_FACTOR * api_body_limit(settings))
    http.add_sockets(sockets)
    server.http = http
    server.port = sockets[0].getsockname()[1]
    return server


async def serve_forever(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully."""
    server = await start_server(settings)
    # Everything built at start-up (modules, plugins, settings, the app) lives as long as the
    # process: moved out of the collector's generations, it is no longer traversed by every full
    # collection, which under fan-out load took a large share of the CPU.
    gc.collect()
    gc.freeze()
    log.info("chatd listening on http://%s:%d (data in %s)", settings.host, server.port, settings.data_dir)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    log.info("shutting down")
    await server.stop()



