"""HTTP plumbing every adapter shares: one keep-alive session per thread, and which failures of a
request mean the provider certainly never received it (providers/base.py, the money rule)."""

import threading
from collections.abc import Callable
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError


def never_reached(exc: requests.RequestException) -> bool:
    """Failed while connecting (refused, DNS, connect timeout): nothing was sent. urllib3's
    NewConnectionError and NameResolutionError are ConnectTimeoutErrors, the MaxRetryError's reason."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    cause = exc.args[0] if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(getattr(cause, "reason", None), ConnectTimeoutError)


def base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"provider base_url must be an http(s) URL, not {url!r}")
    return url.rstrip("/")


class ThreadSessions:
    """One keep-alive requests.Session per thread (a Session is not thread-safe; the fulfilment
    worker sends from a thread pool). No retries inside urllib3: a POST resent after a reset could
    be a second top-up. `configure` sets what every request of the adapter carries."""

    def __init__(self, configure: Callable[[requests.Session], None] | None = None):
        self._local = threading.local()
        self._configure = configure

    def get(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False  # no proxy or .netrc from the environment replacing our Authorization
            session.mount("http://", HTTPAdapter(max_retries=0))
            session.mount("https://", HTTPAdapter(max_retries=0))
            session.headers["Accept"] = "application/json"
            if self._configure is not None:
                self._configure(session)
        return session
