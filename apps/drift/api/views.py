"""The drift API: agents report custom metrics for their runs; people list and work alerts."""

from __future__ import annotations

import math
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.views import current_user
from apps.audit.services import Actor
from apps.common.api import (
    AbsoluteUrlField,
    StrictSerializer,
    object_response,
    paginated_response,
    validated,
)
from apps.common.errors import ApplicationError, NotPermitted
from apps.runtime.authentication import RunTokenAuthentication
from apps.runtime.models import Run

from .. import selectors, services
from ..collect import metric_name_check, run_metrics_record
from ..constants import AlertStatus
from ..describe import alert_headline

METRICS_MAX = 50


class MetricsInput(StrictSerializer):
    metrics = serializers.DictField(
        child=serializers.FloatField(), allow_empty=False,
        help_text="Metric name → number, e.g. {\"claim_amount\": 1250.0}. At most 50.",
    )  # fmt: skip

    def validate_metrics(self, value: dict[str, float]) -> dict[str, float]:
        if len(value) > METRICS_MAX:
            raise serializers.ValidationError(f"At most {METRICS_MAX} metrics at once.")
        for name, number in value.items():
            try:
                metric_name_check(name)
            except ApplicationError as exc:
                raise serializers.ValidationError(f"{name[:60]!r}: {exc.message}") from exc
            if not math.isfinite(number):
                raise serializers.ValidationError(f"{name}: a metric is a finite number.")
        return value


class RunMetricsApi(APIView):
    authentication_classes = [RunTokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=MetricsInput, responses={200: dict}, operation_id="runtime_run_metrics",
        summary="Report custom numeric metrics of a run (drift detection watches them)",
    )  # fmt: skip
    def post(self, request: Request, run_id: Any) -> Response:
        run = request.auth
        assert isinstance(run, Run)  # RunTokenAuthentication put it there
        if str(run.pk) != str(run_id):
            raise NotPermitted("This run token belongs to another run.")
        data = validated(MetricsInput, request.data)
        return Response({"recorded": run_metrics_record(run=run, values=data["metrics"])})


class AlertOutput(serializers.Serializer):
    url = AbsoluteUrlField("drift-api:alert-detail", lambda a: {"alert_id": a.pk})
    id = serializers.IntegerField()
    agent = serializers.CharField(source="agent.slug")
    environment = serializers.CharField()
    version = serializers.IntegerField(source="version.number")
    metric = serializers.CharField()
    key = serializers.CharField()
    window = serializers.CharField()
    status = serializers.CharField()
    severity = serializers.CharField()
    headline = serializers.SerializerMethodField()
    test = serializers.CharField()
    statistic = serializers.FloatField()
    p_value = serializers.FloatField()
    psi = serializers.FloatField(allow_null=True)
    subject = serializers.CharField()
    baseline_value = serializers.FloatField()
    current_value = serializers.FloatField()
    baseline_n = serializers.IntegerField()
    current_n = serializers.IntegerField()
    shares = serializers.DictField()
    onset_at = serializers.DateTimeField()
    suspected_change = serializers.CharField()
    first_seen_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()
    updates = serializers.IntegerField()
    snoozed_until = serializers.DateTimeField(allow_null=True)
    acknowledged_by = serializers.CharField(source="acknowledged_by_name")
    resolved_by = serializers.CharField(source="resolved_by_name")
    resolution = serializers.CharField()
    kill_switch_engaged = serializers.BooleanField()

    class Meta:
        ref_name = "DriftAlert"

    def get_headline(self, alert: Any) -> str:
        return alert_headline(alert)


STATUSES = ["live", *AlertStatus.values, "all"]


class AlertListApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=STATUSES, description="Default live.")],
        responses=AlertOutput(many=True), operation_id="drift_alerts_list",
    )  # fmt: skip
    def get(self, request: Request) -> Response:
        """Drift alerts of the agents you may read, most recently seen first."""
        status = request.query_params.get("status", "live")
        if status not in STATUSES:
            raise ApplicationError(
                f"status is one of {', '.join(STATUSES)}.", details={"status": ["Unknown."]}
            )
        alerts = selectors.drift_alerts(user=current_user(request), status=status)
        return paginated_response(
            request=request, view=self, queryset=alerts, serializer_class=AlertOutput
        )


class AlertDetailApi(APIView):
    @extend_schema(responses=AlertOutput, operation_id="drift_alerts_retrieve")
    def get(self, request: Request, alert_id: int) -> Response:
        alert = selectors.drift_alert_get(user=current_user(request), alert_id=alert_id)
        return object_response(request, AlertOutput, alert)


class ActionInput(StrictSerializer):
    hours = serializers.IntegerField(min_value=1, max_value=720, required=False)
    resolution = serializers.CharField(max_length=300, required=False, allow_blank=True)


class AlertActionApi(APIView):
    """``acknowledge``, ``snooze`` (``hours``) or ``resolve`` (``resolution``) an alert: the
    agent's owner or an admin."""

    action_name = ""

    @extend_schema(request=ActionInput, responses=AlertOutput)
    def post(self, request: Request, alert_id: int) -> Response:
        user = current_user(request)
        alert = selectors.drift_alert_get(user=user, alert_id=alert_id)
        if not selectors.can_act_on(user, alert):
            raise NotPermitted("Only the agent's owner or an admin can act on its alerts.")
        data = validated(ActionInput, request.data)
        actor = Actor.user(user)
        if self.action_name == "acknowledge":
            services.alert_acknowledge(alert=alert, actor=actor)
        elif self.action_name == "snooze":
            if "hours" not in data:
                raise ApplicationError(
                    "Say how long to snooze: hours, 1-720.", details={"hours": ["Required."]}
                )
            services.alert_snooze(alert=alert, actor=actor, hours=data["hours"])
        else:
            services.alert_resolve(alert=alert, actor=actor, resolution=data.get("resolution", ""))
        return object_response(request, AlertOutput, alert)
