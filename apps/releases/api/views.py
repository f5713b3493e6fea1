"""The releases API: what serves where, promotion and rollback (the console's buttons)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.views import current_user
from apps.common.api import StrictSerializer, validated
from apps.common.errors import ApplicationError
from apps.registry.constants import Environment
from apps.registry.selectors import agent_get

from .. import selectors, services


class StageOutput(serializers.Serializer):
    environment = serializers.CharField()
    version = serializers.IntegerField(source="version.number", allow_null=True)
    pinned = serializers.SerializerMethodField(help_text="False: follows the latest version.")
    traffic_percent = serializers.SerializerMethodField()
    deployed_by = serializers.CharField(source="deployment.deployed_by_name", allow_null=True)
    deployed_at = serializers.DateTimeField(source="deployment.deployed_at", allow_null=True)
    promote_from = serializers.CharField(source="source", allow_null=True)

    class Meta:
        ref_name = "ReleaseStage"

    def get_pinned(self, stage: Any) -> bool:
        return stage.deployment is not None

    def get_traffic_percent(self, stage: Any) -> int | None:
        if stage.environment != Environment.CANARY or stage.deployment is None:
            return None
        return int(stage.deployment.traffic_percent)


def _stages(request: Request, agent: Any) -> Response:
    return Response(
        {
            "agent": agent.slug,
            "stages": StageOutput(selectors.release_stages(agent), many=True).data,
        }
    )


class DeploymentsApi(APIView):
    @extend_schema(responses=dict, operation_id="releases_stages")
    def get(self, request: Request, slug: str) -> Response:
        """Each environment on the agent's path and the version serving there."""
        return _stages(request, agent_get(user=current_user(request), slug=slug))


class PromoteInput(StrictSerializer):
    version = serializers.IntegerField(min_value=1)
    environment = serializers.ChoiceField(choices=Environment.choices)
    traffic_percent = serializers.IntegerField(min_value=1, max_value=100, required=False)
    note = serializers.CharField(max_length=300, required=False, allow_blank=True)


class PromoteApi(APIView):
    @extend_schema(request=PromoteInput, responses=dict, operation_id="releases_promote")
    def post(self, request: Request, slug: str) -> Response:
        """Serve a version in the next environment of its path, once its evaluations pass."""
        user = current_user(request)
        agent = agent_get(user=user, slug=slug)
        data = validated(PromoteInput, request.data)
        version = agent.versions.filter(number=data["version"]).first()
        if version is None:
            raise ApplicationError(
                f"{agent.slug} has no v{data['version']}.", details={"version": ["Unknown."]}
            )
        services.version_promote(
            actor=user, agent=agent, version=version, environment=data["environment"],
            traffic_percent=data.get("traffic_percent"), note=data.get("note", ""),
        )  # fmt: skip
        return _stages(request, agent)


class RollbackInput(StrictSerializer):
    environment = serializers.ChoiceField(choices=Environment.choices)
    note = serializers.CharField(max_length=300, required=False, allow_blank=True)


class RollbackApi(APIView):
    @extend_schema(request=RollbackInput, responses=dict, operation_id="releases_rollback")
    def post(self, request: Request, slug: str) -> Response:
        """Serve the previous version again in an environment, for every new run."""
        user = current_user(request)
        agent = agent_get(user=user, slug=slug)
        data = validated(RollbackInput, request.data)
        services.version_rollback(
            actor=user, agent=agent, environment=data["environment"], note=data.get("note", "")
        )
        return _stages(request, agent)
