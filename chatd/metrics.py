"""Prometheus metrics, one registry per application (no module-level collectors)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """The counters, gauges and histograms chatd exports at /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("chatd_ws_connections", "Open authenticated WebSocket connections", registry=r)
        self.frames_in = Counter("chatd_ws_frames_in_total", "Client frames received", ["type"], registry=r)
        self.frames_out = Counter("chatd_ws_frames_out_total", "Server frames queued", registry=r)
        self.errors = Counter("chatd_errors_total", "Error frames sent", ["code"], registry=r)
        self.messages = Counter("chatd_messages_total", "Messages stored", ["message_type"], registry=r)
        self.replies = Counter("chatd_replies_total", "Replies finished", ["status"], registry=r)
        self.replies_active = Gauge("chatd_replies_active", "Replies being generated here", registry=r)
        self.first_token = Histogram("chatd_reply_first_token_seconds", "Time from reply start to first chunk",
                                     buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30), registry=r)
        self.slow_closed = Counter("chatd_ws_slow_consumer_closed_total", "Sockets closed for not reading", registry=r)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
