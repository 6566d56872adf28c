"""OpenAPI for the ledger's own input fields (imported by the serializers that use them)."""

from django.conf import settings
from drf_spectacular.extensions import OpenApiSerializerFieldExtension


class AmountFieldExtension(OpenApiSerializerFieldExtension):
    target_class = "core.fields.AmountField"

    def map_serializer_field(self, auto_schema, direction):
        return {
            "type": "integer",
            "format": "int64",
            "minimum": 1,
            "maximum": settings.LEDGER_MAX_AMOUNT,
            "description": "Smallest currency unit; an integer (never a float or a string).",
        }
