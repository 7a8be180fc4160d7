"""A hand-made WebSocket client on a blocking socket, for backpressure and protocol-edge tests."""
from __future__ import annotations

import base64
import json
import os
import socket
import struct


class RawWS:
    """A hand-made WebSocket client on a blocking socket: it reads only when told to."""

    def __init__(self, port: int, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET /api/v1/chat/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("handshake failed")
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        self.buf = b""

    def send(self, obj: dict) -> None:
        """Send a JSON text frame (masked, as a client must)."""
        payload = json.dumps(obj).encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame (blocking)."""
        b1, b2 = self._need(2)
        n = b2 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._need(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._need(8))[0]
        return b1 & 0x0F, self._need(n)

    def recv_json(self, ftype: str | None = None) -> dict:
        """The next text frame (of a type), skipping pings."""
        while True:
            op, payload = self.recv_frame()
            if op == 1:
                frame = json.loads(payload)
                if ftype is None or frame["type"] == ftype:
                    return frame
            elif op == 8:
                raise ConnectionError(f"close frame {payload[:2]!r}")

    def auth(self, token: str) -> None:
        """Authenticate and wait for `auth_success`."""
        self.send({"type": "auth", "token": token})
        assert self.recv_json("auth_success")

    def close(self) -> None:
        """Close the socket (no close frame)."""
        self.sock.close()

    def abort(self) -> None:
        """Close abruptly (RST)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()


