"""Clients of a cluster through nginx: which process a socket landed on, requests from a chosen address."""
from __future__ import annotations

import asyncio
import http.client
import json
import re
import urllib.request
import uuid
from typing import Any

from chatd.testing import WSClient, ahttp, ws_connect

from .cluster import Cluster


def _gauge(base: str, name: str) -> float:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:
        text = r.read().decode()
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def gauges(cluster: Cluster, name: str) -> dict[int, float]:
    """A gauge of every running process, by port (read from each process directly, not through nginx)."""
    running = [s for s in cluster.servers if s.running]
    values = await asyncio.gather(*(asyncio.to_thread(_gauge, s.base, name) for s in running))
    return {s.port: v for s, v in zip(running, values, strict=True)}


async def connect_through_nginx(cluster: Cluster, token: str) -> tuple[WSClient, int]:
    """An authenticated socket through nginx, and the port of the process it landed on."""
    before = await gauges(cluster, "chatd_ws_connections")
    ws = await ws_connect(cluster.nginx.ws_url, token)
    for _ in range(100):
        after = await gauges(cluster, "chatd_ws_connections")
        grown = [port for port in after if after[port] > before[port]]
        if len(grown) == 1:
            return ws, grown[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"could not tell which process took the socket: {before} → {after}")


async def sockets_on_distinct_processes(cluster: Cluster, token: str, n: int) -> list[tuple[WSClient, int]]:
    """`n` sockets through nginx, each on a different process (round-robin gets there quickly)."""
    found: dict[int, WSClient] = {}
    for _ in range(12):
        ws, port = await connect_through_nginx(cluster, token)
        if port in found or len(found) >= n:
            ws.close()
            await asyncio.sleep(0.05)
            continue
        found[port] = ws
        if len(found) == n:
            return [(w, p) for p, w in found.items()]
    raise AssertionError(f"nginx spread 12 sockets over only {sorted(found)}")


def request_from(source_ip: str, port: int, method: str, path: str, body: Any = None,
                 headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One HTTP request to 127.0.0.1:port from a chosen loopback source address."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source_ip, 0))
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        raw = r.read()
        return r.status, json.loads(raw) if raw else None
    finally:
        conn.close()


async def user_with_conversation(cluster: Cluster, name: str) -> tuple[dict, str, dict]:
    """A user registered through nginx, with a conversation."""
    status, body = await ahttp("POST", f"{cluster.nginx.base}/api/v1/auth/register",
                               body={"username": f"{name}-{uuid.uuid4().hex[:6]}", "password": "cluster-password"})
    assert status == 201, body
    token = body["access_token"]
    status, conv = await ahttp("POST", f"{cluster.nginx.base}/api/v1/conversations", token, {"title": name})
    assert status == 201, conv
    return body["user"], token, conv["conversation"]
