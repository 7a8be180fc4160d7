"""Three chatd processes (Redis bus, limiter and in-flight state; one PostgreSQL store) behind nginx."""
from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from chatd.testing import REDIS_URL, ServerProcess
from chatd.testing.util import POSTGRES_ADMIN_URL, postgres_url

from .nginx import Nginx

RATE_MESSAGES = 12  # per user per minute, counted over the three processes
MAX_CONCURRENT_REPLIES = 2  # per user, over the three processes


@dataclass
class Cluster:
    """The processes, nginx in front of them, and what they share."""

    servers: list[ServerProcess]
    nginx: Nginx
    store_url: str
    prefix: str

    def server_on(self, port: int) -> ServerProcess:
        """The process listening on a port."""
        return next(s for s in self.servers if s.port == port)


def _psql(sql: str) -> None:
    subprocess.run(["psql", POSTGRES_ADMIN_URL, "-q", "-c", sql], check=True, capture_output=True)


def cluster_env(store_url: str, prefix: str, **extra: str) -> dict[str, str]:
    """The settings every process of the cluster shares."""
    env = {"CHATD_STORE": "postgres", "CHATD_STORE_URL": store_url,
           "CHATD_BUS": "redis", "CHATD_LIMITER": "redis", "CHATD_INFLIGHT": "redis",
           "CHATD_REDIS_URL": REDIS_URL, "CHATD_REDIS_PREFIX": prefix, "CHATD_LOG_LEVEL": "WARNING",
           "CHATD_JWT_SECRET": "cluster-test-secret-" + prefix, "CHATD_OWNER_LEASE_S": "2",
           "CHATD_TRUSTED_PROXIES": "127.0.0.1", "CHATD_RATE_MESSAGES": str(RATE_MESSAGES),
           "CHATD_MAX_CONCURRENT_REPLIES": str(MAX_CONCURRENT_REPLIES), "CHATD_RATE_AUTH_ATTEMPTS": "4",
           "CHATD_SHUTDOWN_GRACE_S": "20", "CHATD_PROVIDERS__DEMO__TOKENS_PER_SECOND": "200",
           "CHATD_PROVIDERS__DEMO__ECHO_CHUNK": "4"}
    env.update(extra)
    return env


@contextlib.contextmanager
def running_cluster(tmp: Path, **env: str) -> Iterator[Cluster]:
    """Three processes on a PostgreSQL database of their own, behind nginx; all torn down afterwards."""
    database = f"chatd_cluster_{uuid.uuid4().hex[:10]}"
    _psql(f'CREATE DATABASE "{database}"')
    prefix = f"chatdtest:{uuid.uuid4().hex[:10]}:"
    store_url = postgres_url(database)
    servers = [ServerProcess(tmp / f"p{i}", cluster_env(store_url, prefix, **env)) for i in range(3)]
    nginx = None
    try:
        servers[0].start()  # first alone: it runs the migrations
        for s in servers[1:]:
            s.start()
        nginx = Nginx(Path(tmp / "nginx"), [s.port for s in servers]).start()
        yield Cluster(servers, nginx, store_url, prefix)
    finally:
        if nginx is not None:
            nginx.stop()
        for s in servers:
            s.stop()
        _psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
