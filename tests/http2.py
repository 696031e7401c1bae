"""A small HTTP/2 client over one TLS connection (h2), as a browser tab talks to the edge.

One socket is one connection by construction: many requests through one Http2 object that all
complete prove the server kept the connection open. ``request_all`` sends every request's
HEADERS in one write, so the server reads them together (the same millisecond at the edge).
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions


@dataclass
class Response:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    done_at: float = 0.0  # time.monotonic() when the stream ended


class ConnectionClosed(Exception):
    """The server ended the connection (GOAWAY or close) before every response came."""


class Http2:
    def __init__(self, port: int, server_name: str, ca: Path, source: str = "127.0.0.1") -> None:
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
        self.sock = ctx.wrap_socket(raw, server_hostname=server_name)
        assert self.sock.selected_alpn_protocol() == "h2", "the server did not agree to HTTP/2"
        self.authority = server_name
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())

    def close(self) -> None:
        self.sock.close()

    def request_all(self, paths: list[str], headers: dict[str, str] | None = None) -> list[Response]:
        """GET every path at once on this connection; the responses in the same order."""
        streams: dict[int, Response] = {}
        for path in paths:
            stream = self.conn.get_next_available_stream_id()
            request = [(":method", "GET"), (":scheme", "https"), (":authority", self.authority), (":path", path)]
            self.conn.send_headers(stream, request + list((headers or {}).items()), end_stream=True)
            streams[stream] = Response()
        self.sock.sendall(self.conn.data_to_send())  # one write: every request together
        open_streams = set(streams)
        while open_streams:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionClosed(f"closed with {len(open_streams)} responses outstanding")
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError as e:
                # Frames after a GOAWAY (the streams the server still finishes) in the same read.
                if self.conn.state_machine.state is h2.connection.ConnectionState.CLOSED:
                    raise ConnectionClosed(f"GOAWAY with {len(open_streams)} outstanding") from e
                raise
            for event in events:
                if isinstance(event, h2.events.ResponseReceived):
                    # header_encoding: names and values arrive as str.
                    got = {str(k): str(v) for k, v in event.headers or []}
                    streams[event.stream_id].status = int(got.pop(":status"))
                    streams[event.stream_id].headers = got
                elif isinstance(event, h2.events.DataReceived):
                    streams[event.stream_id].body += event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    streams[event.stream_id].done_at = time.monotonic()
                    open_streams.discard(event.stream_id)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    raise ConnectionClosed(f"GOAWAY ({event.error_code}) with {len(open_streams)} outstanding")
            self.sock.sendall(self.conn.data_to_send())
        return [streams[s] for s in sorted(streams)]
