"""A third-party plugin installed with pip appears in /api/v1/assistants without touching chatd.

The example package `examples/chatd-hello-plugin` is pip-installed into a temporary
folder (not into the shared environment), and a real `chatd serve` runs with that folder
on its path: chatd discovers it through the `chatd` entry-point group alone.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, json.loads(resp.read())


def test_pip_installed_plugin_appears_in_assistants(hello_plugin_dir, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CHATD_", "OPENAI_", "ANTHROPIC_"))}
    env["PYTHONPATH"] = str(hello_plugin_dir)
    proc = subprocess.Popen([sys.executable, "-m", "chatd", "serve", "--port", str(port), "--data-dir", str(tmp_path)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    out = proc.stdout.read().decode() if proc.poll() is not None else ""
                    raise AssertionError(f"chatd did not start: {out}")
                time.sleep(0.1)
        _, reg = call(base + "/api/v1/auth/register", {"username": "plugin-user", "password": "correct horse"})
        status, body = call(base + "/api/v1/assistants", token=reg["access_token"])
        assert status == 200
        by_id = {a["id"]: a for a in body["assistants"]}
        hello = {k: v for k, v in by_id["hello"].items() if k != "default"}
        assert hello == {"id": "hello", "name": "Hello (example plugin)", "provider": "hello", "model": "hello-1"}
        assert "demo" in by_id and sum(a["default"] for a in body["assistants"]) == 1
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.asyncio
async def test_example_provider_and_filter_in_process(tmp_path):
    """The example's hooks, registered as an extra plugin object, drive a reply and refuse shouting."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        import chatd_hello
    finally:
        sys.path.remove(str(EXAMPLE))
    from chatd.app import start_server
    from chatd.pytest_plugin import ChatdTestClient, test_settings

    settings = test_settings(tmp_path, providers={"greeter": {"type": "hello", "greeting": "Howdy", "delay": 0}},
                             assistants=[{"id": "greeter", "name": "Greeter", "provider": "greeter",
                                          "model": "hello-1"}],
                             plugins={"hello": {"no_shouting": True}})
    server = await start_server(settings, extra_plugins=[chatd_hello])
    client = ChatdTestClient(server)
    try:
        _, token = await client.register()
        conv = await client.conversation(token)
        ws = await client.ws(token)
        await ws.send({"type": "join_conversation", "data": {"conversation_id": conv["id"]}})
        await ws.expect("joined")
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
