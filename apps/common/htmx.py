from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def wants_fragment(request: HttpRequest) -> bool:
    """An htmx swap wants the fragment; a history restore after a cache miss wants the page."""
    return is_htmx(request) and request.headers.get("HX-History-Restore-Request") != "true"


def htmx_partial(
    request: HttpRequest, template: str, context: dict[str, Any], partial: str | None = None
) -> HttpResponse:
    """Render the fragment for htmx swaps and the whole page otherwise.

    The response varies on ``HX-Request`` so that a cache never hands the fragment to a
    browser asking for the page, or the other way round.
    """
    name = partial if partial and wants_fragment(request) else template
    response = render(request, name, context)
    patch_vary_headers(response, ["HX-Request"])
    return response
