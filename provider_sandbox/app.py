"""The sandbox's raw ASGI app: routing, validation, the decision (outcomes.py), the record
(store.py), background completions and callbacks (callbacks.py)."""

import asyncio
import hmac
import json
import logging
import re
import time
from collections import Counter
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote

from provider_sandbox import callbacks
from provider_sandbox.catalog import Catalog, CatalogError, filtered, page_of
from provider_sandbox.outcomes import SUBMITTED, Config, decide
from provider_sandbox.store import Store, public

logger = logging.getLogger("provider_sandbox")

MSISDN = re.compile(r"\+[1-9][0-9]{7,14}")
MAX_BODY = 64 * 1024
CATALOG_MAX_BODY = 256 * 1024 * 1024  # a whole catalog posted to /_sandbox/catalog (the benchmark's 10,000 products)
MAX_AMOUNT = 10**15
_TRANSACTION_PATH = re.compile(r"/v1/transactions/([0-9]{1,18})")
_LOOKUP_PATH = re.compile(r"/v1/lookup/mobile-number(?:/([^/]+))?")
_CATALOG_LISTS = {"/v1/products": "products", "/v1/operators": "operators", "/v1/countries": "countries"}


class Drop(Exception):
    """Close the connection without an answer."""


class HttpError(Exception):
    def __init__(self, status: int, error: str, detail: str | None = None, headers: list | None = None):
        self.status, self.error, self.detail, self.headers = status, error, detail, headers or []


def _invalid(detail: str) -> HttpError:
    return HttpError(400, "invalid_request", detail)


class SandboxApp:
    def __init__(self, config: Config, store: Store, catalog: Catalog | None = None):
        self.config, self.store = config, store
        self.catalog = catalog or Catalog()
        self.attempts: Counter[str] = Counter()  # requests seen per external id (outcomes.py)
        self.stats = Counter()
        self.tasks: set[asyncio.Task] = set()  # referenced until done (the loop keeps weak ones)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self.lifespan(receive, send)
        if scope["type"] != "http":
            return None
        self.stats["requests"] += 1
        try:
            status, payload, headers = await self.route(scope, receive)
        except HttpError as exc:
            status, headers = exc.status, exc.headers
            payload = {"error": exc.error} | ({"detail": exc.detail} if exc.detail else {})
        except Drop:
            self.stats["dropped"] += 1
            # uvicorn closes the connection, sending nothing, when the app returns a value other
            # than None (an ASGI protocol error it logs); raising or returning None after no
            # http.response.start would send a 500 instead. tests/provider checks it stays so.
            return "drop"
        except Exception:
            logger.exception("sandbox error on %s %s", scope["method"], scope["path"])
            status, payload, headers = 500, {"error": "internal_error"}, []
        self.stats[f"responses_{status}"] += 1
        body = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                + [(name.encode(), value.encode()) for name, value in headers],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return None

    async def lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.resume_submitted()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in list(self.tasks):
                    task.cancel()
                self.store.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def route(self, scope, receive) -> tuple[int, dict | list, list]:
        method, path = scope["method"], scope["path"]
        query = parse_qs(scope["query_string"].decode("latin-1"))
        if path.startswith("/_sandbox/"):
            if path == "/_sandbox/stats":
                self.allow(method, "GET")
                return 200, self.stats_view(), []
            if path == "/_sandbox/config":
                self.allow(method, "GET", "POST")
                if method == "POST":
                    changes = await self.json_body(receive)
                    if not isinstance(changes, dict):
                        raise _invalid("a JSON object of settings is expected")
                    if problem := self.config.update(changes):
                        raise _invalid(problem)
                return 200, self.config.public(), []
            if path == "/_sandbox/catalog":
                self.allow(method, "GET", "POST")
                if method == "POST":
                    self.catalog_change(await self.json_body(receive, CATALOG_MAX_BODY))
                return 200, self.catalog.dump(), []
            raise HttpError(404, "not_found")

        if path in _CATALOG_LISTS or _LOOKUP_PATH.fullmatch(path):
            return await self.catalog_route(scope, receive, method, path, query)

        match = _TRANSACTION_PATH.fullmatch(path)
        if path != "/v1/transactions" and not match:
            raise HttpError(404, "not_found")
        self.allow(method, *(("GET",) if match else ("GET", "POST")))
        await asyncio.sleep(self.config.latency_ms / 1000)
        self.authenticate(scope)
        if self.config.down:
            raise HttpError(503, "unavailable", "the sandbox is down (/_sandbox/config)")
        if match:
            row = self.store.by_id(int(match[1]))
            if row is None:
                raise HttpError(404, "not_found")
            return 200, public(row), []
        if method == "GET":
            return 200, self.list_view(query), []
        return await self.submit(await self.json_body(receive))

    async def catalog_route(self, scope, receive, method: str, path: str, query: dict) -> tuple[int, list, list]:
        lookup = _LOOKUP_PATH.fullmatch(path)
        self.allow(method, *(("GET",) if not lookup else ("POST",) if lookup[1] is None else ("GET",)))
        await asyncio.sleep(self.config.latency_ms / 1000)
        self.authenticate(scope)
        if self.config.down:
            raise HttpError(503, "unavailable", "the sandbox is down (/_sandbox/config)")
        if lookup:
            if lookup[1] is None:
                body = await self.json_body(receive)
                msisdn = body.get("mobile_number") if isinstance(body, dict) else None
            else:
                msisdn = unquote(lookup[1])
            if not isinstance(msisdn, str) or not MSISDN.fullmatch(msisdn):
                raise _invalid("mobile_number: an E.164 number such as +989121234567 is required")
            return 200, self.catalog.lookup(msisdn), []
        try:
            items, headers = page_of(filtered(getattr(self.catalog, _CATALOG_LISTS[path]), query), query)
        except CatalogError as exc:
            raise _invalid(str(exc)) from None
        return 200, items, headers

    def catalog_change(self, body) -> None:
        """`{"reset": true}` restores the catalog the sandbox started with; a whole catalog
        (`{countries, operators, products}`) replaces it."""
        if isinstance(body, dict) and body.get("reset") is True:
            self.catalog.reset()
            return
        try:
            self.catalog.load(body)
        except CatalogError as exc:
            raise _invalid(str(exc)) from None

    def allow(self, method: str, *allowed: str) -> None:
        if method not in allowed:
            raise HttpError(
                405, "method_not_allowed", f"allowed: {', '.join(allowed)}", [("allow", ", ".join(allowed))]
            )

    def authenticate(self, scope) -> None:
        if not self.config.api_key:
            return
        given = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.config.api_key}".encode()):
            raise HttpError(401, "unauthorized", "Authorization: Bearer <api key> expected")

    async def json_body(self, receive, limit: int = MAX_BODY):
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Drop()
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                raise _invalid("body too large")
            if not message.get("more_body"):
                break
        try:
            return json.loads(b"".join(chunks))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _invalid("malformed JSON") from None

    async def submit(self, body) -> tuple[int, dict, list]:
        external_id, msisdn, amount, callback_url = _validated(body)
        self.attempts[external_id] += 1
        decision = decide(self.config, external_id=external_id, msisdn=msisdn, attempt=self.attempts[external_id])
        if decision.gate == 429:
            raise HttpError(429, "rate_limited", headers=[("retry-after", "1")])
        if decision.gate == 503:
            raise HttpError(503, "unavailable")
        if decision.hang:
            await asyncio.sleep(self.config.hang_seconds)
            raise Drop()
        row, created = self.store.insert(
            external_id=external_id,
            msisdn=msisdn,
            amount=amount,
            status=decision.status,
            failure_code=decision.failure_code,
            callback_url=callback_url,
        )
        if not created:
            if (row["msisdn"], row["amount"]) != (msisdn, amount):
                raise HttpError(409, "external_id_conflict")
            return 200, public(row), []
        if row["status"] == SUBMITTED:
            self.spawn(self.complete_later(row, self.config.pending_seconds))
        else:
            self.callback(row)
        if decision.drop:
            raise Drop()
        return 201, public(row), []

    def list_view(self, query: dict) -> dict:
        if "external_id" in query:
            row = self.store.by_external_id(query["external_id"][0])
            return {"results": [] if row is None else [public(row)]}
        after_id = _int_param(query, "after_id", 0, minimum=0)
        limit = _int_param(query, "limit", 100, minimum=1, maximum=1000)
        rows = self.store.page(
            created_after=_time_param(query, "created_after"),
            created_before=_time_param(query, "created_before"),
            after_id=after_id,
            limit=limit,
        )
        return {
            "results": [public(row) for row in rows],
            "next_after_id": rows[-1]["id"] if len(rows) == limit else None,
        }

    def stats_view(self) -> dict:
        counts = self.store.counts()
        return {
            "transactions": {status: counts.get(status, 0) for status in ("COMPLETED", "DECLINED", "SUBMITTED")},
            "requests": self.stats["requests"],
            "dropped": self.stats["dropped"],
            "responses": {
                key.removeprefix("responses_"): n for key, n in self.stats.items() if key.startswith("responses_")
            },
            "callbacks_delivered": self.stats["callbacks_delivered"],
            "callbacks_failed": self.stats["callbacks_failed"],
            "pending_tasks": len(self.tasks),
        }

    def spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def callback(self, row: dict) -> None:
        if row["callback_url"]:
            self.spawn(callbacks.deliver(row["callback_url"], public(row), self.config.callback_secret, self.stats))

    async def complete_later(self, row: dict, delay: float) -> None:
        await asyncio.sleep(delay)
        completed = self.store.complete(row["id"])
        if completed is not None:
            self.callback(completed)

    def resume_submitted(self) -> None:
        """After a restart with --db: the SUBMITTED transactions complete when they were due."""
        now = time.time()
        for row in self.store.submitted():
            due = datetime.fromisoformat(row["created_at"]).timestamp() + self.config.pending_seconds
            self.spawn(self.complete_later(row, max(0.0, due - now)))


def _validated(body) -> tuple[str, str, int, str | None]:
    if not isinstance(body, dict):
        raise _invalid("a JSON object is expected")
    external_id, msisdn, amount = body.get("external_id"), body.get("msisdn"), body.get("amount")
    callback_url = body.get("callback_url")
    if not isinstance(external_id, str) or not 1 <= len(external_id) <= 64:
        raise _invalid("external_id: a string of 1 to 64 characters is required")
    if not isinstance(msisdn, str) or not MSISDN.fullmatch(msisdn):
        raise _invalid("msisdn: an E.164 number such as +989121234567 is required")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise _invalid(f"amount: an integer between 1 and {MAX_AMOUNT} is required")
    if callback_url is not None and (
        not isinstance(callback_url, str) or not re.fullmatch(r"https?://[^\s/]+\S*", callback_url)
    ):
        raise _invalid("callback_url: an http(s) URL or null")
    return external_id, msisdn, amount, callback_url


def _int_param(query: dict, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    raw = query.get(name, [None])[0]
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 18 or int(raw) < minimum or (maximum is not None and int(raw) > maximum):
        raise _invalid(f"{name}: an integer between {minimum} and {maximum or 'any'} is expected")
    return int(raw)


def _time_param(query: dict, name: str) -> datetime | None:
    raw = query.get(name, [None])[0]
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _invalid(f"{name}: an ISO 8601 timestamp is expected (percent-encode '+')") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
