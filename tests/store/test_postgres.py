"""What only the PostgreSQL store does: its pool survives lost connections, its settings reach it."""
from __future__ import annotations

import asyncpg
import pytest
import pytest_asyncio

from chatd.errors import StoreUnavailable
from chatd.store.postgres import PostgresStore
from chatd.testing.util import POSTGRES_ADMIN_URL

from .backends import postgres_database

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def pg(tmp_path):
    async with postgres_database(tmp_path) as url:
        store = PostgresStore(url, pool_size=3)
        await store.open()
        try:
            yield store, url
        finally:
            await store.close()


async def _kill_connections(url: str) -> int:
    """Terminate every server connection to the database (as a server restart does to its clients)."""
    database = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        return len(await admin.fetch("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE datname = $1 AND pid <> pg_backend_pid()", database))
    finally:
        await admin.close()


async def test_the_pool_reconnects_after_its_connections_are_killed(pg):
    store, url = pg
    alice = await store.create_user("alice", "h")
    conv = await store.create_conversation(alice.id, "t", "demo", [])
    assert await _kill_connections(url) >= 1
    # Reads are retried on a fresh connection: the caller sees no failure.
    assert (await store.get_user_by_name("alice")).id == alice.id
    for attempt in range(3):
        assert await _kill_connections(url) >= 1
        # A write whose connection was lost before COMMIT wrote nothing, so it is retried on a
        # fresh connection: the caller sees no failure, and the client's resend changes nothing.
        first = (await store.add_message(conv.id, alice.id, f"hello {attempt}", "user", f"k{attempt}")).message
        again = await store.add_message(conv.id, alice.id, f"hello {attempt}", "user", f"k{attempt}")
        assert again.message == first
    assert [m.seq for m in await store.list_messages(conv.id, 10, None, None)] == [1, 2, 3]
    assert await store.ping()


async def test_an_unreachable_server_is_a_clear_error():
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/none", pool_size=1)
    with pytest.raises(StoreUnavailable, match="not reachable"):
        await store.open()


async def test_pool_size_is_the_setting(pg):
    store, _ = pg
    assert store.pool.get_max_size() == 3
