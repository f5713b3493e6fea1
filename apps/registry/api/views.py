"""The registry's REST API. Each view parses input, calls a service or a selector that takes
the requesting user, and answers with the object's full representation.

Objects outside the user's scope answer 404 (the selectors); changes the user may not make
answer 403 (the services).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
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
    StrictCharField,
    StrictSerializer,
    list_filters,
    object_response,
    paginated_response,
    validated,
)
from apps.common.parsers import JSONParser, TextYAMLParser, XYAMLParser, YAMLTextParser

from .. import manifests, selectors, services
from ..constants import AgentStatus, Environment, MemoryClass, RiskClass
from ..models import Agent
from .serializers import (
    AgentInputSerializer,
    AgentOutputSerializer,
    DataClassOutputSerializer,
    GrantInputSerializer,
    GrantOutputSerializer,
    MemoryBindingInputSerializer,
    MemoryBindingOutputSerializer,
    MemoryStoreInputSerializer,
    MemoryStoreOutputSerializer,
    ToolInputSerializer,
    ToolOutputSerializer,
    VersionDetailOutputSerializer,
    VersionOutputSerializer,
    agent_service_data,
)

NO_CONTENT = OpenApiResponse(description="Done; nothing to return.")


def _actor(request: Request) -> User:
    """The person making the request (every view requires an authenticated user)."""
    return cast(User, request.user)


def _agent_response(request: Request, slug: str, *, status_code: int = 200) -> Response:
    agent = selectors.agent_get_detailed(user=request.user, slug=slug)
    return object_response(request, AgentOutputSerializer, agent, status=status_code)


def _agent_page(
    request: Request,
    view: APIView,
    slug: str,
    items: Callable[[Agent], QuerySet[Any]],
    serializer_class: type[serializers.BaseSerializer],
) -> Response:
    """One page of what an agent has: ``items(agent)`` is its grants, bindings or versions."""
    agent = selectors.agent_get(user=request.user, slug=slug)
    return paginated_response(
        request=request, view=view, queryset=items(agent), serializer_class=serializer_class
    )


def _put_status(existed: bool) -> int:
    """A PUT answers 201 when it created the resource and 200 when it replaced it."""
    return status.HTTP_200_OK if existed else status.HTTP_201_CREATED


# --- agents ----------------------------------------------------------------------------------


class AgentListCreateApi(APIView):
    """GET: the agents you may see, filtered. POST: register an agent."""

    pagination_class = Pagination

    class FilterSerializer(ListFilterSerializer):
        q = StrictCharField(required=False, allow_blank=True, max_length=200)
        owner = StrictCharField(
            required=False, allow_blank=True, max_length=150,
            help_text="A username, or 'none' for unowned agents.",
        )  # fmt: skip
        department = StrictCharField(required=False, allow_blank=True, max_length=60)
        status = serializers.ChoiceField(
            choices=AgentStatus.choices, required=False, allow_blank=True
        )
        risk = serializers.ChoiceField(
            choices=RiskClass.choices, required=False, allow_blank=True,
            help_text="Agents granted at least one tool of this risk class.",
        )  # fmt: skip
        environment = serializers.ChoiceField(
            choices=Environment.choices, required=False, allow_blank=True
        )

        class Meta:
            ref_name = "AgentFilter"

    class InputSerializer(AgentInputSerializer):
        class Meta:
            ref_name = "AgentCreate"

    @extend_schema(
        operation_id="agents_list",
        parameters=[FilterSerializer],
        responses=AgentOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        filters = list_filters(request, self.FilterSerializer)
        agents = selectors.with_agent_details(selectors.agent_list(user=request.user, **filters))
        return paginated_response(
            request=request, view=self, queryset=agents, serializer_class=AgentOutputSerializer
        )

    @extend_schema(
        operation_id="agents_create",
        request=InputSerializer,
        responses={201: AgentOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        data = validated(self.InputSerializer, request.data)
        agent = services.agent_create(actor=_actor(request), data=agent_service_data(data))
        return _agent_response(request, agent.slug, status_code=status.HTTP_201_CREATED)


class AgentDetailUpdateApi(APIView):
    """GET: one agent. PATCH: change some of its fields (a new version when behaviour changes)."""

    class InputSerializer(AgentInputSerializer):
        class Meta:
            ref_name = "AgentUpdate"

    @extend_schema(operation_id="agents_retrieve", responses=AgentOutputSerializer)
    def get(self, request: Request, slug: str) -> Response:
        return _agent_response(request, slug)

    @extend_schema(
        operation_id="agents_partial_update",
        request=InputSerializer,
        responses=AgentOutputSerializer,
    )
    def patch(self, request: Request, slug: str) -> Response:
        agent = selectors.agent_get(user=request.user, slug=slug)
        data = validated(self.InputSerializer, request.data, partial=True)
        agent = services.agent_update(
            actor=_actor(request), agent=agent, data=agent_service_data(data),
            summary="Edited through the API",
        )  # fmt: skip
        return _agent_response(request, agent.slug)


# --- tool grants -----------------------------------------------------------------------------


class AgentToolListApi(APIView):
    """The tools granted to an agent."""

    pagination_class = Pagination

    @extend_schema(operation_id="agents_tools_list", responses=GrantOutputSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        return _agent_page(request, self, slug, selectors.agent_grants, GrantOutputSerializer)


class AgentToolDetailApi(APIView):
    """GET: one grant. PUT: grant the tool or change the grant. DELETE: revoke it."""

    class InputSerializer(GrantInputSerializer):
        class Meta:
            ref_name = "ToolGrantSet"

    @extend_schema(operation_id="agents_tools_retrieve", responses=GrantOutputSerializer)
    def get(self, request: Request, slug: str, tool_slug: str) -> Response:
        agent = selectors.agent_get(user=request.user, slug=slug)
        grant = selectors.agent_grant_get(agent=agent, tool_slug=tool_slug)
        return object_response(request, GrantOutputSerializer, grant)

    @extend_schema(
        operation_id="agents_tools_set",
        request=InputSerializer,
        responses={200: GrantOutputSerializer, 201: GrantOutputSerializer},
    )
    def put(self, request: Request, slug: str, tool_slug: str) -> Response:
        agent = selectors.agent_get(user=request.user, slug=slug)
        tool = selectors.tool_get(user=request.user, slug=tool_slug)
        data = validated(self.InputSerializer, request.data)
        existed = selectors.agent_grants(agent).filter(tool=tool).exists()
        grant = services.grant_set(actor=_actor(request), agent=agent, tool=tool, **data)
        return object_response(request, GrantOutputSerializer, grant, status=_put_status(existed))

    @extend_schema(operation_id="agents_tools_revoke", responses={204: NO_CONTENT})
    def delete(self, request: Request, slug: str, tool_slug: str) -> Response:
        agent = selectors.agent_get(user=request.user, slug=slug)
        grant = selectors.agent_grant_get(agent=agent, tool_slug=tool_slug)
        services.grant_remove(actor=_actor(request), grant=grant)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- memory bindings -------------------------------------------------------------------------


class AgentMemoryListApi(APIView):
    """The memory stores an agent may read, or read and write."""

    pagination_class = Pagination

    @extend_schema(
        operation_id="agents_memory_list", responses=MemoryBindingOutputSerializer(many=True)
    )
    def get(self, request: Request, slug: str) -> Response:
        return _agent_page(
            request, self, slug, selectors.agent_memory, MemoryBindingOutputSerializer
        )


class AgentMemoryDetailApi(APIView):
    """GET: one binding. PUT: bind the store or change the access. DELETE: unbind it."""

    class InputSerializer(MemoryBindingInputSerializer):
        class Meta:
            ref_name = "MemoryBindingSet"

    @extend_schema(operation_id="agents_memory_retrieve", responses=MemoryBindingOutputSerializer)
    def get(self, request: Request, slug: str, store_slug: str) -> Response:
        agent = selectors.agent_get(user=request.user, slug=slug)
        binding = selectors.agent_binding_get(agent=agent, store_slug=store_slug)
        return object_response(request, MemoryBindingOutputSerializer, binding)

    @extend_schema(
        operation_id="agents_memory_set",
        request=InputSerializer,
        responses={200: MemoryBindingOutputSerializer, 201: MemoryBindingOutputSerializer},
    )
    def put(self, request: Request, slug: str, store_slug: str) -> Response:
        agent = selectors.agent_get(user=request.user, slug=slug)
        store = selectors.memory_store_get(user=request.user, slug=store_slug)
        data = validated(self.InputSerializer, request.data)
        existed = selectors.agent_memory(agent).filter(store=store).exists()
        binding = services.memory_binding_set(
            actor=_actor(request), agent=agent, store=store, **data
        )
        return object_response(
            request, MemoryBindingOutputSerializer, binding, status=_put_status(existed)
        )

    @extend_schema(operation_id="agents_memory_unbind", responses={204: NO_CONTENT})
    def delete(self, request: Request, slug: str, store_slug: str) -> Response:
        agent = selectors.agent_get(user=request.user, slug=slug)
        binding = selectors.agent_binding_get(agent=agent, store_slug=store_slug)
        services.memory_binding_remove(actor=_actor(request), binding=binding)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- versions --------------------------------------------------------------------------------


class AgentVersionListApi(APIView):
    """An agent's versions, newest first."""

    pagination_class = Pagination

    @extend_schema(
        operation_id="agents_versions_list", responses=VersionOutputSerializer(many=True)
    )
    def get(self, request: Request, slug: str) -> Response:
        return _agent_page(request, self, slug, selectors.agent_versions, VersionOutputSerializer)


class AgentVersionDetailApi(APIView):
    """One immutable version with its full behaviour snapshot."""

    @extend_schema(operation_id="agents_versions_retrieve", responses=VersionDetailOutputSerializer)
    def get(self, request: Request, slug: str, number: int) -> Response:
        agent = selectors.agent_get(user=request.user, slug=slug)
        version = selectors.version_get(agent=agent, number=number)
        return object_response(request, VersionDetailOutputSerializer, version)


class AgentVersionDiffApi(APIView):
    """What changed from version ``number`` to version ``other``, field by field."""

    class OutputSerializer(serializers.Serializer):
        class ChangeSerializer(serializers.Serializer):
            field = serializers.CharField()
            before = serializers.JSONField(allow_null=True, help_text="Any JSON value.")
            after = serializers.JSONField(allow_null=True, help_text="Any JSON value.")

            class Meta:
                ref_name = "AgentVersionChange"

        url = AbsoluteUrlField(
            "registry-api:agent-version-diff",
            lambda d: {
                "slug": d.older.agent.slug,
                "number": d.older.number,
                "other": d.newer.number,
            },
        )
        older = VersionOutputSerializer()
        newer = VersionOutputSerializer()
        is_empty = serializers.BooleanField()
        changes = ChangeSerializer(many=True)
        instructions_diff = serializers.ListField(
            child=serializers.CharField(), help_text="A unified diff of the instructions."
        )

        class Meta:
            ref_name = "AgentVersionDiff"

    @extend_schema(operation_id="agents_versions_diff", responses=OutputSerializer)
    def get(self, request: Request, slug: str, number: int, other: int) -> Response:
        agent = selectors.agent_get(user=request.user, slug=slug)
        older = selectors.version_get(agent=agent, number=number)
        newer = selectors.version_get(agent=agent, number=other)
        diff = selectors.version_diff(older=older, newer=newer)
        return object_response(request, self.OutputSerializer, diff)


# --- tools -----------------------------------------------------------------------------------


class ToolListCreateApi(APIView):
    """GET: the tool catalogue. POST: register a tool (owners and admins)."""

    pagination_class = Pagination

    class FilterSerializer(ListFilterSerializer):
        q = StrictCharField(required=False, allow_blank=True, max_length=200)
        risk = serializers.ChoiceField(choices=RiskClass.choices, required=False, allow_blank=True)

        class Meta:
            ref_name = "ToolFilter"

    class InputSerializer(ToolInputSerializer):
        class Meta:
            ref_name = "ToolCreate"

    @extend_schema(
        operation_id="tools_list",
        parameters=[FilterSerializer],
        responses=ToolOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        filters = list_filters(request, self.FilterSerializer)
        tools = selectors.tool_list(user=request.user, **filters)
        return paginated_response(
            request=request, view=self, queryset=tools, serializer_class=ToolOutputSerializer
        )

    @extend_schema(
        operation_id="tools_create", request=InputSerializer, responses={201: ToolOutputSerializer}
    )
    def post(self, request: Request) -> Response:
        data = validated(self.InputSerializer, request.data)
        tool = services.tool_create(actor=_actor(request), data=data)
        tool = selectors.tool_get(user=request.user, slug=tool.slug)
        return object_response(request, ToolOutputSerializer, tool, status=status.HTTP_201_CREATED)


class ToolDetailUpdateApi(APIView):
    """GET: one tool's contract. PATCH: change it (its owner or an admin)."""

    class InputSerializer(ToolInputSerializer):
        class Meta:
            ref_name = "ToolUpdate"

    @extend_schema(operation_id="tools_retrieve", responses=ToolOutputSerializer)
    def get(self, request: Request, slug: str) -> Response:
        tool = selectors.tool_get(user=request.user, slug=slug)
        return object_response(request, ToolOutputSerializer, tool)

    @extend_schema(
        operation_id="tools_partial_update", request=InputSerializer, responses=ToolOutputSerializer
    )
    def patch(self, request: Request, slug: str) -> Response:
        tool = selectors.tool_get(user=request.user, slug=slug)
        data = validated(self.InputSerializer, request.data, partial=True)
        tool = services.tool_update(actor=_actor(request), tool=tool, data=data)
        tool = selectors.tool_get(user=request.user, slug=tool.slug)
        return object_response(request, ToolOutputSerializer, tool)


# --- memory stores ---------------------------------------------------------------------------


class MemoryStoreListCreateApi(APIView):
    """GET: the memory stores. POST: register one (owners and admins)."""

    pagination_class = Pagination

    class FilterSerializer(ListFilterSerializer):
        q = StrictCharField(required=False, allow_blank=True, max_length=200)
        store_class = serializers.ChoiceField(
            choices=MemoryClass.choices, required=False, allow_blank=True
        )

        class Meta:
            ref_name = "MemoryStoreFilter"

    class InputSerializer(MemoryStoreInputSerializer):
        class Meta:
            ref_name = "MemoryStoreCreate"

    @extend_schema(
        operation_id="memory_stores_list",
        parameters=[FilterSerializer],
        responses=MemoryStoreOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        filters = list_filters(request, self.FilterSerializer)
        stores = selectors.memory_store_list(user=request.user, **filters)
        return paginated_response(
            request=request,
            view=self,
            queryset=stores,
            serializer_class=MemoryStoreOutputSerializer,
        )

    @extend_schema(
        operation_id="memory_stores_create",
        request=InputSerializer,
        responses={201: MemoryStoreOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        data = validated(self.InputSerializer, request.data)
        store = services.memory_store_create(actor=_actor(request), data=data)
        store = selectors.memory_store_get(user=request.user, slug=store.slug)
        return object_response(
            request, MemoryStoreOutputSerializer, store, status=status.HTTP_201_CREATED
        )


class MemoryStoreDetailUpdateApi(APIView):
    """GET: one memory store. PATCH: change it (its owner or an admin)."""

    class InputSerializer(MemoryStoreInputSerializer):
        class Meta:
            ref_name = "MemoryStoreUpdate"

    @extend_schema(operation_id="memory_stores_retrieve", responses=MemoryStoreOutputSerializer)
    def get(self, request: Request, slug: str) -> Response:
        store = selectors.memory_store_get(user=request.user, slug=slug)
        return object_response(request, MemoryStoreOutputSerializer, store)

    @extend_schema(
        operation_id="memory_stores_partial_update",
        request=InputSerializer,
        responses=MemoryStoreOutputSerializer,
    )
    def patch(self, request: Request, slug: str) -> Response:
        store = selectors.memory_store_get(user=request.user, slug=slug)
        data = validated(self.InputSerializer, request.data, partial=True)
        store = services.memory_store_update(actor=_actor(request), store=store, data=data)
        store = selectors.memory_store_get(user=request.user, slug=store.slug)
        return object_response(request, MemoryStoreOutputSerializer, store)


# --- data classes ----------------------------------------------------------------------------


class DataClassListApi(APIView):
    """The data classes tools and memory stores are labelled with, least sensitive first."""

    pagination_class = Pagination

    @extend_schema(operation_id="data_classes_list", responses=DataClassOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return paginated_response(
            request=request, view=self, queryset=selectors.data_class_list(user=request.user),
            serializer_class=DataClassOutputSerializer,
        )  # fmt: skip


class DataClassDetailApi(APIView):
    @extend_schema(operation_id="data_classes_retrieve", responses=DataClassOutputSerializer)
    def get(self, request: Request, slug: str) -> Response:
        data_class = selectors.data_class_get(user=request.user, slug=slug)
        return object_response(request, DataClassOutputSerializer, data_class)


# --- manifests -------------------------------------------------------------------------------

_YAML_TYPES = (YAMLTextParser.media_type, TextYAMLParser.media_type, XYAMLParser.media_type)
_EXAMPLE_MANIFEST = """apiVersion: tether/v1
kind: Agent
metadata:
  slug: claims-triage
  name: Claims triage
spec:
  mission: Sort incoming claims by urgency.
  department: claims
  environments: [dev, prod]
"""


class ManifestApplyApi(APIView):
    """Apply a YAML manifest: all or nothing, every problem reported at once.

    Send the YAML itself (``Content-Type: application/yaml`` or ``text/yaml``) or JSON
    ``{"manifest": "<yaml text>"}``. ``?dry_run=true`` answers the plan and writes nothing.
    Applying the same manifest twice changes nothing the second time.
    """

    parser_classes = [JSONParser, YAMLTextParser, TextYAMLParser, XYAMLParser]

    class FilterSerializer(StrictSerializer):
        dry_run = serializers.BooleanField(
            required=False,
            default=False,
            help_text="Only plan: validate and report, write nothing.",
        )

        class Meta:
            ref_name = "ManifestApplyFilter"

    class InputSerializer(StrictSerializer):
        manifest = StrictCharField(
            trim_whitespace=False, help_text="The manifest's YAML text (one or more documents)."
        )

        class Meta:
            ref_name = "ManifestApply"

    class OutputSerializer(serializers.Serializer):
        class ChangeSerializer(serializers.Serializer):
            kind = serializers.CharField()
            slug = serializers.CharField()
            url = AbsoluteUrlField(
                lambda c: manifests.api_view_name(c.kind), lambda c: {"slug": c.slug}
            )
            action = serializers.ChoiceField(
                choices=[manifests.CREATE, manifests.UPDATE, manifests.UNCHANGED]
            )
            fields = serializers.ListField(  # type: ignore[assignment]  # the plan's key
                child=serializers.CharField(), help_text="Top-level spec keys that change."
            )

            class Meta:
                ref_name = "ManifestChange"

        applied = serializers.BooleanField(help_text="False for a dry run.")
        dry_run = serializers.BooleanField()
        counts = serializers.DictField(
            child=serializers.IntegerField(), help_text="How many documents create, update, "
            "or leave unchanged."
        )  # fmt: skip
        changes = ChangeSerializer(many=True)

        class Meta:
            ref_name = "ManifestApplyResult"

    @extend_schema(
        operation_id="manifests_apply",
        parameters=[FilterSerializer],
        request={
            "application/yaml": OpenApiTypes.STR,
            "text/yaml": OpenApiTypes.STR,
            "application/json": InputSerializer,
        },
        responses=OutputSerializer,
        examples=[
            OpenApiExample("YAML", value=_EXAMPLE_MANIFEST, media_type="application/yaml"),
        ],
    )
    def post(self, request: Request) -> Response:
        dry_run = validated(self.FilterSerializer, request.query_params)["dry_run"]
        if request.content_type.split(";")[0].strip().lower() in _YAML_TYPES:
            text = request.data if isinstance(request.data, str) else ""
        else:
            text = validated(self.InputSerializer, request.data)["manifest"]
        result = manifests.manifest_apply(actor=_actor(request), text=text, dry_run=dry_run)
        output = {
            "applied": result.applied,
            "dry_run": dry_run,
            "counts": result.counts(),
            "changes": result.changes,
        }
        return object_response(request, self.OutputSerializer, output)


class ManifestExportApi(APIView):
    """Every tool, memory store and agent you may see, as one YAML manifest (byte-stable)."""

    content_negotiation_class = FirstRendererNegotiation

    class FilterSerializer(StrictSerializer):
        class Meta:
            ref_name = "ManifestExportFilter"

    @extend_schema(
        operation_id="manifests_export",
        responses={(200, "application/yaml"): OpenApiTypes.STR},
    )
    def get(self, request: Request) -> HttpResponse:
        validated(self.FilterSerializer, request.query_params)
        text = manifests.manifest_export(user=request.user)
        response = HttpResponse(text, content_type="application/yaml; charset=utf-8")
        response["Content-Disposition"] = 'inline; filename="tether-registry.yaml"'
        return response
