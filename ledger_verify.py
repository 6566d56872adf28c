#!/usr/bin/env python3
"""Check a ledger statement on your own machine: no database, no server, one dependency
(`cryptography`, for Ed25519).

    python ledger_verify.py STATEMENT [CHECKPOINTS ...] --public-key KEYS [--public-key KEYS ...]

STATEMENT is a statement as downloaded (JSON or CSV). CHECKPOINTS are files of checkpoints you kept:
the JSON of `GET /api/v1/checkpoints/` (a page, a list or one checkpoint) or earlier statements,
whose closing checkpoints count. KEYS is the JSON of `GET /api/v1/statements/public-key/` or a PEM
public key. What is checked, and what a passing run proves and does not: the API documentation,
"Statements".

Exit status: 0 when every check passes, 1 when any fails (each failure printed on a line of its
own), 2 when an input cannot be read."""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

GENESIS = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


class InputError(Exception):
    """An input that cannot be read as what it should be."""


# -- The rules this script re-implements from the published contract ------------------------------


def microseconds(text: str) -> int:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise InputError(f"time without a timezone: {text!r}")
    return (moment - _EPOCH) // _MICROSECOND


def canonical_bytes(seller: int, entry: Entry) -> bytes:
    """`v1|seller|seq|kind|amount|balance_after|charge|deposit|created_at in µs since the epoch`."""
    return _canonical(seller, entry, microseconds(entry.created_at))


def _canonical(seller: int, entry: Entry, at: int) -> bytes:
    charge = "" if entry.charge is None else entry.charge
    deposit = "" if entry.deposit is None else entry.deposit
    return f"v1|{seller}|{entry.seq}|{entry.kind}|{entry.amount}|{entry.balance_after}|{charge}|{deposit}|{at}".encode()


def checkpoint_message(cp: dict) -> bytes:
    entry_at = "" if cp["entry_created_at"] in (None, "") else microseconds(cp["entry_created_at"])
    fields = (
        "ledger-checkpoint-v1",
        cp["key_id"],
        cp["seller"],
        cp["seq"],
        cp["hash"],
        cp["balance"],
        entry_at,
        microseconds(cp["signed_at"]),
    )
    return "|".join(str(f) for f in fields).encode()


# -- Reading the inputs ---------------------------------------------------------------------------


@dataclass
class Entry:
    position: int  # where it was listed
    seq: int
    created_at: str
    kind: str
    amount: int
    balance_before: int
    balance_after: int
    hash: str
    charge: int | None
    deposit: int | None


@dataclass
class Statement:
    seller: int
    period_start: str
    period_end: str
    opening: dict
    closing: dict
    entries: list[Entry] = field(default_factory=list)
    totals: dict = field(default_factory=dict)
    checkpoint: dict | None = None


def _int(value) -> int:
    if isinstance(value, bool) or value in (None, ""):
        raise InputError(f"expected an integer, got {value!r}")
    return int(value)


def _cell(value: str) -> str:
    """A CSV cell as written, less the `'` that keeps spreadsheets from running it as a formula."""
    return value[1:] if value[:1] == "'" and value[1:2] in _FORMULA else value


def _head(data: dict) -> dict:
    return {"seq": _int(data["seq"]), "balance": _int(data["balance"]), "hash": str(data["hash"])}


def _checkpoint(data: dict) -> dict:
    return {
        "seller": _int(data["seller"]),
        "seq": _int(data["seq"]),
        "hash": str(data["hash"]),
        "balance": _int(data["balance"]),
        "entry_created_at": data.get("entry_created_at") or None,
        "signed_at": str(data["signed_at"]),
        "key_id": str(data["key_id"]),
        "signature": str(data["signature"]),
    }


def _from_json(data: dict) -> Statement:
    if data.get("format") != "ledger-statement-v1":
        raise InputError("not a ledger statement (format ledger-statement-v1)")
    statement = Statement(
        seller=_int(data["seller"]),
        period_start=data["period"]["start"],
        period_end=data["period"]["end"],
        opening=_head(data["opening"]),
        closing=_head(data["closing"]),
        totals={k: {"count": _int(v["count"]), "amount": _int(v["amount"])} for k, v in data["totals"].items()},
        checkpoint=_checkpoint(data["checkpoint"]),
    )
    for position, e in enumerate(data["entries"]):
        statement.entries.append(
            Entry(
                position,
                _int(e["seq"]),
                e["created_at"],
                e["kind"],
                _int(e["amount"]),
                _int(e["balance_before"]),
                _int(e["balance_after"]),
                e["hash"],
                None if e["charge"] is None else _int(e["charge"]["id"]),
                None if e["deposit"] is None else _int(e["deposit"]["id"]),
            )
        )
    return statement


_ENTRY_COLUMNS = ("seq", "created_at", "kind", "amount", "balance_before", "balance_after", "hash", "charge", "deposit")


def _from_csv(lines) -> Statement:
    opening = closing = checkpoint = None
    entries, totals = [], {}
    rows = csv.reader(lines)
    header = next(rows)
    at = {name: header.index(name) for name in _ENTRY_COLUMNS}
    for cells in rows:
        if cells[0] == "entry":  # most rows: only the cells the checks read, none of them a text a spreadsheet runs
            seq, created, kind, amount, before, after, hash_, charge, deposit = (cells[at[c]] for c in _ENTRY_COLUMNS)
            entries.append(
                Entry(
                    len(entries),
                    int(seq),
                    created,
                    kind,
                    int(amount),
                    int(before),
                    int(after),
                    hash_,
                    int(charge) if charge else None,
                    int(deposit) if deposit else None,
                )
            )
            continue
        row = {name: _cell(value) for name, value in zip(header, cells, strict=True)}
        record = row.get("record")
        if record == "opening":
            opening, start = {**row, "balance": row["balance_after"]}, row["created_at"]
        elif record == "total":
            totals[row["kind"]] = {"count": _int(row["count"]), "amount": _int(row["amount"])}
        elif record == "closing":
            closing, end = {**row, "balance": row["balance_after"]}, row["created_at"]
        elif record == "checkpoint":
            checkpoint = _checkpoint({**row, "balance": row["balance_after"], "entry_created_at": row["created_at"]})
        else:
            raise InputError(f"unknown record {record!r}")
    if opening is None or closing is None or checkpoint is None:
        raise InputError("a statement CSV has an opening, a closing and a checkpoint row")
    return Statement(
        seller=_int(opening["seller"]),
        period_start=start,
        period_end=end,
        opening=_head(opening),
        closing=_head(closing),
        entries=entries,
        totals=totals,
        checkpoint=checkpoint,
    )


def read_statement(path: Path) -> Statement:
    try:
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("{"):
            return _from_json(json.loads(text))
        return _from_csv(text.splitlines())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: {exc}") from exc


def read_checkpoints(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
        if not text.lstrip().startswith(("{", "[")):
            return [read_statement(path).checkpoint]
        data = json.loads(text)
        if isinstance(data, dict) and data.get("format") == "ledger-statement-v1":
            return [_checkpoint(data["checkpoint"])]
        if isinstance(data, dict) and "results" in data:
            data = data["results"]
        return [_checkpoint(item) for item in (data if isinstance(data, list) else [data])]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: {exc}") from exc


def read_public_keys(path: Path) -> dict[str, object]:
    """key id -> Ed25519 public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        data = path.read_bytes()
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
            raws = [key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)]
        else:
            raws = [base64.b64decode(k["public_key"]) for k in json.loads(data)["keys"]]
        return {hashlib.sha256(raw).hexdigest()[:16]: Ed25519PublicKey.from_public_bytes(raw) for raw in raws}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: {exc}") from exc


# -- The checks -----------------------------------------------------------------------------------


def check_signature(cp: dict, keys: dict) -> str | None:
    from cryptography.exceptions import InvalidSignature

    key = keys.get(cp["key_id"])
    if key is None:
        return f"checkpoint of seq {cp['seq']} is signed with key {cp['key_id']}, not among the public keys given"
    try:
        key.verify(base64.b64decode(cp["signature"]), checkpoint_message(cp))
    except (InvalidSignature, ValueError):
        return f"checkpoint of seq {cp['seq']}: the signature does not verify with key {cp['key_id']}"
    return None


def check_order(statement: Statement) -> list[str]:
    problems = []
    for before, after in zip(statement.entries, statement.entries[1:], strict=False):
        if after.seq <= before.seq:
            problems.append(f"reordered: entry seq {after.seq} is listed after seq {before.seq}")
    return problems


def check_membership(statement: Statement) -> list[str]:
    problems, seen = [], set()
    low, high = statement.opening["seq"], statement.closing["seq"]
    for entry in statement.entries:
        if entry.seq in seen:
            problems.append(f"inserted: seq {entry.seq} appears more than once")
        elif not low < entry.seq <= high:
            problems.append(f"inserted: entry seq {entry.seq} lies outside the statement's range {low + 1}..{high}")
        seen.add(entry.seq)
    missing = [seq for seq in range(low + 1, high + 1) if seq not in seen]
    for seq in missing[:20]:
        problems.append(f"removed: entry seq {seq} is missing")
    if len(missing) > 20:
        problems.append(f"removed: {len(missing) - 20} more entries are missing")
    return problems


def check_chain(statement: Statement) -> list[str]:
    """Each entry's hash from the previous one's and its content, and the balances, in seq order."""
    problems = []
    opening = statement.opening
    if opening["seq"] == 0 and (opening["hash"] != GENESIS.hex() or opening["balance"] != 0):
        problems.append("the opening head at seq 0 is not the chain's start (zero hash, zero balance)")
    previous, balance, time = bytes.fromhex(opening["hash"]), opening["balance"], None
    for entry in sorted(statement.entries, key=lambda e: (e.seq, e.position)):
        moment = microseconds(entry.created_at)
        expected = hashlib.sha256(previous + _canonical(statement.seller, entry, moment)).hexdigest()
        if expected != entry.hash:
            problems.append(
                f"edited: entry seq {entry.seq} does not match its hash (its content was changed, or the entry "
                "before it was removed, inserted or moved)"
            )
        if entry.balance_before != balance:
            problems.append(
                f"balance chain broken at seq {entry.seq}: balance_before {entry.balance_before}, "
                f"previous balance_after {balance}"
            )
        if entry.balance_after != entry.balance_before + entry.amount:
            problems.append(f"balance chain broken at seq {entry.seq}: balance_after != balance_before + amount")
        if time is not None and moment < time:
            problems.append(f"reordered: entry seq {entry.seq} is dated before the entry preceding it")
        previous, balance, time = bytes.fromhex(entry.hash), entry.balance_after, moment
    last = (
        {"seq": opening["seq"], "hash": opening["hash"], "balance": opening["balance"]}
        if not statement.entries
        else {"seq": max(e.seq for e in statement.entries), "hash": previous.hex(), "balance": balance}
    )
    if last != statement.closing:
        problems.append(f"the closing head {statement.closing} is not where the entries end {last}")
    return problems


def check_totals(statement: Statement) -> list[str]:
    sums: dict[str, dict[str, int]] = {}
    for entry in statement.entries:
        total = sums.setdefault(entry.kind, {"count": 0, "amount": 0})
        total["count"] += 1
        total["amount"] += entry.amount
    if sums != statement.totals:
        return [f"totals per kind {statement.totals} differ from the entries' {sums}"]
    return []


def check_checkpoints(statement: Statement, kept: list[dict], keys: dict) -> list[str]:
    problems = []
    own = statement.checkpoint
    problem = check_signature(own, keys)
    if problem:
        problems.append(problem)
    if own["seller"] != statement.seller:
        problems.append(f"the statement's checkpoint is of seller {own['seller']}")
    closing = statement.closing
    if own["seq"] > closing["seq"]:
        problems.append(f"cut short: the platform signed seq {own['seq']}, the statement ends at seq {closing['seq']}")
    elif (own["seq"], own["hash"], own["balance"]) != (closing["seq"], closing["hash"], closing["balance"]):
        problems.append(f"the statement's signed checkpoint (seq {own['seq']}) is not its closing head")
    by_seq = {e.seq: e for e in statement.entries}
    end = microseconds(statement.period_end)
    for cp in kept:
        if cp["seller"] != statement.seller:
            continue
        problem = check_signature(cp, keys)
        if problem:
            problems.append(problem)
            continue
        signed = f"the checkpoint of seq {cp['seq']} signed at {cp['signed_at']}"
        if cp["seq"] == statement.opening["seq"]:
            if (cp["hash"], cp["balance"]) != (statement.opening["hash"], statement.opening["balance"]):
                problems.append(f"rewritten: the opening head differs from {signed}")
        elif statement.opening["seq"] < cp["seq"] <= closing["seq"]:
            entry = by_seq.get(cp["seq"])
            if entry is None or (entry.hash, entry.balance_after) != (cp["hash"], cp["balance"]):
                problems.append(f"rewritten: entry seq {cp['seq']} differs from {signed}")
        elif cp["seq"] > closing["seq"] and cp["entry_created_at"] and microseconds(cp["entry_created_at"]) < end:
            problems.append(
                f"cut short: {signed} says entry seq {cp['seq']} existed inside the period "
                f"(dated {cp['entry_created_at']}); the statement ends at seq {closing['seq']}"
            )
    return problems


def verify(statement: Statement, kept: list[dict], keys: dict) -> list[str]:
    return (
        check_order(statement)
        + check_membership(statement)
        + check_chain(statement)
        + check_totals(statement)
        + check_checkpoints(statement, kept, keys)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ledger_verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("statement", type=Path)
    parser.add_argument("checkpoints", type=Path, nargs="*", help="checkpoints or earlier statements you kept")
    parser.add_argument("--public-key", type=Path, action="append", required=True, dest="keys")
    args = parser.parse_args(argv)
    try:
        statement = read_statement(args.statement)
        kept = [cp for path in args.checkpoints for cp in read_checkpoints(path)]
        keys = {}
        for path in args.keys:
            keys.update(read_public_keys(path))
        problems = verify(statement, kept, keys)
    except InputError as exc:
        print(f"cannot read: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"FAIL {problem}")
    if problems:
        return 1
    print(
        f"OK seller {statement.seller}: entries {statement.opening['seq'] + 1}..{statement.closing['seq']} "
        f"({len(statement.entries)}), closing balance {statement.closing['balance']}, signed by key "
        f"{statement.checkpoint['key_id']} at {statement.checkpoint['signed_at']}; "
        f"{len(kept)} kept checkpoints checked"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
