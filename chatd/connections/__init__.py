"""This process's sockets: `connection` writes one socket, `ordering` orders its events, `registry` routes them."""
from chatd.connections.connection import GAP_WAIT_S, Connection
from chatd.connections.ordering import ConversationCursor
from chatd.connections.registry import ConnectionRegistry, ReplaySource

__all__ = ["GAP_WAIT_S", "Connection", "ConnectionRegistry", "ConversationCursor", "ReplaySource"]
