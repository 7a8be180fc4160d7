"""Start-up failures of a real `chatd serve`: one line naming the cause and the setting, a sysexits code, no hang."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatd.testing.util import free_port

CHATD = str(Path(sys.executable).with_name("chatd"))
EXITS_WITHIN_S = 10.0


def serve(tmp_path: Path, *args: str, data_dir: str | None = None, **env: str) -> tuple[int, list[str], float]:
    """Run `chatd serve` on 127.0.0.1; (exit code, stderr lines, seconds it took)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CHATD_")}
    full_env.update(env)
    cmd = [CHATD, "serve", "--data-dir", data_dir or str(tmp_path / "data"), *args]
    if "--host" not in args:
        cmd += ["--host", "127.0.0.1"]
    if "--port" not in args:
        cmd += ["--port", "0"]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=full_env, cwd=tmp_path,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chatd serve {' '.join(args)} hung (still running after 30 s)")
    return proc.returncode, proc.stderr.strip().splitlines(), time.monotonic() - start


def assert_one_line(code: int, lines: list[str], took: float, expect_code: int, *needles: str) -> None:
    assert code == expect_code, (code, lines)
    assert len(lines) == 1, lines  # one line, no traceback, no log noise
    assert lines[0].startswith("chatd: error: "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert took < EXITS_WITHIN_S, took


def test_port_in_use_exits_1(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve(tmp_path, "--port", str(port))
    assert_one_line(*result, 1, f"port {port}", "already in use", "--port")


def test_port_in_use_by_another_chatd_exits_1(tmp_path):
    port = free_port()
    first = subprocess.Popen([CHATD, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                              str(tmp_path / "a")], stderr=subprocess.PIPE, text=True,
                             env={k: v for k, v in os.environ.items() if not k.startswith("CHATD_")})
    try:
        assert first.stderr is not None
        for line in first.stderr:  # wait until it listens
            if "listening" in line:
                break
        result = serve(tmp_path, "--port", str(port), data_dir=str(tmp_path / "b"))
    finally:
        first.terminate()
        first.wait(15)
        if first.stderr is not None:
            first.stderr.close()
    assert_one_line(*result, 1, "already in use")


def test_unresolvable_host_exits_78(tmp_path):
    assert_one_line(*serve(tmp_path, "--host", "no-such-host.invalid"), 78, "cannot resolve host",
                    "no-such-host.invalid", "--host")


def test_host_not_on_this_machine_exits_78(tmp_path):
    assert_one_line(*serve(tmp_path, "--host", "192.0.2.1"), 78, "not an address of this machine", "host")


def test_data_dir_that_cannot_be_created_exits_1(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert_one_line(*serve(tmp_path, data_dir=str(blocker / "data")), 1, "data directory", "not writable",
                    "data_dir")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_data_dir_exits_1(tmp_path):
    data = tmp_path / "ro"
    data.mkdir(mode=0o500)
    assert_one_line(*serve(tmp_path, data_dir=str(data)), 1, "not writable", "Permission denied")


def test_unreadable_secret_file_exits_1(tmp_path):
    not_a_file = tmp_path / "secret-dir"
    not_a_file.mkdir()
    assert_one_line(*serve(tmp_path, CHATD_JWT_SECRET_FILE=str(not_a_file)), 1, "cannot read jwt_secret_file",
                    str(not_a_file))


def test_missing_secret_file_exits_78(tmp_path):
    assert_one_line(*serve(tmp_path, CHATD_JWT_SECRET_FILE=str(tmp_path / "absent")), 78, "jwt_secret_file",
                    "not found")


def test_secret_file_is_used(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s" * 40 + "\n")
    proc = subprocess.run([CHATD, "check-config", "--data-dir", str(tmp_path / "d")], capture_output=True, text=True,
                          env={**os.environ, "CHATD_JWT_SECRET_FILE": str(secret)}, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert 'jwt_secret = "***"' in proc.stdout and "s" * 40 not in proc.stdout


def test_unreadable_generated_secret_exits_1(tmp_path):
    data = tmp_path / "data"
    (data / "jwt_secret").mkdir(parents=True)  # where the secret file should be
    assert_one_line(*serve(tmp_path), 1, "cannot read the JWT secret", "jwt_secret")


def test_sqlite_store_that_cannot_be_opened_exits_1(tmp_path):
    (tmp_path / "db-is-a-dir").mkdir()
    assert_one_line(*serve(tmp_path, CHATD_SQLITE_PATH=str(tmp_path / "db-is-a-dir")), 1,
                    "cannot open the sqlite store", "sqlite_path")


def test_redis_unreachable_exits_1(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    assert_one_line(*serve(tmp_path, CHATD_BUS="redis", CHATD_REDIS_URL=url), 1, "cannot reach Redis", url,
                    "redis_url")


@pytest.mark.parametrize("args, env, needles", [
    (("--port", "eighty"), {}, ("port", "must be a whole number 0–65535", "--port")),
    (("--port", "70000"), {}, ("port", "must be a whole number 0–65535")),
    ((), {"CHATD_PORT": "8.5"}, ("port", "must be a whole number", "CHATD_PORT")),
    ((), {"CHATD_RATE_WINDOW_S": "soon"}, ("rate_window_s", "must be a number greater than 0", "CHATD_RATE_WINDOW_S")),
    ((), {"CHATD_REGISTRATION_ENABLED": "perhaps"}, ("registration_enabled", "must be true or false")),
    ((), {"CHATD_STATIC_DIR": "/nonexistent"}, ("static_dir", "no index.html")),
])
def test_bad_values_exit_78_in_plain_words(tmp_path, args, env, needles):
    code, lines, took = serve(tmp_path, *args, **env)
    assert_one_line(code, lines, took, 78, *needles)
    assert "invalid literal" not in lines[0] and "could not convert" not in lines[0]


def test_unknown_chatd_variable_warns_with_the_closest_setting(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATD_")}
    proc = subprocess.run([CHATD, "check-config", "--data-dir", str(tmp_path)], capture_output=True, text=True,
                          env={**env, "CHATD_PROT": "9000", "CHATD_REDIS_URI": "redis://x"}, timeout=30)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("chatd: warning:")]
    assert len(warnings) == 2, proc.stderr
    assert "CHATD_PROT" in warnings[0] and "CHATD_PORT" in warnings[0]
    assert "CHATD_REDIS_URI" in warnings[1] and "CHATD_REDIS_URL" in warnings[1]


def test_unknown_setting_in_the_config_file_names_the_closest(tmp_path):
    cfg = tmp_path / "chatd.toml"
    cfg.write_text("max_frame_byte = 10\n")
    assert_one_line(*serve(tmp_path, "--config", str(cfg)), 78, "max_frame_byte", "did you mean 'max_frame_bytes'")
