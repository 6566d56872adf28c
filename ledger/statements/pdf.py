"""A statement as a PDF a person would file (reportlab): the period, opening and closing balances,
the totals per kind, every entry, and the signed checkpoint of the closing head as text. The
verifier reads the JSON or CSV, not this."""

import io

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from ledger.statements.documents import Statement

_COLUMNS = ["seq", "time (UTC)", "kind", "amount", "balance", "charge", "product", "face value", "price"]


def _entry_row(entry: dict) -> list[str]:
    charge = entry["charge"] or {}
    product = (charge.get("product") or {}).get("name") or ""
    face = charge.get("face_value")
    return [
        str(entry["seq"]),
        entry["created_at"].replace("T", " ").rstrip("Z")[:19],
        entry["kind"],
        str(entry["amount"]),
        str(entry["balance_after"]),
        "" if not charge else f"#{charge['id']} {charge.get('phone_number', '')}",
        product,
        "" if not face else f"{face['amount']} {face['currency']}",
        "" if charge.get("price") is None else str(charge["price"]),
    ]


def statement_pdf(statement: Statement, entries: list[dict]) -> bytes:
    styles = getSampleStyleSheet()
    period = statement.header()["period"]
    checkpoint = statement.checkpoint_dict()
    story = [
        Paragraph(f"Statement of seller {statement.seller_id}", styles["Title"]),
        Paragraph(f"Period: {period['start']} to {period['end']} (UTC, end excluded)", styles["Normal"]),
        Paragraph(
            f"Opening balance: {statement.opening.balance} (held {statement.opening.held}) after entry "
            f"{statement.opening.seq}",
            styles["Normal"],
        ),
        Paragraph(
            f"Closing balance: {statement.closing.balance} (held {statement.closing.held}) after entry "
            f"{statement.closing.seq}",
            styles["Normal"],
        ),
        Spacer(1, 4 * mm),
        Paragraph("Totals per kind", styles["Heading3"]),
    ]
    totals = [["kind", "entries", "amount"]] + [
        [kind, str(t["count"]), str(t["amount"])] for kind, t in sorted(statement.totals.items())
    ]
    story.append(_table(totals))
    story += [Spacer(1, 4 * mm), Paragraph("Entries", styles["Heading3"])]
    story.append(_table([_COLUMNS] + [_entry_row(e) for e in entries]))
    story += [
        Spacer(1, 4 * mm),
        Paragraph("Signed checkpoint of the closing head", styles["Heading3"]),
        Paragraph(
            f"seq {checkpoint['seq']}, hash {checkpoint['hash']}, balance {checkpoint['balance']}, "
            f"signed {checkpoint['signed_at']} with key {checkpoint['key_id']}",
            styles["Normal"],
        ),
        Paragraph(f"signature {checkpoint['signature']}", styles["Code"]),
    ]
    out = io.BytesIO()
    SimpleDocTemplate(out, pagesize=landscape(A4), title=f"Statement of seller {statement.seller_id}").build(story)
    return out.getvalue()


def _table(rows: list[list[str]]) -> Table:
    table = Table(rows, repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("FONTSIZE", (0, 0), (-1, -1), 7),
                ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
            ]
        )
    )
    return table
