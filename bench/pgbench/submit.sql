-- pgbench script of bench/limits.py: what the web writes per accepted charge, one queued row and
-- one commit, for a random one of `sellers` sellers.
\set s random(1, :sellers)
INSERT INTO benchlimit.charge (seller_id, phone_number, amount, reference, status, request_fingerprint, created_at)
    VALUES (:s, '+989120000000', 1000, '', 'queued', '', now());
