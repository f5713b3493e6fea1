"""The audit chain's REST API: its status, verifications (run one, list them) and the export.

Organisation-wide, like the console's pages: admins and organisation-wide auditors only; anyone
else gets 403 (and 404 for one verification).
"""

from __future__ import annotations

from typing import Any, cast

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import User
from apps.common.api import (
    AbsoluteUrlField,
    FirstRendererNegotiation,
    ListFilterSerializer,
    Pagination,
    StrictSerializer,
    absolute_url,
    object_response,
    paginated_response,
    validated,
)
from apps.common.errors import ApplicationError, NotFound, NotPermitted

from .. import selectors, services
from ..constants import GENESIS_HASH
from ..export import export_response
from ..forms import ExportForm
from ..models import AuditVerification

REFUSED = (
    "The audit chain covers the whole organisation: admins and organisation-wide auditors only."
)


def _require_reader(request: Request) -> None:
    if not selectors.can_read_audit_log(request.user):
        raise NotPermitted(REFUSED)


class VerificationOutputSerializer(serializers.ModelSerializer):
    url = AbsoluteUrlField("audit-api:verification-detail", lambda v: {"verification_id": v.pk})
    actor = serializers.CharField(source="actor_name")

    class Meta:
        model = AuditVerification
        ref_name = "AuditVerification"
        fields = [
            "url",
            "id",
            "started_at",
            "finished_at",
            "actor",
            "actor_type",
            "since_id",
            "ok",
            "events_checked",
            "head_seq",
            "head_event_id",
            "head_hash",
            "broken_kind",
            "broken_event_id",
            "broken_seq",
            "detail",
        ]


class ChainStatusApi(APIView):
    """The chain's head, its append-only triggers and the last verification."""

    class OutputSerializer(serializers.Serializer):
        url = serializers.URLField()
        events = serializers.IntegerField()
        head_event_id = serializers.IntegerField(allow_null=True)
        head_seq = serializers.IntegerField()
        head_hash = serializers.CharField()
        genesis_hash = serializers.CharField()
        append_only_triggers = serializers.DictField(child=serializers.CharField())
        last_verification = VerificationOutputSerializer(allow_null=True)
        verifications_url = serializers.URLField()
        export_url = serializers.URLField()

        class Meta:
            ref_name = "AuditChain"

    @extend_schema(operation_id="audit_chain_retrieve", responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        chain = selectors.chain_status(user=request.user)
        if chain is None:
            raise NotPermitted(REFUSED)
        data: dict[str, Any] = {
            "url": absolute_url(request, "audit-api:chain"),
            "events": chain.events,
            "head_event_id": chain.head_id,
            "head_seq": chain.head_seq,
            "head_hash": chain.head_hash,
            "genesis_hash": GENESIS_HASH,
            "append_only_triggers": chain.guards,
            "last_verification": chain.last_verification,
            "verifications_url": absolute_url(request, "audit-api:verification-list"),
            "export_url": absolute_url(request, "audit-api:export"),
        }
        return object_response(request, self.OutputSerializer, data)


class VerificationListCreateApi(APIView):
    """GET: past verifications, newest first. POST: verify the chain now (201, the result)."""

    pagination_class = Pagination

    class FilterSerializer(ListFilterSerializer):
        class Meta:
            ref_name = "AuditVerificationFilter"

    class InputSerializer(StrictSerializer):
        since_id = serializers.IntegerField(
            required=False,
            allow_null=True,
            min_value=1,
            help_text="Verify from this event id on (its predecessor anchors the walk).",
        )

        class Meta:
            ref_name = "AuditVerificationCreate"

    @extend_schema(
        operation_id="audit_verifications_list",
        parameters=[FilterSerializer],
        responses=VerificationOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        _require_reader(request)
        validated(self.FilterSerializer, request.query_params)
        return paginated_response(
            request=request, view=self, queryset=selectors.verification_list(user=request.user),
            serializer_class=VerificationOutputSerializer,
        )  # fmt: skip

    @extend_schema(
        operation_id="audit_verifications_create",
        request=InputSerializer,
        responses={201: VerificationOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        data = validated(self.InputSerializer, request.data)
        _, verification = services.audit_chain_verify(
            actor=cast(User, request.user), since_id=data.get("since_id")
        )
        return object_response(
            request, VerificationOutputSerializer, verification, status=status.HTTP_201_CREATED
        )


class VerificationDetailApi(APIView):
    @extend_schema(
        operation_id="audit_verifications_retrieve", responses=VerificationOutputSerializer
    )
    def get(self, request: Request, verification_id: int) -> Response:
        verification = (
            selectors.verification_list(user=request.user).filter(pk=verification_id).first()
        )
        if verification is None:
            raise NotFound("No such verification.")
        return object_response(request, VerificationOutputSerializer, verification)


class ExportApi(APIView):
    """A range of audit events as JSON Lines: ``jsonl`` (canonical, re-verifiable) or ``ocsf``.

    Streamed; at most ``EXPORT_MAX_EVENTS`` events (a larger range is a 400 that says where the
    first part ends). Bounds are inclusive; times are ISO 8601, UTC unless they carry an offset.
    """

    content_negotiation_class = FirstRendererNegotiation

    @extend_schema(
        operation_id="audit_export",
        parameters=[
            OpenApiParameter("format", str, enum=["jsonl", "ocsf"], description="default jsonl"),
            OpenApiParameter("from_id", int),
            OpenApiParameter("to_id", int),
            OpenApiParameter("since", OpenApiTypes.DATETIME),
            OpenApiParameter("until", OpenApiTypes.DATETIME),
        ],
        responses={(200, "application/x-ndjson"): OpenApiTypes.STR},
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        _require_reader(request)
        form = ExportForm(request.query_params)
        unknown = sorted(set(request.query_params) - set(form.fields))
        if unknown:
            raise ApplicationError(
                f"Unknown parameter(s): {', '.join(unknown)}; use {', '.join(form.fields)}.",
                details={name: ["Unknown parameter."] for name in unknown},
            )
        if not form.is_valid():
            raise ApplicationError(
                form.error_message(),
                details={name: [str(e) for e in errors] for name, errors in form.errors.items()},
            )
        return export_response(
            request, user=request.user, bounds=form.bounds(), export_format=form.export_format()
        )
