"""Test helpers for chatd and its plugins: clients, a scripted provider, real `chatd serve` processes.

Nothing here imports pytest; `chatd.pytest_plugin` turns these helpers into fixtures. Servers
listen on free 127.0.0.1 ports; blocking helpers (`http_json`, `RawWS`, `ServerProcess`) are for
subprocess servers and threads, their `a`-prefixed or async twins for tests on the event loop.
"""
from chatd.testing.clients import (
    ChatdTestClient,
    WSClient,
    _open_clients,
    aclose_ws_clients,
    close_ws_clients,
    serving,
    ws_connect,
)
from chatd.testing.process import ServerProcess
from chatd.testing.raw import RawWS
from chatd.testing.scripted import ScriptedPlugin, ScriptedProvider, scripted_settings
from chatd.testing.util import (
    MAX_MESSAGE_SIZE,
    PASSWORD,
    REDIS_URL,
    ahttp,
    delete_prefix,
    free_port,
    http_json,
    register,
    start_redis_server,
    test_settings,
    unique_name,
    wait_until,
)

__all__ = [
    "MAX_MESSAGE_SIZE",
    "PASSWORD",
    "REDIS_URL",
    "ChatdTestClient",
    "RawWS",
    "ScriptedPlugin",
    "ScriptedProvider",
    "ServerProcess",
    "WSClient",
    "_open_clients",
    "aclose_ws_clients",
    "ahttp",
    "close_ws_clients",
    "delete_prefix",
    "free_port",
    "http_json",
    "register",
    "scripted_settings",
    "serving",
    "start_redis_server",
    "test_settings",
    "unique_name",
    "wait_until",
    "ws_connect",
]
