"""The sandbox's own dialect under /v1 (docs/provider.md, "The sandbox's own dialect"):
`POST /v1/transactions {external_id, msisdn, amount}`, a replay answered with the stored
transaction (200) or refused when its body differs (409), lists paged by id, optional
`Authorization: Bearer <api key>`, errors `{"error", "detail"}`; plus the DT One-shaped discovery
and the account balance in DT One's shape. No prices: its top-ups draw nothing."""

import asyncio
import hmac
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs

from provider_sandbox import discovery, processing
from provider_sandbox.discovery import MSISDN
from provider_sandbox.dvs_dialect import balances_view
from provider_sandbox.errors import HttpError, invalid
from provider_sandbox.store import public

MAX_AMOUNT = 10**15
_TRANSACTION = re.compile(r"transactions/([0-9]{1,18})")


def _error(status: int, detail: str) -> HttpError:
    return HttpError(status, "invalid_request" if status == 400 else "not_found", detail)


async def route(app, scope, receive) -> tuple[int, dict | list, list]:
    method, path = scope["method"], scope["path"]
    query = parse_qs(scope["query_string"].decode("latin-1"))
    rest = path.removeprefix("/v1/") if path.startswith("/v1/") else None
    match = _TRANSACTION.fullmatch(rest or "")
    if rest is None or not (rest in ("transactions", "balances") or match or discovery.serves(rest)):
        raise HttpError(404, "not_found")
    if match:
        allowed = ("GET",)
    elif rest == "transactions":
        allowed = ("GET", "POST")
    elif rest == "balances":
        allowed = ("GET",)
    else:
        allowed = discovery.allowed(rest)
    app.allow(method, *allowed)
    await asyncio.sleep(app.config.latency_ms / 1000)
    _authenticate(app, scope)
    if app.config.down:
        raise HttpError(503, "unavailable", "the sandbox is down (/_sandbox/config)")
    if discovery.serves(rest):
        return await discovery.answer(app, rest, query, receive, _error)
    if rest == "balances":
        return 200, balances_view(app), []
    if match:
        row = app.store.by_id(int(match[1]))
        if row is None:
            raise HttpError(404, "not_found")
        return 200, public(row), []
    if method == "GET":
        return 200, _list_view(app, query), []
    return await _submit(app, await app.json_body(receive))


def _authenticate(app, scope) -> None:
    if not app.config.api_key:
        return
    given = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
    if not hmac.compare_digest(given.encode(), f"Bearer {app.config.api_key}".encode()):
        raise HttpError(401, "unauthorized", "Authorization: Bearer <api key> expected")


async def _submit(app, body) -> tuple[int, dict, list]:
    top_up = _validated(body)
    try:
        row, created = await processing.process(app, top_up)
    except processing.Gate as gate:
        if gate.status == 429:
            raise HttpError(429, "rate_limited", headers=[("retry-after", "1")]) from None
        raise HttpError(503, "unavailable") from None
    if not created:
        if (row["msisdn"], row["amount"]) != (top_up.msisdn, top_up.amount):
            raise HttpError(409, "external_id_conflict")
        return 200, public(row), []
    return 201, public(row), []


def _validated(body) -> processing.TopUp:
    if not isinstance(body, dict):
        raise invalid("a JSON object is expected")
    external_id, msisdn, amount = body.get("external_id"), body.get("msisdn"), body.get("amount")
    callback_url = body.get("callback_url")
    if not isinstance(external_id, str) or not 1 <= len(external_id) <= 64:
        raise invalid("external_id: a string of 1 to 64 characters is required")
    if not isinstance(msisdn, str) or not MSISDN.fullmatch(msisdn):
        raise invalid("msisdn: an E.164 number such as +989121234567 is required")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise invalid(f"amount: an integer between 1 and {MAX_AMOUNT} is required")
    if callback_url is not None and (
        not isinstance(callback_url, str) or not re.fullmatch(r"https?://[^\s/]+\S*", callback_url)
    ):
        raise invalid("callback_url: an http(s) URL or null")
    return processing.TopUp(
        dialect="legacy", external_id=external_id, msisdn=msisdn, amount=amount, callback_url=callback_url
    )


def _list_view(app, query: dict) -> dict:
    if "external_id" in query:
        row = app.store.by_external_id(query["external_id"][0])
        return {"results": [] if row is None else [public(row)]}
    after_id = _int_param(query, "after_id", 0, minimum=0)
    limit = _int_param(query, "limit", 100, minimum=1, maximum=1000)
    rows = app.store.page(
        created_after=_time_param(query, "created_after"),
        created_before=_time_param(query, "created_before"),
        after_id=after_id,
        limit=limit,
    )
    return {
        "results": [public(row) for row in rows],
        "next_after_id": rows[-1]["id"] if len(rows) == limit else None,
    }


def _int_param(query: dict, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    raw = query.get(name, [None])[0]
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 18 or int(raw) < minimum or (maximum is not None and int(raw) > maximum):
        raise invalid(f"{name}: an integer between {minimum} and {maximum or 'any'} is expected")
    return int(raw)


def _time_param(query: dict, name: str) -> datetime | None:
    raw = query.get(name, [None])[0]
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise invalid(f"{name}: an ISO 8601 timestamp is expected (percent-encode '+')") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
