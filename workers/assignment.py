"""Which shards each shard worker process consumes: configuration, checked before any process starts.

- `LEDGER_WORKER_SHARDS="0,1;2,3"` names the groups explicitly (`;` between processes, `,` or
  `a-b` ranges inside one); it must cover every shard 0..LEDGER_SHARDS-1 exactly once;
- otherwise `LEDGER_WORKER_PROCESSES=N` spreads the shards round-robin (shard k goes to process
  k % N).
Either way every shard has exactly one consuming process: two consumers of one shard would settle
one seller concurrently (safe, the lock serializes them, but wasteful), and an unconsumed shard
would leave its sellers waiting for ever."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def shard_assignment(shards: int, processes: int) -> list[list[int]]:
    processes = max(1, min(processes, shards))
    return [[k for k in range(shards) if k % processes == p] for p in range(processes)]


def parse_shard_groups(spec: str, shards: int) -> list[list[int]]:
    """`"0,1;2-3"` -> `[[0, 1], [2, 3]]`, refusing anything that does not cover 0..shards-1 exactly once."""
    groups: list[list[int]] = []
    for raw_group in spec.split(";"):
        group: list[int] = []
        for item in (part.strip() for part in raw_group.split(",")):
            if not item:
                continue
            try:
                if "-" in item:
                    low, high = (int(x) for x in item.split("-", 1))
                    group.extend(range(low, high + 1))
                else:
                    group.append(int(item))
            except ValueError as exc:
                raise ImproperlyConfigured(f"LEDGER_WORKER_SHARDS: {item!r} is not a shard number or range") from exc
        if not group:
            raise ImproperlyConfigured(f"LEDGER_WORKER_SHARDS={spec!r} has an empty process group")
        groups.append(group)
    seen: dict[int, int] = {}
    for index, group in enumerate(groups):
        for shard in group:
            if not 0 <= shard < shards:
                raise ImproperlyConfigured(
                    f"LEDGER_WORKER_SHARDS names shard {shard}, but LEDGER_SHARDS={shards} (shards 0..{shards - 1})"
                )
            if shard in seen:
                raise ImproperlyConfigured(
                    f"LEDGER_WORKER_SHARDS gives shard {shard} to processes {seen[shard]} and {index}; "
                    "every shard must have exactly one consumer"
                )
            seen[shard] = index
    missing = sorted(set(range(shards)) - set(seen))
    if missing:
        raise ImproperlyConfigured(
            f"LEDGER_WORKER_SHARDS leaves shards {missing} without a consumer (LEDGER_SHARDS={shards})"
        )
    return groups


def worker_groups() -> list[list[int]]:
    """The configured shard groups, one per worker process."""
    spec = os.environ.get("LEDGER_WORKER_SHARDS", "").strip()
    if spec:
        return parse_shard_groups(spec, settings.LEDGER_SHARDS)
    raw = os.environ.get("LEDGER_WORKER_PROCESSES", "2")
    try:
        processes = int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"LEDGER_WORKER_PROCESSES must be an integer, got {raw!r}") from exc
    if processes < 1:
        raise ImproperlyConfigured("LEDGER_WORKER_PROCESSES must be at least 1")
    return shard_assignment(settings.LEDGER_SHARDS, processes)
