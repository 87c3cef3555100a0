"""The forwarding proxy every request of an import goes through, inside the worker.

The downloaders (urllib for direct links, yt-dlp for sites) are told to use it, so each
connection they open, for the link, every redirect hop, a page, a manifest or a segment, arrives
here: `CONNECT host:port` for https (the TLS session stays end to end) or an absolute-URI request
for http. For each, the proxy resolves the host, applies the address rule (jobs/addresses.py)
and connects to the address it checked, so a name cannot resolve to a public address when
checked and a private one when used. Refusals are recorded for the downloader to explain.

It also enforces the import's limits on the wire: the bytes coming back from all connections
together, and a deadline, after which every connection is cut.
"""

import contextlib
import logging
import socket
import threading
import time
from dataclasses import dataclass

from jobs import addresses

logger = logging.getLogger(__name__)

HEAD_LIMIT = 64 * 1024
CHUNK = 64 * 1024
CONNECT_TIMEOUT = 15.0
IDLE_TIMEOUT = 30.0  # a connection silent this long in both directions is closed
REFUSED_HEADER = "X-Stemsite-Refused"
# Request headers meant for the proxy, never passed on.
HOP_HEADERS = {"proxy-connection", "proxy-authorization", "connection", "keep-alive"}


@dataclass(frozen=True)
class Refusal:
    """A connection the proxy did not make: `reason` is an addresses constant, or `unreachable`."""

    reason: str
    host: str
    address: str = ""


UNREACHABLE = "unreachable"


class FetchProxy:
    """`with FetchProxy(...) as proxy:` serves on 127.0.0.1 until the block ends; `proxy.url` is
    what the downloaders are given."""

    def __init__(self, allowed: frozenset[str], max_bytes: int, seconds: float):
        self.allowed = allowed
        self.max_bytes = max_bytes
        self.deadline = time.monotonic() + seconds
        self.refusals: list[Refusal] = []
        self.received = 0
        self.over_budget = False
        self.timed_out = False
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> "FetchProxy":
        threading.Thread(target=self._accept, name="import-proxy", daemon=True).start()
        threading.Thread(target=self._watch_deadline, name="import-proxy-deadline", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop listening and cut every connection."""
        self._closed.set()
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            _close(sock)

    @property
    def refused_private(self) -> Refusal | None:
        return next((r for r in self.refusals if r.reason != UNREACHABLE), None)

    def _watch_deadline(self) -> None:
        if not self._closed.wait(max(0.0, self.deadline - time.monotonic())):
            self.timed_out = True
            logger.info("Import proxy: the time limit passed; cutting every connection")
            self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._track(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _track(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._closed.is_set():
                _close(sock)
                return False
            self._sockets.add(sock)
            return True

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            client.settimeout(IDLE_TIMEOUT)
            head, rest = _read_head(client)
            if head is None:
                return
            method, target, headers = head
            if method == "CONNECT":
                host, port = _split_host_port(target)
                upstream = self._connect(client, host, port)
                if upstream is None:
                    return
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                first = rest
            else:
                try:
                    parsed = addresses.parse_url(target)
                except addresses.AddressRefused as refused:
                    self._refuse(client, Refusal(refused.reason, ""))
                    return
                if parsed.parts.scheme != "http":
                    self._refuse(client, Refusal(addresses.SCHEME, parsed.host))
                    return
                upstream = self._connect(client, parsed.host, parsed.port)
                if upstream is None:
                    return
                first = _origin_request(method, parsed, headers) + rest
            if first:
                upstream.sendall(first)
            self._relay(client, upstream)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    self._untrack(sock)

    def _connect(self, client: socket.socket, host: str, port: int) -> socket.socket | None:
        try:
            upstream, address = addresses.connect_checked(host, port, CONNECT_TIMEOUT, self.allowed)
        except addresses.AddressRefused as refused:
            self._refuse(client, Refusal(refused.reason, host, str(refused.address or "")))
            return None
        except OSError as error:
            logger.info("Import proxy: %s:%s did not answer: %s", host, port, error)
            self._refuse(client, Refusal(UNREACHABLE, host), status=b"502 Bad Gateway")
            return None
        if not self._track(upstream):
            return None
        upstream.settimeout(IDLE_TIMEOUT)
        logger.debug("Import proxy: %s:%s is %s", host, port, address)
        return upstream

    def _refuse(self, client: socket.socket, refusal: Refusal, status: bytes = b"403 Forbidden") -> None:
        self.refusals.append(refusal)
        if refusal.reason != UNREACHABLE:
            logger.warning("Import proxy refused %s (%s %s)", refusal.host, refusal.reason, refusal.address)
        body = b"This address is not fetched by this site.\n"
        client.sendall(
            b"HTTP/1.1 " + status + b"\r\n" + f"{REFUSED_HEADER}: {refusal.reason}\r\n".encode()
            + b"Content-Type: text/plain\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n" + body
        )  # fmt: skip

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        """Bytes both ways until either side ends; what comes back counts against the budget."""
        sending = threading.Thread(target=_pump, args=(client, upstream), daemon=True)
        sending.start()
        while True:
            data = upstream.recv(CHUNK)
            if not data:
                break
            with self._lock:
                self.received += len(data)
                over = self.received > self.max_bytes
            if over:
                self.over_budget = True
                logger.info("Import proxy: over %s bytes came back; cutting every connection", self.max_bytes)
                self.close()
                return
            client.sendall(data)
        _shutdown(client)
        sending.join(IDLE_TIMEOUT)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        _close(sock)


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(CHUNK):
            target.sendall(data)
    _shutdown(target)


def _read_head(client: socket.socket) -> tuple[tuple[str, str, list[tuple[str, str]]] | None, bytes]:
    """The request line and headers, and whatever body bytes came with them."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(CHUNK)
        if not chunk:
            return None, b""
        data += chunk
        if len(data) > HEAD_LIMIT:
            client.sendall(b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n")
            return None, b""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        client.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
        return None, b""
    headers = [tuple(piece.strip() for piece in line.split(":", 1)) for line in lines[1:] if ":" in line]
    return (parts[0].upper(), parts[1], headers), rest


def _split_host_port(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise OSError(f"not host:port: {target!r}")
    return host.strip("[]"), int(port)


def _origin_request(method: str, target: addresses.Target, headers: list[tuple[str, str]]) -> bytes:
    """The request as the origin server expects it: its path only, one request per connection."""
    path = target.parts.path or "/"
    if target.parts.query:
        path += "?" + target.parts.query
    kept = [f"{name}: {value}" for name, value in headers if name.lower() not in HOP_HEADERS]
    lines = [f"{method} {path} HTTP/1.1", *kept, "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
