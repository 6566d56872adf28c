"""What the sandbox does with one top-up request, in any dialect: the magic numbers, then the seeded
rates.

Every draw is reproducible: processing draws (decline, pending, drop) come from
`Random(f"{seed}:{external_id}")`, so an id is processed the same way in every run. The gates
that answer before processing (throttle, error) draw from `Random(f"{seed}:{external_id}:{n}")`,
n being how many requests for that id this run of the sandbox has seen: the same retry sequence
meets the same answers in every run, and a throttled id is not throttled forever. The reversal
draw comes after the first three, so adding it changed no earlier draw."""

import random
from dataclasses import asdict, dataclass, fields

COMPLETED, DECLINED, SUBMITTED = "COMPLETED", "DECLINED", "SUBMITTED"

MAGIC_DECLINE = {"9901": "invalid_number", "9902": "operator_declined"}
MAGIC_DROP, MAGIC_HANG, MAGIC_PENDING, MAGIC_THROTTLE_FIRST = "9903", "9904", "9905", "9906"
MAGIC_LATE, MAGIC_REVERSED = "9907", "9908"

FIXED = ("seed", "api_key", "callback_secret", "client_id", "client_secret")  # set at start only
RATES = ("decline_rate", "throttle_rate", "error_rate", "drop_rate", "pending_rate", "reverse_rate", "stale_rate")


@dataclass
class Config:
    """The knobs; all but the seed and the credentials can change at runtime (/_sandbox/config)."""

    latency_ms: float = 5.0
    decline_rate: float = 0.0
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    pending_rate: float = 0.0
    reverse_rate: float = 0.0
    stale_rate: float = 0.0  # app.py: requests on a reused keep-alive connection closed unread
    pending_seconds: float = 3.0
    hang_seconds: float = 30.0
    reverse_seconds: float = 3.0
    token_seconds: float = 3600.0
    down: bool = False
    seed: int = 0
    api_key: str = ""
    callback_secret: str = ""
    client_id: str = "sandbox"
    client_secret: str = "sandbox-secret"

    def public(self) -> dict:
        shown = asdict(self)
        for secret in FIXED[1:]:
            del shown[secret]
        return shown

    def update(self, changes: dict) -> str | None:
        """Apply `changes` (all or nothing); the problem with them, or None."""
        mutable = {f.name: f.type for f in fields(self) if f.name not in FIXED}
        for name, value in changes.items():
            if name not in mutable:
                return f"unknown setting {name!r} (settable: {', '.join(mutable)})"
            if name == "down":
                if not isinstance(value, bool):
                    return "down must be true or false"
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                return f"{name} must be a number >= 0"
            elif name in RATES and value > 1:
                return f"{name} must be between 0 and 1"
        for name, value in changes.items():
            setattr(self, name, value)
        return None


@dataclass(frozen=True)
class Decision:
    """`gate` is an answer given before processing (429, 503), or None to process; then the
    transaction's status and failure code, and the request's fate: answer, drop or hang (`late`:
    hang, then record it completed as the connection closes). `reverse`: a completed top-up is
    reversed reverse-seconds later."""

    gate: int | None = None
    status: str = COMPLETED
    failure_code: str | None = None
    drop: bool = False
    hang: bool = False
    late: bool = False
    reverse: bool = False


def decide(config: Config, *, external_id: str, msisdn: str, attempt: int) -> Decision:
    suffix = msisdn[-4:]
    if suffix in MAGIC_DECLINE:
        return Decision(status=DECLINED, failure_code=MAGIC_DECLINE[suffix])
    if suffix == MAGIC_DROP:
        return Decision(drop=True)
    if suffix == MAGIC_HANG:
        return Decision(hang=True)
    if suffix == MAGIC_PENDING:
        return Decision(status=SUBMITTED)
    if suffix == MAGIC_THROTTLE_FIRST:
        return Decision(gate=429) if attempt == 1 else Decision()
    if suffix == MAGIC_LATE:
        return Decision(late=True)
    if suffix == MAGIC_REVERSED:
        return Decision(reverse=True)

    gates = random.Random(f"{config.seed}:{external_id}:{attempt}")
    if gates.random() < config.throttle_rate:
        return Decision(gate=429)
    if gates.random() < config.error_rate:
        return Decision(gate=503)
    draws = random.Random(f"{config.seed}:{external_id}")
    declined, pending, dropped, reversed_ = draws.random(), draws.random(), draws.random(), draws.random()
    drop = dropped < config.drop_rate
    if declined < config.decline_rate:
        return Decision(status=DECLINED, failure_code="operator_declined", drop=drop)
    if pending < config.pending_rate:
        return Decision(status=SUBMITTED, drop=drop)
    return Decision(drop=drop, reverse=reversed_ < config.reverse_rate)
