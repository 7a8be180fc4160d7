"""The pluggy hook specifications of chatd. Hooks are synchronous; what they register is async."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("chatd")


@hookspec
def register_providers(register: Callable[[str, Callable[[dict[str, Any]], Any]], None]) -> None:
    """Register provider types: call `register(type_name, factory)` once per type.

    Fires once, the first time chatd's plugin registry is used (at start-up). `factory`
    receives the `[providers.NAME]` config table and returns a `chatd.providers.Provider`.
    Not firstresult: every plugin's implementation runs.
    """


@hookspec
def register_filters(register: Callable[[Any], None], plugin_settings: Mapping[str, Any]) -> None:
    """Register message filters: call `register(filter)` with an `InboundFilter` or `OutboundFilter`.

    Fires once at start-up, when the configuration is known. `plugin_settings` maps each
    `[plugins.NAME]` table of the configuration by NAME (empty when there are none): build
    your filters from your own table here. An implementation may take only `register`.
    Inbound filters run, in registration order, on every message before it is stored;
    outbound filters rewrite assistant text as it streams.
    Not firstresult: every plugin's implementation runs.
    """


@hookspec
def default_assistants(environ: dict[str, str]) -> list[dict[str, Any]] | None:
    """Offer assistants (and their providers) when the config defines none.

    Fires once at start-up when the configuration has no `[[assistants]]`. Return a list of
    dicts `{"id", "name", "provider", "model", "provider_config": {...}, "default"?: bool}`
    built from the environment (e.g. an API key being set), or None. Not firstresult: the
    lists of all plugins are joined; among those marked `default`, the first offered wins.
    The demo plugin implements this hook `trylast`, so a real provider's default wins over it.
    """
