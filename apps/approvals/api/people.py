"""The approvers' side of the API: the inbox and answering a request, with a personal token
(or the console session). The same selectors and services as the console: scope, separation
of duties and four eyes apply exactly as they do there."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.views import current_user
from apps.common.api import StrictCharField, StrictSerializer, paginated_response, validated
from apps.registry.constants import RiskClass

from .. import selectors, services
from ..constants import FEEDBACK_MAX, ApprovalStatus, Verdict


class RequestOutput(serializers.Serializer):
    """A request as an approver sees it (the console's page, as data)."""

    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=ApprovalStatus.choices)
    risk_class = serializers.ChoiceField(choices=RiskClass.choices)
    agent = serializers.CharField(source="agent.slug")
    agent_version = serializers.IntegerField()
    run = serializers.UUIDField(source="run_id")
    environment = serializers.CharField()
    tool = serializers.CharField(source="tool.slug")
    tool_action = serializers.CharField()
    arguments = serializers.DictField()
    arguments_sha256 = serializers.CharField()
    reason = serializers.CharField()
    gate_reasoning = serializers.CharField()
    policies = serializers.ListField(child=serializers.CharField())
    on_behalf_of = serializers.CharField(source="on_behalf_of.username", allow_null=True)
    preview = serializers.DictField(allow_null=True)
    blast_radius = serializers.DictField()
    rollback = serializers.DictField()
    approvals_required = serializers.IntegerField()
    tier = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    url = serializers.SerializerMethodField(help_text="The request's page in the console.")

    class Meta:
        ref_name = "ApprovalRequest"

    def get_url(self, approval: Any) -> str:
        return self.context["request"].build_absolute_uri(f"/approvals/{approval.pk}/")


class InboxFilter(StrictSerializer):
    risk = serializers.ChoiceField(choices=RiskClass.choices, required=False)
    sort = serializers.ChoiceField(choices=["deadline", "age", "newest"], required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=200)
    offset = serializers.IntegerField(required=False, min_value=0)


class InboxApi(APIView):
    @extend_schema(
        parameters=[InboxFilter], responses={200: RequestOutput(many=True)},
        operation_id="approvals_inbox",
        summary="The pending requests you may answer (your scope and delegated authority)",
    )  # fmt: skip
    def get(self, request: Request) -> Response:
        filters = validated(InboxFilter, request.query_params)
        rows = selectors.inbox_for_user(
            user=current_user(request),
            sort=filters.get("sort", "deadline"),
            risk=filters.get("risk", ""),
        ).select_related("on_behalf_of")
        return paginated_response(
            request=request, view=self, queryset=rows, serializer_class=RequestOutput
        )


class AnswerInput(StrictSerializer):
    verdict = serializers.ChoiceField(choices=Verdict.choices)
    comment = StrictCharField(max_length=FEEDBACK_MAX, required=False, allow_blank=True)


class AnswerApi(APIView):
    @extend_schema(
        request=AnswerInput, responses={200: RequestOutput}, operation_id="approvals_answer",
        summary="Approve, reject (with a reason), request changes or escalate a request",
    )  # fmt: skip
    def post(self, request: Request, approval_id: Any) -> Response:
        user = current_user(request)
        approval = selectors.approval_get(user=user, approval_id=approval_id)
        data = validated(AnswerInput, request.data)
        approval = services.approval_answer(
            approval=approval, actor=user, verdict=data["verdict"], comment=data.get("comment", "")
        )
        return Response(RequestOutput(approval, context={"request": request}).data)
