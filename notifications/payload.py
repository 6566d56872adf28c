"""An event as clients see it, the same in the feed, in webhook bodies and in the stream:
`{"id", "type", "created_at", "seller", "seq", "data"}`."""

import json

# Event columns in the order `event_json` takes them.
COLUMNS = [
    "id",
    "type",
    "created_at",
    "seller_id",
    "seq",
    "charge_id",
    "deposit_id",
    "amount",
    "balance_after",
    "failure_code",
    "data",
]
_STATUS = {
    "deposit.approved": "approved",
    "charge.succeeded": "succeeded",
    "charge.failed": "failed",
    "charge.reversed": "reversed",
}
# The settle's events carry one text column: a failure's code, or for a reversal the provider's reason.
_CODE_KEY = {"charge.reversed": "reason"}


def event_data(type_, charge_id, deposit_id, amount, balance_after, failure_code, data) -> dict:
    if isinstance(data, str):  # a raw cursor's jsonb
        data = json.loads(data)
    typed = {
        "charge_id": charge_id,
        "deposit_id": deposit_id,
        "amount": amount,
        "status": _STATUS.get(type_),
        "balance_after": balance_after,
        _CODE_KEY.get(type_, "failure_code"): failure_code,
    }
    return {**{k: v for k, v in typed.items() if v is not None}, **(data or {})}


def event_json(
    id_, type_, created_at, seller_id, seq, charge_id, deposit_id, amount, balance_after, failure_code, data
) -> dict:
    return {
        "id": id_,
        "type": type_,
        "created_at": created_at.isoformat(),
        "seller": seller_id,
        "seq": seq,
        "data": event_data(type_, charge_id, deposit_id, amount, balance_after, failure_code, data),
    }


def event_text(*row) -> str:
    return json.dumps(event_json(*row), separators=(",", ":"))
