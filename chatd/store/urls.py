"""A store from its URL: `sqlite:///path`, `postgresql://…`, `mongodb://…` (for settings and `chatd store copy`)."""
from __future__ import annotations

from chatd.errors import ConfigError
from chatd.store import Store

#: The `pip install` that brings each server store's driver.
EXTRAS = {"postgres": "chatd[postgres]", "mongodb": "chatd[mongodb]"}


def store_kind(url: str) -> str:
    """"sqlite", "postgres" or "mongodb" by the URL's scheme; ConfigError for anything else."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgres", "postgresql"):
        return "postgres"
    if scheme in ("mongodb", "mongodb+srv"):
        return "mongodb"
    raise ConfigError(f"store URL {url.split('://')[0]}://… is not sqlite:///PATH, postgresql://… or mongodb://…")


def open_store(kind: str, url: str, *, pool_size: int = 10) -> Store:
    """The store for a back-end and URL (not yet opened); ConfigError naming the extra when its driver is missing."""
    try:
        if kind == "sqlite":
            from chatd.store.sqlite import SQLiteStore

            # sqlite:///chatd.sqlite3 is relative, sqlite:////var/lib/chatd/chatd.sqlite3 absolute (as SQLAlchemy).
            return SQLiteStore(url.removeprefix("sqlite:///"))
        if kind == "postgres":
            from chatd.store.postgres import PostgresStore

            return PostgresStore(url, pool_size=pool_size)
        if kind == "mongodb":
            from chatd.store.mongodb import MongoStore  # type: ignore[import-not-found,unused-ignore]

            return MongoStore(url, pool_size=pool_size)  # type: ignore[no-any-return,unused-ignore]
    except ImportError as e:
        raise ConfigError(f"store = {kind!r} needs its driver: pip install '{EXTRAS[kind]}' ({e})") from None
    raise ConfigError(f"store {kind!r} is not one of sqlite, postgres, mongodb")


def store_from_url(url: str, *, pool_size: int = 10) -> Store:
    """The store a URL names."""
    return open_store(store_kind(url), url, pool_size=pool_size)
