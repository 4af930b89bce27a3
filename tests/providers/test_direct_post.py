"""DirectPost (apps/providers/http.py) sends what its guarded client would send, on
the client's own transport: the same request, the client's timeout, the SSRF guard."""

from __future__ import annotations

import socket
import threading
import time

import httpx2
import pytest
from django.test import override_settings
from werkzeug import Response

from apps.providers.http import DirectPost, GuardedTransport, guarded_client

HEADERS = {
    "Authorization": "Bearer sk-test",
    "Content-Type": "application/json",
    "Accept": "application/json",
    "User-Agent": "OpenAI/Python 9.9",
    "X-Stainless-Lang": "python",
}


def _direct(url: str, timeout: float = 5) -> tuple[httpx2.Client, DirectPost]:
    transport = GuardedTransport()
    client = guarded_client(timeout=timeout, transport=transport)
    return client, DirectPost(client, transport, url, HEADERS)


def test_it_sends_the_request_the_client_would_send(httpserver):
    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_json(
        {"ok": True}
    )
    url = httpserver.url_for("/v1/chat/completions")
    client, post = _direct(url)
    body = b'{"model":"m","messages":[{"role":"user","content":"caf\xc3\xa9"}]}'

    ours = post(body)
    theirs = client.post(url, content=body, headers=HEADERS)

    assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json())
    [(a, _), (b, _)] = httpserver.log
    sent = [(r.method, r.full_path, r.get_data()) for r in (a, b)]
    assert sent[0] == sent[1]
    assert sorted(a.headers.items()) == sorted(b.headers.items())
    assert a.headers["Authorization"] == "Bearer sk-test"
    assert a.headers["Accept-Encoding"]  # the client's own default rides along


def test_the_answer_is_read_whole_and_its_connection_released(httpserver):
    httpserver.expect_request("/echo", method="POST").respond_with_data(
        "x" * 100_000, content_type="text/plain"
    )
    _, post = _direct(httpserver.url_for("/echo"))
    for _ in range(3):
        response = post(b"{}")
        assert response.content == b"x" * 100_000
        assert response.request.url == httpserver.url_for("/echo")
    pool = post.transport._pool  # the one pool the client shares
    assert [c for c in pool.connections if not c.is_idle()] == []


def test_an_answer_cut_short_leaves_no_connection_taken():
    """Headers, then part of the body, then silence: the call raises the client's
    timeout error and leaves no connection taken in the pool."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    done = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        done.wait(5)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        _, post = _direct(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=0.3)
        with pytest.raises(httpx2.ReadTimeout):
            post(b"{}")
        pool = post.transport._pool
        assert [c for c in pool.connections if not c.is_idle()] == []
    finally:
        done.set()
        thread.join(5)
        listener.close()


def test_the_clients_timeout_applies(httpserver):
    def slow(request):
        time.sleep(1.0)
        return Response("late")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    _, post = _direct(httpserver.url_for("/slow"), timeout=0.2)
    started = time.monotonic()
    with pytest.raises(httpx2.ReadTimeout):
        post(b"{}")
    assert time.monotonic() - started < 0.9


def test_the_ssrf_guard_refuses_the_connection(httpserver):
    with override_settings(SSRF_ALLOW_LIST=[]):
        _, post = _direct(httpserver.url_for("/v1/chat/completions"))
        with pytest.raises(httpx2.ConnectError):
            post(b"{}")
    assert httpserver.log == []
