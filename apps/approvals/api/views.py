"""The agent's side of the approval API: where its request stands, now or once decided.

Both answer a run token (``Authorization: Bearer tth_run_...``) about that run's own requests
only; another run's request is a 404. The long-poll is an async Django view, not a DRF one
(DRF has no async views): it must not hold a thread for the seconds it waits. It answers in
the API's one error shape all the same.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.db import OperationalError
from django.http import HttpRequest, JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.common.errors import ApplicationError, error_body
from apps.runtime.authentication import RunTokenAuthentication
from apps.runtime.models import Run

from .. import waiting
from ..constants import WAIT_DEFAULT_SECONDS, WAIT_MAX_SECONDS
from .serializers import ApprovalStateOutput

logger = logging.getLogger(__name__)


class ApprovalStateApi(APIView):
    authentication_classes = [RunTokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={200: ApprovalStateOutput}, operation_id="approvals_state",
        summary="Where one of the run's approval requests stands (no waiting)",
        description="To wait for the outcome instead, `GET /api/v1/approvals/{id}/wait/"
        f"?timeout=<1..{WAIT_MAX_SECONDS}, default {WAIT_DEFAULT_SECONDS:.0f}>` (same "
        "token, same answer): it answers as soon as the request is decided, or with the "
        "pending state at the timeout (200 either way; `decided` says which). Or hold the "
        "websocket `/ws/agents/approvals/{id}/`. See docs/approvals-agents.md.",
    )  # fmt: skip
    def get(self, request: Request, approval_id: Any) -> Response:
        run = request.auth
        assert isinstance(run, Run)  # RunTokenAuthentication put it there
        approval = waiting.approval_of_run(run=run, approval_id=approval_id)
        return Response(waiting.current_state(approval.pk))


def _timeout(raw: str | None) -> float:
    if raw is None or raw == "":
        return WAIT_DEFAULT_SECONDS
    message = f"Wait between 1 and {WAIT_MAX_SECONDS} seconds."
    try:
        value = float(raw)
    except ValueError:
        raise ApplicationError(f"timeout: {message}", details={"timeout": [message]}) from None
    if not math.isfinite(value) or not 1 <= value <= WAIT_MAX_SECONDS:
        raise ApplicationError(f"timeout: {message}", details={"timeout": [message]})
    return value


def _error(exc: ApplicationError) -> JsonResponse:
    response = JsonResponse(error_body(exc.code, exc.message, exc.details), status=exc.http_status)
    if exc.http_status == 401:
        response["WWW-Authenticate"] = "Bearer"
    return response


async def approval_wait(request: HttpRequest, approval_id: Any) -> JsonResponse:
    """``GET /api/v1/approvals/<id>/wait/?timeout=25``: the request's state as soon as people
    decided it, or its pending state after ``timeout`` seconds (apps/approvals/waiting.py)."""
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse(error_body("method_not_allowed", "Use GET."), status=405)
        response["Allow"] = "GET, HEAD"
        return response
    try:
        timeout = _timeout(request.GET.get("timeout"))
        run = await waiting.in_thread(
            waiting.run_of_authorization, request.headers.get("Authorization", "")
        )
        approval = await waiting.in_thread(
            waiting.approval_of_run, run=run, approval_id=approval_id
        )
        state = await waiting.wait_for_outcome(approval.pk, timeout=timeout)
    except ApplicationError as exc:
        return _error(exc)
    except OperationalError as exc:
        # As the API's handler does: a 503 the agent may retry, never a 500.
        logger.error("approvals: database unavailable while waiting: %s", exc)
        response = _error(
            ApplicationError(
                "Tether's database is unavailable; try again.", code="store_unavailable"
            )
        )
        response.status_code, response["Retry-After"] = 503, "1"
        return response
    response = JsonResponse(state)
    response["Cache-Control"] = "no-store"
    return response
