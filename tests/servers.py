"""Real HTTP servers on this machine for the import tests: audio, slow and refusing sites, a page with
an <audio> element, redirects and HLS playlists. Each records the paths it was asked for."""

import contextlib
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Site:
    """`site.route("/x.mp3", body, content_type)`, `site.handle("/x", fn)`; `site.url("/x")` is its URL."""

    def __init__(self):
        self.routes: dict[str, Callable] = {}
        self.hits: list[str] = []
        self.sent: dict[str, int] = {}
        self.cut: set[str] = set()  # paths whose client hung up before the whole body was sent
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                path = self.path.split("?")[0]
                site.hits.append(path)
                route = site.routes.get(path)
                if route is None:
                    self.answer(404, b"not here", "text/plain")
                    return
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    route(self)

            def answer(self, status: int, body: bytes, content_type: str, headers: dict | None = None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        self.address = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://{self.address}{path}"

    def route(
        self, path: str, body: bytes = b"", content_type: str = "audio/mpeg", status: int = 200, **headers
    ):
        self.routes[path] = lambda handler: handler.answer(status, body, content_type, headers)

    def handle(self, path: str, handler: Callable) -> None:
        self.routes[path] = handler

    def redirect(self, path: str, to: str, status: int = 302) -> None:
        self.route(path, b"", "text/plain", status, Location=to)

    def trickle(self, path: str, body: bytes, chunk: int, every: float, declare_length: bool = True) -> None:
        """Serve `body` `chunk` bytes at a time, one chunk every `every` seconds; `sent[path]` counts
        what went out before the client hung up."""

        def send(handler):
            handler.send_response(200)
            handler.send_header("Content-Type", "audio/mpeg")
            if declare_length:
                handler.send_header("Content-Length", str(len(body)))
            else:
                handler.send_header("Connection", "close")
            handler.end_headers()
            self.sent[path] = 0
            try:
                for start in range(0, len(body), chunk):
                    handler.wfile.write(body[start : start + chunk])
                    handler.wfile.flush()
                    self.sent[path] += len(body[start : start + chunk])
                    time.sleep(every)
            except (BrokenPipeError, ConnectionResetError):
                self.cut.add(path)
            handler.close_connection = True

        self.routes[path] = send

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
