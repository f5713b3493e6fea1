"""The accounts REST API: who am I, my personal tokens, and the organisation's shape."""

from __future__ import annotations

from typing import cast

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.common.api import (
    AbsoluteUrlField,
    ListFilterSerializer,
    Pagination,
    StrictCharField,
    StrictSerializer,
    object_response,
    paginated_response,
    validated,
)

from .. import selectors, services
from ..models import User
from ..permissions import scope_of
from .serializers import DepartmentOutputSerializer, RoleOutputSerializer, TokenOutputSerializer


class MeApi(APIView):
    """The person behind the request and the roles they hold."""

    class OutputSerializer(serializers.Serializer):
        username = serializers.CharField()
        url = AbsoluteUrlField("accounts-api:me", lambda u: {})
        full_name = serializers.CharField(source="get_full_name")
        email = serializers.EmailField()
        is_admin = serializers.BooleanField()
        roles = RoleOutputSerializer(many=True)
        tokens_url = AbsoluteUrlField("accounts-api:token-list", lambda u: {})

        class Meta:
            ref_name = "Me"

    @extend_schema(operation_id="me_retrieve", responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        user = cast(User, request.user)
        user.is_admin = scope_of(user).is_admin  # type: ignore[attr-defined]
        user.roles = list(selectors.role_assignments(user=user))  # type: ignore[attr-defined]
        return object_response(request, self.OutputSerializer, user)


class TokenListCreateApi(APIView):
    """GET: your personal API tokens. POST: issue one; its secret is in this answer only."""

    pagination_class = Pagination

    class FilterSerializer(ListFilterSerializer):
        class Meta:
            ref_name = "TokenFilter"

    class InputSerializer(StrictSerializer):
        name = StrictCharField(max_length=100, help_text="What the token is for, e.g. 'CI'.")
        expires_at = serializers.DateTimeField(required=False, allow_null=True)

        class Meta:
            ref_name = "TokenCreate"

    class OutputSerializer(TokenOutputSerializer):
        token = serializers.CharField(
            help_text="The token itself. Shown once: store it now; Tether keeps only a digest."
        )

        class Meta:
            ref_name = "PersonalTokenIssued"

    @extend_schema(
        operation_id="me_tokens_list",
        parameters=[FilterSerializer],
        responses=TokenOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        validated(self.FilterSerializer, request.query_params)
        return paginated_response(
            request=request, view=self, queryset=selectors.token_list(user=request.user),
            serializer_class=TokenOutputSerializer,
        )  # fmt: skip

    @extend_schema(
        operation_id="me_tokens_create", request=InputSerializer, responses={201: OutputSerializer}
    )
    def post(self, request: Request) -> Response:
        data = validated(self.InputSerializer, request.data)
        token, issued = services.token_create(
            user=cast(User, request.user), name=data["name"], expires_at=data.get("expires_at")
        )
        token.token = issued.plaintext  # type: ignore[attr-defined]
        return object_response(
            request, self.OutputSerializer, token, status=status.HTTP_201_CREATED
        )


class TokenDetailRevokeApi(APIView):
    """GET: one of your tokens. DELETE: revoke it; requests using it answer 401 from now on."""

    @extend_schema(operation_id="me_tokens_retrieve", responses=TokenOutputSerializer)
    def get(self, request: Request, token_id: int) -> Response:
        token = selectors.token_get(user=request.user, token_id=token_id)
        return object_response(request, TokenOutputSerializer, token)

    @extend_schema(
        operation_id="me_tokens_revoke",
        responses={204: OpenApiResponse(description="Revoked.")},
    )
    def delete(self, request: Request, token_id: int) -> Response:
        token = selectors.token_get(user=request.user, token_id=token_id)
        services.token_revoke(actor=cast(User, request.user), token=token)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DepartmentListApi(APIView):
    """The departments and their teams (where agents are owned and costs are attributed)."""

    pagination_class = Pagination

    class FilterSerializer(ListFilterSerializer):
        class Meta:
            ref_name = "DepartmentFilter"

    @extend_schema(
        operation_id="departments_list",
        parameters=[FilterSerializer],
        responses=DepartmentOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        validated(self.FilterSerializer, request.query_params)
        return paginated_response(
            request=request, view=self, queryset=selectors.department_list(user=request.user),
            serializer_class=DepartmentOutputSerializer,
        )  # fmt: skip


class DepartmentDetailApi(APIView):
    @extend_schema(operation_id="departments_retrieve", responses=DepartmentOutputSerializer)
    def get(self, request: Request, slug: str) -> Response:
        department = selectors.department_get(user=request.user, slug=slug)
        return object_response(request, DepartmentOutputSerializer, department)
