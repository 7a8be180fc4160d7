"""One plugin manager per application; entry-point plugins are loaded lazily and once."""
from __future__ import annotations

import copy
import dataclasses
import importlib.metadata
import logging
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pluggy

from chatd import extras, hookspecs
from chatd.builtin_filters import BuiltinFilters
from chatd.discovery import Catalog, Listing, Source
from chatd.errors import AssistantNotFound, ConfigError
from chatd.filters import InboundFilter, OutboundFilter
from chatd.providers import Assistant, Provider, ProviderFactory

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "chatd"


class PluginRegistry:
    """Plugins, the provider types and filters they register, and the configured assistants.

    Provider types are collected when the plugins load; filters once the configuration is
    known (`configure`), or with an empty one when they are first used before it.
    """

    def __init__(self, extra_plugins: list[Any] | None = None, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager("chatd")
        self.pm.add_hookspecs(hookspecs)
        self._extra = list(extra_plugins or [])
        self._load_entry_points = load_entry_points
        self._loaded = False
        self._builtin = BuiltinFilters()
        self._plugin_settings: dict[str, Any] = {}
        self._filters_loaded = False
        self._inbound: list[InboundFilter] = []
        self._outbound: list[OutboundFilter] = []
        self.provider_types: dict[str, ProviderFactory] = {}
        self.providers: dict[str, Provider] = {}
        self.provider_type_of: dict[str, str] = {}
        self.assistants: dict[str, Assistant] = {}
        self.catalog = Catalog(self.assistants, [], self.providers)
        #: Entry-point plugins that could not load for a missing optional package: name -> install hint.
        self.unavailable: dict[str, str] = {}

    def load(self) -> None:
        """Load built-in, entry-point and extra plugins and collect their provider types (idempotent)."""
        if self._loaded:
            return
        self._loaded = True
        self.pm.register(self._builtin, name="chatd.builtin_filters")
        if self._load_entry_points:
            self._load_entry_point_plugins()
        for plugin in self._extra:
            self.pm.register(plugin)
        self.pm.hook.register_providers(register=self._register_provider)

    def _load_entry_point_plugins(self) -> None:
        """Like pluggy's load_setuptools_entrypoints, but a plugin whose optional package (an extra) is
        missing is skipped and remembered, so the core install runs without openai or anthropic."""
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if self.pm.get_plugin(ep.name) is not None or self.pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except ModuleNotFoundError as e:
                hint = extras.install_hint(e.name)
                if hint is None:
                    raise ConfigError(f"plugin {ep.name!r} ({ep.value}) cannot be imported: {e}") from None
                self.unavailable[ep.name] = hint
                log.debug("plugin %s not loaded: %s is not installed (%s)", ep.name, e.name, hint)
                continue
            self.pm.register(plugin, name=ep.name)

    def _load_filters(self) -> None:
        """Collect the filters plugins register for the configured `[plugins.*]` tables (once)."""
        if self._filters_loaded:
            return
        self.load()
        self._filters_loaded = True
        tables = MappingProxyType(copy.deepcopy(self._plugin_settings))  # a plugin cannot change the settings
        self.pm.hook.register_filters(register=self._register_filter, plugin_settings=tables)

    @property
    def inbound_filters(self) -> list[InboundFilter]:
        """The inbound filters, in registration order."""
        self._load_filters()
        return self._inbound

    @property
    def outbound_filters(self) -> list[OutboundFilter]:
        """The outbound filters, in registration order."""
        self._load_filters()
        return self._outbound

    def _register_provider(self, type_name: str, factory: ProviderFactory) -> None:
        self.provider_types[type_name] = factory

    def _register_filter(self, filt: Any) -> None:
        if isinstance(filt, InboundFilter):
            self._inbound.append(filt)
        elif isinstance(filt, OutboundFilter):
            self._outbound.append(filt)
        else:
            raise ConfigError(f"register_filters got {filt!r}, not an InboundFilter or OutboundFilter")

    def configure(self, providers: dict[str, dict], assistants: list[dict], environ: dict[str, str] | None = None,
                  plugin_settings: Mapping[str, Any] | None = None, max_message_chars: int | None = None) -> None:
        """Instantiate providers and assistants from config (or plugin defaults when none), and the filters.

        `plugin_settings` (the `[plugins.NAME]` tables) is what `register_filters` receives;
        `max_message_chars` is the built-in length limit (without it, read from each message's
        `FilterContext.settings`).
        """
        if self._filters_loaded and (plugin_settings or max_message_chars is not None):
            raise RuntimeError("PluginRegistry.configure: the filters were registered already, without these settings")
        self._plugin_settings = dict(plugin_settings or {})
        self._builtin.max_message_chars = max_message_chars
        self._load_filters()
        providers = {name: dict(table) for name, table in providers.items()}
        assistants = [dict(a) for a in assistants]
        if not assistants:
            env = dict(os.environ if environ is None else environ)
            for name, hint in self.unavailable.items():
                for var in extras.PLUGIN_ENV.get(name, ()):
                    if env.get(var):
                        log.warning("%s is set, but the %s provider is not installed (%s); it offers no assistant",
                                    var, name, hint)
                        break
            for offered in self.pm.hook.default_assistants(environ=env):
                for spec in offered or []:
                    spec = dict(spec)
                    pconf = spec.pop("provider_config", None)
                    if pconf is not None and spec["provider"] not in providers:
                        providers[spec["provider"]] = pconf
                    assistants.append(spec)
            if not any(a.get("default") for a in assistants) and assistants:
                assistants[0]["default"] = True
        for name, table in providers.items():
            type_name = table.pop("type", name)
            factory = self.provider_types.get(type_name)
            if factory is None and type_name in self.unavailable:
                raise ConfigError(f"provider {name!r} (type {type_name!r}) is not installed: "
                                  f"{self.unavailable[type_name]}")
            if factory is None:
                known = ", ".join(sorted(self.provider_types)) or "none"
                raise ConfigError(f"provider {name!r}: unknown type {type_name!r} (installed: {known})")
            self.providers[name] = factory(table)
            self.provider_type_of[name] = type_name
        order: list[Assistant | Source] = []
        required = [f.name for f in dataclasses.fields(Assistant)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        for spec in assistants:
            discover = bool(spec.pop("discover", False))
            if discover:  # one entry stands for every model its provider serves
                spec.setdefault("id", f"{spec.get('provider')}-models")
                spec.setdefault("model", "")
                spec.setdefault("name", "")
            missing = [key for key in required if key not in spec]
            if missing:
                raise ConfigError(f"assistant {spec.get('id')!r}: missing {', '.join(missing)} "
                                  f"(every [[assistants]] entry needs {', '.join(required)})")
            try:
                a = Assistant(**{k: v for k, v in spec.items() if k in Assistant.__dataclass_fields__})
            except TypeError as e:
                raise ConfigError(f"assistant {spec.get('id')!r}: {e}") from e
            if a.provider not in self.providers:
                raise ConfigError(f"assistant {a.id!r}: no provider named {a.provider!r}")
            if discover:
                order.append(Source(a))
            else:
                self.assistants[a.id] = a
                order.append(a)
        if not order:
            raise ConfigError("no assistants configured and no plugin offered one")
        self.catalog = Catalog(self.assistants, order, self.providers)

    async def discover(self, quiet: bool = False, limit_s: float | None = None) -> dict[str, Listing]:
        """Ask the providers which models they serve and update the assistants (start-up, refresh, /readyz)."""
        return await self.catalog.refresh(quiet=quiet, limit_s=limit_s)

    @property
    def default_assistant(self) -> Assistant:
        """The assistant used when a conversation names none."""
        default = next((a for a in self.assistants.values() if a.default), None)
        if default is None:
            raise AssistantNotFound("No assistant is available: the AI provider lists no models (yet)")
        return default

    def assistant(self, assistant_id: str | None) -> Assistant:
        """The assistant with this id (the default for None); ASSISTANT_NOT_FOUND otherwise."""
        if assistant_id is None:
            return self.default_assistant
        try:
            return self.assistants[assistant_id]
        except KeyError:
            raise AssistantNotFound(f"No assistant named {assistant_id!r}") from None

    def provider_for(self, assistant: Assistant) -> Provider:
        """The provider instance behind an assistant."""
        return self.providers[assistant.provider]

    def list_assistants(self) -> list[dict]:
        """Assistants as listed by the REST API: the available ones (see `chatd.discovery`)."""
        return [a.public(self.provider_type_of[a.provider]) for a in self.catalog.listed()]

    async def aclose(self) -> None:
        """Close every provider."""
        for p in self.providers.values():
            try:
                await p.aclose()
            except Exception:  # one broken provider must not stop shutdown
                log.exception("closing provider failed")
