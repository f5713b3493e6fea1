"""OpenAPI post-processing: the one error shape, documented once and referenced everywhere."""

from __future__ import annotations

from typing import Any

ERROR_COMPONENT = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "example": "invalid"},
                "message": {"type": "string", "example": "name: This field is required."},
                "details": {
                    "type": "object",
                    "additionalProperties": True,
                    "description": "Field name to messages, or other structured detail.",
                },
            },
        }
    },
}

_ERRORS = {
    "400": "Bad input; the message says what is wrong, details say where.",
    "401": "No credentials, or an invalid, expired or revoked token.",
    "403": "Visible to you, but you may not do this.",
    "404": "Does not exist, or is outside your scope.",
    "413": "The body is larger than the upload limit.",
    "415": "The body is in a content type this endpoint does not read.",
}
_WITH_BODY = {"post", "put", "patch"}


def add_error_responses(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Add the ``Error`` component and the 4xx answers every API operation can give."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_COMPONENT
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/v"):
            continue
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            codes = ["400", "401", "403", "404"]
            if method in _WITH_BODY:
                codes += ["413", "415"]
            for code in codes:
                operation["responses"].setdefault(
                    code, {"description": _ERRORS[code], "content": ref}
                )
    return result
