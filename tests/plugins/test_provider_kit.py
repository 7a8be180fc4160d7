"""`chatd.provider_kit`, the public helpers of provider plugins: settings, keys, scrubbing, errors."""
from __future__ import annotations

import re

import pytest

from chatd import provider_kit as kit
from chatd.errors import ConfigError, ProviderError, ProviderUnavailable


def test_check_keys_names_the_unknown_and_the_known():
    kit.check_keys("echo", {"a": 1}, {"a", "b"})
    with pytest.raises(ConfigError) as e:
        kit.check_keys("echo", {"a": 1, "zz": 2, "c": 3}, {"a", "b"})
    assert str(e.value) == "echo provider: unknown setting(s) c, zz (known: a, b)"


def test_api_key_from_the_table_then_the_named_variable():
    env = {"ECHO_API_KEY": "k-env", "OTHER": "k-other"}
    assert kit.api_key({"api_key": "k-table"}, env, "ECHO_API_KEY", name="echo") == "k-table"
    assert kit.api_key({}, env, "ECHO_API_KEY", name="echo") == "k-env"
    assert kit.api_key({"api_key_env": "OTHER"}, env, "ECHO_API_KEY", name="echo") == "k-other"
    assert kit.api_key({}, {}, "ECHO_API_KEY", name="echo", required=False) is None
    with pytest.raises(ConfigError) as e:
        kit.api_key({"api_key_env": "MY_KEY"}, {}, "ECHO_API_KEY", name="echo", hint=" (or base_url)")
    assert str(e.value) == "echo provider: no API key: set api_key or MY_KEY (or base_url)"


def test_api_key_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("CHATD_TEST_KIT_KEY", "k-os")
    assert kit.api_key({}, None, "CHATD_TEST_KIT_KEY", name="echo") == "k-os"


def test_number():
    assert kit.number({"timeout": "2.5"}, "timeout", 60.0, float) == 2.5
    assert kit.number({}, "max_retries", 2, int) == 2
    with pytest.raises(ValueError):
        kit.number({"timeout": "soon"}, "timeout", 60.0, float)
    with pytest.raises(TypeError):
        kit.number({"timeout": [1]}, "timeout", 60.0, float)


def test_scrub_removes_the_secret_and_key_like_text_and_cuts():
    secret = "s3cr3t-value-0123"
    assert kit.scrub(f"bad {secret} and sk-abcdef123 here", secret) == "bad [key] and [key] here"
    assert kit.scrub("x" * 500, None) == "x" * 300
    custom = re.compile(r"tok_\w+")
    assert kit.scrub("tok_abc sk-abcdef123", None, custom) == "[key] sk-abcdef123"


@pytest.mark.parametrize("headers, names, expected", [
    ({"retry-after": "2"}, None, 2.0),
    ({"retry-after-ms": "1500", "retry-after": "9"}, None, 1.5),
    ({"retry-after-ms": "1500", "retry-after": "9"}, ("retry-after",), 9.0),
    ({"retry-after": "-3"}, None, 0.0),
    ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, None, None),
    ({}, None, None),
    (None, None, None),
])
def test_retry_after(headers, names, expected):
    got = kit.retry_after(headers) if names is None else kit.retry_after(headers, names)
    assert got == expected


def test_the_errors_name_the_assistant_and_carry_their_codes():
    cases = [
        (kit.credentials_refused("Bot", 401), ProviderError,
         "Bot: the AI provider refused the credentials (HTTP 401); check the API key"),
        (kit.rate_limited("Bot", {"retry-after": "1"}), ProviderUnavailable,
         "Bot is rate limited by its AI provider; try again later"),
        (kit.unavailable("Bot", "HTTP 503"), ProviderUnavailable,
         "Bot is unavailable: the AI provider answered HTTP 503"),
        (kit.timed_out("Bot"), ProviderUnavailable, "Bot is unavailable: the AI provider did not answer in time"),
        (kit.unreachable("Bot"), ProviderUnavailable, "Bot is unavailable: the AI provider could not be reached"),
        (kit.unreachable("Bot", mid_stream=True), ProviderUnavailable,
         "Bot: the connection to the AI provider was lost mid-reply"),
        (kit.rejected("Bot", "HTTP 400", "bad model"), ProviderError,
         "Bot: the AI provider rejected the request (HTTP 400): bad model"),
        (kit.cut_short("Bot"), ProviderUnavailable,
         "Bot: the AI provider ended the stream before the reply was complete"),
        (kit.failed("Bot", KeyError("secret internals")), ProviderError, "Bot: the AI provider failed (KeyError)"),
    ]
    for err, cls, message in cases:
        assert type(err) is cls and err.message == message
    assert kit.rate_limited("Bot", {"retry-after": "1"}).retry_after == 1.0
