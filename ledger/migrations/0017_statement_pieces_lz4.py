"""Statement pieces compressed with lz4 where the server has it: PostgreSQL's default (pglz) took
most of a million-entry statement's build compressing its pieces; lz4 costs a fraction of that
for nearly the same size. A server built without lz4 keeps pglz."""

from django.db import migrations

LZ4 = """DO $$ BEGIN
    ALTER TABLE ledger_statementfile ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN NULL;
END $$"""
PGLZ = "ALTER TABLE ledger_statementfile ALTER COLUMN data SET COMPRESSION pglz"


class Migration(migrations.Migration):
    dependencies = [("ledger", "0016_reversals_and_conflicts")]

    operations = [migrations.RunSQL(LZ4, PGLZ)]
