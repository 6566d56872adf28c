-- pgbench script of bench/limits.py: one debit per transaction, the statements of
-- `ledger.posting` for a batch of one (lock the account, read the oldest queued charge, insert
-- its entry, mark it reserved, update the account's balance and hold), on the scratch copies of
-- the ledger's tables in the schema `benchlimit`. Each transaction takes the next seller.
--
-- Each client remembers the last charge it settled (`last_id`: pgbench variables live as long as
-- the client) and, on a single hot row (`keyset` = 1), starts its next lookup after it: the
-- database's best plan for a drain. Without it the lookup re-reads every charge already settled
-- (docs/performance.md, hot seller), and the limit would carry the flaw it is there to expose.
-- With several rows each transaction takes a new seller, so the lookup starts from 0.
--
-- Each entry stores a 32-byte hash as the settle's do; the settle computes its chain in Python
-- before the insert, so one `sha256()` per row stands for it here (the database's share: the
-- column and its bytes).
SELECT nextval('benchlimit.seller_pick') % :sellers + 1 AS s \gset
\set after :keyset * :last_id
BEGIN;
SELECT balance, last_seq FROM benchlimit.account WHERE seller_id = :s FOR NO KEY UPDATE \gset
SELECT id AS cid, amount AS amt, id AS last_id FROM benchlimit.charge
    WHERE seller_id = :s AND stage = 'queued' AND id > :after ORDER BY id LIMIT 1 \gset
INSERT INTO benchlimit.entry (seller_id, seq, kind, amount, balance_before, balance_after, charge_id, deposit_id, created_at, held_after, hash)
    VALUES (:s, :last_seq::bigint + 1, 'charge', -:amt::bigint, :balance::bigint, :balance::bigint - :amt::bigint, :cid, NULL, now(), :amt::bigint, sha256(int8send(:cid::bigint)));
UPDATE benchlimit.charge SET stage = 'reserved', reserved_at = now(), balance_after = :balance::bigint - :amt::bigint
    WHERE id = :cid AND stage = 'queued';
UPDATE benchlimit.account SET balance = :balance::bigint - :amt::bigint, held = held + :amt::bigint, last_seq = :last_seq::bigint + 1, updated_at = now() WHERE seller_id = :s;
END;
