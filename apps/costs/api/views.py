"""The costs API: the chargeback export for finance systems (the console's JSON, by token)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.views import current_user
from apps.common.errors import ApplicationError

from .. import dashboard
from ..exports import chargeback_json
from ..forms import ChargebackForm


class ChargebackApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("month", str, required=True, description="YYYY-MM (UTC)."),
            OpenApiParameter("department", str, description="A department's slug; default all."),
        ],
        responses={200: dict},
        operation_id="costs_chargeback",
    )
    def get(self, request: Request) -> Response:
        """One month's spend per department you may read, line by line (team, agent, process,
        environment, provider, model), each department's total rounded once to the cent."""
        user = current_user(request)
        form = ChargebackForm(
            request.query_params, departments=dashboard.cost_departments(user=user)
        )
        if not form.is_valid():
            raise ApplicationError(
                "Give the month as YYYY-MM and, optionally, a department you may read.",
                details={name: [str(e) for e in errors] for name, errors in form.errors.items()},
            )
        department = form.departments.get(form.cleaned_data["department"] or "")
        report = dashboard.chargeback(
            user=user, month=form.cleaned_data["month"], department=department
        )
        return Response(chargeback_json(report))
