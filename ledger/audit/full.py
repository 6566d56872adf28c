"""The ledger audit: checks invariants 1-8 of the design for every seller, one, or a set of them
straight in SQL and reports every breach with seller and entry. It never repairs anything."""

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connection

from ledger.charge_lifecycle import FAILED, OPEN_SQL, POSTED_SQL, QUEUED, REVERSED
from ledger.conflicts import DEBITED
from ledger.statements.chain import CANONICAL_SQL

GENESIS_SQL = "decode(repeat('00', 32), 'hex')"


@dataclass(frozen=True)
class Breach:
    invariant: int
    seller_id: int | None
    entry_id: int | None
    message: str

    def __str__(self) -> str:
        where = f"seller={self.seller_id}" + (f" entry={self.entry_id}" if self.entry_id else "")
        return f"[invariant {self.invariant}] {where}: {self.message}"


# Invariant 5, shared with the periodic audit (`ledger/audit/incremental.py`), which puts its own
# filter where `{seller:c}` / `{seller:d}` stands.
# A charge's hold (its `charge` entry) exists once it was reserved; a success keeps it, a
# failure after the reservation has its release, and nothing else has either. The hold is the
# price on record: the charge's `amount`, which for a charge sold from a quote is the quote's
# price (with its cost, product version and number, and the quote marked used by this seller).
# A reversed charge keeps its hold (its debit) and has exactly one refund of its amount after it;
# only a reversed charge has a refund. A late success an admin debited (ledger/conflicts.py) has one
# adjustment of minus its amount on its failed charge; only a debited conflict's charge has one.
CHARGE_ENTRIES_CHECK = f"""SELECT c.seller_id, coalesce(h.id, r.id, f.id, j.id), 'charge ' || c.id || ' is ' || c.status || '/' || c.stage
                  || CASE WHEN h.id IS NULL THEN ' without a hold' ELSE ' with a hold of ' || h.amount END
                  || CASE WHEN r.id IS NULL THEN '' ELSE ' and a release of ' || r.amount END
                  || CASE WHEN f.id IS NULL THEN '' ELSE ' and a refund of ' || f.amount END
                  || CASE WHEN j.id IS NULL THEN '' ELSE ' and an adjustment of ' || j.amount END
                  || CASE WHEN k.charge_id IS NULL THEN '' ELSE ' (its late success is ' || k.status || ')' END
                  || CASE WHEN q.id IS NULL THEN '' ELSE ' for quote ' || q.id || ' at ' || q.price
                          || ' (cost ' || q.cost || ', used ' || coalesce(q.used_at::text, 'never') || ')' END
             FROM ledger_charge c
             LEFT JOIN ledger_entry h ON h.charge_id = c.id AND h.kind = 'charge'
             LEFT JOIN ledger_entry r ON r.charge_id = c.id AND r.kind = 'release'
             LEFT JOIN ledger_entry f ON f.charge_id = c.id AND f.kind = 'refund'
             LEFT JOIN ledger_entry j ON j.charge_id = c.id AND j.kind = 'adjustment'
             LEFT JOIN ledger_providerconflict k ON k.charge_id = c.id
             LEFT JOIN catalog_quote q ON q.id = c.quote_id
            WHERE {{seller:c}} AND (
                  (q.id IS NOT NULL AND (q.price <> c.amount OR q.cost <> c.cost OR q.seller_id <> c.seller_id
                   OR q.product_version_id <> c.product_version_id OR q.msisdn <> c.phone_number
                   OR q.used_at IS NULL))
               OR (c.stage = '{QUEUED}' AND (h.id IS NOT NULL OR r.id IS NOT NULL))
               OR ((c.stage IN {OPEN_SQL} OR c.status IN {POSTED_SQL})
                   AND (h.id IS NULL OR r.id IS NOT NULL))
               OR ((c.status = '{REVERSED}') <> (f.id IS NOT NULL))
               OR (f.id IS NOT NULL AND (f.amount <> c.amount OR f.seller_id <> c.seller_id OR f.seq < h.seq))
               OR (coalesce(k.status = '{DEBITED}', FALSE) <> (j.id IS NOT NULL))
               OR (j.id IS NOT NULL AND (j.amount <> -c.amount OR j.seller_id <> c.seller_id
                   OR c.status <> '{FAILED}' OR k.amount <> c.amount))
               OR (c.status = '{FAILED}' AND (h.id IS NULL) <> (r.id IS NULL))
               OR (h.id IS NOT NULL AND (h.amount <> -c.amount OR h.seller_id <> c.seller_id
                   OR (c.balance_after IS NOT NULL AND h.balance_after <> c.balance_after)))
               OR (r.id IS NOT NULL AND (r.amount <> c.amount OR r.seller_id <> c.seller_id OR r.seq < h.seq)))"""

DEPOSIT_ENTRY_CHECK = """SELECT d.seller_id, e.id, 'deposit ' || d.id || ' is ' || d.status || CASE
                    WHEN e.id IS NULL THEN ' but has no entry'
                    WHEN d.status <> 'approved' THEN ' but has an entry'
                    WHEN e.amount <> d.amount THEN ' but its entry moved ' || e.amount
                    WHEN e.seller_id <> d.seller_id THEN ' but its entry is in another ledger'
                    ELSE ' but its balance_after differs from its entry' END
             FROM ledger_deposit d LEFT JOIN ledger_entry e ON e.deposit_id = d.id
            WHERE {seller:d} AND (
                  (d.status = 'approved' AND (e.id IS NULL OR e.amount <> d.amount
                        OR e.seller_id <> d.seller_id OR e.balance_after <> d.balance_after))
               OR (d.status <> 'approved' AND e.id IS NOT NULL))"""

# Each check: (invariant, SQL returning rows of (seller_id, entry_id, message)). `{seller:x}` is
# replaced by a filter of alias x on the sellers checked, or by TRUE. The per-seller subqueries
# carry their own: PostgreSQL carries `a.seller_id = 5` over a join into them, not `= ANY(...)`.
_CHECKS: list[tuple[int, str]] = [
    (
        1,
        """SELECT a.seller_id, NULL, 'negative balance ' || a.balance || ' or held ' || a.held
             FROM ledger_account a WHERE (a.balance < 0 OR a.held < 0) AND {seller:a}""",
    ),
    (
        2,
        """SELECT e.seller_id, e.id, 'balance_after ' || e.balance_after || ' != balance_before '
                  || e.balance_before || ' + amount ' || e.amount
             FROM ledger_entry e WHERE e.balance_after <> e.balance_before + e.amount AND {seller:e}""",
    ),
    (
        2,
        """SELECT seller_id, id, msg FROM (
               SELECT e.seller_id, e.id,
                      CASE WHEN e.seq <> row_number() OVER w
                             THEN 'seq ' || e.seq || ' breaks the gapless sequence (expected '
                                  || row_number() OVER w || ')'
                           WHEN e.balance_before <> coalesce(lag(e.balance_after) OVER w, 0)
                             THEN 'balance_before ' || e.balance_before
                                  || ' != previous balance_after ' || coalesce(lag(e.balance_after) OVER w, 0)
                      END AS msg
                 FROM ledger_entry e WHERE {seller:e}
               WINDOW w AS (PARTITION BY e.seller_id ORDER BY e.seq)
           ) t WHERE msg IS NOT NULL""",
    ),
    (
        3,
        f"""SELECT a.seller_id, NULL, 'balance ' || a.balance || ' but entries sum to ' || coalesce(s.total, 0)
                  || ', last balance_after ' || coalesce(last.balance_after, 0)
                  || ', last_seq ' || a.last_seq || ' vs max seq ' || coalesce(s.max_seq, 0)
                  || CASE WHEN a.last_hash <> coalesce(last.hash, {GENESIS_SQL})
                          THEN ', last_hash is not the last entry''s hash' ELSE '' END
             FROM ledger_account a
             LEFT JOIN (SELECT se.seller_id, sum(se.amount) AS total, max(se.seq) AS max_seq
                          FROM ledger_entry se WHERE {{seller:se}} GROUP BY se.seller_id) s ON s.seller_id = a.seller_id
             LEFT JOIN LATERAL (SELECT balance_after, hash FROM ledger_entry le WHERE le.seller_id = a.seller_id
                                 ORDER BY seq DESC LIMIT 1) last ON TRUE
            WHERE {{seller:a}} AND (a.balance <> coalesce(s.total, 0)
                   OR a.balance <> coalesce(last.balance_after, 0) OR a.last_seq <> coalesce(s.max_seq, 0)
                   OR a.last_hash <> coalesce(last.hash, {GENESIS_SQL}))""",
    ),
    (
        4,
        """SELECT min(e.seller_id), min(e.id), 'charge ' || e.charge_id || ' has ' || count(*) || ' '
                  || e.kind || ' entries'
             FROM ledger_entry e WHERE e.charge_id IS NOT NULL AND {seller:e}
            GROUP BY e.charge_id, e.kind HAVING count(*) > 1""",
    ),
    (
        4,
        """SELECT min(e.seller_id), min(e.id), 'deposit ' || e.deposit_id || ' has ' || count(*) || ' entries'
             FROM ledger_entry e WHERE e.deposit_id IS NOT NULL AND {seller:e}
            GROUP BY e.deposit_id HAVING count(*) > 1""",
    ),
    (
        8,
        # The hash chain: each entry's hash recomputed from the previous one's and its own
        # canonical bytes; times never go back along the sequence (balance at a past time reads
        # the last entry at or before it).
        f"""SELECT seller_id, id, msg FROM (
               SELECT e.seller_id, e.id,
                      CASE WHEN e.hash <> sha256(coalesce(lag(e.hash) OVER w, {GENESIS_SQL})
                                                 || {CANONICAL_SQL.format(e="e")})
                             THEN 'hash of seq ' || e.seq || ' does not chain from the previous entry''s'
                           WHEN e.created_at < lag(e.created_at) OVER w
                             THEN 'created_at of seq ' || e.seq || ' is before the previous entry''s'
                      END AS msg
                 FROM ledger_entry e WHERE {{seller:e}}
               WINDOW w AS (PARTITION BY e.seller_id ORDER BY e.seq)
           ) t WHERE msg IS NOT NULL""",
    ),
    (5, CHARGE_ENTRIES_CHECK),
    (5, DEPOSIT_ENTRY_CHECK),
    (
        6,
        # Every credit the seller has, spent or held: approved deposits, less succeeded charges
        # (reversed ones too: their refund is among the other entries), less the open holds, plus
        # refunds and adjustments. A released hold nets to nothing.
        f"""SELECT a.seller_id, NULL, 'balance ' || a.balance || ' != approved deposits ' || coalesce(d.total, 0)
                  || ' - succeeded charges ' || coalesce(c.succeeded, 0) || ' - open holds ' || coalesce(c.open, 0)
                  || ' + other entries ' || coalesce(o.total, 0)
             FROM ledger_account a
             LEFT JOIN (SELECT sd.seller_id, sum(sd.amount) AS total FROM ledger_deposit sd
                         WHERE sd.status = 'approved' AND {{seller:sd}} GROUP BY sd.seller_id) d ON d.seller_id = a.seller_id
             LEFT JOIN (SELECT sc.seller_id, sum(sc.amount) FILTER (WHERE sc.status IN {POSTED_SQL}) AS succeeded,
                               sum(sc.amount) FILTER (WHERE sc.stage IN {OPEN_SQL}) AS open
                          FROM ledger_charge sc WHERE {{seller:sc}} GROUP BY sc.seller_id) c ON c.seller_id = a.seller_id
             LEFT JOIN (SELECT so.seller_id, sum(so.amount) AS total FROM ledger_entry so
                         WHERE so.kind IN ('refund', 'adjustment') AND {{seller:so}} GROUP BY so.seller_id) o
                    ON o.seller_id = a.seller_id
            WHERE {{seller:a}}
              AND a.balance <> coalesce(d.total, 0) - coalesce(c.succeeded, 0) - coalesce(c.open, 0)
                               + coalesce(o.total, 0)""",
    ),
    (
        6,
        f"""SELECT a.seller_id, NULL, 'held ' || a.held || ' != open holds ' || coalesce(h.total, 0)
             FROM ledger_account a
             LEFT JOIN (SELECT sc.seller_id, sum(sc.amount) AS total FROM ledger_charge sc
                         WHERE sc.stage IN {OPEN_SQL} AND {{seller:sc}} GROUP BY sc.seller_id) h
                    ON h.seller_id = a.seller_id
            WHERE {{seller:a}} AND a.held <> coalesce(h.total, 0)""",
    ),
    (
        7,
        """SELECT seller_id, NULL, kind || ' idempotency key ' || quote_literal(idempotency_key) || ' names '
                  || n || ' intents'
             FROM (SELECT 'charge' AS kind, sc.seller_id, sc.idempotency_key, count(*) AS n FROM ledger_charge sc
                    WHERE sc.idempotency_key IS NOT NULL AND {seller:sc} GROUP BY sc.seller_id, sc.idempotency_key
                   UNION ALL
                   SELECT 'deposit', sd.seller_id, sd.idempotency_key, count(*) FROM ledger_deposit sd
                    WHERE sd.idempotency_key IS NOT NULL AND {seller:sd} GROUP BY sd.seller_id, sd.idempotency_key) k
            WHERE n > 1""",
    ),
    (
        7,
        """SELECT c.seller_id, NULL, 'charge ' || c.id || ' has an idempotency key but no request fingerprint'
             FROM ledger_charge c
            WHERE c.idempotency_key IS NOT NULL AND c.request_fingerprint = '' AND {seller:c}""",
    ),
]


Sellers = int | Sequence[int] | None  # one seller, a set of them, or every seller


def _render(sql: str, sellers: Sellers) -> tuple[str, list]:
    params: list = []
    out = sql
    while "{seller:" in out:
        start = out.index("{seller:")
        end = out.index("}", start)
        alias = out[start + len("{seller:") : end]
        if sellers is None:
            clause = "TRUE"
        elif isinstance(sellers, int):
            clause = f"{alias}.seller_id = %s"
            params.append(sellers)
        else:
            clause = f"{alias}.seller_id = ANY(%s::bigint[])"
            params.append(id_array(sellers))
        out = out[:start] + clause + out[end + 1 :]
    return out, params


def id_array(ids: Sequence[int]) -> str:
    """Ids as one array literal: a list would be sent as ARRAY[...] of one constant per id, which
    PostgreSQL parses and plans element by element."""
    return "{" + ",".join(str(int(i)) for i in ids) + "}"


def audit_checks(cursor, *, sellers: Sellers, limit: int) -> list[Breach]:
    """Every check for `sellers` in the cursor's current transaction (its snapshot), up to `limit`
    breaches per check. The periodic audit runs them over the sellers it verifies from nothing."""
    if sellers is not None and not isinstance(sellers, int) and not sellers:
        return []
    breaches: list[Breach] = []
    for invariant, sql in _CHECKS:
        query, params = _render(sql, sellers)
        cursor.execute(f"{query} LIMIT %s", [*params, limit])
        breaches.extend(Breach(invariant, s, e, m) for s, e, m in cursor.fetchall())
    return breaches


def audit_ledger(*, seller_id: int | None = None, limit: int = 1000) -> list[Breach]:
    """Every breach of invariants 1-8 (up to `limit`), for one seller or all of them.

    Runs in one REPEATABLE READ snapshot so that settlements committing meanwhile cannot make
    the checks disagree with each other."""
    with connection.cursor() as cursor:
        in_tx = connection.in_atomic_block
        if not in_tx:
            cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            breaches = audit_checks(cursor, sellers=seller_id, limit=limit)
        finally:
            if not in_tx:
                cursor.execute("COMMIT")
    return breaches[:limit]
