"""Build the Tornado application with its services, start it, and shut it down gracefully."""
from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from chatd import protocol
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
from chatd.web.base import NotFoundHandler

log = logging.getLogger(__name__)


HARD_BODY_CAP_FACTOR = 8


def api_body_limit(settings: Settings) -> int:
    """The largest REST request body accepted (bytes)."""
    return max(settings.max_frame_bytes, 1 << 20)


def make_store(settings: Settings) -> Store:
    """The configured store back-end."""
    if settings.store == "sqlite":
        from chatd.store.sqlite import SQLiteStore

        return SQLiteStore(settings.db_path)
    raise ConfigError(f"store {settings.store!r} is not available in this build")


def make_redis(settings: Settings) -> Any:
    """The process's one `redis.asyncio` client (None unless the bus, the limiter or in-flight replies use Redis)."""
    if "redis" not in (settings.bus, settings.limiter, settings.inflight):
        return None
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(settings.redis_url, decode_responses=False, health_check_interval=10,
                                   socket_connect_timeout=2, socket_keepalive=True)


def make_bus(settings: Settings, redis_client: Any = None) -> Bus:
    """The configured bus back-end."""
    if settings.bus == "local":
        from chatd.bus.local import LocalBus

        return LocalBus()
    if settings.bus == "redis" and redis_client is not None:
        from chatd.bus.redis import RedisBus

        return RedisBus(redis_client, settings.redis_prefix)
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


def make_inflight(settings: Settings, redis_client: Any = None) -> InflightRegistry:
    """The configured in-flight reply registry."""
    if settings.inflight == "local":
        from chatd.inflight.local import LocalInflight

        if settings.bus == "redis":
            log.warning("bus = \"redis\" with inflight = \"local\": a client that joins on another process "
                        "will not see replies running here until they finish; set inflight = \"redis\"")
        return LocalInflight()
    if settings.inflight == "redis" and redis_client is not None:
        from chatd.inflight.redis import RedisInflight

        return RedisInflight(redis_client, settings.redis_prefix, settings.owner_lease_s)
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
        """Graceful shutdown: stop accepting, finish or interrupt replies, close sockets with 1001."""
        if self.replies.closing:
            await self.stopped.wait()
            return
        if self.http is not None:
            self.http.stop()
        await self.replies.close()
        await self.titler.close()
        await self.connections.flush_all(1.0)  # the replies' last frames go out before the close frames
        self.connections.accepting_frames = False
        for sock in list(self.app.settings["sockets"]):
            try:
                sock.close(protocol.CLOSE_GOING_AWAY, "Server shutting down")
            except Exception:
                log.debug("close failed", exc_info=True)
        # Frames already being handled finish before the store they use is closed.
        if not await self.connections.wait_idle(5.0):
            log.warning("%d frames still being handled at shutdown", self.connections.frames_in_flight)
        await asyncio.sleep(0.05)  # let close frames go out
        if self.http is not None:
            await self.http.close_all_connections()
        await self.bus.close()
        await self.limiter.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.plugins.aclose()
        await self.store.close()
        self.stopped.set()


async def build_server(settings: Settings, extra_plugins: list[Any] | None = None,
                       load_entry_points: bool = True) -> ChatdServer:
    """Open every service and build the application (not yet listening)."""
    plugins = PluginRegistry(extra_plugins=extra_plugins, load_entry_points=load_entry_points)
    plugins.configure(settings.providers, settings.assistants, plugin_settings=settings.plugins,
                      max_message_chars=settings.max_message_chars)
    store = make_store(settings)
    await store.open()
    redis_client = make_redis(settings)
    bus = make_bus(settings, redis_client)
    await bus.start()
    limiter = make_limiter(settings, redis_client)
    await limiter.start()
    metrics = Metrics()
    inflight = make_inflight(settings, redis_client)
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
    server = await build_server(settings, **kw)
    # The hard cap of the HTTP layer sits above the API's own limit (ApiHandler.prepare), so a
    # too-large JSON body gets a JSON 413 rather than Tornado's bare 400.
    http = tornado.httpserver.HTTPServer(server.app, xheaders=False,
                                         max_body_size=HARD_BODY_CAP_FACTOR * api_body_limit(settings))
    sockets = tornado.netutil.bind_sockets(settings.port, address=settings.host)
    http.add_sockets(sockets)
    server.http = http
    server.port = sockets[0].getsockname()[1]
    return server


async def serve_forever(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully."""
    server = await start_server(settings)
    log.info("chatd listening on http://%s:%d (data in %s)", settings.host, server.port, settings.data_dir)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    log.info("shutting down")
    await server.stop()



