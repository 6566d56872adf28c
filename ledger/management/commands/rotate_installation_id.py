from django.core.management.base import BaseCommand

from ledger.fulfilment.identity import new_token
from ledger.models import Installation


class Command(BaseCommand):
    help = (
        "Give this database a new installation token, so charges sent from now on never reuse an "
        "external id the provider has seen. Run it after restoring a backup (the restored database "
        "would otherwise give new charges the ids of charges made after the backup), then restart "
        "the fulfilment workers and the web. Charges already sent keep their ids."
    )

    def handle(self, *args, **options):
        token = new_token()
        old = Installation.objects.filter(pk=1).values_list("token", flat=True).first()
        Installation.objects.update_or_create(pk=1, defaults={"token": token})
        self.stdout.write(
            f"installation token {old or '(none)'} -> {token}; restart the fulfilment workers and the web"
        )
