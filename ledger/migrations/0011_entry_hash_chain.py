"""The per-seller hash chain of entries and each entry's held credit (ledger/statements/).

Entries written before this migration get both here, computed as the settle computes them for new
ones: `hash` chained from 32 zero bytes over each seller's entries in seq order, with the same
canonical bytes (`ledger.statements.chain.CANONICAL_SQL`); `held_after` replayed from the holds the
entries placed and released and the holds posted (succeeded charges, at their `settled_at`; a post
counts before the entries of its batch, which share its time). The append-only trigger is set
aside for the backfill only, inside this migration's transaction."""

import django.db.models.functions.text
import django.db.models.lookups
from django.db import migrations, models

from ledger.statements.chain import CANONICAL_SQL, GENESIS

BACKFILL = f"""
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE ledger_entry DISABLE TRIGGER ledger_entry_append_only;

WITH events AS (
    SELECT e.seller_id, e.created_at AS at, 1 AS after_posts, e.seq,
           CASE WHEN e.kind IN ('charge', 'release') THEN -e.amount ELSE 0 END AS held_change
      FROM ledger_entry e
    UNION ALL
    SELECT c.seller_id, c.settled_at, 0, NULL, -c.amount
      FROM ledger_charge c
     WHERE c.status = 'succeeded'
       AND EXISTS (SELECT 1 FROM ledger_entry h WHERE h.charge_id = c.id AND h.kind = 'charge')
), running AS (
    SELECT seller_id, seq,
           sum(held_change) OVER (PARTITION BY seller_id ORDER BY at, after_posts, seq ROWS UNBOUNDED PRECEDING)
               AS held
      FROM events
)
UPDATE ledger_entry e SET held_after = r.held
  FROM running r
 WHERE r.seq IS NOT NULL AND e.seller_id = r.seller_id AND e.seq = r.seq;

DO $$
DECLARE
    r record;
    previous bytea;
    seller bigint;
BEGIN
    FOR r IN SELECT e.id, e.seller_id, {CANONICAL_SQL.format(e="e")} AS canonical
               FROM ledger_entry e ORDER BY e.seller_id, e.seq LOOP
        IF seller IS DISTINCT FROM r.seller_id THEN
            previous := decode(repeat('00', 32), 'hex');
            seller := r.seller_id;
        END IF;
        previous := sha256(previous || r.canonical);
        UPDATE ledger_entry SET hash = previous WHERE id = r.id;
    END LOOP;
END $$;

UPDATE ledger_account a SET last_hash = e.hash
  FROM ledger_entry e WHERE e.seller_id = a.seller_id AND e.seq = a.last_seq;

ALTER TABLE ledger_entry ENABLE TRIGGER ledger_entry_append_only;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0002_sellerapikey"),
        ("ledger", "0010_charge_sells_a_product"),
    ]

    operations = [
        migrations.AddField(
            model_name="account",
            name="last_hash",
            field=models.BinaryField(db_default=GENESIS, default=GENESIS, max_length=32),
        ),
        migrations.AddField(
            model_name="entry",
            name="hash",
            field=models.BinaryField(max_length=32, null=True),
        ),
        migrations.AddField(
            model_name="entry",
            name="held_after",
            field=models.BigIntegerField(null=True),
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="entry",
            name="hash",
            field=models.BinaryField(max_length=32),
        ),
        migrations.AlterField(
            model_name="entry",
            name="held_after",
            field=models.BigIntegerField(),
        ),
        migrations.AddIndex(
            model_name="charge",
            index=models.Index(
                condition=models.Q(("status", "succeeded")), fields=["seller", "settled_at"], name="charge_posted_idx"
            ),
        ),
        migrations.AddIndex(
            model_name="entry",
            index=models.Index(fields=["seller", "created_at", "seq"], name="entry_seller_time_idx"),
        ),
        migrations.AddConstraint(
            model_name="entry",
            constraint=models.CheckConstraint(
                condition=django.db.models.lookups.Exact(django.db.models.functions.text.Length("hash"), 32),
                name="entry_hash_is_sha256",
            ),
        ),
    ]
