"""The SSRF matrix: refused at save time, and no socket ever opened to the target."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx2
import pytest
from django.test import override_settings

from apps.core.ssrf import UnsafeURLError, check_url
from apps.providers.http import guarded_client

INTERNAL = [
    "http://127.0.0.1/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0x7f.0.0.1/",
    "http://0177.0.0.1/",
    "http://0/",
    "http://0.0.0.0/",
    "http://[::1]/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::127.0.0.1]/",
    "http://[2002:7f00:1::]/",  # 6to4 wrapping 127.0.0.1
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://[fe80::1]/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://localhost/",
    "http://localhost.:8080/",
]
MALFORMED = [
    "ftp://example.com/",
    "file:///etc/passwd",
    "gopher://x/",
    "http://user:pw@8.8.8.8/",
    "http:///nohost",
    "http://[::1/",
    "//8.8.8.8/",
]


@pytest.mark.parametrize("url", INTERNAL + MALFORMED)
def test_internal_or_malformed_urls_are_refused_at_save_time(url):
    with override_settings(SSRF_ALLOW_LIST=[]), pytest.raises(UnsafeURLError) as info:
        check_url(url)
    assert info.value.fields is not None and list(info.value.fields) == ["base_url"]


@pytest.mark.parametrize(
    "url", ["https://8.8.8.8/v1", "http://[2001:4860:4860::8888]:8080/"]
)
def test_public_addresses_pass(url):
    assert check_url(url) == url


def test_allow_list_admits_exactly_what_the_operator_listed():
    with override_settings(SSRF_ALLOW_LIST=["10.1.2.0/24"]):
        assert check_url("http://10.1.2.3:8000/") == "http://10.1.2.3:8000/"
        with pytest.raises(UnsafeURLError):
            check_url("http://10.1.3.3/")


class Listener:
    """A TCP server on loopback that counts the connections it accepts."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.redirect_to: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.recv(65536)
                if self.redirect_to:
                    conn.sendall(
                        b"HTTP/1.1 302 Found\r\nLocation: "
                        + self.redirect_to.encode()
                        + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=2)


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener("127.0.0.1")
    yield server
    server.close()


def _spellings(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/",
        f"http://127.1:{port}/",
        f"http://2130706433:{port}/",
        f"http://0x7f000001:{port}/",
        f"http://0177.0.0.1:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://localhost:{port}/",
    ]


def test_no_spelling_of_a_refused_address_opens_a_socket(listener):
    with override_settings(SSRF_ALLOW_LIST=[]):
        client = guarded_client(timeout=2)
        for url in _spellings(listener.port):
            # httpx2 itself rejects some spellings as invalid URLs; the guard the rest.
            with pytest.raises((httpx2.ConnectError, httpx2.InvalidURL)):
                client.get(url)
    assert listener.accepted == 0


def test_redirect_to_a_refused_address_is_blocked_at_connect_time(listener):
    target = Listener("127.0.0.2")
    try:
        listener.redirect_to = f"http://127.0.0.2:{target.port}/internal"
        # Even a client that follows redirects cannot reach 127.0.0.2: the guard is
        # in the transport, checked for every connection.
        client = guarded_client(timeout=2)
        client.follow_redirects = True
        with pytest.raises(httpx2.ConnectError, match=r"127\.0\.0\.2"):
            client.get(f"http://127.0.0.1:{listener.port}/start")
        # And the default client does not follow redirects at all.
        response = guarded_client(timeout=2).get(f"http://127.0.0.1:{listener.port}/")
        assert response.status_code == 302
    finally:
        target.close()
    assert listener.accepted == 2
    assert target.accepted == 0


def test_allowed_address_is_reached(listener):
    response = guarded_client(timeout=2).get(f"http://127.0.0.1:{listener.port}/")
    assert response.text == "ok"
    assert listener.accepted == 1
