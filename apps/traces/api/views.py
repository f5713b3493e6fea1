"""The trace fabric's API: one run's timeline as JSON (for incident reports and tools)."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.views import current_user

from .. import selectors
from .serializers import TimelineOutput


class RunTimelineApi(APIView):
    @extend_schema(responses={200: TimelineOutput}, operation_id="runs_timeline")
    def get(self, request: Request, run_id: uuid.UUID) -> Response:
        """Every step of the run in time order: the request, the agent's identity, each span
        (with its payloads) and decision and audit event, and the outcome. 404 for a run
        you may not see."""
        user = current_user(request)
        run = selectors.run_get(user=user, run_id=run_id)
        tl = selectors.run_timeline(user=user, run=run, full=True)
        data = {
            "run": run,
            "totals": tl.totals,
            "duration_ms": tl.duration_ms,
            "spans_total": tl.spans_total,
            "truncated": tl.truncated,
            "steps": tl.steps,
        }
        return Response(TimelineOutput(data, context={"request": request}).data)
