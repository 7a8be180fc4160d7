"""Start-up checks that turn an expected failure into one line naming the cause and the setting.

`chatd serve` exits 78 (sysexits' EX_CONFIG) on a ConfigError — a value to change — and 1 on a
StartupError — something outside the configuration (a port another process holds, a directory
chatd may not write, a service that does not answer). Neither prints a traceback.
"""
from __future__ import annotations

import asyncio
import errno
import os
import socket
import tempfile
from typing import Any

import tornado.netutil

from chatd.config import Settings
from chatd.errors import ConfigError

EX_CONFIG = 78  # sysexits.h: configuration error
EX_FAILURE = 1


class StartupError(Exception):
    """Start-up cannot go on; the message is one line naming the cause and the setting."""


def _why(e: OSError) -> str:
    return e.strerror or str(e)


def read_file_setting(settings: Settings, name: str) -> str:
    """The contents of the file a `*_file` setting names (stripped); StartupError when unreadable."""
    path = getattr(settings, name)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except FileNotFoundError:
        raise ConfigError(f"{name}: file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        why = _why(e) if isinstance(e, OSError) else "not UTF-8 text"
        raise StartupError(f"cannot read {name} {path}: {why}") from None


def resolve_files(settings: Settings) -> Settings:
    """Read `jwt_secret_file` and `jwt_public_key_file` into their settings, then validate again."""
    if settings.jwt_secret_file:
        settings.jwt_secret = read_file_setting(settings, "jwt_secret_file")
        if not settings.jwt_secret:
            raise ConfigError(f"jwt_secret_file {settings.jwt_secret_file} is empty")
        settings.jwt_secret_file = ""
    if settings.jwt_public_key_file:
        settings.jwt_public_key = read_file_setting(settings, "jwt_public_key_file")
        settings.jwt_public_key_file = ""
    return settings.validate()


def check_data_dir(settings: Settings) -> None:
    """The data directory exists (created if not) and chatd may write there; StartupError otherwise."""
    path = settings.data_dir
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise StartupError(f"data directory {path} is not writable (data_dir / --data-dir): {_why(e)}") from None
    if settings.store == "sqlite" and settings.sqlite_path:
        parent = os.path.dirname(os.path.abspath(settings.sqlite_path))
        try:
            os.makedirs(parent, exist_ok=True)
            with tempfile.TemporaryFile(dir=parent):
                pass
        except OSError as e:
            raise StartupError(f"cannot write the SQLite store's directory {parent} (sqlite_path): {_why(e)}") from None


def check_secret(settings: Settings) -> None:
    """The JWT secret kept in the data dir can be read (or created) when no secret is configured."""
    if not settings.jwt_algorithm.startswith("HS") or settings.jwt_secret:
        return
    from chatd.auth import SECRET_FILE, load_or_create_secret

    path = os.path.join(settings.data_dir, SECRET_FILE)
    try:
        secret = load_or_create_secret(settings.data_dir)
    except (OSError, UnicodeDecodeError) as e:
        why = _why(e) if isinstance(e, OSError) else "not ASCII text"
        raise StartupError(f"cannot read the JWT secret {path} (kept in data_dir; or set jwt_secret_file): "
                           f"{why}") from None
    if len(secret.encode()) < 32:
        raise ConfigError(f"the JWT secret in {path} is shorter than 32 bytes: delete it to have a new one made")


def check_static_dir(settings: Settings) -> None:
    """A configured `static_dir` holds a built page."""
    if settings.static_dir and not os.path.isfile(os.path.join(settings.static_dir, "index.html")):
        raise ConfigError(f"static_dir {settings.static_dir} has no index.html: point it at a built page "
                          "(static/dist after `make frontend`)")


def preflight(settings: Settings) -> Settings:
    """Every check that needs no event loop, before `serve` binds (and for `check-config`)."""
    resolve_files(settings)
    check_data_dir(settings)
    check_secret(settings)
    check_static_dir(settings)
    return settings


def bind(settings: Settings) -> list[socket.socket]:
    """The listening sockets for host:port; a clear error when the host is wrong or the port taken."""
    where = f"{settings.host}:{settings.port}"
    try:
        return tornado.netutil.bind_sockets(settings.port, address=settings.host)
    except socket.gaierror as e:
        raise ConfigError(f"cannot resolve host {settings.host!r} (host / --host): {e.strerror}") from None
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise StartupError(f"port {settings.port} on {settings.host} is already in use (port / --port): "
                               "another process listens there") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"host {settings.host!r} is not an address of this machine (host / --host)") from None
        if e.errno == errno.EACCES:
            raise StartupError(f"may not listen on {where} (port / --port): {_why(e)}; ports below 1024 need "
                               "root or CAP_NET_BIND_SERVICE") from None
        raise StartupError(f"cannot listen on {where} (host, port): {_why(e)}") from None


async def check_redis(client: Any, settings: Settings) -> None:
    """Redis answers a PING within redis_timeout_s; StartupError naming redis_url otherwise."""
    try:
        async with asyncio.timeout(settings.redis_timeout_s):
            await client.ping()
    except TimeoutError:
        raise StartupError(f"Redis at {redact_url(settings.redis_url)} did not answer within "
                           f"{settings.redis_timeout_s:g}s (redis_url)") from None
    except Exception as e:  # redis' ConnectionError, AuthenticationError, ResponseError...
        raise StartupError(f"cannot reach Redis at {redact_url(settings.redis_url)} (redis_url): "
                           f"{describe(e)}") from None


async def open_store(store: Any, settings: Settings) -> None:
    """Open the store; StartupError naming the store setting when it cannot be opened."""
    try:
        await store.open()
    except (ConfigError, StartupError):
        raise
    except Exception as e:
        setting = "sqlite_path / data_dir" if settings.store == "sqlite" else "store_url"
        raise StartupError(f"cannot open the {settings.store} store ({setting}): {describe(e)}") from None


def describe(e: BaseException) -> str:
    """An exception as a short phrase: its message (first line), or its type."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return text or type(e).__name__


def redact_url(url: str) -> str:
    """A URL without its password."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
