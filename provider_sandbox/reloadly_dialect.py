"""Reloadly's airtime dialect under /reloadly (docs/provider.md, "Reloadly"), as we read its published
contract: `POST /oauth/token` (client credentials, an audience, tokens that expire); every other
call with `Authorization: Bearer <token>` (401 `TOKEN_EXPIRED` / `INVALID_TOKEN`); `POST /topups`
with `operatorId`, `amount`, `useLocalAmount`, `customIdentifier`, `recipientPhone {countryCode,
number}`; `GET /topups/{id}/status`; `GET /topups/reports/transactions` filtered by
`customIdentifier` or `startDate`/`endDate`, paged (`page`, `size`); `GET /accounts/balance`;
operators by id, paged, and auto-detected from a number and a country; countries. Errors
`{timeStamp, message, path, errorCode, infoLink, details}`."""

import asyncio
import hmac
import math
import re
import secrets
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qs, unquote

from core.countries import alpha3
from core.currencies import exponent, to_minor
from provider_sandbox import processing, reloadly_views
from provider_sandbox.errors import HttpError

STATUSES = {  # the record's status -> Reloadly's
    "COMPLETED": "SUCCESSFUL", "SUBMITTED": "PENDING", "CREATED": "PENDING", "CONFIRMED": "PENDING",
    "DECLINED": "FAILED", "REJECTED": "FAILED", "CANCELLED": "FAILED", "REVERSED": "REFUNDED",
}  # fmt: skip
REFUSALS = {"invalid_number": "INVALID_RECIPIENT_PHONE", "operator_declined": "TOPUP_TRANSACTION_FAILED"}
_STATUS = re.compile(r"topups/([0-9]{1,18})/status")
_REPORT = re.compile(r"topups/reports/transactions/([0-9]{1,18})")
_OPERATOR = re.compile(r"operators/([0-9]{1,18})")
_DETECT = re.compile(r"operators/auto-detect/phone/([^/]+)/countries/([A-Za-z]{2})")
MAX_SIZE = 200


def error(status: int, code: str, message: str, path: str, headers: list | None = None) -> HttpError:
    body = {
        "timeStamp": _stamp(datetime.now(UTC).isoformat()),
        "message": message,
        "path": path,
        "errorCode": code,
        "infoLink": None,
        "details": [],
    }
    return HttpError(status, code, message, headers, body=body)


async def route(app, scope, receive) -> tuple[int, dict | list, list]:
    method, path = scope["method"], scope["path"]
    query = parse_qs(scope["query_string"].decode("latin-1"))
    rest = path.removeprefix("/reloadly/")
    where = f"/{rest}"
    if rest in ("oauth/token", "topups"):
        allowed = ("POST",)
    elif rest in ("topups/reports/transactions", "accounts/balance", "operators", "countries") or any(
        pattern.fullmatch(rest) for pattern in (_STATUS, _REPORT, _OPERATOR, _DETECT)
    ):
        allowed = ("GET",)
    else:
        raise error(404, "NOT_FOUND", "No message available", where)
    if method not in allowed:
        raise error(405, "METHOD_NOT_ALLOWED", f"allowed: {', '.join(allowed)}", where, [("allow", ", ".join(allowed))])
    await asyncio.sleep(app.config.latency_ms / 1000)
    if app.config.down:
        raise error(503, "SERVICE_UNAVAILABLE", "Service unavailable", where)
    if rest == "oauth/token":
        return 200, _token(app, await _body(app, receive, where), where), []
    _authenticate(app, scope, where)
    if rest == "topups":
        return await _top_up(app, await _body(app, receive, where), where)
    if rest == "accounts/balance":
        account = app.store.account()
        return (
            200,
            {
                "balance": float(Decimal(account["available"]).scaleb(-exponent(account["currency"]))),
                "currencyCode": account["currency"],
                "currencyName": account["currency"],
                "updatedAt": _stamp(datetime.now(UTC).isoformat()),
            },
            [],
        )
    if rest == "topups/reports/transactions":
        return 200, _report(app, query, where), []
    if match := _STATUS.fullmatch(rest):
        row = _transaction(app, match[1], where)
        return 200, {"code": None, "message": None, "status": STATUSES[row["status"]], "transaction": view(row)}, []
    if match := _REPORT.fullmatch(rest):
        return 200, view(_transaction(app, match[1], where)), []
    if rest == "countries":
        return 200, reloadly_views.countries(app.catalog), []
    if rest == "operators":
        return 200, _operators_page(app, query, where), []
    if match := _DETECT.fullmatch(rest):
        return 200, _detect(app, unquote(match[1]), match[2].upper(), where), []
    operator = _operators(app).get(int(_OPERATOR.fullmatch(rest)[1]))
    if operator is None:
        raise error(404, "OPERATOR_NOT_FOUND", "Operator not found", where)
    return 200, operator.view, []


async def _body(app, receive, where: str):
    return await app.json_body(receive, error=lambda detail: error(400, "INVALID_REQUEST", detail, where))


def _token(app, body, where: str) -> dict:
    if not isinstance(body, dict) or body.get("grant_type") != "client_credentials":
        raise error(400, "INVALID_REQUEST", "grant_type client_credentials is required", where)
    if not isinstance(body.get("audience"), str) or not body["audience"]:
        raise error(400, "INVALID_REQUEST", "audience is required", where)
    given = f"{body.get('client_id')}:{body.get('client_secret')}"
    if not hmac.compare_digest(given.encode(), f"{app.config.client_id}:{app.config.client_secret}".encode()):
        raise error(401, "INVALID_CREDENTIALS", "Access Denied", where)
    token = secrets.token_urlsafe(24)
    app.tokens[token] = time.monotonic() + app.config.token_seconds
    app.stats["tokens_issued"] += 1
    return {
        "access_token": token,
        "scope": "developer",
        "expires_in": math.floor(app.config.token_seconds),
        "token_type": "Bearer",
    }


def _authenticate(app, scope, where: str) -> None:
    given = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1").removeprefix("Bearer ")
    expires = app.tokens.get(given)
    if expires is None:
        raise error(401, "INVALID_TOKEN", "Full authentication is required to access this resource", where)
    if expires <= time.monotonic():
        raise error(401, "TOKEN_EXPIRED", "The access token has expired", where)


def _operators(app) -> dict:
    """Built once per catalog version: the catalog changes only through /_sandbox/catalog."""
    cached = app.views.get("reloadly_operators")
    if cached is None or cached[0] != app.catalog.version:
        cached = app.views["reloadly_operators"] = (app.catalog.version, reloadly_views.operators(app.catalog))
    return cached[1]


async def _top_up(app, body, where: str) -> tuple[int, dict, list]:
    top_up = _validated(app, body, where)
    try:
        row, created = await processing.process(app, top_up)
    except processing.Gate as gate:
        if gate.status == 429:
            raise error(429, "TOO_MANY_REQUESTS", "Too many requests", where, [("retry-after", "1")]) from None
        raise error(503, "SERVICE_UNAVAILABLE", "Service unavailable", where) from None
    except processing.InsufficientBalance:
        raise error(400, "INSUFFICIENT_BALANCE", "Your balance is not enough for this top-up", where) from None
    if not created:
        # The sandbox's own code: Reloadly documents that an identifier cannot be reused, not how it says so.
        raise error(400, "DUPLICATE_CUSTOM_IDENTIFIER", "This custom identifier has been used before", where)
    if row["status"] in ("DECLINED", "REJECTED"):
        code = REFUSALS.get(row["failure_code"], "TOPUP_TRANSACTION_FAILED")
        raise error(400, code, "The top-up failed", where)
    before = Decimal(app.store.available() + row["cost"]).scaleb(-2)
    answer = view(row) | {
        "balanceInfo": {
            "oldBalance": float(before),
            "newBalance": float(before - Decimal(row["cost"]).scaleb(-2)),
            "cost": float(Decimal(row["cost"]).scaleb(-2)),
            "currencyCode": "USD",
            "currencyName": "US Dollar",
            "updatedAt": _stamp(row["created_at"]),
        }
    }
    return 200, answer, []


def _validated(app, body, where: str) -> processing.TopUp:
    if not isinstance(body, dict):
        raise error(400, "INVALID_REQUEST", "a JSON object is expected", where)
    phone = body.get("recipientPhone")
    identifier = body.get("customIdentifier") or f"reloadly-{uuid.uuid4().hex}"
    if not isinstance(identifier, str) or len(identifier) > 150:
        raise error(400, "INVALID_REQUEST", "customIdentifier: a string of at most 150 characters", where)
    try:
        operator_id, amount = int(body.get("operatorId")), Decimal(str(body.get("amount")))
    except (TypeError, ValueError, InvalidOperation):
        raise error(400, "INVALID_REQUEST", "operatorId and amount are required", where) from None
    operator = _operators(app).get(operator_id)
    if operator is None:
        raise error(400, "OPERATOR_UNAVAILABLE_OR_CURRENTLY_INACTIVE", "Operator is not available", where)
    number = str(phone.get("number", "")) if isinstance(phone, dict) else ""
    country = phone.get("countryCode") if isinstance(phone, dict) else None
    digits = number.removeprefix("+")
    if (
        not re.fullmatch(r"[1-9][0-9]{7,14}", digits)
        or not isinstance(country, str)
        or alpha3(country) != operator.country
    ):
        raise error(400, "INVALID_RECIPIENT_PHONE", "Recipient phone number is not valid", where)
    local = body.get("useLocalAmount", False) is True
    unit = operator.view["destinationCurrencyCode"]
    try:
        destination = to_minor(amount if local else amount * Decimal(str(operator.view["fx"]["rate"])), unit)
    except ValueError:
        destination = None
    prices = None if destination is None else reloadly_views.priced(operator, destination)
    if amount <= 0 or prices is None:
        raise error(400, "INVALID_AMOUNT_FOR_OPERATOR", "The amount is not valid for this operator", where)
    cost, requested = prices
    return processing.TopUp(
        dialect="reloadly",
        external_id=identifier,
        msisdn=f"+{digits}",
        amount=destination,
        product_id=str(operator_id),
        currency=unit,
        cost=cost,
        extra={
            "operatorName": operator.view["name"],
            "countryCode": country.upper(),
            "requestedAmount": float(requested),
            "discount": float(requested - Decimal(cost).scaleb(-2)),
        },
    )


def _transaction(app, transaction_id: str, where: str) -> dict:
    row = app.store.by_id(int(transaction_id))
    if row is None or row["dialect"] != "reloadly":
        raise error(404, "TRANSACTION_NOT_FOUND", "Transaction not found", where)
    return row


def _report(app, query: dict, where: str) -> dict:
    page, size = _int(query, "page", 1, where), min(_int(query, "size", MAX_SIZE, where), MAX_SIZE)
    rows, total = app.store.search(
        dialect="reloadly",
        external_id=query.get("customIdentifier", [None])[0],
        created_from=_date(query, "startDate", where),
        created_to=_date(query, "endDate", where),
        offset=(page - 1) * size,
        limit=size,
    )
    return _page([view(row) for row in rows], total, page, size)


def _operators_page(app, query: dict, where: str) -> dict:
    page, size = _int(query, "page", 1, where), min(_int(query, "size", MAX_SIZE, where), MAX_SIZE)
    everything = [operator.view for operator in _operators(app).values()]
    return _page(everything[(page - 1) * size : page * size], len(everything), page, size)


def _page(content: list, total: int, page: int, size: int) -> dict:
    pages = max(1, math.ceil(total / size))
    return {
        "content": content,
        "totalElements": total,
        "totalPages": pages,
        "number": page - 1,
        "size": size,
        "numberOfElements": len(content),
        "first": page == 1,
        "last": page >= pages,
        "empty": not content,
    }


def _detect(app, phone: str, country: str, where: str) -> dict:
    identified = app.catalog.identified(f"+{phone.removeprefix('+')}")
    if identified is None or identified["country"]["iso_code"] != alpha3(country):
        raise error(404, "COULD_NOT_AUTO_DETECT_OPERATOR", "Could not detect the operator of this number", where)
    operator = _operators(app).get(2 * identified["id"]) or _operators(app).get(2 * identified["id"] + 1)
    if operator is None:
        raise error(404, "COULD_NOT_AUTO_DETECT_OPERATOR", "Could not detect the operator of this number", where)
    return operator.view


def _int(query: dict, name: str, default: int, where: str) -> int:
    raw = query.get(name, [None])[0]
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
        raise error(400, "INVALID_REQUEST", f"{name}: a positive integer is expected", where)
    return int(raw)


def _date(query: dict, name: str, where: str) -> datetime | None:
    raw = query.get(name, [None])[0]
    if raw is None:
        return None
    try:
        return datetime.strptime(raw, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise error(400, "INVALID_REQUEST", f"{name}: yyyy-MM-dd HH:mm:ss is expected", where) from None


def _stamp(iso: str) -> str:
    """Reloadly's `yyyy-MM-dd HH:mm:ss` (UTC, as we assume its dates are)."""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def view(row: dict) -> dict:
    extra, currency = row["extra"], row["currency"]
    return {
        "transactionId": row["id"],
        "status": STATUSES[row["status"]],
        "operatorTransactionId": f"SBX{row['id']}" if row["status"] == "COMPLETED" else None,
        "customIdentifier": row["external_id"],
        "recipientPhone": row["msisdn"].removeprefix("+"),
        "recipientEmail": None,
        "senderPhone": None,
        "countryCode": extra.get("countryCode"),
        "operatorId": int(row["product_id"]) if row["product_id"] else None,
        "operatorName": extra.get("operatorName"),
        "discount": extra.get("discount"),
        "discountCurrencyCode": "USD",
        "requestedAmount": extra.get("requestedAmount"),
        "requestedAmountCurrencyCode": "USD",
        "deliveredAmount": float(Decimal(row["amount"]).scaleb(-exponent(currency))) if currency else None,
        "deliveredAmountCurrencyCode": currency,
        "transactionDate": _stamp(row["created_at"]),
        "pinDetail": None,
        "balanceInfo": None,
    }
