"""An uploaded charge list kept in PostgreSQL until it is imported: written in fixed-size chunks
as the upload is read, read back the same way by whichever worker host imports it. Neither side
ever holds the file whole. Also what the upload learns of a file without parsing it: its size
and its hash."""

from __future__ import annotations

import hashlib
import io
import os
from typing import BinaryIO

from django.db import connection

from ledger.models import ChargeBatchFileChunk

CHUNK_BYTES = 1 << 20


def file_size(file: BinaryIO) -> int:
    """The upload's size in bytes, from what the file object knows if it can tell (Django's
    uploads, real files), else by seeking to its end."""
    size = getattr(file, "size", None)
    if size is not None:
        return size
    try:
        return os.fstat(file.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        position = file.seek(0, os.SEEK_END)
        file.seek(0)
        return position


def file_sha256(file: BinaryIO) -> str:
    """The hex SHA-256 of the whole file, read from its start in 1 MiB pieces; leaves it at its start."""
    digest = hashlib.sha256()
    file.seek(0)
    for chunk in iter(lambda: file.read(1 << 20), b""):
        digest.update(chunk)
    file.seek(0)
    return digest.hexdigest()


def batch_file_store(*, batch_id: int, file: BinaryIO) -> int:
    """Copy `file` (from its start) into the batch's chunks; returns the bytes stored. Runs in
    the caller's transaction, so a failed upload stores nothing."""
    file.seek(0)
    stored = 0
    for index, chunk in enumerate(iter(lambda: file.read(CHUNK_BYTES), b"")):
        ChargeBatchFileChunk.objects.create(batch_id=batch_id, index=index, data=chunk)
        stored += len(chunk)
    file.seek(0)
    return stored


def batch_file_delete(*, batch_id: int) -> None:
    ChargeBatchFileChunk.objects.filter(batch_id=batch_id).delete()


def batch_file_open(*, batch_id: int, size: int) -> BinaryIO:
    """The stored file as a buffered, seekable binary file."""
    return io.BufferedReader(_StoredFile(batch_id, size), buffer_size=64 * 1024)


class _StoredFile(io.RawIOBase):
    """Reads one chunk at a time from the database; chunk i holds bytes [i*CHUNK_BYTES, ...)."""

    def __init__(self, batch_id: int, size: int):
        self._batch_id, self._size = batch_id, size
        self._position = 0
        self._index, self._chunk = -1, b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        if self._position >= self._size:
            return 0
        index, offset = divmod(self._position, CHUNK_BYTES)
        if index != self._index:
            self._chunk = self._load(index)
            self._index = index
        count = min(len(buffer), len(self._chunk) - offset)
        if count <= 0:
            raise OSError(f"batch {self._batch_id}: stored file ends before byte {self._position} of {self._size}")
        buffer[:count] = self._chunk[offset : offset + count]
        self._position += count
        return count

    def _load(self, index: int) -> bytes:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT data FROM {ChargeBatchFileChunk._meta.db_table} WHERE batch_id = %s AND index = %s",
                [self._batch_id, index],
            )
            row = cursor.fetchone()
        if row is None:
            raise OSError(f"batch {self._batch_id}: chunk {index} of its stored file is missing")
        return bytes(row[0])
