"""Output serializers the accounts API views share."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import serializers

from apps.common.api import AbsoluteUrlField


class TeamOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    slug = serializers.CharField()

    class Meta:
        ref_name = "Team"


class DepartmentOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    slug = serializers.CharField()
    url = AbsoluteUrlField("accounts-api:department-detail", lambda d: {"slug": d.slug})
    description = serializers.CharField()
    teams = TeamOutputSerializer(many=True)

    class Meta:
        ref_name = "Department"


class RoleOutputSerializer(serializers.Serializer):
    """A role and where it reaches: the organisation, one department or one team."""

    role = serializers.CharField()
    scope = serializers.SerializerMethodField()
    department = serializers.CharField(source="department.slug", allow_null=True)
    team = serializers.CharField(source="team.slug", allow_null=True)

    class Meta:
        ref_name = "RoleAssignment"

    def get_scope(self, assignment: Any) -> str:
        if assignment.team_id:
            return "team"
        return "department" if assignment.department_id else "organisation"


class TokenOutputSerializer(serializers.Serializer):
    """A personal token as stored: never its secret, only the prefix to recognise it by."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    url = AbsoluteUrlField("accounts-api:token-detail", lambda t: {"token_id": t.pk})
    prefix = serializers.SerializerMethodField()
    active = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "PersonalToken"

    def get_prefix(self, token: Any) -> str:
        return f"tth_user_{token.lookup}_…"

    def get_active(self, token: Any) -> bool:
        if token.revoked_at is not None:
            return False
        return token.expires_at is None or token.expires_at > timezone.now()
