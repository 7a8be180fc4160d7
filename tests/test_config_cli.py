"""Configuration precedence and validation, and the `chatd` command line (PROTOCOL.md §9)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest

from chatd.config import Settings, load_settings
from chatd.errors import ConfigError

CHATD = str(Path(sys.executable).with_name("chatd"))


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATD_")}
    env.update(extra)
    return env


def run(*args: str, stdin: str | None = None, env: dict | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([CHATD, *args], input=stdin, capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else clean_env())


# Precedence: defaults < TOML < CHATD_* < flags.

def test_defaults(tmp_path):
    s = load_settings(environ={})
    assert (s.host, s.port) == ("127.0.0.1", 8888)
    assert s.max_frame_bytes == 65536 and s.max_message_chars == 32000
    assert (s.rate_messages, s.rate_window_s, s.max_concurrent_replies) == (20, 10.0, 5)
    assert s.max_frames_per_second == 50 and s.auth_timeout_s == 10.0
    assert s.heartbeat_interval_s == 20 and s.heartbeat_timeout_s == 20
    assert s.jwt_algorithm == "HS256" and s.allowed_origins == []
    assert s.data_dir.endswith("chatd")


def test_toml_env_flag_precedence(tmp_path):
    cfg = tmp_path / "chatd.toml"
    cfg.write_text('port = 1111\nrate_messages = 7\nhost = "127.0.0.2"\nallowed_origins = ["https://a.test"]\n'
                   'registration_enabled = false\n[providers.demo]\ntokens_per_second = 50\n')
    only_file = load_settings(str(cfg), environ={})
    assert (only_file.port, only_file.rate_messages, only_file.host) == (1111, 7, "127.0.0.2")
    assert only_file.allowed_origins == ["https://a.test"] and only_file.registration_enabled is False
    assert only_file.providers == {"demo": {"tokens_per_second": 50}}

    env = {"CHATD_PORT": "2222", "CHATD_RATE_MESSAGES": "9", "CHATD_REGISTRATION_ENABLED": "true",
           "CHATD_ALLOWED_ORIGINS": "https://b.test, https://c.test", "CHATD_PROVIDERS__DEMO__TOKENS_PER_SECOND": "99"}
    file_env = load_settings(str(cfg), environ=env)
    assert (file_env.port, file_env.rate_messages, file_env.host) == (2222, 9, "127.0.0.2")
    assert file_env.registration_enabled is True
    assert file_env.allowed_origins == ["https://b.test", "https://c.test"]
    assert file_env.providers["demo"]["tokens_per_second"] == 99

    all_three = load_settings(str(cfg), environ=env, overrides={"port": 3333, "host": None})
    assert all_three.port == 3333 and all_three.rate_messages == 9
    assert all_three.host == "127.0.0.2"  # a flag not given does not override


def test_config_file_from_env(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("port = 4444\n")
    assert load_settings(environ={"CHATD_CONFIG": str(cfg)}).port == 4444


@pytest.mark.parametrize("source, needle", [
    ({"env": {"CHATD_PORT": "eighty"}}, "port"),
    ({"env": {"CHATD_PORT": "70000"}}, "port"),
    ({"env": {"CHATD_RATE_MESSAGES": "0"}}, "rate_messages"),
    ({"env": {"CHATD_REGISTRATION_ENABLED": "perhaps"}}, "registration_enabled"),
    ({"env": {"CHATD_JWT_ALGORITHM": "none"}}, "jwt_algorithm"),
    ({"env": {"CHATD_JWT_SECRET": "too-short"}}, "jwt_secret"),
    ({"env": {"CHATD_STORE": "oracle"}}, "store"),
    ({"toml": 'port = "x"\n'}, "port"),
    ({"toml": "no_such_setting = 1\n"}, "no_such_setting"),
    ({"toml": "port = \n"}, "chatd.toml"),
    ({"flags": {"max_frame_bytes": -5}}, "max_frame_bytes"),
])
def test_bad_value_is_one_clear_line(tmp_path, source, needle):
    cfg = None
    if "toml" in source:
        cfg = tmp_path / "chatd.toml"
        cfg.write_text(source["toml"])
    with pytest.raises(ConfigError) as exc:
        load_settings(str(cfg) if cfg else None, environ=source.get("env", {}), overrides=source.get("flags"))
    message = str(exc.value)
    assert needle in message and "\n" not in message, message


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(str(tmp_path / "absent.toml"), environ={})


# The command line.

def test_cli_bad_setting_prints_one_line_and_exits_78(tmp_path):
    proc = run("token", "alice", "--data-dir", str(tmp_path), env=clean_env(CHATD_RATE_MESSAGES="-1"))
    assert proc.returncode == 78  # sysexits EX_CONFIG
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chatd: error:") and "rate_messages" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_serve_rejects_bad_config_before_binding(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("max_frame_bytes = 0\n")
    proc = run("serve", "--config", str(cfg), "--data-dir", str(tmp_path), "--port", "0", timeout=30)
    assert proc.returncode == 78
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "max_frame_bytes" in proc.stderr


def test_cli_user_create_and_token(tmp_path):
    data = str(tmp_path / "data")
    proc = run("user", "create", "alice", "--password-stdin", "--data-dir", data, stdin="correct horse\n")
    assert proc.returncode == 0, proc.stderr
    assert "alice" in proc.stdout
    # The same name again is refused with a clear error.
    proc = run("user", "create", "alice", "--password-stdin", "--data-dir", data, stdin="correct horse\n")
    assert proc.returncode == 1 and "taken" in proc.stderr and "Traceback" not in proc.stderr
    # Too short a password.
    proc = run("user", "create", "bob", "--password-stdin", "--data-dir", data, stdin="short\n")
    assert proc.returncode == 2 and "password" in proc.stderr  # a usage error
    proc = run("token", "alice", "--data-dir", data)
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip()
    secret = (Path(data) / "jwt_secret").read_text().strip()
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    assert claims["exp"] > claims["iat"] and claims["sub"]
    proc = run("token", "nobody", "--data-dir", data)
    assert proc.returncode == 1 and "nobody" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.asyncio
async def test_cli_token_works_on_the_websocket_and_rest(chatd):
    data = chatd.server.settings.data_dir
    proc = run("user", "create", "carol", "--password-stdin", "--data-dir", data, stdin="correct horse\n")
    assert proc.returncode == 0, proc.stderr
    proc = run("token", "carol", "--data-dir", data)
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip()
    ws = await chatd.ws()
    await ws.send({"type": "auth", "token": token})
    ok = await ws.expect("auth_success")
    status, me, _ = await chatd.request("GET", "/api/v1/me", token)
    assert status == 200 and me["username"] == "carol" and me["id"] == ok["user_id"]
    # The password set on the command line logs in over REST.
    status, body, _ = await chatd.request("POST", "/api/v1/auth/login",
                                          body={"username": "carol", "password": "correct horse"})
    assert status == 200 and body["user"]["id"] == ok["user_id"]


@pytest.mark.asyncio
async def test_cli_admin_role_token_may_post_system_messages(chatd):
    data = chatd.server.settings.data_dir
    assert run("user", "create", "root", "--password-stdin", "--role", "admin", "--data-dir", data,
               stdin="correct horse\n").returncode == 0
    token = run("token", "root", "--data-dir", data).stdout.strip()
    conv = await chatd.conversation(token, title="ops")
    ws = await chatd.ws(token)
    await ws.send({"type": "send_message", "data": {"conversation_id": conv["id"], "content": "maintenance at 5",
                                                    "message_type": "system"}})
    assert (await ws.expect("ack"))["data"]["message_id"]
    status, me, _ = await chatd.request("GET", "/api/v1/me", token)
    assert me["roles"] == ["admin"]


def test_settings_is_a_dataclass_with_validate():
    with pytest.raises(ConfigError):
        Settings(port=-1).validate()


# Operator commands: --version, check-config, backup, the password prompt.

def test_version():
    from chatd import __version__

    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"chatd {__version__}"


def test_check_config_prints_effective_settings_with_secrets_masked(tmp_path):
    import tomllib

    cfg = tmp_path / "chatd.toml"
    cfg.write_text('port = 9123\njwt_secret = "' + "k" * 40 + '"\n'
                   '[providers.local]\ntype = "openai"\nbase_url = "http://127.0.0.1:1/v1"\napi_key = "sk-live-123"\n'
                   '[[assistants]]\nid = "llama"\nname = "Llama"\nprovider = "local"\nmodel = "llama3"\n')
    proc = run("check-config", "--config", str(cfg), "--data-dir", str(tmp_path / "d"),
               env=clean_env(CHATD_RATE_MESSAGES="7", CHATD_REDIS_URL="redis://:hunter2@127.0.0.1:6379/0"))
    assert proc.returncode == 0, proc.stderr
    assert "k" * 40 not in proc.stdout and "sk-live-123" not in proc.stdout and "hunter2" not in proc.stdout
    printed = tomllib.loads(proc.stdout)  # what it prints is a valid config file
    assert printed["port"] == 9123 and printed["rate_messages"] == 7  # file and environment both applied
    assert printed["jwt_secret"] == "***" and printed["providers"]["local"]["api_key"] == "***"
    assert printed["providers"]["local"]["base_url"] == "http://127.0.0.1:1/v1"
    assert printed["redis_url"] == "redis://:***@127.0.0.1:6379/0"  # a URL's password is masked too
    assert printed["sqlite_path"] == str(tmp_path / "d" / "chatd.sqlite3")
    assert "configuration OK" in proc.stderr and "llama" in proc.stderr
    as_json = run("check-config", "--json", "--config", str(cfg), "--data-dir", str(tmp_path / "d"))
    assert as_json.returncode == 0 and '"api_key": "***"' in as_json.stdout


def test_check_config_fails_like_serve_would(tmp_path):
    cfg = tmp_path / "chatd.toml"
    cfg.write_text('[[assistants]]\nid = "x"\nname = "X"\nprovider = "nope"\nmodel = "m"\n')
    proc = run("check-config", "--config", str(cfg), "--data-dir", str(tmp_path))
    assert proc.returncode == 78 and proc.stderr.count("\n") == 1 and "nope" in proc.stderr, proc.stderr


def test_backup_while_the_server_writes(tmp_path):
    import sqlite3
    import threading

    from chatd.testing import RawWS, ServerProcess
    from chatd.testing.util import http_json

    server = ServerProcess(tmp_path / "data", {"CHATD_RATE_MESSAGES": "10000", "CHATD_MAX_FRAMES_PER_SECOND": "1000",
                                             "CHATD_SHUTDOWN_GRACE_S": "0"})
    server.start()
    try:
        status, body = http_json("POST", f"{server.base}/api/v1/auth/register",
                                 body={"username": "ops", "password": "correct horse"})
        assert status in (200, 201), body
        token = body["access_token"]
        status, body = http_json("POST", f"{server.base}/api/v1/conversations", token, {"title": "load"})
        assert status in (200, 201), body
        conv = body["conversation"]
        stop = threading.Event()

        def write() -> None:  # keeps the server writing messages while the backup runs
            ws = RawWS(server.port)
            ws.auth(token)
            for n in range(400):
                if stop.is_set():
                    break
                ws.send({"type": "send_message", "data": {"conversation_id": conv["id"], "content": f"m{n}",
                                                          "message_type": "user", "client_msg_id": f"c{n}"}})
                while ws.recv_json()["type"] not in ("ack", "error"):  # error: a reply is still streaming
                    pass
            ws.close()

        writer = threading.Thread(target=write)
        writer.start()
        try:
            time.sleep(0.5)
            target = tmp_path / "backup.sqlite3"
            proc = run("backup", str(target), "--data-dir", str(tmp_path / "data"))
        finally:
            stop.set()
            writer.join()
        assert proc.returncode == 0, proc.stderr
        copy = sqlite3.connect(target)
        count = copy.execute("SELECT count(*) FROM messages").fetchone()[0]
        copy.close()
        assert count > 0 and f"{count} messages" in proc.stdout, proc.stdout
        again = run("backup", str(target), "--data-dir", str(tmp_path / "data"))
        assert again.returncode == 78 and "exists" in again.stderr  # never overwritten by accident
        assert run("backup", str(target), "--force", "--data-dir", str(tmp_path / "data")).returncode == 0
    finally:
        server.stop()
    # The copy is a working store: a server started on it sees the user.
    restored = tmp_path / "restored"
    restored.mkdir()
    (restored / "chatd.sqlite3").write_bytes(target.read_bytes())
    proc = run("token", "ops", "--data-dir", str(restored))
    assert proc.returncode == 0, proc.stderr


def _prompted_user_create(tmp_path, first: str, second: str) -> tuple[int, str]:
    """`chatd user create` on a pseudo-terminal, typing the two passwords."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen([CHATD, "user", "create", "dana", "--data-dir", str(tmp_path)], stdin=follower,
                            stdout=follower, stderr=follower, env=clean_env(), start_new_session=True)
    os.close(follower)
    output = b""
    try:
        for answer in (first, second):
            while b"assword" not in output.split(b"\n")[-1]:
                output += os.read(leader, 1024)
            os.write(leader, answer.encode() + b"\n")
            output += os.read(leader, 1024)
        code = proc.wait(30)
        try:
            while chunk := os.read(leader, 1024):
                output += chunk
        except OSError:  # the terminal closed with the process
            pass
    finally:
        os.close(leader)
    return code, output.decode(errors="replace")


def test_password_prompt_asks_twice_and_refuses_a_mismatch(tmp_path):
    code, out = _prompted_user_create(tmp_path, "correct horse", "correct house")
    assert code == 2 and "do not match" in out and "Repeat" in out, out
    assert run("token", "dana", "--data-dir", str(tmp_path)).returncode == 1  # nothing was created
    code, out = _prompted_user_create(tmp_path, "correct horse", "correct horse")
    assert code == 0 and "created user dana" in out, out
    assert "correct horse" not in out  # not echoed


def test_assistant_missing_a_required_key_is_named(tmp_path):
    cfg = tmp_path / "chatd.toml"
    cfg.write_text('[[assistants]]\nid = "x"\nprovider = "demo"\n')
    proc = run("check-config", "--config", str(cfg), "--data-dir", str(tmp_path))
    assert proc.returncode == 78 and "missing name, model" in proc.stderr and "__init__" not in proc.stderr, proc.stderr
