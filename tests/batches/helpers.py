"""Shared by the batch tests: building charge lists and uploading them."""

from django.core.files.uploadedfile import SimpleUploadedFile


def phone(n: int) -> str:
    """A valid Iranian mobile number in national form, distinct for each n < 10**7."""
    return f"0912{n:07d}"


def e164(n: int) -> str:
    return f"+98912{n:07d}"


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


def results_rows(client, batch_id: int) -> list[list[str]]:
    import csv
    import io

    response = client.get(f"/api/v1/charge-batches/{batch_id}/results/")
    assert response.status_code == 200, response
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))
