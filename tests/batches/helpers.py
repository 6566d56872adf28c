"""Shared by the batch tests: building charge lists, uploading them, running their import."""

import re
import time

from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import close_old_connections

from ledger.models import ChargeBatch
from ledger.services.batch_import import batch_import_run


def phone(n: int) -> str:
    """A valid Iranian mobile number in national form, distinct for each n < 10**6. It ends in 0,
    so never in one of the sandbox provider's outcome-picking endings (9901-9906): it completes."""
    return f"0912{n:06d}0"


def e164(n: int) -> str:
    return f"+98912{n:06d}0"


def csv_bytes(*lines: str, newline: str = "\n", bom: bool = False) -> bytes:
    text = newline.join(lines) + newline
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


def upload(client, content: bytes, *, key: str | None = None, name: str = "charges.csv"):
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post(
        "/api/v1/charge-batches/",
        {"file": SimpleUploadedFile(name, content, content_type="text/csv")},
        format="multipart",
        headers=headers,
    )


def imported(client, content: bytes, **kwargs) -> dict:
    """Upload, then run the import here (what the import worker does) and return the batch as the
    API shows it. For tests about what an import produces, not about who runs it."""
    response = upload(client, content, **kwargs)
    assert response.status_code in (200, 202), response.json()
    batch_import_run(batch_id=response.json()["id"])
    return client.get(f"/api/v1/charge-batches/{response.json()['id']}/").json()


def wait_batch_status(batch_id: int, *statuses: str, timeout: float = 60.0) -> ChargeBatch:
    deadline = time.monotonic() + timeout
    while True:
        close_old_connections()
        batch = ChargeBatch.objects.get(pk=batch_id)
        if batch.status in statuses:
            return batch
        if time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch_id} is {batch.status}, not {statuses}, after {timeout}s")
        time.sleep(0.05)


def results_rows(client, batch_id: int) -> list[list[str]]:
    import csv
    import io

    response = client.get(f"/api/v1/charge-batches/{batch_id}/results/")
    assert response.status_code == 200, response
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))


def writes(queries) -> list[str]:
    """The statements of a CaptureQueriesContext that write or lock anything."""
    changing = re.compile(r"\b(INSERT|UPDATE|DELETE|COPY|TRUNCATE|MERGE|LOCK)\b", re.IGNORECASE)
    return [q["sql"] for q in queries.captured_queries if changing.search(q["sql"])]
