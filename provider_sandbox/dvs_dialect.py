"""DT One DVS's dialect under /dvs/v1 (docs/provider.md, "DT One DVS"), as we read its published
contract: HTTP basic auth (key, secret); `POST /async/transactions` with `external_id`,
`product_id`, `auto_confirm`, `credit_party_identifier.mobile_number` and, for a ranged product,
`calculation_mode: DESTINATION_AMOUNT` with `destination {unit_type, unit, amount}`; a reused
external id refused (400, code 1007001); confirm and cancel; `GET /transactions` by external id or
creation dates (24 hours at most), paged; `GET /balances`; errors `{"errors": [{code, message}]}`."""

import asyncio
import base64
import hmac
import math
import re
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs

from core.currencies import UnknownCurrency, exponent, to_minor
from provider_sandbox import discovery, processing
from provider_sandbox.catalog import MAX_PER_PAGE, CatalogError, positive
from provider_sandbox.discovery import MSISDN
from provider_sandbox.errors import HttpError

# Class ids are DT One's (developers.dtone.com, "Handling Transactions"); status ids follow the
# class x 10000 pattern, the sub-statuses' ids are the sandbox's own (DT One publishes none we found).
CLASS_IDS = {
    "CREATED": 1, "CONFIRMED": 2, "REJECTED": 3, "CANCELLED": 4, "SUBMITTED": 5, "COMPLETED": 7, "REVERSED": 8,
    "DECLINED": 9,
}  # fmt: skip
STATUS_IDS = {
    "REJECTED-INVALID-CREDIT-PARTY": 30201, "REJECTED-INSUFFICIENT-BALANCE": 30500,
    "DECLINED-INVALID-CREDIT-PARTY": 90201, "DECLINED-BARRED-CREDIT-PARTY": 90202,
    "DECLINED-OPERATOR-CURRENTLY-UNAVAILABLE": 90400,
}  # fmt: skip
_TRANSACTION = re.compile(r"transactions/([0-9]{1,18})")
_CONFIRM = re.compile(r"async/transactions/([0-9]{1,18})/confirm")
_CANCEL = re.compile(r"transactions/([0-9]{1,18})/cancel")
MAX_WINDOW = timedelta(hours=24)


def error(status: int, message: str, code: int | None = None, headers: list | None = None) -> HttpError:
    code = code or 1000000 + status
    return HttpError(status, "dvs", message, headers, body={"errors": [{"code": code, "message": message}]})


async def route(app, scope, receive) -> tuple[int, dict | list, list]:
    method, path = scope["method"], scope["path"]
    query = parse_qs(scope["query_string"].decode("latin-1"))
    rest = path.removeprefix("/dvs/v1/") if path.startswith("/dvs/v1/") else ""
    if rest == "async/transactions":
        allowed = ("POST",)
    elif rest in ("transactions", "balances") or _TRANSACTION.fullmatch(rest):
        allowed = ("GET",)
    elif _CONFIRM.fullmatch(rest) or _CANCEL.fullmatch(rest):
        allowed = ("POST",)
    elif discovery.serves(rest):
        allowed = discovery.allowed(rest)
    else:
        raise error(404, "Resource not found")
    if method not in allowed:
        raise error(405, f"allowed: {', '.join(allowed)}", headers=[("allow", ", ".join(allowed))])
    await asyncio.sleep(app.config.latency_ms / 1000)
    _authenticate(app, scope)
    if app.config.down:
        raise error(503, "Service unavailable, please retry later", 1009503)
    if discovery.serves(rest):
        return await discovery.answer(app, rest, query, receive, lambda status, detail: error(status, detail))
    if rest == "balances":
        return 200, balances_view(app), []
    if rest == "transactions":
        return _list(app, query)
    if rest == "async/transactions":
        return await _create(app, await app.json_body(receive, error=lambda detail: error(400, detail)))
    if match := _TRANSACTION.fullmatch(rest):
        return 200, transaction_view(_transaction(app, match[1])), []
    if match := _CONFIRM.fullmatch(rest):
        return _confirm(app, _transaction(app, match[1]))
    return _cancel(app, _transaction(app, _CANCEL.fullmatch(rest)[1]))


def _authenticate(app, scope) -> None:
    expected = base64.b64encode(f"{app.config.client_id}:{app.config.client_secret}".encode()).decode()
    given = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
    if not hmac.compare_digest(given.encode(), f"Basic {expected}".encode()):
        raise error(401, "Unauthorized", headers=[("www-authenticate", 'Basic realm="dvs"')])


def _transaction(app, transaction_id: str) -> dict:
    row = app.store.by_id(int(transaction_id))
    if row is None or row["dialect"] != "dvs":
        raise error(404, "Transaction not found", 1008004)
    return row


async def _create(app, body) -> tuple[int, dict, list]:
    top_up = _validated(app, body)
    try:
        row, created = await processing.process(app, top_up)
    except processing.Gate as gate:
        if gate.status == 429:
            raise error(429, "Too many requests", headers=[("retry-after", "1")]) from None
        raise error(503, "Service unavailable, please retry later", 1009503) from None
    except processing.InsufficientBalance:
        raise error(400, "Insufficient balance", 1006001) from None
    if not created:
        raise error(400, "Transaction external ID has already been used", 1007001)
    return 201, transaction_view(row), []


def _confirm(app, row: dict) -> tuple[int, dict, list]:
    if row["status"] != "CREATED":
        if row["status"] in ("CONFIRMED", "SUBMITTED", "COMPLETED", "REVERSED", "DECLINED"):
            raise error(400, "Transaction has already been confirmed", 1007002)
        raise error(400, "Transaction can no longer be confirmed", 1007004)
    return 202, transaction_view(processing.confirm(app, row) or app.store.by_id(row["id"])), []


def _cancel(app, row: dict) -> tuple[int, dict, list]:
    if row["status"] != "CREATED":
        if row["status"] == "CANCELLED":
            raise error(400, "Transaction has already been cancelled", 1007005)
        raise error(400, "Transaction can no longer be cancelled", 1007007)
    cancelled = app.store.move(row["id"], frm=("CREATED",), to="CANCELLED")
    if cancelled is not None:
        app.callback(cancelled)
    return 200, transaction_view(cancelled or app.store.by_id(row["id"])), []


def _validated(app, body) -> processing.TopUp:
    if not isinstance(body, dict):
        raise error(400, "Bad Request: a JSON object is expected")
    external_id, product_id = body.get("external_id"), body.get("product_id")
    party = body.get("credit_party_identifier")
    callback_url = body.get("callback_url")
    if not isinstance(external_id, str) or not 1 <= len(external_id) <= 40 or not external_id.strip():
        raise error(400, "Bad Request: external_id, a string of 1 to 40 characters, is required")
    if isinstance(product_id, bool) or not isinstance(product_id, int):
        raise error(400, "Bad Request: product_id, an integer, is required")
    auto_confirm = body.get("auto_confirm", False)
    if not isinstance(auto_confirm, bool):
        raise error(400, "Bad Request: auto_confirm must be true or false")
    if callback_url is not None and (
        not isinstance(callback_url, str) or not re.fullmatch(r"https?://[^\s/]+\S*", callback_url)
    ):
        raise error(400, "Bad Request: callback_url must be an http(s) URL")
    product = app.catalog.product(product_id)
    if product is None:
        raise error(404, "Product is not available in your account", 1003001)
    msisdn = party.get("mobile_number") if isinstance(party, dict) else None
    if not isinstance(msisdn, str) or not MSISDN.fullmatch(msisdn):
        raise error(400, "Credit party mobile number is invalid", 1005003)
    amount, currency, cost, requested = _priced(product, body)
    return processing.TopUp(
        dialect="dvs",
        external_id=external_id,
        msisdn=msisdn,
        amount=amount,
        callback_url=callback_url,
        product_id=str(product_id),
        currency=currency,
        cost=cost,
        confirm=auto_confirm,
        extra={
            "product": {key: product.get(key) for key in ("id", "name", "description", "service", "operator", "type")}
            | {"tags": product.get("tags"), "regions": product.get("regions")},
            "prices": product.get("prices"),
            "rates": product.get("rates"),
            "requested_values": requested,
        },
    )


def _priced(product: dict, body: dict) -> tuple[int, str, int, dict]:
    """(destination amount, its currency, our cost, requested_values) in smallest units, for the
    product and what the request asks of it."""
    destination, wholesale = product["destination"], product["prices"]["wholesale"]
    currency, cost_unit = destination["unit"], wholesale["unit"]
    try:
        if product["type"].startswith("FIXED"):
            amount = to_minor(destination["amount"], currency)
            cost = to_minor(Decimal(str(wholesale["amount"])) + Decimal(str(wholesale.get("fee") or 0)), cost_unit)
        else:
            amount = _ranged_amount(product, body)
            # Ranged: the fee plus the destination amount at the wholesale rate, rounded up.
            per_unit = Decimal(str(product["rates"]["wholesale"]))
            cost = to_minor(wholesale.get("fee") or 0, cost_unit) + math.ceil(
                Decimal(amount).scaleb(-exponent(currency)) / per_unit * Decimal(10) ** exponent(cost_unit)
            )
    except (UnknownCurrency, ValueError, KeyError) as exc:
        raise error(400, f"Requested product unit is invalid: {exc}", 1003003) from None
    requested = {
        "source": {"unit_type": "CURRENCY", "unit": cost_unit, "amount": _major(cost, cost_unit)},
        "destination": {"unit_type": "CURRENCY", "unit": currency, "amount": _major(amount, currency)},
    }
    return amount, currency, cost, requested


def _ranged_amount(product: dict, body: dict) -> int:
    if body.get("calculation_mode") != "DESTINATION_AMOUNT":
        raise error(400, "Bad Request: calculation_mode DESTINATION_AMOUNT is required (the sandbox serves no other)")
    asked, bounds = body.get("destination"), product["destination"]
    currency = bounds["unit"]
    if not isinstance(asked, dict) or asked.get("unit_type") != "CURRENCY" or asked.get("unit") != currency:
        raise error(400, "Requested product unit is invalid", 1003003)
    value = asked.get("amount")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(400, "Bad Request: destination.amount must be a number")
    try:
        amount = to_minor(value, currency)
    except ValueError:
        raise error(400, "Requested product amount is out of range", 1003002) from None
    low, high = to_minor(bounds["amount"]["min"], currency), to_minor(bounds["amount"]["max"], currency)
    step = to_minor(bounds["amount"].get("increment") or 0, currency)
    if not low <= amount <= high or (step and (amount - low) % step):
        raise error(400, "Requested product amount is out of range", 1003002)
    return amount


def _list(app, query: dict) -> tuple[int, list, list]:
    external_id = query.get("external_id", [None])[0]
    created_from, created_to = _date(query, "from_date"), _date(query, "to_date")
    if created_from and created_to and created_to - created_from > MAX_WINDOW:
        raise error(400, "Bad Request: from_date and to_date can be 24 hours apart at most")
    try:
        page = positive(query, "page", 1)
        per_page = min(positive(query, "per_page", 50), MAX_PER_PAGE)
    except CatalogError as exc:
        raise error(400, f"Bad Request: {exc}") from None
    rows, total = app.store.search(
        dialect="dvs",
        external_id=external_id,
        created_from=created_from,
        created_to=created_to,
        offset=(page - 1) * per_page,
        limit=per_page,
    )
    pages = max(1, math.ceil(total / per_page))
    headers = [
        ("x-total", str(total)),
        ("x-total-pages", str(pages)),
        ("x-per-page", str(per_page)),
        ("x-page", str(page)),
        ("x-next-page", str(page + 1) if page < pages else ""),
        ("x-prev-page", str(page - 1) if page > 1 else ""),
    ]
    return 200, [transaction_view(row) for row in rows], headers


def _date(query: dict, name: str) -> datetime | None:
    raw = query.get(name, [None])[0]
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise error(400, f"Bad Request: {name} must be an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise error(400, f"Bad Request: {name} needs a time zone")
    return moment


def _major(minor: int, currency: str) -> float:
    return float(Decimal(minor).scaleb(-exponent(currency)))


def status_view(row: dict) -> dict:
    detail = row["status_detail"] or row["status"]
    class_id = CLASS_IDS[row["status"]]
    return {
        "id": STATUS_IDS.get(detail, class_id * 10000),
        "message": detail,
        "class": {"id": class_id, "message": row["status"]},
    }


def transaction_view(row: dict) -> dict:
    extra = row["extra"]
    created = row["created_at"]
    confirmed = row["status"] not in ("CREATED", "CANCELLED")
    return {
        "id": row["id"],
        "external_id": row["external_id"],
        "creation_date": created,
        "confirmation_expiration_date": (datetime.fromisoformat(created) + timedelta(hours=1)).isoformat(),
        "confirmation_date": created if confirmed else None,
        "status": status_view(row),
        "operator_reference": f"SBX{row['id']}" if row["status"] in ("COMPLETED", "REVERSED") else None,
        "pin": None,
        "product": extra.get("product"),
        "prices": extra.get("prices"),
        "rates": extra.get("rates"),
        "benefits": [],
        "promotions": [],
        "requested_values": extra.get("requested_values"),
        "adjusted_values": extra.get("requested_values"),
        "sender": None,
        "beneficiary": None,
        "debit_party_identifier": None,
        "credit_party_identifier": {"mobile_number": row["msisdn"]},
        "statement_identifier": None,
        "callback_url": row["callback_url"],
    }


def balances_view(app) -> list[dict]:
    account = app.store.account()
    currency = account["currency"]
    return [
        {
            "id": 1,
            "unit_type": "CURRENCY",
            "unit": currency,
            "available": _major(account["available"], currency),
            "holding": _major(account["holding"], currency),
            "credit_limit": 0,
        }
    ]
