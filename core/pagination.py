from rest_framework import pagination
from rest_framework.exceptions import NotFound

# The largest id PostgreSQL's bigint holds: a cursor position past it cannot name a row.
_MAX_ID = 2**63 - 1


class PageNumberPagination(pagination.PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 1000

    def get_paginated_response(self, data):
        from rest_framework.response import Response

        return Response({"next": self.get_next_link(), "previous": self.get_previous_link(), "results": data})

    def get_paginated_response_schema(self, schema):
        full = super().get_paginated_response_schema(schema)
        full["properties"].pop("count", None)
        full["required"] = ["results"]
        return full


class CursorPagination(pagination.CursorPagination):
    page_size_query_param = "page_size"
    max_page_size = 1000
    ordering = "-id"

    def decode_cursor(self, request):
        """DRF checks the cursor's offset and direction but passes its position, a string the
        client can craft, straight into `id < position`; anything but an id there is an invalid
        cursor (404, as DRF answers every other invalid cursor), not a database error."""
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None and not _is_id(cursor.position):
            raise NotFound(self.invalid_cursor_message)
        return cursor


def _is_id(position: str) -> bool:
    return position.isascii() and position.isdecimal() and int(position) <= _MAX_ID
