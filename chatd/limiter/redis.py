"""The Redis limiter: sliding windows and concurrency slots as atomic Lua scripts, shared by processes."""
from __future__ import annotations

import asyncio
import logging
import uuid

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from chatd.aio import cancel_and_wait
from chatd.limiter import Limiter

log = logging.getLogger(__name__)

# KEYS[1] a sorted set of hit stamps (ms); ARGV: limit, window (ms), a unique member.
# Returns -1 when allowed (recorded), else ms until a hit would be allowed (nothing recorded).
HIT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local wait = tonumber(oldest[2]) + window - now
  if wait < 1 then wait = 1 end
  return wait
end
redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], window + 1000)
return -1
"""

# KEYS[1] a sorted set of slot holders scored by lease expiry (ms); ARGV: cap, ttl (ms), member.
ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + 1000)
return 1
"""

# KEYS[1] as above; ARGV: ttl (ms), members... : extend the leases of the members still held.
REFRESH_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = 0
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i])
    n = n + 1
  end
end
if n > 0 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) + 1000) end
return n
"""


class RedisLimiter(Limiter):
    """Exact sliding windows and leased slots in Redis.

    A slot is a member of a per-key sorted set scored by its lease expiry; this process extends
    the leases of the slots it holds every `slot_ttl_s / 3`, so a crashed process's slots free
    themselves within `slot_ttl_s`.
    """

    def __init__(self, client: aioredis.Redis, prefix: str = "chatd:", slot_ttl_s: float = 30.0) -> None:
        self.client = client
        self.prefix = prefix + "lim:"
        self.slot_ttl_ms = int(slot_ttl_s * 1000)
        self._hit = client.register_script(HIT_LUA)
        self._acquire = client.register_script(ACQUIRE_LUA)
        self._refresh = client.register_script(REFRESH_LUA)
        self._held: dict[str, list[str]] = {}
        self._nonce = uuid.uuid4().hex
        self._n = 0
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Start refreshing the leases of held slots."""
        self._task = asyncio.create_task(self._refresh_loop(), name="redis-limiter-refresh")

    async def close(self) -> None:
        """Stop refreshing (held slots expire on their own)."""
        await cancel_and_wait(self._task)
        self._task = None

    def _member(self) -> str:
        self._n += 1
        return f"{self._nonce}:{self._n}"

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        """Allow at most `limit` hits in any `window_s` seconds, over every process."""
        wait = int(await self._hit(keys=[self.prefix + "hit:" + key],
                                   args=[limit, max(1, int(window_s * 1000)), self._member()]))
        if wait < 0:
            return None
        return round(wait / 1000.0, 3) or 0.001

    async def acquire(self, key: str, cap: int) -> bool:
        """Take a slot if fewer than `cap` are held by all processes."""
        member = self._member()
        ok = int(await self._acquire(keys=[self.prefix + "slot:" + key], args=[cap, self.slot_ttl_ms, member]))
        if ok:
            self._held.setdefault(key, []).append(member)
        return bool(ok)

    async def release(self, key: str) -> None:
        """Give back one of the slots this process holds for the key."""
        members = self._held.get(key)
        if not members:
            return
        member = members.pop()
        if not members:
            del self._held[key]
        try:
            await self.client.zrem(self.prefix + "slot:" + key, member)
        except (RedisError, OSError) as e:  # its lease is no longer refreshed: it expires on its own
            log.warning("releasing a limiter slot failed (%s)", type(e).__name__)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.slot_ttl_ms / 3000.0)
            for key, members in list(self._held.items()):
                if not members:
                    continue
                try:
                    await self._refresh(keys=[self.prefix + "slot:" + key], args=[self.slot_ttl_ms, *members])
                except (RedisError, OSError) as e:
                    log.warning("refreshing limiter slots failed (%s)", type(e).__name__)
                    break
