"""The only way ModelHub opens outbound HTTP connections to providers.

`guarded_client()` returns an httpx2 client (the transport the openai and anthropic
SDKs use) whose every TCP connection is made to an address that passed the SSRF
guard at connect time; redirects are not followed and environment proxies are
ignored, so neither can route a request around the guard.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Callable, Iterable
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import TYPE_CHECKING, Any, TypeVar

import httpcore2
import httpx2
from httpcore2._backends.sync import SyncBackend, SyncStream

from apps.core.ssrf import UnsafeURLError, resolve_checked

if TYPE_CHECKING:
    from apps.providers.connectors.base import ProviderSettings

C = TypeVar("C")
# Clients kept per process, one per provider configuration (kept_client).
CLIENT_CACHE_SIZE = 64
_kept: dict[tuple[Any, ...], Any] = {}
_kept_lock = threading.Lock()


class UnsafeConnectionError(httpcore2.ConnectError):
    """Raised inside the transport; carries the guard's reason."""

    def __init__(self, error: UnsafeURLError) -> None:
        super().__init__(error.message)
        self.error = error


class GuardedBackend(SyncBackend):
    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> SyncStream:
        try:
            infos = resolve_checked(host, port)
        except UnsafeURLError as exc:
            raise UnsafeConnectionError(exc) from exc
        last: OSError | None = None
        for family, type_, proto, _, address in infos:
            sock = socket.socket(family, type_, proto)
            try:
                sock.settimeout(timeout)
                sock.connect(address)  # the vetted address, not the name
            except TimeoutError as exc:
                sock.close()
                raise httpcore2.ConnectTimeout(str(exc)) from exc
            except OSError as exc:
                sock.close()
                last = exc
                continue
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return SyncStream(sock)
        raise httpcore2.ConnectError(str(last or f"cannot connect to {host}:{port}"))


class GuardedTransport(httpx2.HTTPTransport):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trust_env=False, **kwargs)
        # httpx2 has no public hook for the network backend of its default pool.
        self._pool._network_backend = GuardedBackend()  # type: ignore[attr-defined]


def guarded_client(
    *,
    timeout: float,
    headers: dict[str, str] | None = None,
    transport: GuardedTransport | None = None,
) -> httpx2.Client:
    return httpx2.Client(
        transport=transport or GuardedTransport(),
        timeout=httpx2.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
        headers=headers,
        # Clients are kept and shared (kept_client): a cookie one answer sets must
        # not ride along on the next call, perhaps another tenant's.
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )


class DirectPost:
    """POSTs to one URL sent straight on a guarded client's transport: the client's
    connection pool, SSRF guard and timeouts, with the request the client would
    build (its headers merged with the call's, its timeout), without building it
    through the client again for every call (about 0.13 ms a door call). The
    client follows no redirects, runs no auth flow and keeps no cookie (its jar
    refuses them all), so there is nothing else the client would have done.

    The headers are merged at the first call, not before: a value HTTP cannot carry
    (a key that is not ASCII) is then the call's ValueError, as the client's would
    be, and not the failure of building the client the SDK's other calls share."""

    def __init__(
        self,
        client: httpx2.Client,
        transport: GuardedTransport,
        url: str,
        headers: dict[str, str],
        *,
        sni_for_underscores: bool = False,
    ) -> None:
        self.transport = transport
        self.url = httpx2.URL(url)
        self._client_headers = client.headers
        self._headers = headers
        self._merged: httpx2.Headers | None = None
        self.extensions: dict[str, Any] = {"timeout": client.timeout.as_dict()}
        if sni_for_underscores and "_" in self.url.host:
            # What the anthropic SDK's requests carry: TLS has no "_" in host names,
            # so the name sent (and checked against the certificate) uses "-".
            self.extensions["sni_hostname"] = self.url.host.replace("_", "-")

    @classmethod
    def on_sdk_client(
        cls,
        sdk: Any,
        client: httpx2.Client,
        transport: GuardedTransport,
        path: str,
        *,
        sni_for_underscores: bool = False,
    ) -> DirectPost:
        """POSTs to `path` under an SDK client's base URL (openai's or anthropic's,
        built on `client` and `transport`), with the SDK's own headers (key, user
        agent, platform headers...), which are fixed per client; only its
        per-attempt ones (retry count, timeouts) are left out."""
        headers = {**sdk.default_headers, **sdk.auth_headers}
        return cls(
            client,
            transport,
            _sdk_url(sdk.base_url, path),
            {k: v for k, v in headers.items() if isinstance(v, str)},
            sni_for_underscores=sni_for_underscores,
        )

    @property
    def headers(self) -> httpx2.Headers:
        merged = self._merged
        if merged is None:  # two threads may both merge them: either serves
            merged = httpx2.Headers(self._client_headers)
            merged.update(self._headers)
            self._merged = merged
        return merged

    def __call__(self, content: bytes) -> httpx2.Response:
        """The answer, read whole. Raises httpx2's errors, as the client would."""
        request = httpx2.Request(
            "POST",
            self.url,
            headers=self.headers,
            content=content,
            extensions=self.extensions,
        )
        response = self.transport.handle_request(request)
        response.request = request
        try:
            response.read()
        finally:
            response.close()
        return response


def _sdk_url(base: httpx2.URL, path: str) -> str:
    """An SDK client's URL for `path`, built as the SDKs build theirs: the path
    appended to the base URL's raw path (which the SDKs end with "/")."""
    return str(base.copy_with(raw_path=base.raw_path + path.lstrip("/").encode()))


def kept_client(key: tuple[Any, ...], build: Callable[[], C]) -> C:
    """The client built for `key` in this process, built now the first time: a
    client costs ~25 ms to build (TLS context, transport) and keeps its connections
    open for the next call. `key` holds everything the client is built from
    (`client_key`). The CLIENT_CACHE_SIZE used last are kept; one pushed out is left
    to the garbage collector rather than closed, as another thread may be using it.
    Built outside the lock, so that a build does not hold up other providers' calls."""
    with _kept_lock:
        client = _kept.pop(key, None)
        if client is not None:
            _kept[key] = client  # the most recently used come last
            return client  # type: ignore[no-any-return]
    built = build()
    with _kept_lock:
        client = _kept.setdefault(key, built)  # or the one another thread built
        while len(_kept) > CLIENT_CACHE_SIZE:
            del _kept[next(iter(_kept))]
        return client  # type: ignore[no-any-return]


def client_key(config: ProviderSettings) -> tuple[Any, ...]:
    """A kept client's key: all of a provider's settings, which the client is built
    from (hashed: the key is among them), and the SSRF allow-list, whose change
    gives new clients."""
    from django.conf import settings

    text = json.dumps(vars(config), sort_keys=True, default=str)
    return (hashlib.sha256(text.encode()).hexdigest(), tuple(settings.SSRF_ALLOW_LIST))
