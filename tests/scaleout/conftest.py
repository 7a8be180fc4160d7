"""Fixtures for the Redis tests: a client on the local Redis and a unique key prefix, cleaned up."""
from __future__ import annotations

import os
import uuid

import pytest
import pytest_asyncio

REDIS_URL = os.environ.get("CHATD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_prefix() -> str:
    return f"chatdtest:{uuid.uuid4().hex[:10]}:"


async def delete_prefix(client, prefix: str) -> None:
    keys = [k async for k in client.scan_iter(match=prefix + "*", count=500)]
    if keys:
        await client.delete(*keys)


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
