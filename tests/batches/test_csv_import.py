"""The parser alone: what a file must look like, and how each row is judged."""

import io

import pytest
from django.test import override_settings

from ledger.csv_import import HEAD_BYTES, MAX_LINE_CHARS, ChargeListReader, FileRefusedError, check_head
from tests.batches.helpers import csv_bytes, e164, phone


def read(content: bytes):
    reader = ChargeListReader(io.BytesIO(content))
    return reader, list(reader)


def refusal(content: bytes) -> str:
    with pytest.raises(FileRefusedError) as exc:
        read(content)
    return exc.value.message


def test_bom_crlf_quotes_and_blank_lines_are_read_with_physical_line_numbers():
    content = csv_bytes(
        "amount,Reference,phone_number",
        "",
        f'5000,"invoice, March",{phone(1)}',
        f'6000,"two\r\nlines",{phone(2)}',
        ",,",
        f'7000,"say ""hi""",{phone(3)}',
        newline="\r\n",
        bom=True,
    )
    reader, rows = read(content)
    assert reader.columns == ["amount", "reference", "phone_number"]
    assert [(r.line, r.phone_number, r.amount, r.reference, r.errors) for r in rows] == [
        (3, e164(1), 5000, "invoice, March", None),
        (4, e164(2), 6000, "two\r\nlines", None),
        (7, e164(3), 7000, 'say "hi"', None),
    ]


@pytest.mark.parametrize(
    "written",
    [
        "۰۹۱۲۰۰۰۰۰۰۱",  # Persian digits
        "٠٩١٢٠٠٠٠٠٠١",  # Arabic-Indic digits
        "0912 000 0001",
        "0912-000-0001",
        "+98 912 000 0001",
        "(0912) 000-0001",
    ],
)
def test_phone_numbers_in_local_scripts_and_with_separators_are_normalized(written):
    _, rows = read(csv_bytes("phone_number,amount", f'"{written}",1000'))
    assert rows[0].errors is None
    assert rows[0].phone_number == "+989120000001"


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("-5000", "Must be greater than zero."),
        ("0", "Must be greater than zero."),
        ("5000.0", "Must be an integer number of the smallest currency unit."),
        ("5e3", "Must be an integer number of the smallest currency unit."),
        ("5,000", "Must be an integer number of the smallest currency unit."),
        ("", "This field may not be blank."),
        ("1000000000001", "Must be at most 1000000000000."),
        ("9" * 5000, "Must be at most 1000000000000."),  # past int()'s digit limit: no crash
    ],
)
def test_amounts_follow_the_single_charge_rules(amount, message):
    _, rows = read(csv_bytes("phone_number,amount", f'{phone(1)},"{amount}"'))
    assert [(e.line, e.field, e.message) for e in rows[0].errors] == [(2, "amount", message)]


def test_amount_limit_is_the_configured_maximum():
    with override_settings(LEDGER_MAX_AMOUNT=10_000):
        _, rows = read(csv_bytes("phone_number,amount", f"{phone(1)},10000", f"{phone(1)},10001"))
    assert rows[0].errors is None
    assert rows[1].errors[0].message == "Must be at most 10000."


def test_every_bad_field_of_a_row_is_reported_and_raw_values_kept():
    _, rows = read(csv_bytes("phone_number,amount,reference", f"12345,abc,{'x' * 256}"))
    assert [e.field for e in rows[0].errors] == ["phone_number", "amount", "reference"]
    assert rows[0].raw == {"phone_number": "12345", "amount": "abc", "reference": "x" * 256}


def test_trailing_empty_header_cells_are_ignored():
    reader, rows = read(csv_bytes("phone_number,amount,,", f"{phone(1)},100,,", f"{phone(2)},200,x,"))
    assert reader.columns == ["phone_number", "amount"]
    assert rows[0].errors is None
    assert rows[1].errors[0].message == "Expected 2 columns, found 4."


def test_a_row_with_extra_values_is_invalid_but_trailing_empty_cells_are_not():
    _, rows = read(csv_bytes("phone_number,amount", f"{phone(1)},100,oops", f"{phone(2)},200,,"))
    assert rows[0].errors[0].field == "row"
    assert rows[1].errors is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty"),
        (b"\n\r\n\n", "The file is empty"),
        (csv_bytes("phone,amount"), "Unknown columns in the header: phone."),
        (csv_bytes("phone_number,amount,note"), "Unknown columns in the header: note."),
        (csv_bytes("phone_number,reference"), "Missing required columns in the header: amount."),
        (csv_bytes("amount"), "Missing required columns in the header: phone_number."),
        (csv_bytes("phone_number,amount,amount"), "Duplicate columns in the header: amount."),
        (csv_bytes("phone_number,,amount"), "Column 2 of the header has no name."),
        (csv_bytes("phone_number;amount"), "Columns must be separated by commas"),
        (csv_bytes(f"{phone(1)},5000"), "it holds data"),
        (b"phone_number,amount\n\xff\xfe0912,5\n", "not UTF-8"),
        ("phone_number,amount\n".encode("utf-16"), "UTF-16 text, not UTF-8"),
        (b"PK\x03\x04" + bytes(range(256)) * 4, "binary file"),  # a zipped workbook
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
        (b"phone_number,amount\n" + b"a" * (MAX_LINE_CHARS + 10), "longer than"),
    ],
)
def test_unusable_files_are_refused_as_a_whole(content, message):
    assert message in refusal(content)


@pytest.mark.parametrize("region", ["IR", "US", "GB", "DE"])
def test_fast_phone_path_agrees_with_the_general_parser(region, settings):
    import random

    from core.charge_rules import normalize_phone, normalize_phone_by_parser

    settings.PHONE_DEFAULT_REGION = region
    rng = random.Random(region)
    persian = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
    prefixes = ["", "0", "+98", "0098", "98", "+1", "1", "+44", "+49", "00", "+", "+980", "+9"]
    heads = ["912", "935", "990", "901", "21", "201", "7700", "7911", "151", "415", "0", "1", "9"]
    agreed_valid = 0
    for _ in range(3000):
        head = rng.choice(heads)
        # Half of them the length of a real national number, so many are valid mobiles.
        length = 10 - len(head) if rng.random() < 0.5 else rng.randint(4, 9)
        digits = head + "".join(rng.choice("0123456789") for _ in range(length))
        written = rng.choice(prefixes) + digits
        if rng.random() < 0.3:
            written = " ".join(written[i : i + 3] for i in range(0, len(written), 3))
        if rng.random() < 0.2:
            written = written.replace(" ", "-")
        if rng.random() < 0.2:
            written = written.translate(persian)
        expected = normalize_phone_by_parser(written)
        assert normalize_phone(written) == expected, written
        agreed_valid += expected is not None
    assert agreed_valid > 150  # the comparison covers accepted numbers, not only refusals


def test_the_api_and_the_csv_parser_judge_a_charge_alike():
    """One definition of a valid charge: the charge POST's serializer and a CSV row accept and
    refuse the same values with the same messages."""
    from ledger.api.serializers import ChargeCreateInput

    cases = [
        (phone(1), "5000", "ok"),
        ("not-a-phone", "5000", ""),
        (phone(1), "0", ""),
        (phone(1), "-3", ""),
        (phone(1), "1000000000001", ""),
        (phone(1), "100", "x" * 256),
        ("۰۹۱۲۰۰۰۰۰۰۱", "100", ""),
    ]
    for number, amount, reference in cases:
        _, rows = read(csv_bytes("phone_number,amount,reference", f"{number},{amount},{reference}"))
        api = ChargeCreateInput(data={"phone_number": number, "amount": int(amount), "reference": reference})
        assert api.is_valid() == (rows[0].errors is None), (number, amount, reference)
        if rows[0].errors:
            assert {e.field: [e.message] for e in rows[0].errors} == api.errors
        else:
            assert (rows[0].phone_number, rows[0].amount, rows[0].reference) == (
                api.validated_data["phone_number"],
                api.validated_data["amount"],
                api.validated_data["reference"],
            )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty"),
        (csv_bytes("phone_number,amount"), "no data rows"),
        (csv_bytes("phone,amount", f"{phone(1)},1"), "Unknown columns"),
        ("phone_number,amount\n".encode("utf-16"), "UTF-16"),
        (b"phone_number,amount\n" + b"a" * (MAX_LINE_CHARS + 10), "longer than"),
    ],
)
def test_check_head_refuses_what_the_first_bytes_show(content, message):
    with pytest.raises(FileRefusedError, match=message):
        check_head(io.BytesIO(content), size=len(content))


def test_check_head_reads_only_the_head_and_ignores_row_errors():
    rows = [f"{phone(i)},100" for i in range(30_000)]
    # Bad bytes and a header-less tail past the head: the import worker's to find, not the upload's.
    content = csv_bytes("phone_number,amount", "x,y", *rows) + b"\xc3\x28\n"
    assert len(content) > HEAD_BYTES
    file = io.BytesIO(content)
    check_head(file, size=len(content))
    assert file.tell() == 0
    # A head cut inside a quoted field spanning lines is still read as whole lines.
    quoted = csv_bytes("phone_number,amount,reference", *[f'{phone(i)},1,"a\nb"' for i in range(40_000)])
    check_head(io.BytesIO(quoted), size=len(quoted))


def test_the_import_copy_names_its_columns_from_the_model_and_refuses_to_miss_one():
    from django.core.exceptions import ImproperlyConfigured

    from ledger.models import Charge
    from ledger.services.batch_import import _copy_statement

    sql = _copy_statement(
        Charge,
        (
            "seller",
            "phone_number",
            "amount",
            "reference",
            "status",
            "batch",
            "created_at",
            "request_fingerprint",
            "batch_line",
        ),
    )
    assert '"seller_id"' in sql and '"batch_id"' in sql and sql.startswith('COPY "ledger_charge" (')
    with pytest.raises(ImproperlyConfigured, match="created_at"):
        _copy_statement(Charge, ("seller", "phone_number", "amount", "reference", "status", "request_fingerprint"))
