"""Liveness, readiness and metrics endpoints."""
from __future__ import annotations

import asyncio

from chatd.web.base import ApiHandler


class HealthHandler(ApiHandler):
    """GET /healthz: the process serves."""

    public = True

    def get(self) -> None:
        """Always 200 while the event loop runs."""
        self.send_json({"status": "ok"})


class ReadyHandler(ApiHandler):
    """GET /readyz: every dependency answers."""

    public = True

    async def _check(self, coro: object) -> bool:
        try:
            return bool(await asyncio.wait_for(coro, timeout=2.0))  # type: ignore[arg-type]
        except Exception:
            return False

    async def _store(self) -> str:
        """"ok", "failed" (it does not answer) or "not writable: WHY" (a full disk, a removed file)."""
        try:
            problem = await asyncio.wait_for(self.store.write_problem(), timeout=2.0)
        except Exception:
            return "failed"
        return "ok" if problem is None else f"not writable: {problem}"

    async def _providers(self) -> dict[str, str]:
        """Each provider's state: "ok", "failed", or "model not served: NAME[, NAME]" (its list asked for again)."""
        listings = await self.plugins.discover(quiet=True, limit_s=2.0)
        states = {}
        for name, p in self.plugins.providers.items():
            listing = listings.get(name)
            if listing is not None and listing.error is not None:
                states[name] = "failed"
            elif (listing is None or listing.models is None) and not await self._check(p.check()):
                states[name] = "failed"
            elif missing := self.plugins.catalog.missing(name):
                states[name] = f"model not served: {', '.join(missing)}"
            else:
                states[name] = "ok"
        return states

    async def get(self) -> None:
        """200 with each dependency's state, or 503 naming what failed."""
        store_state = await self._store()
        store_ok = store_state == "ok"
        bus_ok = await self._check(self.settings["bus"].ping())
        providers = await self._providers()
        providers_ok = all(v == "ok" for v in providers.values())
        body: dict[str, object] = {"store": store_state, "bus": "ok" if bus_ok else "failed",
                                   "providers": providers}
        if self.chat.closing:
            body["shutting_down"] = True
        ok = store_ok and bus_ok and providers_ok and not self.chat.closing
        self.send_json(body, 200 if ok else 503)


class MetricsHandler(ApiHandler):
    """GET /metrics: Prometheus text format (a token can be required)."""

    @property
    def public(self) -> bool:  # type: ignore[override]
        """Public unless `metrics_require_token`."""
        return not self.config.metrics_require_token

    def get(self) -> None:
        """The exposition."""
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.metrics.render())


def routes() -> list:
    """The health routes."""
    return [(r"/healthz", HealthHandler), (r"/readyz", ReadyHandler), (r"/metrics", MetricsHandler)]
