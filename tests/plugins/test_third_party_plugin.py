"""A third-party plugin installed with pip appears in /api/v1/assistants without touching chatd.

The example package `examples/chatd-hello-plugin` is pip-installed into a temporary
folder (not into the shared environment), and a real `chatd serve` runs with that folder
on its path: chatd discovers it through the `chatd` entry-point group alone.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chatd.testing import ChatdTestClient, ServerProcess, http_json, test_settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "chatd-hello-plugin"


@pytest.fixture(scope="session")
def hello_plugin_dir(tmp_path_factory) -> Path:
    """The example plugin, installed by pip into its own target folder."""
    target = tmp_path_factory.mktemp("hello-plugin")
    build = tmp_path_factory.mktemp("hello-src")
    src = build / "chatd-hello-plugin"
    subprocess.run(["cp", "-r", str(EXAMPLE), str(src)], check=True)  # keep build droppings out of the repo
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(src)],
                   check=True, timeout=300)
    return target


def test_pip_installed_plugin_appears_in_assistants(hello_plugin_dir, tmp_path):
    srv = ServerProcess(tmp_path, {"PYTHONPATH": str(hello_plugin_dir)},
                        drop_env=("CHATD_", "OPENAI_", "ANTHROPIC_"))
    try:
        srv.start()
        _, reg = http_json("POST", srv.base + "/api/v1/auth/register",
                           body={"username": "plugin-user", "password": "correct horse"})
        status, body = http_json("GET", srv.base + "/api/v1/assistants", token=reg["access_token"])
        assert status == 200
        by_id = {a["id"]: a for a in body["assistants"]}
        hello = {k: v for k, v in by_id["hello"].items() if k != "default"}
        assert hello == {"id": "hello", "name": "Hello (example plugin)", "provider": "hello", "model": "hello-1"}
        assert "demo" in by_id and sum(a["default"] for a in body["assistants"]) == 1
    finally:
        srv.stop(signal.SIGTERM, timeout=15)


@pytest.mark.asyncio
async def test_example_provider_and_filter_in_process(tmp_path):
    """The example's hooks, registered as an extra plugin object, drive a reply and refuse shouting."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        import chatd_hello
    finally:
        sys.path.remove(str(EXAMPLE))
    from chatd.app import start_server

    settings = test_settings(tmp_path, providers={"greeter": {"type": "hello", "greeting": "Howdy", "delay": 0}},
                             assistants=[{"id": "greeter", "name": "Greeter", "provider": "greeter",
                                          "model": "hello-1"}],
                             plugins={"hello": {"no_shouting": True}})
    server = await start_server(settings, extra_plugins=[chatd_hello])
    client = ChatdTestClient(server)
    try:
        _, conv, ws = await client.joined()
        await ws.send({"type": "send_message", "data": {"conversation_id": conv["id"], "content": "partner",
                                                        "message_type": "user"}})
        added = await ws.expect("message_added", timeout=10,
                                where=lambda f: f["data"]["message"]["message_type"] == "assistant")
        assert added["data"]["message"]["content"] == "Howdy, partner!"
        await ws.send({"type": "send_message", "data": {"conversation_id": conv["id"], "content": "HEY",
                                                        "message_type": "user"}})
        err = await ws.expect("error", timeout=5)
        assert err["data"] == {"code": "FILTERED", "message": "Please don't shout"}
    finally:
        client.close()
        await server.stop()
