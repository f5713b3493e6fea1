"""The people's side of the runtime API: agent credentials and delegations."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.views import current_user
from apps.common.api import StrictCharField, StrictSerializer, validated
from apps.registry.constants import Environment
from apps.registry.selectors import agent_get

from .. import selectors, services


class CredentialOutput(serializers.Serializer):
    id = serializers.IntegerField()
    agent = serializers.CharField(source="agent.slug")
    environment = serializers.CharField()
    name = serializers.CharField()
    prefix = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by_name")
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "AgentCredential"

    def get_prefix(self, credential: object) -> str:
        return f"tth_agent_{credential.lookup}_…"  # type: ignore[attr-defined]


class CredentialIssueInput(StrictSerializer):
    environment = serializers.ChoiceField(choices=Environment.choices)
    name = StrictCharField(max_length=100)


class CredentialIssued(serializers.Serializer):
    credential = CredentialOutput()
    secret = serializers.CharField(help_text="Shown once: Bearer tth_agent_…")


def _issued(credential: object, plaintext: str) -> dict:
    return {"credential": CredentialOutput(credential).data, "secret": plaintext}


class CredentialListIssueApi(APIView):
    @extend_schema(
        responses={200: CredentialOutput(many=True)}, operation_id="agent_credentials_list"
    )
    def get(self, request: Request, slug: str) -> Response:
        agent = agent_get(user=current_user(request), slug=slug)
        return Response(CredentialOutput(selectors.credential_list(agent=agent), many=True).data)

    @extend_schema(
        request=CredentialIssueInput,
        responses={201: CredentialIssued},
        operation_id="agent_credentials_issue",
    )
    def post(self, request: Request, slug: str) -> Response:
        user = current_user(request)
        agent = agent_get(user=user, slug=slug)
        data = validated(CredentialIssueInput, request.data)
        credential, issued = services.credential_issue(
            actor=user, agent=agent, environment=data["environment"], name=data["name"]
        )
        return Response(_issued(credential, issued.plaintext), status=201)


class CredentialRevokeApi(APIView):
    @extend_schema(request=None, responses={204: None}, operation_id="agent_credentials_revoke")
    def delete(self, request: Request, slug: str, credential_id: int) -> Response:
        user = current_user(request)
        credential = selectors.credential_get(user=user, slug=slug, credential_id=credential_id)
        services.credential_revoke(actor=user, credential=credential)
        return Response(status=204)


class CredentialRotateApi(APIView):
    @extend_schema(
        request=None, responses={201: CredentialIssued}, operation_id="agent_credentials_rotate"
    )
    def post(self, request: Request, slug: str, credential_id: int) -> Response:
        user = current_user(request)
        credential = selectors.credential_get(user=user, slug=slug, credential_id=credential_id)
        new, issued = services.credential_rotate(actor=user, credential=credential)
        return Response(_issued(new, issued.plaintext), status=201)


class DelegationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    agent = serializers.CharField(source="agent.slug")
    tools = serializers.ListField(child=serializers.CharField())
    note = serializers.CharField()
    expires_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Delegation"


class DelegationInput(StrictSerializer):
    agent = StrictCharField(max_length=60)
    expires_at = serializers.DateTimeField()
    tools = serializers.ListField(
        child=StrictCharField(max_length=60), max_length=100, required=False
    )
    note = StrictCharField(max_length=300, required=False, allow_blank=True)


class DelegationListCreateApi(APIView):
    @extend_schema(responses={200: DelegationOutput(many=True)}, operation_id="me_delegations_list")
    def get(self, request: Request) -> Response:
        return Response(
            DelegationOutput(
                selectors.delegation_list(person=current_user(request)), many=True
            ).data
        )

    @extend_schema(
        request=DelegationInput,
        responses={201: DelegationOutput},
        operation_id="me_delegations_create",
    )
    def post(self, request: Request) -> Response:
        user = current_user(request)
        data = validated(DelegationInput, request.data)
        agent = agent_get(user=user, slug=data["agent"])
        delegation = services.delegation_grant(
            person=user, agent=agent, expires_at=data["expires_at"],
            tools=data.get("tools"), note=data.get("note", ""),
        )  # fmt: skip
        return Response(DelegationOutput(delegation).data, status=201)


class DelegationRevokeApi(APIView):
    @extend_schema(request=None, responses={204: None}, operation_id="me_delegations_revoke")
    def delete(self, request: Request, delegation_id: int) -> Response:
        user = current_user(request)
        delegation = selectors.delegation_get(person=user, delegation_id=delegation_id)
        services.delegation_revoke(person=user, delegation=delegation)
        return Response(status=204)
