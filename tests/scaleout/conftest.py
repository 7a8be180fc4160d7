"""Fixtures for the Redis tests: a client on the local Redis and a unique key prefix, cleaned up."""
from __future__ import annotations

import uuid

import pytest
import pytest_asyncio

from chatd.testing import REDIS_URL, delete_prefix


@pytest.fixture
def redis_prefix() -> str:
    return f"chatdtest:{uuid.uuid4().hex[:10]}:"


@pytest_asyncio.fixture
async def redis_client(redis_prefix):
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as e:  # pragma: no cover - CI starts one (scripts/ensure_redis.sh)
        await client.aclose()
        pytest.skip(f"no Redis at {REDIS_URL}: {e}")
    try:
        yield client
    finally:
        await delete_prefix(client, redis_prefix)
        await client.aclose()
