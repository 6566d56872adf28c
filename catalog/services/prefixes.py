"""Numbering prefixes loaded by an operator of the platform, for providers that publish none
(DT One answers lookups instead): a CSV of `operator,prefix` rows, the operator by the provider's
id. A sync keeps them (it replaces only the prefixes of operators the provider publishes some for)."""

import csv
import io
import re
from dataclasses import dataclass, field

from django.db import transaction

from catalog.models import NumberingPrefix, Operator

PREFIX = re.compile(r"\+?([1-9][0-9]{1,14})")


@dataclass
class PrefixLoad:
    added: int = 0
    already: int = 0
    problems: list[str] = field(default_factory=list)


def prefixes_load(*, provider: str, text: str, replace: bool = False) -> PrefixLoad:
    """Adds every valid row (all or nothing: any problem loads none). `replace` first removes the
    named operators' other prefixes."""
    operators = dict(Operator.objects.filter(provider=provider).values_list("provider_operator_id", "id"))
    result, rows = PrefixLoad(), set()
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or {"operator", "prefix"} - set(reader.fieldnames):
        result.problems.append("header: the columns operator and prefix are required")
        return result
    for line, row in enumerate(reader, start=2):
        operator_id = operators.get((row["operator"] or "").strip())
        match = PREFIX.fullmatch((row["prefix"] or "").strip())
        if operator_id is None:
            result.problems.append(
                f"line {line}: no operator {row['operator']!r} of {provider} (sync the catalog first)"
            )
        elif match is None:
            result.problems.append(f"line {line}: {row['prefix']!r} is not an E.164 prefix")
        else:
            rows.add((operator_id, match[1]))
    if result.problems:
        return result
    with transaction.atomic():
        if replace:
            named = {operator_id for operator_id, _ in rows}
            for operator_id in named:
                keep = [prefix for o, prefix in rows if o == operator_id]
                NumberingPrefix.objects.filter(operator_id=operator_id).exclude(prefix__in=keep).delete()
        have = set(
            NumberingPrefix.objects.filter(operator_id__in={o for o, _ in rows}).values_list("operator_id", "prefix")
        )
        NumberingPrefix.objects.bulk_create(
            [NumberingPrefix(operator_id=o, prefix=p) for o, p in rows - have], ignore_conflicts=True
        )
    result.added, result.already = len(rows - have), len(rows & have)
    return result
