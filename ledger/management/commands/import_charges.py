"""`manage.py import_charges --seller <username or id> FILE`: the admin's way to import a charge
list. Same services as the API (the file is stored, then imported), but the import runs here, in
this process, with a progress bar; then it follows settlement and ends with a summary.
Exits 1 when the file is refused or rejected, 2 when settlement did not finish within --timeout."""

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from tqdm import tqdm

from core.errors import DomainError
from core.models import Seller
from ledger.csv_export import csv_lines
from ledger.errors import BatchFileRefusedError
from ledger.models import ChargeBatch
from ledger.selectors import batch_rejection_reason, batch_results
from ledger.services.batch_import import batch_import_run
from ledger.services.batch_upload import batch_upload


class Command(BaseCommand):
    help = "Import a CSV charge list (phone_number, amount[, reference]) for a seller and follow it to the end."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--seller", required=True, help="seller id or username")
        parser.add_argument("--idempotency-key", help="re-running with the same key and file imports nothing twice")
        parser.add_argument("--no-wait", action="store_true", help="exit once the rows are queued")
        parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for settlement")
        parser.add_argument("--results", type=Path, help="write the results CSV here once settled")

    def handle(self, *args, **options):
        seller = self._seller(options["seller"])
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        show = options["verbosity"] > 0
        with path.open("rb") as file:
            try:
                batch, created = batch_upload(
                    seller=seller,
                    file=file,
                    filename=path.name,
                    idempotency_key=options["idempotency_key"],
                    start_import=False,
                )
            except BatchFileRefusedError as exc:
                raise CommandError(f"refused: {exc.detail}") from exc
            except DomainError as exc:
                raise CommandError(f"refused ({exc.code}): {exc.detail}") from exc
        if batch.status == ChargeBatch.Status.VALIDATING:
            batch = self._import(batch, size=path.stat().st_size, show=show)

        if batch.status == ChargeBatch.Status.REJECTED:
            for error in batch.errors[:20]:
                self.stderr.write(f"  line {error['line']} {error['field']}: {error['message']}")
            raise CommandError(f"refused: {batch_rejection_reason(batch)}")
        verb = "queued" if created else "already imported as"
        self.stdout.write(
            f"batch {batch.pk} {verb}: {batch.total_rows} rows, {batch.valid_rows} valid, {batch.invalid_rows} invalid"
        )
        for error in batch.errors[:20]:
            self.stdout.write(f"  line {error['line']} {error['field']}: {error['message']}")
        if batch.invalid_rows > 20:
            self.stdout.write(f"  ... see the results file for all {batch.invalid_rows} invalid rows")
        if options["no_wait"]:
            self.stdout.write(f"not waiting; follow it at /api/v1/charge-batches/{batch.pk}/")
            return

        if not self._wait(batch, timeout=options["timeout"], show=show):
            raise CommandError(
                f"batch {batch.pk}: {batch.queued} charges still queued after {options['timeout']}s "
                "(are the shard workers running?)",
                returncode=2,
            )
        self.stdout.write(
            f"batch {batch.pk} completed: {batch.succeeded} succeeded ({batch.succeeded_amount} charged), "
            f"{batch.failed} failed"
        )
        if options["results"]:
            header, rows = batch_results(batch=batch)
            with options["results"].open("w", encoding="utf-8", newline="") as out:
                out.writelines(csv_lines(header, rows))
            self.stdout.write(f"results written to {options['results']}")

    def _seller(self, ident: str) -> Seller:
        lookup = Q(user__username=ident) | (Q(pk=int(ident)) if ident.isdecimal() else Q())
        seller = Seller.objects.select_related("user").filter(lookup).first()
        if seller is None:
            raise CommandError(f"no seller with id or username {ident!r}")
        return seller

    def _import(self, batch: ChargeBatch, *, size: int, show: bool) -> ChargeBatch:
        """Run the import here (the same service the import worker runs); if another run holds
        the batch (a worker resuming it), wait for that one."""
        with tqdm(total=size, unit="B", unit_scale=True, desc="read", disable=not show, file=self.stderr) as bar:

            def progress(rows: int, bytes_read: int) -> None:
                bar.set_postfix(rows=rows, refresh=False)
                bar.update(max(0, bytes_read - bar.n))

            imported = batch_import_run(batch_id=batch.pk, on_progress=progress)
            bar.update(bar.total - bar.n)
        while imported is None or imported.status == ChargeBatch.Status.VALIDATING:
            time.sleep(0.5)
            imported = ChargeBatch.objects.get(pk=batch.pk)
        return imported

    def _wait(self, batch: ChargeBatch, *, timeout: float, show: bool) -> bool:
        deadline = time.monotonic() + timeout
        with tqdm(total=batch.valid_rows, unit="row", desc="settled", disable=not show, file=self.stderr) as bar:
            while True:
                batch.refresh_from_db()
                bar.update(batch.succeeded + batch.failed - bar.n)
                if batch.status == ChargeBatch.Status.COMPLETED:
                    return True
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.5)
