"""The address rule (jobs/addresses.py), shared by webhooks and imports, and the import proxy that
applies it to every connection a download makes: CONNECT for https, absolute URIs for http."""

import socket
import subprocess
import sys

import pytest

from jobs import addresses, webhooks
from jobs.imports.proxy import FetchProxy
from tests.conftest import ROOT
from tests.servers import Site

pytestmark = pytest.mark.database_agnostic


@pytest.fixture
def site():
    server = Site()
    server.route("/song.mp3", b"ID3 a song", "audio/mpeg")
    yield server
    server.close()


def ask(proxy: FetchProxy, request: bytes) -> bytes:
    """Send one raw request to the proxy and read its whole answer."""
    host, port = proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if request.startswith(b"CONNECT") and b"\r\n\r\n" in answer:
                break
    return answer


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/a", addresses.SCHEME),
        ("file:///etc/passwd", addresses.SCHEME),
        ("http:///nothing", addresses.NO_HOST),
        ("https://user:pw@example.com/a", addresses.CREDENTIALS),
        ("https://user@example.com/a", addresses.CREDENTIALS),
        ("http://[::1/a", addresses.INVALID),
    ],
)
def test_only_plain_http_and_https_links_pass_the_rule(url, reason):
    with pytest.raises(addresses.AddressRefused) as refused:
        addresses.parse_url(url)
    assert refused.value.reason == reason


def test_the_allow_list_names_one_address_and_port_exactly(site):
    assert addresses.public_addresses("127.0.0.1", site.port, frozenset({site.address}))
    for port in (site.port + 1, 80):
        with pytest.raises(addresses.AddressRefused) as refused:
            addresses.public_addresses("127.0.0.1", port, frozenset({site.address}))
        assert refused.value.reason == addresses.PRIVATE
    with pytest.raises(addresses.AddressRefused):
        addresses.public_addresses("localhost", site.port)


def test_a_connection_is_made_only_to_the_address_just_checked(site):
    sock, address = addresses.connect_checked("localhost", site.port, 5, frozenset({site.address}))
    with sock:
        assert (str(address), sock.getpeername()[1]) == ("127.0.0.1", site.port)
    with pytest.raises(addresses.AddressRefused):
        addresses.connect_checked("127.0.0.1", site.port, 5)


def test_a_webhook_connects_only_to_an_address_it_checked_as_it_connects(site, settings):
    settings.STEMSITE_WEBHOOK_ALLOW_PRIVATE = False
    settings.STEMSITE_WEBHOOK_ALLOWED_HOSTS = []
    with pytest.raises(addresses.AddressRefused):
        webhooks._checked_socket(("127.0.0.1", site.port), 5)
    settings.STEMSITE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    webhooks._checked_socket(("127.0.0.1", site.port), 5).close()


def test_the_proxy_forwards_http_to_an_allowed_server_and_refuses_others(site):
    private = Site()
    try:
        with FetchProxy(frozenset({site.address}), 10_000, 30) as proxy:
            allowed = ask(
                proxy, f"GET {site.url('/song.mp3')} HTTP/1.1\r\nHost: {site.address}\r\n\r\n".encode()
            )
            refused = ask(
                proxy, f"GET {private.url('/x')} HTTP/1.1\r\nHost: {private.address}\r\n\r\n".encode()
            )
            tunnel = ask(
                proxy, f"CONNECT {private.address} HTTP/1.1\r\nHost: {private.address}\r\n\r\n".encode()
            )
            opened = ask(proxy, f"CONNECT {site.address} HTTP/1.1\r\nHost: {site.address}\r\n\r\n".encode())
            secret = ask(proxy, f"GET http://u:p@{site.address}/song.mp3 HTTP/1.1\r\n\r\n".encode())
        assert allowed.startswith(b"HTTP/1.1 200")
        assert allowed.endswith(b"ID3 a song")
        assert refused.startswith(b"HTTP/1.1 403")
        assert b"X-Stemsite-Refused: private" in refused
        assert tunnel.startswith(b"HTTP/1.1 403"), "no tunnel to a private address"
        assert opened.startswith(b"HTTP/1.1 200 Connection established")
        assert secret.startswith(b"HTTP/1.1 403")
        assert b"credentials" in secret
        assert private.hits == []
        assert site.hits == ["/song.mp3"]
        assert [(r.reason, r.address) for r in proxy.refusals][:2] == [("private", "127.0.0.1")] * 2
    finally:
        private.close()


def test_the_proxy_cuts_every_connection_past_its_byte_budget(site):
    site.route("/big.mp3", b"x" * 200_000, "audio/mpeg")
    with FetchProxy(frozenset({site.address}), 50_000, 30) as proxy:
        answer = ask(proxy, f"GET {site.url('/big.mp3')} HTTP/1.1\r\nHost: {site.address}\r\n\r\n".encode())
    assert proxy.over_budget
    assert len(answer) < 200_000


IMPORT_THE_DOWNLOADERS = """
import importlib, pkgutil, sys
import jobs.imports
names = [m.name for m in pkgutil.iter_modules(jobs.imports.__path__)]
for name in names:
    importlib.import_module(f"jobs.imports.{name}")
importlib.import_module("jobs.addresses")
print(",".join(sorted(names)))
print(",".join(sorted(n for n in sys.modules if n.split(".")[0] == "django")))
"""


def test_the_rule_and_the_downloaders_import_without_django():
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT)}  # no DJANGO_SETTINGS_MODULE either
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_THE_DOWNLOADERS], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    modules, django_modules = result.stdout.splitlines()
    assert set(modules.split(",")) == {"failures", "fetch", "proxy", "sites"}
    assert django_modules == ""
