"""Signed checkpoints of sellers' chain heads: the only writer of `ChainCheckpoint`.

A checkpoint reads the head entry itself (its seq, hash, balance_after and time), so what is signed
is what the chain holds, never a copy. Signing a head already signed with the current key answers
the stored row: the periodic signing and a redelivered task add nothing."""

from datetime import datetime

from django.db import connection
from django.utils import timezone

from ledger.statements.chain import GENESIS
from ledger.statements.models import ChainCheckpoint
from ledger.statements.signing import checkpoint_message, sign

# Every seller whose head moved since its last checkpoint: the head entry, read with the account in
# one statement (the account's last_seq and the entry commit together).
_ACTIVE_HEADS = """SELECT e.seller_id, e.seq, e.hash, e.balance_after, e.created_at
  FROM ledger_account a
  JOIN ledger_entry e ON e.seller_id = a.seller_id AND e.seq = a.last_seq
 WHERE a.last_seq > coalesce((SELECT max(c.seq) FROM ledger_chaincheckpoint c
                               WHERE c.seller_id = a.seller_id), 0)
 ORDER BY e.seller_id"""


def _signed(seller_id: int, seq: int, hash_: bytes, balance: int, entry_created_at: datetime | None, now):
    key_id, signature = sign(
        lambda key_id: checkpoint_message(
            key_id=key_id,
            seller_id=seller_id,
            seq=seq,
            hash_=hash_,
            balance=balance,
            entry_created_at=entry_created_at,
            signed_at=now,
        )
    )
    return ChainCheckpoint(
        seller_id=seller_id,
        seq=seq,
        hash=hash_,
        balance=balance,
        entry_created_at=entry_created_at,
        signed_at=now,
        key_id=key_id,
        signature=signature,
    )


def checkpoints_sign_active() -> int:
    """Sign the head of every seller whose chain grew since its last checkpoint; returns how many."""
    with connection.cursor() as cursor:
        cursor.execute(_ACTIVE_HEADS)
        heads = cursor.fetchall()
    now = timezone.now()
    rows = [_signed(seller, seq, bytes(hash_), balance, at, now) for seller, seq, hash_, balance, at in heads]
    created = ChainCheckpoint.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
    return len(created)


def checkpoint_at(*, seller_id: int, seq: int) -> ChainCheckpoint:
    """The signed checkpoint of the seller's chain at `seq` (0: before its first entry), made now
    unless the current key signed it already."""
    if seq == 0:
        head = (GENESIS, 0, None)
    else:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT hash, balance_after, created_at FROM ledger_entry WHERE seller_id = %s AND seq = %s",
                [seller_id, seq],
            )
            found = cursor.fetchone()
        if found is None:
            raise ValueError(f"seller {seller_id} has no entry {seq}")
        head = (bytes(found[0]), found[1], found[2])
    checkpoint = _signed(seller_id, seq, *head, timezone.now())
    ChainCheckpoint.objects.bulk_create([checkpoint], ignore_conflicts=True)
    return ChainCheckpoint.objects.get(seller_id=seller_id, seq=seq, key_id=checkpoint.key_id)
