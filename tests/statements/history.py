"""A busy seller history for the statements tests, built through the services and the session's
sandbox provider: deposits, holds placed, posted (some in batches that write no entry) and
released, charges refused for want of funds, across many settle batches."""

import random

from ledger.fulfilment.service import fulfil_charges
from ledger.models import Charge, Entry
from ledger.services.charges import charge_submit
from ledger.services.settlement import settle_seller
from tests.factories import make_admin, make_seller, request_and_approve

PHONE = "+989121234567"
DECLINED_PHONE = "+989121239902"  # the sandbox declines it: the hold is released


def busy_history(*, rounds: int = 12, seed: int = 7):
    rng = random.Random(seed)
    admin, seller = make_admin(), make_seller()
    sent: set[int] = set()
    for round_ in range(rounds):
        if round_ % 4 == 0:
            request_and_approve(seller, rng.randint(5_000, 20_000), admin)
        if round_ % 3 != 2:  # every third round only applies answers: a batch of posts may write no entry
            for _ in range(rng.randint(1, 4)):
                phone = DECLINED_PHONE if rng.random() < 0.25 else PHONE
                charge_submit(seller_id=seller.pk, phone_number=phone, amount=rng.randint(500, 6_000))
        settle_seller(seller_id=seller.pk)
        reserved = set(Charge.objects.filter(seller=seller, stage=Charge.Stage.RESERVED).values_list("id", flat=True))
        # Half of what waits is sent now, the rest next round: holds stay open across batches.
        to_send = sorted(c for c in reserved - sent if rng.random() < 0.5) + sorted(reserved & sent)
        sent.update(reserved)
        if to_send:
            fulfil_charges(to_send)
    for _ in range(3):
        reserved = list(Charge.objects.filter(seller=seller, stage=Charge.Stage.RESERVED).values_list("id", flat=True))
        if reserved:
            fulfil_charges(reserved)
        settle_seller(seller_id=seller.pk)
    return seller


def replay(seller_id: int, at) -> tuple[int, int, int]:
    """(last seq, balance, held) at `at`, from the rows alone: the entries' amounts up to then, and
    the charges whose hold was placed by then and not yet posted or released."""
    entries = list(Entry.objects.filter(seller_id=seller_id, created_at__lte=at).values_list("seq", "amount"))
    seq = max((s for s, _ in entries), default=0)
    balance = sum(a for _, a in entries)
    held = 0
    for charge in Charge.objects.filter(seller_id=seller_id).prefetch_related("entries"):
        hold = next((e for e in charge.entries.all() if e.kind == "charge"), None)
        if hold is None or hold.created_at > at:
            continue
        if charge.settled_at is None or charge.settled_at > at:
            held += charge.amount
    return seq, balance, held
