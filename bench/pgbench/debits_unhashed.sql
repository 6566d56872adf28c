-- pgbench script of bench/limits.py: debits.sql without the hash step, into a copy of the entries
-- without the hash column: the settle's statements as they were before the chain, beside debits.sql
-- in the same run (the hot seller's limit with and without hashing). `debits` debits per
-- transaction, set-based (one INSERT ...
-- SELECT of the entries, one UPDATE of the charges), computed entirely inside the server. It
-- ships no rows to a client and back, so it is an upper bound the Python worker can approach but
-- not reach. The seller and the keyset continuation as in debit.sql.
SELECT nextval('benchlimit.seller_pick') % :sellers + 1 AS s \gset
\set after :keyset * :last_id
BEGIN;
SELECT balance, last_seq FROM benchlimit.account WHERE seller_id = :s FOR NO KEY UPDATE \gset
WITH batch AS (
    SELECT id, amount, row_number() OVER (ORDER BY id) AS rn, sum(amount) OVER (ORDER BY id) AS cum
    FROM (SELECT id, amount FROM benchlimit.charge WHERE seller_id = :s AND stage = 'queued' AND id > :after
          ORDER BY id LIMIT :debits::bigint) q
), ins AS (
    INSERT INTO benchlimit.entry_unhashed (seller_id, seq, kind, amount, balance_before, balance_after, charge_id, deposit_id, created_at, held_after)
    SELECT :s, :last_seq::bigint + rn, 'charge', -amount, :balance::bigint - cum + amount, :balance::bigint - cum, id, NULL, now(), cum FROM batch
    RETURNING charge_id, balance_after
), upd AS (
    UPDATE benchlimit.charge c SET stage = 'reserved', reserved_at = now(), balance_after = ins.balance_after
    FROM ins WHERE c.id = ins.charge_id AND c.stage = 'queued' RETURNING c.id
), acct AS (
    UPDATE benchlimit.account SET balance = :balance::bigint - (SELECT coalesce(sum(amount), 0) FROM batch),
        held = held + (SELECT coalesce(sum(amount), 0) FROM batch), last_seq = :last_seq::bigint + (SELECT count(*) FROM upd), updated_at = now() WHERE seller_id = :s
    RETURNING seller_id
)
SELECT coalesce(max(upd.id), :after) AS last_id, (SELECT count(*) FROM acct) AS accounts FROM upd \gset
END;
