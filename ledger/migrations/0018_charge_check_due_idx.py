"""The reconciler's index of sent charges by when their lookup is due. Built concurrently: on a
ledger of millions of charges a plain CREATE INDEX would hold back every write to ledger_charge
while it scans the table."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [("ledger", "0017_statement_pieces_lz4")]

    operations = [
        AddIndexConcurrently(
            model_name="charge",
            index=models.Index(
                fields=["next_check_at"],
                condition=models.Q(stage__in=["submitted", "unknown"], outcome__isnull=True),
                name="charge_check_due_idx",
            ),
        ),
    ]
