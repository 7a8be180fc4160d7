"""The `register_filters` hook gets the `[plugins.*]` tables once; old one-argument implementations still work."""
from __future__ import annotations

from typing import Any

import pytest

from chatd import hookimpl
from chatd.builtin_filters import MaxLengthFilter
from chatd.errors import ConfigError, Filtered, MessageTooLong
from chatd.filters import FilterContext, InboundFilter
from chatd.plugins import PluginRegistry
from chatd_filters import BlocklistFilter

DEMO = ({"demo": {}}, [{"id": "demo", "name": "Demo", "provider": "demo", "model": "demo"}])


class Refuse(InboundFilter):
    name = "refuse"

    def __init__(self, word: str) -> None:
        self.word = word

    async def inbound(self, content: str, ctx: FilterContext) -> str:
        if self.word in content:
            raise Filtered(f"no {self.word}")
        return content


class OldStylePlugin:
    """Written before `plugin_settings` existed: its implementation takes `register` only."""

    @hookimpl
    def register_filters(self, register):
        register(Refuse("old"))


class NewStylePlugin:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    @hookimpl
    def register_filters(self, register, plugin_settings):
        self.seen.append(plugin_settings)
        register(Refuse(plugin_settings.get("mine", {}).get("word", "nothing")))


def ctx(message_type: str = "user") -> FilterContext:
    return FilterContext(user_id=1, conversation_id=1, message_type=message_type, settings=None)


def registry(*plugins: Any, **configure: Any) -> PluginRegistry:
    reg = PluginRegistry(extra_plugins=list(plugins))
    configure.setdefault("max_message_chars", 1000)
    reg.configure(*DEMO, environ={}, **configure)
    return reg


async def run_inbound(reg: PluginRegistry, content: str) -> str:
    for f in reg.inbound_filters:
        content = await f.inbound(content, ctx())
    return content


@pytest.mark.asyncio
async def test_old_and_new_style_register_filters_both_run():
    new = NewStylePlugin()
    tables = {"mine": {"word": "new"}, "other": {"x": 1}}
    reg = registry(OldStylePlugin(), new, plugin_settings=tables)
    assert len(new.seen) == 1 and dict(new.seen[0]) == tables  # every table, once
    assert await run_inbound(reg, "fine") == "fine"
    for word in ("old", "new"):
        with pytest.raises(Filtered, match=f"no {word}"):
            await run_inbound(reg, f"an {word} word")


def test_plugin_settings_are_read_only_and_a_copy():
    new = NewStylePlugin()
    tables = {"mine": {"word": "w"}}
    registry(new, plugin_settings=tables)
    with pytest.raises(TypeError):
        new.seen[0]["mine"] = {}
    new.seen[0]["mine"]["word"] = "changed"
    assert tables == {"mine": {"word": "w"}}


def test_without_plugin_settings_the_hook_gets_an_empty_mapping():
    new = NewStylePlugin()
    reg = PluginRegistry(extra_plugins=[new])
    reg.load()
    assert [f.name for f in reg.inbound_filters if f.name == "refuse"] == ["refuse"]
    assert dict(new.seen[0]) == {}


@pytest.mark.asyncio
async def test_bundled_filters_are_built_from_their_tables_at_configure():
    reg = registry(plugin_settings={"blocklist": {"words": ["forbidden"], "reason": "house rules"},
                                    "pii": {"enabled": True, "inbound": True}})
    blocklist = next(f for f in reg.inbound_filters if isinstance(f, BlocklistFilter))
    assert blocklist.pattern is not None and blocklist.reason == "house rules"
    # The filters never look at ctx.settings (None here).
    with pytest.raises(Filtered, match="house rules"):
        await run_inbound(reg, "a Forbidden word")
    assert await run_inbound(reg, "mail a@b.io") == "mail [email redacted]"
    text = "x a@b.io y"
    for session in [f.session(ctx("assistant")) for f in reg.outbound_filters]:
        text = session.feed(text) + session.flush()
    assert text == "x [email redacted] y"


def test_a_bad_table_fails_at_configure():
    with pytest.raises(ConfigError, match="pattern"):
        registry(plugin_settings={"blocklist": {"patterns": ["(unclosed"]}})
    with pytest.raises(ConfigError, match="must be a table"):
        registry(plugin_settings={"pii": "yes"})


@pytest.mark.asyncio
async def test_max_length_filter_takes_its_limit_at_configure():
    reg = registry(max_message_chars=5)
    limit = next(f for f in reg.inbound_filters if isinstance(f, MaxLengthFilter))
    assert limit.limit == 5
    assert await run_inbound(reg, "12345") == "12345"
    with pytest.raises(MessageTooLong, match="maximum length of 5 characters"):
        await run_inbound(reg, "123456")


@pytest.mark.asyncio
async def test_max_length_filter_without_a_limit_reads_the_context_settings():
    class S:
        max_message_chars = 3

    f = MaxLengthFilter()
    assert await f.inbound("abc", FilterContext(1, 1, "user", S())) == "abc"
    with pytest.raises(MessageTooLong):
        await f.inbound("abcd", FilterContext(1, 1, "user", S()))


def test_configure_after_the_filters_were_used_refuses_new_settings():
    reg = PluginRegistry()
    reg.load()
    assert reg.inbound_filters
    with pytest.raises(RuntimeError):
        reg.configure(*DEMO, environ={}, plugin_settings={"blocklist": {"words": ["x"]}})
