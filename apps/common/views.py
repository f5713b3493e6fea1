"""Error pages: API paths answer in the one JSON error shape, console paths with a page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from .errors import error_body


def never_stored(response: HttpResponse) -> HttpResponse:
    """A page that shows a secret once must not be kept by the browser or any cache."""
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/") or request.path.startswith("/v1/")


def _answer(request: HttpRequest, status: int, code: str, message: str) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(error_body(code, message), status=status)
    return render(request, "error.html", {"status": status, "message": message}, status=status)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _answer(request, 404, "not_found", "Nothing here, or nothing you may see.")


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _answer(request, 403, "permission_denied", "You may not do that.")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _answer(request, 400, "bad_request", "The request could not be understood.")


def server_error(request: HttpRequest) -> HttpResponse:
    return _answer(request, 500, "server_error", "Something broke on our side; it has been logged.")
