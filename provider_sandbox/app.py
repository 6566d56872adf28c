"""The sandbox's raw ASGI app: the operator endpoints (/_sandbox/...) and, by path, three dialects
over one record: the sandbox's own (/v1, legacy_dialect.py), DT One DVS's (/dvs/v1,
dvs_dialect.py) and Reloadly's (/reloadly, reloadly_dialect.py). What a top-up request does is the
same in each (processing.py); how it is asked and answered is the dialect's."""

import asyncio
import json
import logging
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

from provider_sandbox import callbacks, dvs_dialect, legacy_dialect, processing, reloadly_dialect
from provider_sandbox.catalog import Catalog, CatalogError
from provider_sandbox.connections import KeepAlive
from provider_sandbox.errors import Drop, HttpError, invalid
from provider_sandbox.outcomes import Config
from provider_sandbox.store import STATUSES, Store, public

logger = logging.getLogger("provider_sandbox")

MAX_BODY = 64 * 1024
CATALOG_MAX_BODY = 256 * 1024 * 1024  # a whole catalog posted to /_sandbox/catalog (the benchmark's 10,000 products)
# What each dialect POSTs to a transaction's callback_url (Reloadly's contract has no callbacks).
CALLBACK_BODIES = {"legacy": public, "dvs": dvs_dialect.transaction_view}


class SandboxApp:
    def __init__(self, config: Config, store: Store, catalog: Catalog | None = None):
        self.config, self.store = config, store
        self.catalog = catalog or Catalog()
        self.attempts: Counter[str] = Counter()  # requests seen per external id (outcomes.py)
        self.stats = Counter()
        self.tokens: dict[str, float] = {}  # Reloadly access token -> when it expires (time.monotonic)
        self.tasks: set = set()  # referenced until done (the loop keeps weak ones)
        self.views: dict = {}  # what a dialect builds from the catalog, with the catalog version it read
        self.keep_alive = KeepAlive()
        self.stale_draws = random.Random(f"{config.seed}:stale")  # the stale-connection fault's draws

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self.lifespan(receive, send)
        if scope["type"] != "http":
            return None
        self.stats["requests"] += 1
        client = scope.get("client")
        if self.stale(scope["path"], client):
            self.stats["stale_closed"] += 1
            return "drop"  # closed before reading the request, as below
        try:
            status, payload, headers = await self.route(scope, receive)
        except HttpError as exc:
            status, headers, payload = exc.status, exc.headers, exc.payload()
        except Drop:
            self.stats["dropped"] += 1
            self.keep_alive.closed(client)
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
        self.keep_alive.answered(client)
        return None

    def stale(self, path: str, client) -> bool:
        """The stale-connection fault: a dialect's request on a reused keep-alive connection is,
        at `stale_rate`, met by the connection closing unread and unprocessed, as when a server
        closes a connection it held idle just as the request arrives on it."""
        if not self.keep_alive.arrived(client) or path.startswith("/_sandbox/"):
            return False
        if not self.config.stale_rate or self.stale_draws.random() >= self.config.stale_rate:
            return False
        self.keep_alive.closed(client)
        return True

    async def lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                processing.resume(self)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in list(self.tasks):
                    task.cancel()
                self.store.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def route(self, scope, receive) -> tuple[int, dict | list, list]:
        path = scope["path"]
        if path.startswith("/_sandbox/"):
            return await self.operator_route(scope, receive)
        if path.startswith("/dvs/"):
            return await dvs_dialect.route(self, scope, receive)
        if path.startswith("/reloadly/"):
            return await reloadly_dialect.route(self, scope, receive)
        return await legacy_dialect.route(self, scope, receive)

    async def operator_route(self, scope, receive) -> tuple[int, dict | list, list]:
        method, path = scope["method"], scope["path"]
        if path == "/_sandbox/stats":
            self.allow(method, "GET")
            return 200, self.stats_view(), []
        if path == "/_sandbox/config":
            self.allow(method, "GET", "POST")
            if method == "POST":
                changes = await self.json_body(receive)
                if not isinstance(changes, dict):
                    raise invalid("a JSON object of settings is expected")
                if problem := self.config.update(changes):
                    raise invalid(problem)
            return 200, self.config.public(), []
        if path == "/_sandbox/catalog":
            self.allow(method, "GET", "POST")
            if method == "POST":
                self.catalog_change(await self.json_body(receive, CATALOG_MAX_BODY))
            return 200, self.catalog.dump(), []
        if path == "/_sandbox/balance":
            self.allow(method, "GET", "POST")
            if method == "POST":
                self.set_balance(await self.json_body(receive))
            return 200, self.store.account(), []
        if path == "/_sandbox/transactions":
            self.allow(method, "POST")
            return 200, self.force_status(await self.json_body(receive)), []
        if path == "/_sandbox/tokens":
            self.allow(method, "DELETE")
            self.tokens.clear()  # every Reloadly token issued so far is refused from now on
            return 200, {"tokens": 0}, []
        raise HttpError(404, "not_found")

    def catalog_change(self, body) -> None:
        """`{"reset": true}` restores the catalog the sandbox started with; a whole catalog
        (`{countries, operators, products}`) replaces it."""
        if isinstance(body, dict) and body.get("reset") is True:
            self.catalog.reset()
            return
        try:
            self.catalog.load(body)
        except CatalogError as exc:
            raise invalid(str(exc)) from None

    def set_balance(self, body) -> None:
        """`{"available": N}`: the account's available balance, in the smallest unit of its currency."""
        available = body.get("available") if isinstance(body, dict) else None
        if isinstance(available, bool) or not isinstance(available, int) or available < 0:
            raise invalid("available: an integer >= 0 (the smallest unit of the account's currency)")
        self.store.set_available(available)

    def force_status(self, body) -> dict:
        """`{"external_id", "status", "status_detail"?, "failure_code"?, "callback"?}`: sets a
        transaction's status as an operator would, without moving money (tests of the mapping); with
        `"callback": true` its callback is sent as for any final status (a provider's late word,
        such as a success after it had declined)."""
        if not isinstance(body, dict) or not isinstance(body.get("external_id"), str):
            raise invalid("external_id is required")
        if body.get("status") not in STATUSES:
            raise invalid(f"status: one of {', '.join(STATUSES)}")
        row = self.store.force(
            body["external_id"],
            status=body["status"],
            detail=body.get("status_detail"),
            failure_code=body.get("failure_code"),
        )
        if row is None:
            raise HttpError(404, "not_found")
        if body.get("callback") is True:
            self.callback(row)
        return public(row)

    def allow(self, method: str, *allowed: str) -> None:
        if method not in allowed:
            raise HttpError(
                405, "method_not_allowed", f"allowed: {', '.join(allowed)}", [("allow", ", ".join(allowed))]
            )

    async def json_body(self, receive, limit: int = MAX_BODY, *, error=invalid):
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Drop()
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                raise error("body too large")
            if not message.get("more_body"):
                break
        try:
            return json.loads(b"".join(chunks))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise error("malformed JSON") from None

    def stats_view(self) -> dict:
        counts = self.store.counts()
        return {
            "transactions": {status: counts.get(status, 0) for status in STATUSES},
            "requests": self.stats["requests"],
            "dropped": self.stats["dropped"],
            "stale_closed": self.stats["stale_closed"],
            "responses": {
                key.removeprefix("responses_"): n for key, n in self.stats.items() if key.startswith("responses_")
            },
            "callbacks_delivered": self.stats["callbacks_delivered"],
            "callbacks_failed": self.stats["callbacks_failed"],
            "tokens_issued": self.stats["tokens_issued"],
            "pending_tasks": len(self.tasks),
            "account": self.store.account(),
        }

    def spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def callback(self, row: dict) -> None:
        body = CALLBACK_BODIES.get(row["dialect"])
        if row["callback_url"] and body is not None:
            message = f"tx_{row['id']}_{row['status']}"  # the same across retries: receivers dedupe
            self.spawn(
                callbacks.deliver(row["callback_url"], body(row), self.config.callback_secret, self.stats, message)
            )

    def due_in(self, seconds: float) -> str:
        return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="microseconds")
