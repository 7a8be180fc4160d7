"""A bare Tornado WebSocket server: the baseline chatd's figures are divided by.

It echoes every text frame (ping baseline); on `{"fanout": N, "size": S}` it writes N frames
of S bytes to every connected socket, like a stream to N joiners; on `{"broadcast": M}` it
writes M to every socket, like a message to a conversation's members.
"""
from __future__ import annotations

import asyncio
import json
import sys

import tornado.web
import tornado.websocket


class EchoFanout(tornado.websocket.WebSocketHandler):
    """Echo, or fan a burst out to everyone."""

    def initialize(self, peers: set) -> None:
        """Share the peer set through the route's kwargs."""
        self.peers = peers

    def open(self) -> None:
        """Track the socket."""
        self.peers.add(self)

    def on_close(self) -> None:
        """Forget the socket."""
        self.peers.discard(self)

    async def on_message(self, message: str | bytes) -> None:
        """Echo, or fan out N frames to every peer."""
        obj = json.loads(message)
        if "broadcast" in obj:  # one message to everyone, like message_received
            frame = json.dumps({"type": "message_received", "data": {"message": obj["broadcast"]}})
            for peer in list(self.peers):
                peer.write_message(frame)
        elif "fanout" in obj:
            payload = "x" * obj["size"]
            for i in range(obj["fanout"]):
                frame = json.dumps({"type": "stream_content", "data": {"content": payload, "index": i}})
                for peer in list(self.peers):
                    peer.write_message(frame)
            done = json.dumps({"type": "done"})
            for peer in list(self.peers):
                peer.write_message(done)
        else:
            await self.write_message(message)


async def main(port: int) -> None:
    """Serve until killed."""
    app = tornado.web.Application([(r"/ws", EchoFanout, {"peers": set()})])
    app.listen(port, address="127.0.0.1")
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
