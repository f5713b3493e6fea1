"""The policy REST API. Admins write; admins and auditors read and simulate."""

from __future__ import annotations

from typing import Any, cast

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import User
from apps.common.api import (
    ListFilterSerializer,
    Pagination,
    StrictCharField,
    list_filters,
    object_response,
    paginated_response,
    validated,
)
from apps.common.errors import ApplicationError, NotPermitted

from .. import selectors, services
from ..compiler import PolicyTextInvalid
from ..constants import RESOURCE_TYPE_OF_ACTION
from ..evaluation import PolicyRequest, policy_simulate
from .serializers import (
    PolicyInputSerializer,
    PolicyOutputSerializer,
    SimulateInputSerializer,
    SimulationOutputSerializer,
    VersionOutputSerializer,
)


def _actor(request: Request) -> User:
    return cast(User, request.user)


def _policy_response(request: Request, slug: str, *, status_code: int = 200) -> Response:
    policy = selectors.policy_get(user=request.user, slug=slug)
    return object_response(request, PolicyOutputSerializer, policy, status=status_code)


class PolicyListCreateApi(APIView):
    """GET: the admin-written policies. POST: write one (admins)."""

    pagination_class = Pagination

    class FilterSerializer(ListFilterSerializer):
        q = StrictCharField(required=False, allow_blank=True, max_length=200)

        class Meta:
            ref_name = "PolicyFilter"

    class InputSerializer(PolicyInputSerializer):
        class Meta:
            ref_name = "PolicyCreate"

    @extend_schema(
        operation_id="policies_list",
        parameters=[FilterSerializer],
        responses=PolicyOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        filters = list_filters(request, self.FilterSerializer)
        policies = selectors.policy_list(user=request.user, **filters)
        return paginated_response(
            request=request, view=self, queryset=policies, serializer_class=PolicyOutputSerializer
        )

    @extend_schema(
        operation_id="policies_create",
        request=InputSerializer,
        responses={201: PolicyOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        if not selectors.can_write_policies(request.user):
            raise NotPermitted("Only admins write policies.")
        data = validated(self.InputSerializer, request.data)
        policy = services.policy_create(actor=_actor(request), data=data)
        return _policy_response(request, policy.slug, status_code=status.HTTP_201_CREATED)


class PolicyDetailUpdateApi(APIView):
    """GET: one policy. PATCH: change it (admins); a new text writes a new version."""

    class InputSerializer(PolicyInputSerializer):
        class Meta:
            ref_name = "PolicyUpdate"

    @extend_schema(operation_id="policies_retrieve", responses=PolicyOutputSerializer)
    def get(self, request: Request, slug: str) -> Response:
        return _policy_response(request, slug)

    @extend_schema(
        operation_id="policies_partial_update",
        request=InputSerializer,
        responses=PolicyOutputSerializer,
    )
    def patch(self, request: Request, slug: str) -> Response:
        policy = selectors.policy_get(user=request.user, slug=slug)
        if not selectors.can_write_policies(request.user):
            raise NotPermitted("Only admins write policies.")
        data = dict(validated(self.InputSerializer, request.data, partial=True))
        comment = data.pop("comment", "")
        services.policy_update(actor=_actor(request), policy=policy, data=data, comment=comment)
        return _policy_response(request, slug)


class PolicyVersionListApi(APIView):
    """A policy's versions, newest first."""

    pagination_class = Pagination

    @extend_schema(
        operation_id="policies_versions_list", responses=VersionOutputSerializer(many=True)
    )
    def get(self, request: Request, slug: str) -> Response:
        policy = selectors.policy_get(user=request.user, slug=slug)
        return paginated_response(
            request=request, view=self, queryset=selectors.policy_versions(policy),
            serializer_class=VersionOutputSerializer,
        )  # fmt: skip


class PolicyVersionDetailApi(APIView):
    """One immutable version of a policy."""

    @extend_schema(operation_id="policies_versions_retrieve", responses=VersionOutputSerializer)
    def get(self, request: Request, slug: str, number: int) -> Response:
        policy = selectors.policy_get(user=request.user, slug=slug)
        version = selectors.policy_version_get(policy=policy, number=number)
        return object_response(request, VersionOutputSerializer, version)


class PolicySimulateApi(APIView):
    """Try a request against the policies in force, or with a draft standing in for one.

    Answers what the decision service's policy stage would: allow or deny, the statements
    that decided, and the context after defaults. Nothing is recorded.
    """

    @extend_schema(
        operation_id="policies_simulate",
        request=SimulateInputSerializer,
        responses=SimulationOutputSerializer,
    )
    def post(self, request: Request) -> Response:
        if not selectors.can_read_policies(request.user):
            raise NotPermitted("Policies are open to admins and auditors.")
        data = validated(SimulateInputSerializer, request.data)
        expected = RESOURCE_TYPE_OF_ACTION[data["action"]]
        if data.get("resource_type", expected) != expected:
            raise ApplicationError(
                f"{data['action']} applies to a {expected}.",
                details={"resource_type": [f"Must be {expected} for {data['action']}."]},
            )
        if selectors.simulation_agent_get(user=request.user, slug=data["principal"]) is None:
            raise ApplicationError(
                "No agent you can see has this slug.",
                details={"principal": ["No agent you can see has this slug."]},
            )
        policy_request = PolicyRequest(
            principal=data["principal"],
            action=data["action"],
            resource_type=expected,
            resource=data["resource"],
            context=dict(data["context"]),
        )
        try:
            simulation = policy_simulate(
                policy_request,
                draft_text=data.get("draft_text", ""),
                draft_policy=data.get("draft_policy", ""),
            )
        except PolicyTextInvalid as exc:
            messages = [str(p) for p in exc.problems]
            raise ApplicationError(
                f"The draft is not valid: {messages[0]}",
                details={"draft_text": messages, "problems": [p.as_dict() for p in exc.problems]},
            ) from exc
        result = simulation.result
        body: dict[str, Any] = {
            "decision": "allow" if result.allowed else "deny",
            "allowed": result.allowed,
            "policies": result.policies,
            "errors": result.errors,
            "fired": simulation.fired,
            "context": simulation.context,
            "draft_statements": simulation.draft_statements,
        }
        return Response(SimulationOutputSerializer(body).data)
