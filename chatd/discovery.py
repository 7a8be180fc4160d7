"""Which assistants are offered: the configured ones, plus one per model a discovering provider serves.

An assistant spec with `discover = true` is a *source*, not an assistant: every model its
provider lists (`Provider.list_models`) becomes an assistant with the source's settings, in the
server's order. The lists are fetched at start-up, on `GET /api/v1/assistants?refresh=1` and by
`/readyz`; a listing that fails keeps what was known before.

While a provider's list is known, an assistant whose model it lacks is *unavailable*: it is not
offered by `GET /api/v1/assistants` (it still resolves by id, so old conversations show who
answered) and `/readyz` names the missing model. The default is the first available one of: the
assistants and sources marked `default` (in the order offered), then every other one.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from chatd.errors import ChatdError
from chatd.providers import Assistant, Provider

log = logging.getLogger(__name__)

#: Seconds one model listing may take, at start-up, on refresh and in /readyz.
LIST_TIMEOUT_S = 5.0


@dataclass
class Source:
    """A `discover = true` spec: every model `provider` serves becomes an assistant like `template`."""

    template: Assistant
    discovered: list[str] = field(default_factory=list)  # assistant ids, in the server's order


@dataclass
class Listing:
    """The outcome of asking one provider for its models."""

    models: list[str] | None  # None: the provider does not list models, or listing failed
    error: str | None = None


class Catalog:
    """The assistants chatd offers, rebuilt whenever a provider's model list changes."""

    def __init__(self, assistants: dict[str, Assistant], order: list[Assistant | Source],
                 providers: Mapping[str, Provider]) -> None:
        self.assistants = assistants  # shared with PluginRegistry.assistants: every id that resolves
        self.order = order  # configured assistants and sources, in the order given
        self.providers = providers
        self.served: dict[str, list[str]] = {}  # provider name -> the models it served when last asked
        self.last_error: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._marked = [s for s in order if (s.template if isinstance(s, Source) else s).default]
        self._rebuild()

    @property
    def sources(self) -> list[Source]:
        """The discovering specs."""
        return [s for s in self.order if isinstance(s, Source)]

    def available(self, a: Assistant) -> bool:
        """False when the assistant's provider listed its models and this one's is not among them."""
        served = self.served.get(a.provider)
        return served is None or a.model in served

    def missing(self, provider: str) -> list[str]:
        """Models configured for `provider` that it does not serve (empty while its list is unknown)."""
        served = self.served.get(provider)
        if served is None:
            return []
        configured = [s.model for s in self.order if isinstance(s, Assistant) and s.provider == provider]
        return sorted({m for m in configured if m not in served})

    def listed(self) -> list[Assistant]:
        """The assistants offered, in order: configured ones, then each source's models."""
        return [a for spec in self.order for a in self._candidates(spec)]

    def _candidates(self, spec: Assistant | Source) -> list[Assistant]:
        """The available assistants a spec stands for: itself, or its source's served models."""
        if isinstance(spec, Assistant):
            return [spec] if self.available(spec) else []
        return [a for a in (self.assistants[i] for i in spec.discovered) if self.available(a)]

    def _free(self, aid: str, provider: str, model: str) -> bool:
        a = self.assistants.get(aid)
        return a is None or (a.provider, a.model) == (provider, model)

    def _rebuild(self) -> None:
        """Add an assistant per newly served model and move the default to the first available choice."""
        taken = {(a.provider, a.model) for a in self.order if isinstance(a, Assistant)}
        for source in self.sources:
            t = source.template
            if t.provider not in self.served:
                continue  # never listed: nothing to offer yet
            ids = []
            for model in self.served[t.provider]:
                if (t.provider, model) in taken:
                    continue  # a configured assistant (or an earlier source) already offers it
                taken.add((t.provider, model))
                aid = model if self._free(model, t.provider, model) else f"{t.provider}/{model}"
                self.assistants[aid] = dataclasses.replace(t, id=aid, name=model, model=model, default=False)
                ids.append(aid)
            source.discovered = ids
        rest = [s for s in self.order if not any(s is m for m in self._marked)]
        default = next((c[0] for c in (self._candidates(s) for s in self._marked + rest) if c), None)
        for a in self.assistants.values():
            a.default = a is default

    async def _list(self, name: str, provider: Provider, quiet: bool, limit_s: float) -> Listing:
        try:
            models = await asyncio.wait_for(provider.list_models(), limit_s)
        except (TimeoutError, ChatdError, OSError) as e:
            reason = str(e) if isinstance(e, ChatdError) else f"no answer in {limit_s:g} s"
            if not quiet:
                log.warning("provider %s: could not list its models (%s); keeping the configured assistants, "
                            "will retry on refresh", name, reason)
            return Listing(None, reason)
        return Listing(models)

    def _wanted(self) -> dict[str, Provider]:
        """The providers worth asking: those of sources and of configured assistants."""
        names = {(s.template if isinstance(s, Source) else s).provider for s in self.order}
        return {n: p for n, p in self.providers.items() if n in names}

    async def refresh(self, quiet: bool = False, limit_s: float | None = None) -> dict[str, Listing]:
        """Ask the providers for their models (concurrently) and rebuild; failures keep the last known lists.

        `quiet` skips the log line of a failed listing (for /readyz, which reports it instead).
        """
        async with self._lock:
            wanted = self._wanted()
            results = await asyncio.gather(*(self._list(n, p, quiet, limit_s or LIST_TIMEOUT_S)
                                             for n, p in wanted.items()))
            outcome = dict(zip(wanted, results, strict=True))
            for name, listing in outcome.items():
                if listing.models is not None:
                    self.served[name] = listing.models
                    self.last_error.pop(name, None)
                elif listing.error is not None:
                    self.last_error[name] = listing.error
            self._rebuild()
            return outcome
