"""HTTP plumbing every adapter shares: keep-alive connections to the provider through libcurl
(pycurl), which failures of a request mean the provider certainly never received it
(providers/base.py, the money rule), and the one resend a stale keep-alive connection calls for.

libcurl rather than a Python HTTP client: a top-up request is a few hundred bytes each way and the
fulfilment worker sends hundreds a second. libcurl builds the requests, parses the answers and
waits on the sockets in C, and its multi interface runs a whole batch from one thread
(providers/transfers.py): through urllib3 from PROVIDER_CONCURRENCY threads the same submit cost
about twice the CPU, most of it `http.client` and the threads' hand-offs of the GIL
(docs/performance.md, *Fulfilment*). Nothing here follows a redirect, uses a proxy, or retries on
its own account: a POST resent after a reset could be a second top-up with a provider that did not
dedupe.

A stale connection: a server closes a keep-alive connection it holds idle (its keep-alive timeout,
a restart, a load balancer), and our request leaves on it in the instant before we see the close.
The request fails with not a byte of an answer: the server shut the connection rather than answer
it. libcurl then sends the request once more at once, on a new connection (a request that found
the connection dead before it left is not a resend: nothing had gone out). Every adapter's provider
dedupes by our external id (the sandbox answers its transaction again, DT One and Reloadly refuse
the id as used and their adapters then find it), so that is safe under the same body. libcurl
rewinds a body it sends again through the seek callback (CURLOPT_SEEKFUNCTION), which is how we
know a POST was resent: an answer to the resend that says "not processed" then tells nothing about
the first attempt, which a server may have processed before dropping the connection, so it is
RequestFailed. The same failure on a connection opened for the request is not stale: it stays what
it is (UNKNOWN for a top-up), as does a timeout."""

import base64
import io
import json as jsonlib
import logging
from dataclasses import dataclass, replace
from urllib.parse import urlencode, urlsplit

import certifi
import pycurl
from django.conf import settings

from providers.transfers import Job, Transfers

logger = logging.getLogger(__name__)

# Answers that say the request was not processed (the adapters' RETRY, and a 401 Reloadly's
# adapter sends again with a new token): after a resend they tell nothing about the first attempt.
NOT_PROCESSED = frozenset({401, 408, 429, 502, 503})
STALE = "a stale keep-alive connection closed unanswered"

# libcurl's errors that leave before a byte of the request is sent (a timeout is one only while
# connecting: `_failure`).
_NOTHING_SENT = frozenset({pycurl.E_COULDNT_RESOLVE_PROXY, pycurl.E_COULDNT_RESOLVE_HOST, pycurl.E_COULDNT_CONNECT})


class RequestFailed(Exception):
    """No answer came: the request may have been processed (a timeout, a connection lost after
    sending, a stale connection's resend that was not processed either)."""


class NotReached(RequestFailed):
    """Failed while connecting (refused, DNS, connect timeout): nothing was sent."""


class Headers(dict):
    """An answer's headers by lower-cased name (the last of a repeated one)."""

    def get(self, name: str, default=None):
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name) -> bool:
        return super().__contains__(name.lower())


class Response:
    """An answer, whatever its status: `status`, `headers`, `data` (the body's bytes), `json()`."""

    def __init__(self, status: int, head: bytes, data: bytes):
        self.status, self.data, self._head = status, data, head
        self._headers: Headers | None = None

    @property
    def headers(self) -> Headers:
        if self._headers is None:  # parsed when asked: most answers are read for their body only
            self._headers = _parse_head(self._head)
        return self._headers

    def json(self):
        return jsonlib.loads(self.data)


def _parse_head(head: bytes) -> Headers:
    # The last block: an interim answer (100 Continue) comes before the final one.
    block = head.decode("latin-1").rstrip("\r\n").rsplit("\r\n\r\n", 1)[-1]
    headers = Headers()
    for line in block.split("\r\n")[1:]:  # after the status line
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"provider base_url must be an http(s) URL, not {url!r}")
    return url.rstrip("/")


def basic_auth(user: str, password: str) -> dict[str, str]:
    """The Authorization header of HTTP basic auth."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")}


def text(response: Response, limit: int = 300) -> str:
    """The start of an answer's body, for a log line or an error."""
    return response.data[:limit].decode("utf-8", "replace")


class _Body:
    """A request's body as libcurl reads it, and whether libcurl rewound it to send it again."""

    def __init__(self, data: bytes):
        self.stream, self.size, self.resent = io.BytesIO(data), len(data), False
        self.read = self.stream.read

    def seek(self, offset: int, origin: int) -> int:
        if self.stream.tell() > 0:  # some of it had gone out: this is a resend
            self.resent = True
        self.stream.seek(offset, origin)
        return pycurl.SEEKFUNC_OK


@dataclass(frozen=True)
class Request:
    """A request ready to send: `headers` complete, `body` the JSON's bytes (None for a GET)."""

    method: str
    url: str
    headers: tuple[str, ...]  # as libcurl takes them: "Name: value"
    body: bytes | None = None

    def header(self, name: str) -> str | None:
        prefix = f"{name.lower()}:"
        return next((h.split(":", 1)[1].strip() for h in self.headers if h.lower().startswith(prefix)), None)

    def with_header(self, name: str, value: str) -> "Request":
        """The same request with `name` set to `value` instead."""
        prefix = f"{name.lower()}:"
        kept = tuple(h for h in self.headers if not h.lower().startswith(prefix))
        return replace(self, headers=(*kept, f"{name}: {value}"))


class _Exchange:
    """One request's transfer (providers/transfers.py): the easy handle set up, the answer read."""

    def __init__(self, client: "Client", request: Request):
        self.client, self.request, self.result = client, request, None
        self.head, self.data = io.BytesIO(), io.BytesIO()
        self.body = None if request.body is None else _Body(request.body)

    def prepare(self, curl: pycurl.Curl) -> None:
        request, body = self.request, self.body
        curl.setopt(pycurl.URL, request.url)
        curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        curl.setopt(pycurl.PROXY, "")  # no proxy, whatever the environment says
        curl.setopt(pycurl.NOSIGNAL, 1)
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, self.client.connect_ms)
        curl.setopt(pycurl.TIMEOUT_MS, self.client.total_ms)
        curl.setopt(pycurl.CAINFO, certifi.where())
        curl.setopt(pycurl.HTTPHEADER, list(request.headers))
        curl.setopt(pycurl.HEADERFUNCTION, self.head.write)
        curl.setopt(pycurl.WRITEFUNCTION, self.data.write)
        if body is None:
            curl.setopt(pycurl.HTTPGET, 1)
            return
        curl.setopt(pycurl.POST, 1)
        curl.setopt(pycurl.POSTFIELDSIZE, body.size)
        curl.setopt(pycurl.READFUNCTION, body.read)
        curl.setopt(pycurl.SEEKFUNCTION, body.seek)
        if request.method != "POST":
            curl.setopt(pycurl.CUSTOMREQUEST, request.method)

    def finish(self, curl: pycurl.Curl, error: tuple | None) -> None:
        resent = self.body is not None and self.body.resent
        if error is not None:
            failure = _failure(curl, *error)
            self.result = RequestFailed(f"{STALE}; sent again: {failure}") if resent else failure
            return
        status = curl.getinfo(pycurl.RESPONSE_CODE)
        if resent:
            logger.info("%s %s: %s; sent again", self.request.method, self.request.url, STALE)
            if status in NOT_PROCESSED:
                self.result = RequestFailed(f"{STALE}; sent again, answered {status}")
                return
        self.result = Response(status, self.head.getvalue(), self.data.getvalue())


class Client:
    """An adapter's connections to its provider: every request through one thread's libcurl
    multi handle (providers/transfers.py), on at most PROVIDER_CONCURRENCY keep-alive connections,
    `headers` on every request. `timeout` is (connect, read) in seconds; libcurl bounds the whole
    request, so a request fails after connect + read.

    `request` sends one and raises NotReached or RequestFailed; `exchange_all` sends many at once
    and returns, for each, its answer or the RequestFailed it met. Any answer, whatever its
    status, is returned."""

    def __init__(self, *, timeout: tuple[float, float], headers: dict[str, str] | None = None):
        self.connect_ms, self.total_ms = round(timeout[0] * 1000), round((timeout[0] + timeout[1]) * 1000)
        # "Expect:" turns off libcurl's 100-continue round trip before a body.
        self.headers = {"Accept": "application/json", "Expect": "", **(headers or {})}
        self._transfers = Transfers(connections=int(getattr(settings, "PROVIDER_CONCURRENCY", 10)))

    def prepare(
        self, method: str, url: str, *, params: dict | None = None, json=None, headers: dict[str, str] | None = None
    ) -> Request:
        if params:
            url = f"{url}?{urlencode({k: v for k, v in params.items() if v is not None}, doseq=True)}"
        merged = {**self.headers, **(headers or {})}
        body = None
        if json is not None:
            body, merged["Content-Type"] = jsonlib.dumps(json).encode(), "application/json"
        elif method != "GET":
            body = b""
        lines = tuple(f"{name}: {value}" if value else f"{name}:" for name, value in merged.items())
        return Request(method, url, lines, body)

    def request(self, method: str, url: str, **options) -> Response:
        """`prepare`'s request sent; raises NotReached or RequestFailed."""
        return self.send(self.prepare(method, url, **options))

    def send(self, request: Request) -> Response:
        answer = self.exchange(request)
        if isinstance(answer, RequestFailed):
            raise answer
        return answer

    def exchange(self, request: Request) -> Response | RequestFailed:
        return self.exchange_all([request])[0]

    def exchange_all(self, requests: list[Request]) -> list[Response | RequestFailed]:
        exchanges = [_Exchange(self, request) for request in requests]
        self._transfers.run([Job(one.prepare, one.finish) for one in exchanges])
        return [one.result for one in exchanges]

    def clear(self) -> None:
        """Close the connections kept: the next requests open their own (as after a provider's
        restart; the tests' way to send on a connection opened for the request)."""
        self._transfers.forget_connections()


def _failure(curl: pycurl.Curl, code: int, message: str) -> RequestFailed:
    # A timeout before the connection was made (the pre-transfer mark not reached) sent nothing.
    connecting = code == pycurl.E_OPERATION_TIMEDOUT and curl.getinfo(pycurl.PRETRANSFER_TIME) == 0
    if code in _NOTHING_SENT or connecting:
        return NotReached(f"curl error {code}: {message}")
    return RequestFailed(f"curl error {code}: {message}")
