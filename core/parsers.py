"""The API's JSON parser: any body it cannot load is the client's mistake, a 400 `parse_error`."""

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's parser turns `ValueError` (bad syntax, bad encoding, numbers too long to convert)
    into `ParseError`; a body nested deeper than the interpreter's recursion limit makes
    `json.load` raise `RecursionError` instead, which would escape as a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - the document is nested too deeply.") from exc
