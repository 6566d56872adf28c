"""Reloadly's OAuth2 client-credentials tokens for one adapter: asked of the auth server
(`POST /oauth/token {client_id, client_secret, grant_type, audience}`), kept until shortly before
they expire (`expires_in`), and dropped when an API call answers 401 so that the next call asks for
a new one. The fulfilment worker asks from many threads (its task threads, its lookups' pool):
one lock makes a single request for a token however many threads need one at the same moment."""

import logging
import threading
import time
from dataclasses import dataclass

from providers import http
from providers.base import ProviderError

logger = logging.getLogger(__name__)

MAX_MARGIN = 300.0  # a token is renewed this long (at most) before it expires
MARGIN_SHARE = 0.2  # ... or this share of its lifetime for short-lived tokens


class TokenUnavailable(ProviderError):
    """No token could be had: nothing was sent with it."""


@dataclass(frozen=True)
class Token:
    value: str
    renew_at: float  # time.monotonic()


class TokenSource:
    def __init__(
        self,
        *,
        auth_url: str,
        client_id: str,
        client_secret: str,
        audience: str,
        timeout: tuple[float, float],
        name: str,
    ):
        self.auth_url, self.audience, self.timeout, self.name = auth_url, audience, timeout, name
        self._credentials = {"client_id": client_id, "client_secret": client_secret}
        self._lock = threading.Lock()
        self._token: Token | None = None
        self._client = http.Client(timeout=timeout)

    def token(self) -> str:
        """A token valid for a while yet; raises TokenUnavailable."""
        current = self._token
        if current is not None and time.monotonic() < current.renew_at:
            return current.value
        with self._lock:
            current = self._token  # another thread may have renewed it while this one waited
            if current is None or time.monotonic() >= current.renew_at:
                current = self._token = self._fetch()
            return current.value

    def invalidate(self, value: str) -> None:
        """The API refused `value` (401): the next call asks for a new token, unless another thread
        already replaced it."""
        with self._lock:
            if self._token is not None and self._token.value == value:
                self._token = None

    def _fetch(self) -> Token:
        asked_at = time.monotonic()
        try:
            response = self._client.request(
                "POST",
                self.auth_url,
                json={**self._credentials, "grant_type": "client_credentials", "audience": self.audience},
            )
        except http.RequestFailed as exc:
            raise TokenUnavailable(f"provider {self.name}: no token: {exc}") from exc
        if response.status != 200:
            raise TokenUnavailable(f"provider {self.name}: the auth server answered HTTP {response.status}")
        try:
            payload = response.json()
            value, lifetime = payload["access_token"], float(payload["expires_in"])
            if not isinstance(value, str) or not value or lifetime <= 0:
                raise ValueError("no token or no lifetime")
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenUnavailable(f"provider {self.name}: unreadable token answer: {exc}") from exc
        logger.info("provider %s: new access token for %.0f s", self.name, lifetime)
        # From when we asked: the server started counting no later than that.
        return Token(value, asked_at + lifetime - min(MAX_MARGIN, lifetime * MARGIN_SHARE))
