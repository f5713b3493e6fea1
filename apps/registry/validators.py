"""Field validators shared by forms, the API and manifests (they all run ``full_clean``)."""

from __future__ import annotations

import json
import re
from typing import Any

from django.core.exceptions import ValidationError
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from .constants import (
    ENVIRONMENT_ORDER,
    JSON_FIELD_MAX_BYTES,
    SCHEMA_MAX_BYTES,
    TAG_MAX,
    TAGS_MAX_COUNT,
    TOOL_ACTIONS_MAX,
)

_TAG = re.compile(r"^[a-z0-9][a-z0-9:._-]*$")
_ACTION = re.compile(r"^[a-z][a-z0-9_.-]{0,39}$")


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")))


def validate_json_schema(value: Any) -> None:
    """A JSON Schema (2020-12) object; errors say where in the schema the problem is."""
    if not isinstance(value, dict):
        raise ValidationError('A JSON Schema must be an object, e.g. {"type": "object"}.')
    try:
        if _size(value) > SCHEMA_MAX_BYTES:
            raise ValidationError(f"The schema is larger than {SCHEMA_MAX_BYTES // 1024} KiB.")
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        raise ValidationError(f"Invalid JSON Schema at {where}: {exc.message}") from exc
    except RecursionError as exc:
        raise ValidationError("The schema is nested too deeply to check.") from exc


# Words the console uses in URLs next to slugs (``/agents/new/``).
RESERVED_SLUGS = frozenset({"new"})


def validate_unreserved_slug(value: str) -> None:
    if value in RESERVED_SLUGS:
        raise ValidationError(f"{value!r} is reserved; choose another slug.")


def validate_environments(value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError("Environments must be a list of names.")
    unknown = [v for v in value if v not in ENVIRONMENT_ORDER]
    if unknown:
        raise ValidationError(
            f"Unknown environment(s): {', '.join(unknown)}. Use {', '.join(ENVIRONMENT_ORDER)}."
        )
    if len(set(value)) != len(value):
        raise ValidationError("Each environment may be listed once.")


def validate_tags(value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError("Tags must be a list of words.")
    if len(value) > TAGS_MAX_COUNT:
        raise ValidationError(f"At most {TAGS_MAX_COUNT} tags.")
    for tag in value:
        if len(tag) > TAG_MAX or not _TAG.match(tag):
            raise ValidationError(
                f"Tag {tag[:50]!r} is not valid: lowercase letters, digits and :._- "
                f"up to {TAG_MAX} characters."
            )


def validate_string_list(value: Any) -> None:
    if not isinstance(value, list) or not all(
        isinstance(v, str) and 0 < len(v) <= 60 for v in value
    ):
        raise ValidationError("Must be a list of short names (1-60 characters each).")
    if len(value) > 10:
        raise ValidationError("At most 10 entries.")


_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def validate_slug_list(value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError("Must be a list of slugs.")
    if len(value) > 50:
        raise ValidationError("At most 50 entries.")
    bad = [v[:60] for v in value if len(v) > 60 or not _SLUG.match(v)]
    if bad:
        raise ValidationError(f"Not a slug: {', '.join(bad)}.")
    if len(set(value)) != len(value):
        raise ValidationError("Each slug may be listed once.")


def validate_actions(value: Any) -> None:
    if not isinstance(value, list) or not value:
        raise ValidationError('List at least one action, e.g. ["read", "update"].')
    if len(value) > TOOL_ACTIONS_MAX:
        raise ValidationError(f"At most {TOOL_ACTIONS_MAX} actions.")
    for action in value:
        if not isinstance(action, str) or not _ACTION.match(action):
            raise ValidationError(
                f"Action {str(action)[:50]!r} is not valid: start with a letter; letters, "
                "digits and ._- up to 40 characters."
            )
    if len(set(value)) != len(value):
        raise ValidationError("Each action may be listed once.")


def validate_json_object(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValidationError("Must be a JSON object (key: value pairs).")
    try:
        size = _size(value)
    except RecursionError as exc:
        raise ValidationError("Nested too deeply.") from exc
    if size > JSON_FIELD_MAX_BYTES:
        raise ValidationError(f"Larger than {JSON_FIELD_MAX_BYTES // 1024} KiB.")


BLAST_RADIUS_KEYS = ("records", "people", "money", "currency")


def validate_blast_radius(value: Any) -> None:
    """Where a tool's arguments say its reach: JSON pointers (``/amount``, ``/rows``) for
    records, people, money and currency; currency may also be a code (``EUR``)."""
    if not isinstance(value, dict):
        raise ValidationError("Must be a JSON object.")
    unknown = sorted(set(value) - set(BLAST_RADIUS_KEYS))
    if unknown:
        raise ValidationError(
            f"Unknown keys {', '.join(unknown)}; use {', '.join(BLAST_RADIUS_KEYS)}."
        )
    for key, pointer in value.items():
        if not isinstance(pointer, str) or not pointer or len(pointer) > 200:
            raise ValidationError(f"{key}: a JSON pointer such as /amount.")
        if key == "currency" and not pointer.startswith("/"):
            if not (len(pointer) == 3 and pointer.isalpha() and pointer.isupper()):
                raise ValidationError("currency: a JSON pointer or a code such as EUR.")
        elif not pointer.startswith("/"):
            raise ValidationError(f"{key}: a JSON pointer starts with /, e.g. /amount.")


# The agent's safe-state webhook is signed with its own secret (HMAC-SHA256), like the
# approvals' generic webhooks; the same bounds apply to it.
WEBHOOK_SECRET_MIN = 16
WEBHOOK_SECRET_MAX = 200


def validate_webhook_url(value: str) -> None:
    """A full http:// or https:// URL (the model's URLField would also take ftp)."""
    from django.core.validators import URLValidator

    try:
        URLValidator(schemes=["http", "https"])(value)
    except ValidationError:
        raise ValidationError(
            "Enter a full http:// or https:// URL, such as https://agents.example.com/safe-state."
        ) from None


def validate_webhook_secret(value: str) -> None:
    if not WEBHOOK_SECRET_MIN <= len(value) <= WEBHOOK_SECRET_MAX:
        raise ValidationError(
            f"Use {WEBHOOK_SECRET_MIN} to {WEBHOOK_SECRET_MAX} characters, e.g. the output of "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'."
        )
