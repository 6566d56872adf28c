"""OpenAPI pieces drf-spectacular cannot infer: our authentication schemes and the error
responses every operation can give (the contract's one error shape)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "A human sentence."},
        "code": {"type": "string", "description": "Stable snake_case code clients can rely on."},
        "errors": {
            "type": "object",
            "description": "Validation errors by field (code `invalid` only).",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
    "required": ["detail", "code"],
}

_ERRORS = {
    "400": "Invalid input (`invalid`, `parse_error`).",
    "401": "Not authenticated (`not_authenticated`).",
    "403": "Authenticated but not allowed (`permission_denied`).",
    "404": "Missing, or belonging to another seller (`not_found`).",
    "405": "Method not allowed (`method_not_allowed`).",
    "409": "Conflict with the current state (`invalid_state`, `idempotency_key_reused`).",
    "413": "Request body too large (`request_too_large`).",
    "415": "Unsupported media type (`unsupported_media_type`).",
    "429": "Throttled (`throttled`); see `Retry-After`.",
}
_WRITE_ONLY = {"409", "413", "415"}


class JWTScheme(OpenApiAuthenticationExtension):
    target_class = "core.authentication.JWTAuthentication"
    name = "jwtAuth"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(
            header_name="HTTP_AUTHORIZATION", token_prefix="Bearer", bearer_format="JWT"
        )


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "core.authentication.ApiKeyAuthentication"
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`: a seller's API key, issued by an admin.",
        }


def add_error_responses(result, generator, request, public):
    """Postprocessing hook: document the error answers of every operation."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            authenticated = any(requirement for requirement in operation.get("security", [{}]))
            for status_code, description in _ERRORS.items():
                if status_code in _WRITE_ONLY and method not in {"post", "put", "patch"}:
                    continue
                if status_code in {"401", "403"} and not authenticated and "/auth/" not in _path_of(result, path_item):
                    continue
                response = {"description": description, "content": {"application/json": {"schema": ref}}}
                if status_code == "429":
                    response["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}}
                operation.setdefault("responses", {}).setdefault(status_code, response)
    return result


def _path_of(result, path_item) -> str:
    return next(path for path, item in result["paths"].items() if item is path_item)
