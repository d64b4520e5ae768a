"""What the local fake servers (Bluesky's AppView, Telegram's Bot API) share: a threaded
HTTP server on 127.0.0.1 run in a daemon thread, and one way to write an answer.

Kept apart from the two fakes so that starting, stopping and answering (and a
client that hangs up mid-answer) behave the same in both.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class LocalServer(ThreadingHTTPServer):
    """A thread per connection; closing does not wait for them; the port is reusable at once."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class LocalHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1, no Nagle, no access log; :meth:`body` reads a request's body."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this, Nagle plus delayed
    # ACKs add 40 ms to every keep-alive request.
    disable_nagle_algorithm = True

    def body(self) -> bytes:
        """The request's body (``Content-Length`` bytes; empty without one)."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


class FakeServer:
    """Start in a daemon thread, stop, or ``with Fake(...) as server:``; answers on ``server.url``.

    A subclass sets ``self._httpd`` (a :class:`LocalServer`) in its constructor.
    """

    _httpd: LocalServer
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def _stopping(self) -> None:
        """Release whatever waits inside a request before the server shuts down."""

    def stop(self) -> None:
        self._stopping()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_response(
    request: BaseHTTPRequestHandler,
    status: int,
    payload: bytes,
    content_type: str,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Send ``payload`` with its status and headers; a client gone mid-answer closes the
    connection instead of raising into the server thread."""
    try:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            request.send_header(key, value)
        request.end_headers()
        request.wfile.write(payload)
        request.wfile.flush()
    except OSError:
        request.close_connection = True
