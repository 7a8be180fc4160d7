"""In-flight replies in Redis: claims, live text and index, and owner leases shared by processes.

Keys (all under the prefix):

- `reply:{conv}:{reply_to}` — the claim (SET NX PX): at most one reply per message, cluster-wide.
- `inflight:{message_id}` — a hash: index, owner, conversation, reply_to (JSON); leased (PEXPIRE).
- `inflight:{message_id}:text` — the text so far, grown by APPEND one chunk at a time; leased.
- `active:{conv}` — a set of the conversation's in-flight message ids (JSON).
- `owner:{owner}` — this process's liveness lease; gone ⇒ its replies are orphans.

A chunk is one EVALSHA: append its text, set its index, refresh the leases and PUBLISH it on the
conversation's bus channel, atomically, in one round trip. Joiners read a snapshot with one
script too, so a snapshot's text and index always match and every chunk after it is published
after it.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chatd.aio import cancel_and_wait
from chatd.bus import Bus, conversation_channel
from chatd.bus.events import Event
from chatd.bus.redis import RedisBus
from chatd.inflight import InflightRegistry, InflightReply

log = logging.getLogger(__name__)

# KEYS[1] the active set; ARGV[1] the hash key prefix. One atomic snapshot of every live reply:
# {id, text, index, owner, conversation, reply_to, ...}; members whose hash expired are dropped.
ACTIVE_LUA = """
local out = {}
for _, mid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local h = redis.call('HMGET', ARGV[1] .. mid, 'index', 'owner', 'conversation', 'reply_to')
  if h[1] then
    table.insert(out, mid)
    table.insert(out, redis.call('GET', ARGV[1] .. mid .. ':text') or '')
    for i = 1, 4 do table.insert(out, h[i]) end
  else
    redis.call('SREM', KEYS[1], mid)
  end
end
return out
"""

# KEYS: hash, text, active set, bus channel. ARGV: delta, index, lease ms, member (JSON id),
# event (wire bytes), the text's length in bytes before this chunk, owner, conversation, reply_to.
# Returns 0 (and changes nothing) when the stored text is not the one this chunk continues — a
# Redis that restarted empty, or a lease that lapsed: the owner then sends the whole text (RESYNC).
CHUNK_LUA = """
if redis.call('STRLEN', KEYS[2]) ~= tonumber(ARGV[6]) then return 0 end
redis.call('APPEND', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'index', ARGV[2], 'owner', ARGV[7], 'conversation', ARGV[8], 'reply_to', ARGV[9])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('PUBLISH', KEYS[4], ARGV[5])
return 1
"""

# As CHUNK_LUA, with ARGV[1] the whole text so far (SET rather than APPEND) and no length check.
RESYNC_LUA = """
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
redis.call('HSET', KEYS[1], 'index', ARGV[2], 'owner', ARGV[7], 'conversation', ARGV[8], 'reply_to', ARGV[9])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('PUBLISH', KEYS[4], ARGV[5])
return 1
"""

# KEYS[1] the claim; ARGV[1] the expected value: delete only our own claim.
DEL_IF_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _j(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisInflight(InflightRegistry):
    """Replies visible to joiners on every process; leases expire when the owner dies."""

    shared = True

    def __init__(self, client: aioredis.Redis, bus: Bus, prefix: str = "chatd:", lease_s: float = 5.0) -> None:
        super().__init__(bus)
        self.client = client
        self.prefix = prefix
        self.lease_ms = max(300, int(lease_s * 1000))
        self.owner = ""
        self._mine: dict[Any, InflightReply] = {}  # replies this process owns (their leases to refresh)
        self._claims: dict[tuple[Any, Any], str] = {}  # claims not yet turned into replies
        self._active_script = client.register_script(ACTIVE_LUA)
        self._del_if = client.register_script(DEL_IF_LUA)
        self._chunk = client.register_script(CHUNK_LUA)
        self._resync = client.register_script(RESYNC_LUA)
        # Chunks go out in the same script as their state when the bus is Redis pub/sub on this client.
        self._same_redis = isinstance(bus, RedisBus) and bus.client is client
        self._task: asyncio.Task | None = None

    # Keys.
    def _claim_key(self, conversation_id: Any, reply_to: Any) -> str:
        return f"{self.prefix}reply:{_j(conversation_id)}:{_j(reply_to)}"

    def _hash_key(self, message_id: Any) -> str:
        return f"{self.prefix}inflight:{_j(message_id)}"

    def _text_key(self, message_id: Any) -> str:
        return f"{self.prefix}inflight:{_j(message_id)}:text"

    def _active_key(self, conversation_id: Any) -> str:
        return f"{self.prefix}active:{_j(conversation_id)}"

    def owner_key(self, owner: str) -> str:
        """The liveness lease of a process."""
        return f"{self.prefix}owner:{owner}"

    # Life cycle and leases.
    async def start(self, owner: str) -> None:
        """Take this process's owner lease and keep it and our replies' leases fresh."""
        self.owner = owner
        await self.client.set(self.owner_key(owner), "1", px=self.lease_ms)
        self._task = asyncio.create_task(self._lease_loop(), name="redis-inflight-leases")

    async def close(self) -> None:
        """Stop refreshing and drop the owner lease (a clean exit is not a crash)."""
        await cancel_and_wait(self._task)
        self._task = None
        if self.owner:
            try:
                await self.client.delete(self.owner_key(self.owner))
            except (RedisError, OSError):
                log.debug("could not drop the owner lease", exc_info=True)

    async def refresh_leases(self) -> None:
        """Extend the owner lease, every claim and every reply this process holds."""
        async with self.client.pipeline(transaction=False) as pipe:
            if self.owner:
                pipe.set(self.owner_key(self.owner), "1", px=self.lease_ms)
            # Claims are SET again, not only extended: a Redis that restarted empty learns them back
            # at once, so a second reply to a message being answered is still refused.
            for (cid, reply_to), token in self._claims.items():
                pipe.set(self._claim_key(cid, reply_to), token, px=self.lease_ms)
            for reply in self._mine.values():
                pipe.set(self._claim_key(reply.conversation_id, reply.reply_to), _j(reply.message_id),
                         px=self.lease_ms)
                pipe.pexpire(self._hash_key(reply.message_id), self.lease_ms)
                pipe.pexpire(self._text_key(reply.message_id), self.lease_ms)
            await pipe.execute()

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000.0)
            try:
                await self.refresh_leases()
            except (RedisError, OSError) as e:
                log.warning("refreshing leases failed (%s)", type(e).__name__)

    async def owner_alive(self, owner: str | None) -> bool | None:
        """Whether the owner's lease is still in Redis."""
        if not owner:
            return False
        return bool(await self.client.exists(self.owner_key(owner)))

    async def claim_sweep(self, message_id: Any) -> bool:
        """Only one process finishes an orphan (the others' sweeps skip it)."""
        return bool(await self.client.set(f"{self.prefix}sweep:{_j(message_id)}", self.owner or "1",
                                          nx=True, px=60_000))

    # The registry.
    async def claim(self, conversation_id: Any, reply_to: Any) -> bool:
        """SET NX: CONFLICT for a second reply to the same message, on any process."""
        token = f"claim:{self.owner}"
        ok = await self.client.set(self._claim_key(conversation_id, reply_to), token, nx=True, px=self.lease_ms)
        if ok:
            self._claims[(conversation_id, reply_to)] = token
        return bool(ok)

    async def unclaim(self, conversation_id: Any, reply_to: Any) -> None:
        """Drop our claim (only ours)."""
        token = self._claims.pop((conversation_id, reply_to), None)
        if token is not None:
            await self._del_if(keys=[self._claim_key(conversation_id, reply_to)], args=[token])

    async def add(self, reply: InflightReply) -> None:
        """The claimed reply exists: publish its state and index it by conversation."""
        self._claims.pop((reply.conversation_id, reply.reply_to), None)
        self._mine[reply.message_id] = reply
        hkey = self._hash_key(reply.message_id)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self._claim_key(reply.conversation_id, reply.reply_to), _j(reply.message_id), px=self.lease_ms)
            pipe.set(self._text_key(reply.message_id), reply.text, px=self.lease_ms)
            pipe.hset(hkey, mapping={"index": reply.index, "owner": reply.owner,
                                     "conversation": _j(reply.conversation_id), "reply_to": _j(reply.reply_to)})
            pipe.pexpire(hkey, self.lease_ms)
            pipe.sadd(self._active_key(reply.conversation_id), _j(reply.message_id))
            await pipe.execute()
        reply.text_bytes = len(reply.text.encode())

    async def publish_chunk(self, reply: InflightReply, delta: str, event: Event) -> None:
        """Append the chunk, set its index and PUBLISH it in one atomic round trip (retried; never dropped)."""
        size = len(delta.encode())
        before, reply.text_bytes = reply.text_bytes, reply.text_bytes + size
        if not self._same_redis:
            await self._store_state(reply)
            await self.bus.publish(conversation_channel(reply.conversation_id), event)
            return
        assert isinstance(self.bus, RedisBus)
        keys = [self._hash_key(reply.message_id), self._text_key(reply.message_id),
                self._active_key(reply.conversation_id), self.bus.key(conversation_channel(reply.conversation_id))]
        tail: list[bytes | str | int] = [reply.owner, _j(reply.conversation_id), _j(reply.reply_to)]
        wire = event.to_wire()
        args: list[bytes | str | int] = [delta, reply.index, self.lease_ms, _j(reply.message_id), wire, before, *tail]
        # A chunk may run twice (its batch is retried after a lost connection): the second run finds
        # the text longer than `before` and changes nothing, like a lost text; both then resync.
        done = await self.bus.submit(lambda pipe: self._chunk(keys=keys, args=args, client=pipe))
        if not done:  # Redis lost the text so far (restarted empty, or the lease lapsed): send it whole
            log.warning("in-flight text of %s was lost in Redis; sending it whole", reply.message_id)
            whole: list[bytes | str | int] = [reply.text, reply.index, self.lease_ms, _j(reply.message_id), wire,
                                              before, *tail]
            await self.bus.submit(lambda pipe: self._resync(keys=keys, args=whole, client=pipe))

    async def _store_state(self, reply: InflightReply) -> None:
        """The whole state (for a bus that is not this Redis): text and index in one MULTI."""
        hkey, tkey = self._hash_key(reply.message_id), self._text_key(reply.message_id)
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.set(tkey, reply.text, px=self.lease_ms)
                pipe.hset(hkey, mapping={"index": reply.index, "owner": reply.owner,
                                         "conversation": _j(reply.conversation_id),
                                         "reply_to": _j(reply.reply_to)})
                pipe.pexpire(hkey, self.lease_ms)
                pipe.sadd(self._active_key(reply.conversation_id), _j(reply.message_id))
                await pipe.execute()
        except (RedisConnectionError, RedisTimeoutError, OSError) as e:  # joiners see a stale snapshot meanwhile
            log.warning("in-flight update of %s failed (%s)", reply.message_id, type(e).__name__)

    async def release(self, reply: InflightReply) -> None:
        """Forget the reply everywhere."""
        self._mine.pop(reply.message_id, None)
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.srem(self._active_key(reply.conversation_id), _j(reply.message_id))
                pipe.delete(self._hash_key(reply.message_id), self._text_key(reply.message_id))
                pipe.delete(self._claim_key(reply.conversation_id, reply.reply_to))
                await pipe.execute()
        except (RedisConnectionError, RedisTimeoutError, OSError) as e:  # the leases expire on their own
            log.warning("in-flight release of %s failed (%s)", reply.message_id, type(e).__name__)

    async def active(self, conversation_id: Any) -> list[InflightReply]:
        """One atomic snapshot of the conversation's live replies (text and index consistent)."""
        flat = await self._active_script(keys=[self._active_key(conversation_id)], args=[f"{self.prefix}inflight:"])
        out = []
        for i in range(0, len(flat), 6):
            mid, text, index, owner, conv, reply_to = flat[i:i + 6]
            out.append(InflightReply(message_id=json.loads(_s(mid)), conversation_id=json.loads(_s(conv)),
                                     reply_to=json.loads(_s(reply_to)), owner=_s(owner or b""),
                                     text=_s(text or b""), index=int(index)))
        return out

    async def get(self, message_id: Any) -> InflightReply | None:
        """One reply by its message id."""
        raw = await self.client.hgetall(self._hash_key(message_id))
        if not raw:
            return None
        h = {_s(k): _s(v) for k, v in raw.items()}
        text = await self.client.get(self._text_key(message_id))
        return InflightReply(message_id=message_id, conversation_id=json.loads(h["conversation"]),
                             reply_to=json.loads(h["reply_to"]), owner=h.get("owner", ""),
                             text=_s(text or b""), index=int(h.get("index", -1)))
