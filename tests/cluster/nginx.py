"""Debian's nginx running the repository's conf/nginx.conf, rendered for N chatd processes on loopback."""
from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from chatd.testing import free_port

CONF = Path(__file__).resolve().parents[2] / "conf" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def render(site: str, ports: list[int], listen_port: int, workdir: Path) -> str:
    """The whole nginx.conf: the site file with its upstream servers (parameters kept) and listen line replaced."""
    first = re.search(r"^\s*server 127\.0\.0\.1:\d+(?P<params>[^;]*);", site, flags=re.M)
    assert first is not None, "conf/nginx.conf's upstream has no `server 127.0.0.1:PORT …;` line"
    servers = "".join(f"    server 127.0.0.1:{p}{first['params']};\n" for p in ports)
    site, n = re.subn(r"upstream chatd \{.*?\n\}", "upstream chatd {\n" + servers + "}", site, flags=re.S)
    assert n == 1, "conf/nginx.conf has no `upstream chatd { … }` block"
    site, n = re.subn(r"listen 443 ssl http2;", f"listen 127.0.0.1:{listen_port};", site)
    assert n == 1, "conf/nginx.conf has no `listen 443 ssl http2;` line"
    site = re.sub(r"^\s*server_name .*$", "    server_name localhost;", site, flags=re.M)
    temp = "\n".join(f"    {kind}_temp_path {workdir / kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                             "uwsgi", "scgi"))
    return (f"daemon off;\nworker_processes 1;\npid {workdir / 'nginx.pid'};\nerror_log {workdir / 'error.log'} info;\n"
            f"events {{ worker_connections 4096; }}\nhttp {{\n    access_log {workdir / 'access.log'};\n{temp}\n"
            f"{site}\n}}\n")


class Nginx:
    """One nginx master + worker in front of the given ports; `base` and `ws_url` are its own."""

    def __init__(self, workdir: Path, ports: list[int]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.ports = ports
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """chatd's WebSocket endpoint through nginx."""
        return f"ws://127.0.0.1:{self.port}/api/v1/chat/ws"

    def start(self) -> Nginx:
        """Render the config, check it with `nginx -t`, start, wait for the port."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "nginx.conf"
        conf.write_text(render(CONF.read_text(), self.ports, self.port, self.workdir))
        check = subprocess.run([NGINX, "-t", "-c", str(conf), "-p", str(self.workdir)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen:\n{self.error_log()}")

    def error_log(self) -> str:
        """nginx's error log."""
        try:
            return (self.workdir / "error.log").read_text()[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop nginx."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None
