"""HTTP plumbing every adapter shares: one keep-alive connection pool per adapter (urllib3's, which
its threads share), which failures of a request mean the provider certainly never received it
(providers/base.py, the money rule), and the one resend a stale keep-alive connection calls for.

urllib3 directly rather than requests: a top-up request is a few hundred bytes each way, and the
fulfilment worker sends hundreds a second; requests' per-request work (merging session settings,
preparing, hooks, cookies) made each submit cost half as much CPU again as it does through urllib3
alone (docs/performance.md, *Fulfilment*). Nothing here follows a redirect or retries: a POST
resent after a reset could be a second top-up with a provider that did not dedupe.

A stale connection: a server closes a keep-alive connection it holds idle (its keep-alive timeout,
a restart, a load balancer), and our request leaves on it in the instant before we see the close.
The request fails with the connection closed and not a byte of an answer (http.client's
RemoteDisconnected, or a reset): the server shut the connection rather than answer it. Every
adapter's provider dedupes by our external id (the sandbox answers its transaction again, DT One
and Reloadly refuse the id as used and their adapters then find it), so that request is sent once
more at once, on a new connection, under the same body. The same failure on a connection opened
for the request is not stale: it stays what it is (UNKNOWN for a top-up), as does a read timeout.
A server that processed the request and then dropped the connection looks the same from here; the
resend is then answered with the transaction it made, never a second one."""

import logging
import threading
from urllib.parse import urlencode, urlsplit

import urllib3
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, HTTPError, ProtocolError

logger = logging.getLogger(__name__)

# Answers that say the request was not processed (the adapters' RETRY, and a 401 Reloadly's
# adapter sends again with a new token): after a resend they tell nothing about the first attempt.
NOT_PROCESSED = frozenset({401, 408, 429, 502, 503})

Response = urllib3.BaseHTTPResponse  # status, headers (case-insensitive), data, json()


class RequestFailed(Exception):
    """No answer came: the request may have been processed (a read timeout, a connection lost
    after sending, a stale connection's resend that was not processed either)."""


class NotReached(RequestFailed):
    """Failed while connecting (refused, DNS, connect timeout): nothing was sent."""


def base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"provider base_url must be an http(s) URL, not {url!r}")
    return url.rstrip("/")


def text(response: Response, limit: int = 300) -> str:
    """The start of an answer's body, for a log line or an error."""
    return response.data[:limit].decode("utf-8", "replace")


# Whether the request this thread sent last went out on a connection that had already carried an
# answer. urllib3 sends synchronously on the calling thread.
_last_send = threading.local()


class _AnswersCounted:
    """Mixed into urllib3's connections: answers read on the socket now open."""

    answers_on_socket = 0

    def connect(self) -> None:
        super().connect()
        self.answers_on_socket = 0

    def request(self, *args, **kwargs) -> None:
        # A closed connection object is opened again inside request(): only a live socket that
        # already carried an answer is a reused one.
        _last_send.reused = self.sock is not None and self.answers_on_socket > 0
        super().request(*args, **kwargs)

    def getresponse(self, *args, **kwargs):
        response = super().getresponse(*args, **kwargs)
        self.answers_on_socket += 1
        return response


class _Connection(_AnswersCounted, HTTPConnection):
    pass


class _SecureConnection(_AnswersCounted, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _SecurePool(HTTPSConnectionPool):
    ConnectionCls = _SecureConnection


def _closed_unanswered(exc: HTTPError) -> bool:
    """The server closed the connection without a byte of an answer ("Connection aborted." around
    http.client's RemoteDisconnected, a reset or a broken pipe). Not a timeout."""
    return isinstance(exc, ProtocolError) and any(
        isinstance(arg, ConnectionResetError | BrokenPipeError) for arg in exc.args
    )


class Client:
    """An adapter's connections to its provider: a keep-alive pool per host, as many connections
    kept as the fulfilment worker has request threads (PROVIDER_CONCURRENCY), `headers` on every
    request. Raises NotReached and RequestFailed; any answer, whatever its status, is returned."""

    def __init__(self, *, timeout: tuple[float, float], headers: dict[str, str] | None = None):
        self.timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        self.headers = {"Accept": "application/json", **(headers or {})}
        self._pools = urllib3.PoolManager(
            maxsize=int(getattr(settings, "PROVIDER_CONCURRENCY", 10)), retries=False, timeout=self.timeout
        )
        # urllib3 keeps the pool classes per manager so that a manager can use its own.
        self._pools.pool_classes_by_scheme = {"http": _Pool, "https": _SecurePool}

    def request(
        self, method: str, url: str, *, params: dict | None = None, json=None, headers: dict[str, str] | None = None
    ) -> Response:
        if params:
            url = f"{url}?{urlencode({k: v for k, v in params.items() if v is not None}, doseq=True)}"
        headers = {**self.headers, **(headers or {})}
        try:
            return self._send(method, url, json, headers)
        except HTTPError as exc:
            if not (_last_send.reused and _closed_unanswered(exc)):
                raise self._failure(exc) from exc
            lost = exc
        logger.info("%s %s: the keep-alive connection was closed unanswered (%r); sent again", method, url, lost)
        try:
            response = self._send(method, url, json, headers)
        except HTTPError as exc:
            raise RequestFailed(f"{lost}; sent again: {exc}") from exc
        if response.status in NOT_PROCESSED:
            raise RequestFailed(f"{lost}; sent again, answered {response.status}")
        return response

    def clear(self) -> None:
        """Close the connections kept: the next request opens its own (as after a provider's
        restart; the tests' way to send on a connection opened for the request)."""
        self._pools.clear()

    def _send(self, method: str, url: str, json, headers: dict[str, str]) -> Response:
        _last_send.reused = False
        return self._pools.request(method, url, json=json, headers=headers, redirect=False)

    @staticmethod
    def _failure(exc: HTTPError) -> RequestFailed:
        # urllib3's NewConnectionError and NameResolutionError are ConnectTimeoutErrors.
        return NotReached(str(exc)) if isinstance(exc, ConnectTimeoutError) else RequestFailed(repr(exc))
