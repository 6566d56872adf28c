"""HTTP plumbing every adapter shares: one keep-alive session per thread, which failures of a
request mean the provider certainly never received it (providers/base.py, the money rule), and the
one resend a stale keep-alive connection calls for.

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
from collections.abc import Callable
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, ProtocolError

logger = logging.getLogger(__name__)

# Answers that say the request was not processed (the adapters' RETRY, and a 401 Reloadly's
# adapter sends again with a new token): after a resend they tell nothing about the first attempt.
NOT_PROCESSED = frozenset({401, 408, 429, 502, 503})


def never_reached(exc: requests.RequestException) -> bool:
    """Failed while connecting (refused, DNS, connect timeout): nothing was sent. urllib3's
    NewConnectionError and NameResolutionError are ConnectTimeoutErrors, the MaxRetryError's reason."""
    if isinstance(exc, AnswerLost):
        return False
    if isinstance(exc, requests.ConnectTimeout):
        return True
    cause = exc.args[0] if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(getattr(cause, "reason", None), ConnectTimeoutError)


def closed_unanswered(exc: requests.RequestException) -> bool:
    """The server closed the connection without a byte of an answer (urllib3's "Connection
    aborted." around http.client's RemoteDisconnected, a reset or a broken pipe). Not a timeout."""
    cause = exc.args[0] if exc.args else None
    if not isinstance(exc, requests.ConnectionError) or not isinstance(cause, ProtocolError):
        return False
    return any(isinstance(arg, ConnectionResetError | BrokenPipeError) for arg in cause.args)


class AnswerLost(requests.ConnectionError):
    """A request sent on a stale connection, whose resend was not processed either (not reached,
    or answered 429/503...): the first attempt may still have been processed, so this is never
    `never_reached`."""


def base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"provider base_url must be an http(s) URL, not {url!r}")
    return url.rstrip("/")


# Whether the request this thread sent last went out on a connection that had already carried an
# answer. requests sends synchronously on the calling thread, and each thread has its own session.
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


class StaleConnectionAdapter(HTTPAdapter):
    """requests' transport adapter, without urllib3 retries (a POST resent after a reset could be a
    second top-up with a provider that did not dedupe), plus the one resend of a request a stale
    keep-alive connection lost (module docstring)."""

    def __init__(self):
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        # urllib3 keeps the pool classes per manager so that a manager can use its own.
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _SecurePool}

    def send(self, request: requests.PreparedRequest, *args, **kwargs) -> requests.Response:
        _last_send.reused = False
        try:
            return super().send(request, *args, **kwargs)
        except requests.ConnectionError as exc:
            if not (_last_send.reused and closed_unanswered(exc)):
                raise
            lost = exc
        logger.info(
            "%s %s: the keep-alive connection was closed unanswered (%r); sent again", request.method, request.url, lost
        )
        try:
            response = super().send(request, *args, **kwargs)
        except requests.RequestException as exc:
            if never_reached(exc):
                raise AnswerLost(f"{lost}; sent again, not reached: {exc}", request=request) from exc
            raise
        if response.status_code in NOT_PROCESSED:
            response.close()
            raise AnswerLost(f"{lost}; sent again, answered {response.status_code}", request=request)
        return response


class ThreadSessions:
    """One keep-alive requests.Session per thread (a Session is not thread-safe; the fulfilment
    worker sends from a thread pool), through StaleConnectionAdapter. `configure` sets what every
    request of the adapter carries."""

    def __init__(self, configure: Callable[[requests.Session], None] | None = None):
        self._local = threading.local()
        self._configure = configure

    def get(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False  # no proxy or .netrc from the environment replacing our Authorization
            session.mount("http://", StaleConnectionAdapter())
            session.mount("https://", StaleConnectionAdapter())
            session.headers["Accept"] = "application/json"
            if self._configure is not None:
                self._configure(session)
        return session
