"""The SQL of the periodic audit (`ledger/audit/incremental.py`). Every per-seller read is a LATERAL
subquery bounded by the seller and its checkpoint (`seq > ...`, `id >= ...`), so PostgreSQL walks the
(seller, seq) and (seller, id) indexes from the checkpoint on: the cost follows what is new, never
the size of the ledger. (A plain join on `seq > checkpoint.seq` is estimated at a third of the table
and planned as a scan of all of it.)"""

from ledger.audit.full import GENESIS_SQL
from ledger.charge_lifecycle import DONE, OPEN_SQL, POSTED_SQL
from ledger.statements.chain import CANONICAL_SQL

# The hash of the seller's entry at its checkpoint's seq (the chain's genesis at seq 0).
_CHECKPOINT_HASH = f"""coalesce((SELECT p.hash FROM ledger_entry p WHERE p.seller_id = s.seller_id AND p.seq = s.seq),
                   {GENESIS_SQL})"""

# Each account with a checkpoint, but for the sellers in %(full)s (the rolling full pass): they, and
# sellers without a checkpoint, are verified from nothing by the full audit's own checks
# (`FULL_STATE` below).
_SCOPE = """scope AS (
    SELECT a.seller_id, a.balance, a.held, a.last_seq, a.last_hash, FALSE AS from_zero, cp.seq, cp.balance AS cp_balance,
           cp.entry_sum, cp.other_sum, cp.charge_floor, cp.succeeded_below, cp.deposit_floor, cp.approved_below,
           cp.charge_seen, cp.deposit_seen, cp.snapshot_xmax
      FROM ledger_account a
      JOIN ledger_auditcheckpoint cp ON cp.seller_id = a.seller_id
     WHERE NOT a.seller_id = ANY(%(full)s::bigint[])
)"""

ROLLING_SLICE = "SELECT seller_id FROM ledger_auditcheckpoint ORDER BY full_verified_at, seller_id LIMIT %s"

# The highest ids one snapshot saw, and a moment after that snapshot was taken (the statement's own
# snapshot: every subquery reads it, and clock_timestamp() is read while it runs).
SEEN = """SELECT coalesce((SELECT max(id) FROM ledger_charge), 0), coalesce((SELECT max(id) FROM ledger_deposit), 0),
       clock_timestamp()"""

# Transactions in this database begun by then and not yet ended. Every id below one that snapshot saw
# was handed out to one of them, or to a transaction that had ended. Sessions whose state this role
# may not see (state NULL) or that report none ('disabled') count as open.
OPEN_HERE = """SELECT (SELECT count(*) FROM pg_stat_activity
                WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
                  AND (xact_start <= %s OR state IS NULL OR state = 'disabled'))
     + (SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database())"""

UNVERIFIED = """SELECT a.seller_id FROM ledger_account a
  LEFT JOIN ledger_auditcheckpoint cp ON cp.seller_id = a.seller_id WHERE cp.seller_id IS NULL"""

# How far a floor may move: up to the ids seen by the checkpoint's own snapshot once every
# transaction open at that snapshot has ended (%(xmin)s >= its xmax), or up to the ids seen by the
# snapshot the run took before its own and waited out (%(charge_bound)s, %(deposit_bound)s: 0 when
# it did not wait). An import's COPY may commit ids lower than ones already visible; ids are handed
# out in time order, so every id below one a snapshot saw was handed out before that snapshot, to
# a transaction then committed, aborted or open.
_CHARGE_LIMIT = """greatest(%(charge_bound)s, CASE WHEN %(xmin)s >= {cp}.snapshot_xmax
                                             THEN {cp}.charge_seen + 1 ELSE {floor} END)"""
_DEPOSIT_LIMIT = """greatest(%(deposit_bound)s, CASE WHEN %(xmin)s >= {cp}.snapshot_xmax
                                               THEN {cp}.deposit_seen + 1 ELSE {floor} END)"""

# Invariants 2, 4 and 8 on each entry after the checkpoint: (invariant, seller, entry, message).
ENTRY_CHECKS = f"""WITH {_SCOPE}
SELECT c.invariant, s.seller_id, e.id, c.message
  FROM scope s
 CROSS JOIN LATERAL (
       SELECT e.id, e.seq, e.kind, e.amount, e.balance_before, e.balance_after, e.charge_id, e.deposit_id,
              s.seq + row_number() OVER w AS expected_seq,
              coalesce(lag(e.balance_after) OVER w, s.cp_balance) AS expected_before,
              e.hash <> sha256(coalesce(lag(e.hash) OVER w, {_CHECKPOINT_HASH})
                               || {CANONICAL_SQL.format(e="e")}) AS unchained,
              e.created_at < lag(e.created_at) OVER w AS earlier,
              CASE WHEN e.charge_id IS NOT NULL THEN (SELECT count(*) FROM ledger_entry o
                    WHERE o.charge_id = e.charge_id AND o.kind = e.kind) END AS same_charge,
              CASE WHEN e.deposit_id IS NOT NULL THEN (SELECT count(*) FROM ledger_entry o
                    WHERE o.deposit_id = e.deposit_id) END AS same_deposit
         FROM ledger_entry e
        WHERE e.seller_id = s.seller_id AND e.seq > s.seq
       WINDOW w AS (ORDER BY e.seq)) e
 -- Only the entries that fail something reach the per-check rows (building them for every entry
 -- cost more than the checks).
 CROSS JOIN LATERAL (SELECT WHERE e.balance_after <> e.balance_before + e.amount OR e.seq <> e.expected_seq
                        OR e.balance_before <> e.expected_before OR e.same_charge > 1 OR e.same_deposit > 1
                        OR e.unchained OR e.earlier) bad
 CROSS JOIN LATERAL (VALUES
       (2, CASE WHEN e.balance_after <> e.balance_before + e.amount THEN 'balance_after ' || e.balance_after
                     || ' != balance_before ' || e.balance_before || ' + amount ' || e.amount END),
       (2, CASE WHEN e.seq <> e.expected_seq THEN 'seq ' || e.seq || ' breaks the gapless sequence (expected '
                     || e.expected_seq || ')'
                WHEN e.balance_before <> e.expected_before THEN 'balance_before ' || e.balance_before
                     || ' != previous balance_after ' || e.expected_before END),
       (4, CASE WHEN e.same_charge > 1 THEN 'charge ' || e.charge_id || ' has ' || e.same_charge || ' '
                     || e.kind || ' entries' END),
       (4, CASE WHEN e.same_deposit > 1 THEN 'deposit ' || e.deposit_id || ' has ' || e.same_deposit
                     || ' entries' END),
       (8, CASE WHEN e.unchained THEN 'hash of seq ' || e.seq || ' does not chain from the previous entry''s'
                WHEN e.earlier THEN 'created_at of seq ' || e.seq || ' is before the previous entry''s' END)
 ) c(invariant, message)
 WHERE c.message IS NOT NULL
 LIMIT %(limit)s"""

# Per seller: what the run covers, the account's invariants (1, 3, 6) from the checkpoint's sums,
# and the checkpoint this run would write (`changed`: whether it differs from the stored one).
# A floor moves up to the seller's oldest intent not yet final, but not past its limit (above).
STATE = f"""WITH {_SCOPE},
state AS (
    SELECT s.*, coalesce(ne.n, 0) AS new_entries, coalesce(ne.total, 0) AS new_total,
           coalesce(ne.other, 0) AS new_other, coalesce(ne.max_seq, s.seq) AS max_seq,
           coalesce(last.balance_after, s.cp_balance) AS last_after,
           coalesce(last.hash, {_CHECKPOINT_HASH}) AS last_entry_hash,
           coalesce(ch.ids, '{{}}') || coalesce(ne.charge_ids, '{{}}') AS charge_ids,
           coalesce(dp.ids, '{{}}') || coalesce(ne.deposit_ids, '{{}}') AS deposit_ids,
           ch.open_min AS charge_open_min, coalesce(ch.max_id, 0) AS charge_max,
           coalesce(ch.succeeded, 0) AS charge_succeeded, coalesce(op.total, 0) AS open_total,
           dp.open_min AS deposit_open_min, coalesce(dp.max_id, 0) AS deposit_max,
           coalesce(dp.approved, 0) AS deposit_approved,
           {_CHARGE_LIMIT.format(cp="s", floor="s.charge_floor")} AS charge_limit,
           {_DEPOSIT_LIMIT.format(cp="s", floor="s.deposit_floor")} AS deposit_limit
      FROM scope s
      LEFT JOIN LATERAL (
           SELECT count(*) AS n, sum(e.amount) AS total, max(e.seq) AS max_seq,
                  sum(e.amount) FILTER (WHERE e.kind IN ('refund', 'adjustment')) AS other,
                  array_agg(e.charge_id) FILTER (WHERE e.charge_id IS NOT NULL) AS charge_ids,
                  array_agg(e.deposit_id) FILTER (WHERE e.deposit_id IS NOT NULL) AS deposit_ids
             FROM ledger_entry e WHERE e.seller_id = s.seller_id AND e.seq > s.seq) ne ON TRUE
      LEFT JOIN LATERAL (
           SELECT e.balance_after, e.hash FROM ledger_entry e WHERE e.seller_id = s.seller_id AND e.seq > s.seq
            ORDER BY e.seq DESC LIMIT 1) last ON TRUE
      LEFT JOIN LATERAL (
           SELECT array_agg(c.id) AS ids, min(c.id) FILTER (WHERE c.stage <> '{DONE}') AS open_min,
                  max(c.id) AS max_id, sum(c.amount) FILTER (WHERE c.status IN {POSTED_SQL}) AS succeeded
             FROM ledger_charge c WHERE c.seller_id = s.seller_id AND c.id >= s.charge_floor) ch ON TRUE
      LEFT JOIN LATERAL (
           SELECT sum(c.amount) AS total FROM ledger_charge c
            WHERE c.seller_id = s.seller_id AND c.stage IN {OPEN_SQL}) op ON TRUE
      LEFT JOIN LATERAL (
           SELECT array_agg(d.id) AS ids, min(d.id) FILTER (WHERE d.status IN ('pending', 'approving')) AS open_min,
                  max(d.id) AS max_id, sum(d.amount) FILTER (WHERE d.status = 'approved') AS approved
             FROM ledger_deposit d WHERE d.seller_id = s.seller_id AND d.id >= s.deposit_floor) dp ON TRUE
),
moved AS (
    SELECT st.*,
           greatest(st.charge_floor, least(coalesce(st.charge_open_min, st.charge_limit), st.charge_limit))
               AS new_charge_floor,
           greatest(st.deposit_floor, least(coalesce(st.deposit_open_min, st.deposit_limit), st.deposit_limit))
               AS new_deposit_floor,
           (st.approved_below + st.deposit_approved) - (st.succeeded_below + st.charge_succeeded)
               - st.open_total + (st.other_sum + st.new_other) AS conserved
      FROM state st
),
result AS (
    SELECT m.seller_id, m.from_zero, m.new_entries, m.charge_ids, m.deposit_ids,
           CASE WHEN m.balance < 0 OR m.held < 0 THEN 'negative balance ' || m.balance || ' or held ' || m.held
           END AS negative,
           CASE WHEN m.balance <> m.entry_sum + m.new_total OR m.balance <> m.last_after OR m.last_seq <> m.max_seq
                     OR m.last_hash <> m.last_entry_hash
                THEN 'balance ' || m.balance || ' but entries sum to ' || (m.entry_sum + m.new_total)
                     || ', last balance_after ' || m.last_after || ', last_seq ' || m.last_seq
                     || ' vs max seq ' || m.max_seq
                     || CASE WHEN m.last_hash <> m.last_entry_hash
                             THEN ', last_hash is not the last entry''s hash' ELSE '' END
           END AS unbalanced,
           CASE WHEN m.balance <> m.conserved
                THEN 'balance ' || m.balance || ' != approved deposits ' || (m.approved_below + m.deposit_approved)
                     || ' - succeeded charges ' || (m.succeeded_below + m.charge_succeeded)
                     || ' - open holds ' || m.open_total || ' + other entries ' || (m.other_sum + m.new_other)
           END AS unconserved,
           CASE WHEN m.held <> m.open_total THEN 'held ' || m.held || ' != open holds ' || m.open_total END AS misheld,
           m.seller_id AS cp_seller_id, m.from_zero AS cp_from_zero, m.max_seq, m.last_after,
           m.entry_sum + m.new_total AS new_entry_sum, m.other_sum + m.new_other AS new_other_sum,
           m.new_charge_floor, greatest(m.charge_seen, m.charge_max) AS new_charge_seen,
           m.succeeded_below + coalesce(cb.succeeded, 0) AS new_succeeded_below,
           m.new_deposit_floor, greatest(m.deposit_seen, m.deposit_max) AS new_deposit_seen,
           m.approved_below + coalesce(db.approved, 0) AS new_approved_below,
           (m.max_seq <> m.seq OR m.new_charge_floor <> m.charge_floor
            OR m.new_deposit_floor <> m.deposit_floor OR m.charge_max > m.charge_seen
            OR m.deposit_max > m.deposit_seen) AS changed
      FROM moved m
      LEFT JOIN LATERAL (
           SELECT sum(c.amount) FILTER (WHERE c.status IN {POSTED_SQL}) AS succeeded FROM ledger_charge c
            WHERE c.seller_id = m.seller_id AND c.id >= m.charge_floor AND c.id < m.new_charge_floor) cb ON TRUE
      LEFT JOIN LATERAL (
           SELECT sum(d.amount) FILTER (WHERE d.status = 'approved') AS approved FROM ledger_deposit d
            WHERE d.seller_id = m.seller_id AND d.id >= m.deposit_floor AND d.id < m.new_deposit_floor) db ON TRUE
)
SELECT * FROM result r
 WHERE r.changed OR r.negative IS NOT NULL OR r.unbalanced IS NOT NULL OR r.unconserved IS NOT NULL
    OR r.misheld IS NOT NULL OR cardinality(r.charge_ids) > 0 OR cardinality(r.deposit_ids) > 0"""

# The checkpoint of each seller in %(sellers)s, verified from nothing by the full audit's checks in
# this snapshot (columns as in CHECKPOINT_COLUMNS, then the charges and deposits read). Written only
# for sellers without a breach, so it reads what those checks established rather than the entries
# again: seq and balance are the account's (= the last entry's, and balance = the entries' sum,
# invariant 3); refunds and adjustments sum to what conservation leaves (invariant 6). Floors as in
# STATE, from nothing; a rolling seller's earlier checkpoint still bounds them by its snapshot.
FULL_STATE = f"""SELECT a.seller_id, TRUE, a.last_seq, a.balance, a.balance,
       a.balance - coalesce(d.approved, 0) + coalesce(c.succeeded, 0) + coalesce(c.open, 0),
       f.charge_floor, greatest(coalesce(cp.charge_seen, 0), coalesce(c.max_id, 0)),
       coalesce(c.succeeded, 0) - coalesce(ca.succeeded, 0),
       f.deposit_floor, greatest(coalesce(cp.deposit_seen, 0), coalesce(d.max_id, 0)),
       coalesce(d.approved, 0) - coalesce(da.approved, 0),
       coalesce(c.n, 0), coalesce(d.n, 0)
  FROM ledger_account a
  LEFT JOIN ledger_auditcheckpoint cp ON cp.seller_id = a.seller_id
  LEFT JOIN (SELECT x.seller_id, count(*) AS n, max(x.id) AS max_id, min(x.id) FILTER (WHERE x.stage <> '{DONE}') AS open_min,
                    sum(x.amount) FILTER (WHERE x.status IN {POSTED_SQL}) AS succeeded,
                    sum(x.amount) FILTER (WHERE x.stage IN {OPEN_SQL}) AS open
               FROM ledger_charge x WHERE x.seller_id = ANY(%(sellers)s::bigint[]) GROUP BY x.seller_id) c
         ON c.seller_id = a.seller_id
  LEFT JOIN (SELECT x.seller_id, count(*) AS n, max(x.id) AS max_id,
                    min(x.id) FILTER (WHERE x.status IN ('pending', 'approving')) AS open_min,
                    sum(x.amount) FILTER (WHERE x.status = 'approved') AS approved
               FROM ledger_deposit x WHERE x.seller_id = ANY(%(sellers)s::bigint[]) GROUP BY x.seller_id) d
         ON d.seller_id = a.seller_id
 CROSS JOIN LATERAL (SELECT {_CHARGE_LIMIT.format(cp="cp", floor="0")} AS charge,
                            {_DEPOSIT_LIMIT.format(cp="cp", floor="0")} AS deposit) lim
 CROSS JOIN LATERAL (SELECT least(coalesce(c.open_min, lim.charge), lim.charge) AS charge_floor,
                            least(coalesce(d.open_min, lim.deposit), lim.deposit) AS deposit_floor) f
  LEFT JOIN LATERAL (SELECT sum(x.amount) FILTER (WHERE x.status IN {POSTED_SQL}) AS succeeded FROM ledger_charge x
                      WHERE x.seller_id = a.seller_id AND x.id >= f.charge_floor) ca ON TRUE
  LEFT JOIN LATERAL (SELECT sum(x.amount) FILTER (WHERE x.status = 'approved') AS approved FROM ledger_deposit x
                      WHERE x.seller_id = a.seller_id AND x.id >= f.deposit_floor) da ON TRUE
 WHERE a.seller_id = ANY(%(sellers)s::bigint[])"""

# Invariant 7 for the charges and deposits the run covers (a key naming two intents is reported
# once, whichever of them the run reached).
INTENT_KEY_CHECKS = """SELECT DISTINCT seller_id, NULL::bigint, message FROM (
    SELECT c.seller_id, 'charge idempotency key ' || quote_literal(c.idempotency_key) || ' names '
           || k.n || ' intents' AS message
      FROM ledger_charge c
     CROSS JOIN LATERAL (SELECT count(*) AS n FROM ledger_charge o
                          WHERE o.seller_id = c.seller_id AND o.idempotency_key = c.idempotency_key) k
     WHERE c.id = ANY(%(charges)s::bigint[]) AND c.idempotency_key IS NOT NULL AND k.n > 1
    UNION ALL
    SELECT d.seller_id, 'deposit idempotency key ' || quote_literal(d.idempotency_key) || ' names '
           || k.n || ' intents'
      FROM ledger_deposit d
     CROSS JOIN LATERAL (SELECT count(*) AS n FROM ledger_deposit o
                          WHERE o.seller_id = d.seller_id AND o.idempotency_key = d.idempotency_key) k
     WHERE d.id = ANY(%(deposits)s::bigint[]) AND d.idempotency_key IS NOT NULL AND k.n > 1
    UNION ALL
    SELECT c.seller_id, 'charge ' || c.id || ' has an idempotency key but no request fingerprint'
      FROM ledger_charge c
     WHERE c.id = ANY(%(charges)s::bigint[]) AND c.idempotency_key IS NOT NULL AND c.request_fingerprint = ''
) k"""

CHECKPOINT_COLUMNS = [
    "seller_id",
    "from_zero",
    "seq",
    "balance",
    "entry_sum",
    "other_sum",
    "charge_floor",
    "charge_seen",
    "succeeded_below",
    "deposit_floor",
    "deposit_seen",
    "approved_below",
]
_TYPES = {"from_zero": "boolean"}
_ROWS = "unnest({}) AS u({})".format(
    ", ".join(f"%({name})s::{_TYPES.get(name, 'bigint')}[]" for name in CHECKPOINT_COLUMNS),
    ", ".join(CHECKPOINT_COLUMNS),
)
_VALUES = [name for name in CHECKPOINT_COLUMNS if name not in ("seller_id", "from_zero")]

# The checkpoint table is the audit's own; under the audit's advisory lock nothing else writes it.
UPDATE = f"""UPDATE ledger_auditcheckpoint cp
   SET {", ".join(f"{name} = u.{name}" for name in _VALUES)}, snapshot_xmax = %(xmax)s, verified_at = now(),
       full_verified_at = CASE WHEN u.from_zero THEN now() ELSE cp.full_verified_at END
  FROM {_ROWS}
 WHERE cp.seller_id = u.seller_id"""

INSERT = f"""INSERT INTO ledger_auditcheckpoint
       (seller_id, {", ".join(_VALUES)}, snapshot_xmax, verified_at, full_verified_at)
SELECT u.seller_id, {", ".join(f"u.{name}" for name in _VALUES)}, %(xmax)s, now(), now()
  FROM {_ROWS}
    ON CONFLICT (seller_id) DO NOTHING"""
