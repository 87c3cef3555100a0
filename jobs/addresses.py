"""The public-address rule for every URL the site itself fetches or calls (webhooks, imports).

Only http(s), a host name, no user name or password in the URL, and only globally routable
addresses. Callers choose their own exceptions (an operator's trusted hosts for webhooks, a
test's local server for imports) and their own wording; the rule itself lives here once.

No Django here: the import proxy (jobs/imports/proxy.py) runs it in the worker as it connects.
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Why a URL was refused: callers turn these into their own sentences.
INVALID = "invalid"
SCHEME = "scheme"
NO_HOST = "no_host"
CREDENTIALS = "credentials"
UNRESOLVABLE = "unresolvable"
PRIVATE = "private"


class AddressRefused(ValueError):
    """A URL or host the rule refuses; `reason` is one of the constants above."""

    def __init__(self, reason: str, host: str = "", address: Address | None = None):
        super().__init__(f"{reason}: {host} {address or ''}".strip())
        self.reason, self.host, self.address = reason, host, address


@dataclass(frozen=True)
class Target:
    """Where a URL points: its parts, and the host and port to connect to."""

    parts: SplitResult
    host: str
    port: int


def parse_url(url: str) -> Target:
    """The URL's host and port if its shape is allowed (http or https, a host, no credentials)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise AddressRefused(INVALID) from None
    if parts.scheme not in ("http", "https"):
        raise AddressRefused(SCHEME)
    if not parts.hostname:
        raise AddressRefused(NO_HOST)
    if parts.username is not None or parts.password is not None:
        raise AddressRefused(CREDENTIALS, parts.hostname)
    return Target(parts, parts.hostname, port or (443 if parts.scheme == "https" else 80))


def resolve(host: str, port: int) -> list[Address]:
    """Every address `host` resolves to (TCP), in the resolver's order; raises UNRESOLVABLE."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise AddressRefused(UNRESOLVABLE, host) from None
    addresses = []
    for *_, sockaddr in found:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise AddressRefused(UNRESOLVABLE, host)
    return addresses


def is_public_address(address: Address) -> bool:
    """Globally routable unicast only; an IPv4-mapped IPv6 address is judged as its IPv4 address."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_link_local or address.is_unspecified
    )


def public_addresses(host: str, port: int, allowed: frozenset[str] = frozenset()) -> list[Address]:
    """The host's addresses if every one is public; raises PRIVATE naming the first that is not.

    `allowed` holds `address:port` pairs (`127.0.0.1:8123`, `[::1]:8123`) let through although
    private: a test's own local server, named exactly.
    """
    addresses = resolve(host, port)
    for address in addresses:
        if not is_public_address(address) and endpoint(address, port) not in allowed:
            raise AddressRefused(PRIVATE, host, address)
    return addresses


def endpoint(address: Address, port: int) -> str:
    """`address:port` as an allow-list names it, IPv6 in brackets."""
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def connect_checked(
    host: str, port: int, timeout: float, allowed: frozenset[str] = frozenset()
) -> tuple[socket.socket, Address]:
    """A TCP connection to one of the host's checked addresses, made to that address itself.

    Resolving and connecting in one step leaves no window for the name to resolve elsewhere
    (DNS rebinding). Raises AddressRefused, or OSError when no address answers.
    """
    error: OSError | None = None
    for address in public_addresses(host, port, allowed):
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((str(address), port))
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock, address
    raise error or OSError(f"no address of {host} answered")
