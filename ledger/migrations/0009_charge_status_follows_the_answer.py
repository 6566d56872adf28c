"""`charge_succeeded_by_provider` says both halves: a succeeded charge has the provider's success
(the old condition, `NOT status = 'succeeded' OR outcome = 'succeeded'`, is NULL for a charge with
no answer, and a CHECK passes on NULL), and a final charge with the provider's success is
succeeded. With the other constraints `status` is then a function of `stage` and `outcome`."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0008_provider_identity"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="charge",
            name="charge_succeeded_by_provider",
        ),
        migrations.AddConstraint(
            model_name="charge",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        models.Q(("status", "succeeded"), _negated=True),
                        models.Q(("outcome", "succeeded"), ("outcome__isnull", False)),
                        _connector="OR",
                    ),
                    models.Q(
                        models.Q(("outcome", "succeeded"), ("stage", "done"), _negated=True),
                        ("status", "succeeded"),
                        _connector="OR",
                    ),
                ),
                name="charge_succeeded_by_provider",
            ),
        ),
    ]
