"""Request body parsers for the API: bounded in size and refusing hostile JSON.

The API promises that bad input is a 4xx that says what is wrong, never a 500. DRF hands the
request stream to the parser without Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` check, so these
parsers bound the body themselves (413), and refuse JSON the database cannot store: NUL
characters and lone surrogates (PostgreSQL text and jsonb reject them), non-finite numbers
(``1e999`` parses to ``inf``, which jsonb rejects) and absurd nesting.

Kept apart from ``apps.common.api``: DRF imports the parser setting while it is still loading
``rest_framework.views``, so this module must not import views.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework import parsers, renderers, status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.utils import json as strict_json

MAX_JSON_DEPTH = 64


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


# --- parsers ---------------------------------------------------------------------------------


def _body_limit() -> int | None:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than {limit} bytes.")


def read_limited_body(stream: Any, parser_context: Mapping[str, Any] | None) -> bytes:
    """The whole body, refusing more than ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes (413)."""
    limit = _body_limit()
    request = (parser_context or {}).get("request")
    if limit is not None and request is not None:
        meta = request.META
        try:
            declared = int(meta.get("CONTENT_LENGTH") or 0)
        except (TypeError, ValueError):
            declared = 0
        if declared > limit:
            raise _too_large(limit)
    if stream is None:
        return b""
    body: bytes = stream.read() if limit is None else stream.read(limit + 1)
    if limit is not None and len(body) > limit:
        raise _too_large(limit)
    return body


def _encoding(parser_context: Mapping[str, Any] | None) -> str:
    """The body's charset; only text encodings (``bz2_codec`` would inflate past the limit)."""
    encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
    try:
        "".encode(encoding)
    except (LookupError, UnicodeError) as exc:
        raise ParseError(f'Unsupported charset "{encoding}" in the Content-Type header.') from exc
    return str(encoding)


def _bad_string(value: str) -> str | None:
    if "\x00" in value:
        return "Text may not contain NUL (\\u0000) characters."
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Text may not contain unpaired surrogate characters."
    return None


def check_storable(data: Any, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse parsed JSON that the database cannot store or that nests absurdly deep.

    Iterative on purpose: the point is to survive hostile input, not to recurse on it.
    """
    pending: list[tuple[Any, int]] = [(data, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            problem = _bad_string(value)
            if problem:
                raise ParseError(problem)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ParseError("Numbers must be finite; this one is too large to store.")
        elif isinstance(value, dict | list):
            if depth >= max_depth:
                raise ParseError(f"JSON may nest at most {max_depth} levels deep.")
            if isinstance(value, dict):
                pending.extend((key, depth + 1) for key in value)
                pending.extend((item, depth + 1) for item in value.values())
            else:
                pending.extend((item, depth + 1) for item in value)


def parse_json(body: bytes, encoding: str = "utf-8") -> Any:
    """A JSON body, refusing what the database cannot store (``ParseError``, a 400)."""
    try:
        data = strict_json.loads(body.decode(encoding))
    except RecursionError as exc:
        raise ParseError(f"JSON may nest at most {MAX_JSON_DEPTH} levels deep.") from exc
    except ValueError as exc:  # includes UnicodeDecodeError
        raise ParseError(f"JSON parse error - {exc}") from exc
    check_storable(data)
    return data


class JSONParser(parsers.BaseParser):
    """JSON, bounded in size (413) and refusing what the database cannot store.

    Not a subclass of DRF's JSONParser on purpose: DRF reads ``request.body`` for those, and
    Django's size check there raises an exception no API error handler sees (a bare 400).
    """

    media_type = "application/json"
    renderer_class = renderers.JSONRenderer

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        body = read_limited_body(stream, parser_context)
        return parse_json(body, _encoding(parser_context))


class YAMLTextParser(parsers.BaseParser):
    """A YAML document handed to the view as text (the view's service parses it)."""

    media_type = "application/yaml"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        body = read_limited_body(stream, parser_context)
        encoding = _encoding(parser_context)
        try:
            text = body.decode(encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(f"The body is not valid {encoding} text.") from exc
        problem = _bad_string(text)
        if problem:
            raise ParseError(problem)
        return text


class TextYAMLParser(YAMLTextParser):
    media_type = "text/yaml"


class XYAMLParser(YAMLTextParser):
    media_type = "application/x-yaml"
