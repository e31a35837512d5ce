"""uvicorn's HTTP/1.1 protocol (httptools) with the request head bounded.

httptools keeps no limit of its own: it gathers a header's value however long it grows, so
one request with a 1 MiB header was read whole, held in memory and handed to the app. Here
the request line and headers together may hold :data:`MAX_HEAD_BYTES`; a longer head is
answered ``431`` with a JSON reason, counted, and its connection closed (after reading and
dropping the rest for :data:`LINGER_S`) before any of it reaches the app. Memory per
connection stays within the limit plus one read from the socket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: After a 431, how long the rest of the request is read and thrown away before the
#: connection closes: closing with unread data makes the kernel send a reset, which can
#: destroy the answer before the client reads it (nginx's lingering_close, shorter).
LINGER_S = 2.0
#: Request line plus headers, as nginx's large_client_header_buffers (4 x 8 KiB) and
#: Node's 16 KiB default: a browser's cookies and a tracker's query string fit many times.
MAX_HEAD_BYTES = 16 * 1024

_BODY = b'{"error":"headers_too_large","limit_bytes":%d}' % MAX_HEAD_BYTES
_ANSWER = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _BODY
)


class BoundedHead(HttpToolsProtocol):
    """One connection; ``refused`` is called once per request refused for its head."""

    refused: Callable[[], None] = staticmethod(lambda: None)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # between a request's first byte and the end of its headers
        self._head_bytes = 0  # of the request line and headers parsed so far
        self._unparsed = 0  # bytes received while a head is open (httptools holds them)
        self._closed = False

    def _refuse(self) -> None:
        if not self._closed:
            self._closed = True
            type(self).refused()
            self.transport.write(_ANSWER)
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        if self._in_head:
            self._unparsed += len(data)
        super().data_received(data)
        if self._in_head and self._unparsed > MAX_HEAD_BYTES:
            self._refuse()  # a header still growing: do not wait for its end

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if not self._closed:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if not self._closed:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head, self._unparsed = False, 0
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse()
        if not self._closed:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._closed:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._closed:
            super().on_message_complete()


def bounded_http(refused: Callable[[], None]) -> type[BoundedHead]:
    """The protocol class for ``uvicorn.Config(http=...)``, calling ``refused`` per 431."""
    return type("BoundedHead", (BoundedHead,), {"refused": staticmethod(refused)})
