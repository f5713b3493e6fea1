"""Serializers of the policy API. Input serializers only parse; the services decide."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.common.api import AbsoluteUrlField, StrictCharField, StrictSerializer
from apps.registry.constants import Environment

from ..compiler import PolicyTextInvalid, parse_policy_text
from ..constants import (
    COMMENT_MAX,
    NAME_MAX,
    POLICY_TEXT_MAX,
    SLUG_MAX,
    Action,
    Origin,
    ResourceType,
)

_TEXT_MAX = 200


def _policy_url(policy: Any) -> dict[str, Any]:
    return {"slug": policy.slug}


class StatementOutputSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The id decisions name when this statement fires.")
    effect = serializers.ChoiceField(choices=["permit", "forbid"])
    line = serializers.IntegerField(help_text="Where the statement starts in the text.")

    class Meta:
        ref_name = "PolicyStatement"


@extend_schema_field(StatementOutputSerializer(many=True))
class StatementsField(serializers.Field):
    """A policy's statements as they fire, read from its current text."""

    def __init__(self, **options: Any) -> None:
        options["source"] = "*"
        options["read_only"] = True
        super().__init__(**options)

    def to_representation(self, value: Any) -> list[dict[str, Any]]:
        try:
            statements = parse_policy_text(value.text, slug=value.slug)
        except PolicyTextInvalid:
            return []
        return [{"id": s.id, "effect": s.effect, "line": s.line} for s in statements]


class PolicyOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    slug = serializers.CharField()
    url = AbsoluteUrlField("policy-api:policy-detail", _policy_url)
    description = serializers.CharField()
    enabled = serializers.BooleanField()
    text = serializers.CharField(help_text="The current Cedar text.")
    statements = StatementsField()
    current_version = serializers.IntegerField(allow_null=True)
    versions_url = AbsoluteUrlField("policy-api:policy-version-list", _policy_url)
    created_by = serializers.CharField(source="created_by.username", allow_null=True)
    updated_by = serializers.CharField(source="updated_by.username", allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Policy"


class PolicyInputSerializer(StrictSerializer):
    read_only_hints = {
        "url": "Read-only.",
        "statements": "Read-only: they follow from the text.",
        "current_version": "Read-only: each change of text writes a version.",
        "versions_url": "Read-only.",
        "created_by": "Read-only.",
        "updated_by": "Read-only.",
        "created_at": "Read-only.",
        "updated_at": "Read-only.",
    }

    name = StrictCharField(max_length=NAME_MAX)
    slug = serializers.SlugField(max_length=SLUG_MAX)
    description = StrictCharField(max_length=2000, required=False, allow_blank=True)
    text = StrictCharField(
        max_length=POLICY_TEXT_MAX,
        trim_whitespace=False,
        help_text="Cedar permit/forbid statements, validated against Tether's schema.",
    )
    enabled = serializers.BooleanField(required=False)
    comment = StrictCharField(
        max_length=COMMENT_MAX,
        required=False,
        allow_blank=True,
        help_text="Kept with the version this change writes.",
    )

    class Meta:
        ref_name = "PolicyInput"


class VersionOutputSerializer(serializers.Serializer):
    policy = serializers.CharField(source="policy.slug")
    number = serializers.IntegerField()
    url = AbsoluteUrlField(
        "policy-api:policy-version-detail",
        lambda v: {"slug": v.policy.slug, "number": v.number},
    )
    text = serializers.CharField()
    author = serializers.CharField(source="author_name")
    comment = serializers.CharField()
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "PolicyVersion"


# --- simulate --------------------------------------------------------------------------------


class ContextInputSerializer(StrictSerializer):
    environment = serializers.ChoiceField(choices=Environment.choices)
    tool_action = StrictCharField(max_length=40, required=False, allow_blank=True)
    risk_class = StrictCharField(
        max_length=_TEXT_MAX, required=False, allow_blank=True,
        help_text="Defaults to the tool's risk class.",
    )  # fmt: skip
    data_classes = serializers.ListField(
        child=StrictCharField(max_length=_TEXT_MAX), max_length=50, required=False,
        help_text="Defaults to the tool's or memory store's data classes.",
    )  # fmt: skip
    amount = serializers.IntegerField(
        required=False, min_value=-(2**63 - 1), max_value=2**63 - 1,
        help_text="A whole amount; absent is not zero.",
    )  # fmt: skip
    on_behalf_of = StrictCharField(max_length=150, required=False, allow_blank=True)
    delegated = serializers.BooleanField(required=False)
    hour = serializers.IntegerField(
        required=False, min_value=0, max_value=23, help_text="Defaults to the current hour."
    )

    class Meta:
        ref_name = "PolicyContext"


class SimulateInputSerializer(StrictSerializer):
    principal = serializers.SlugField(max_length=SLUG_MAX, help_text="The agent's slug.")
    action = serializers.ChoiceField(choices=Action.values)
    resource_type = serializers.ChoiceField(
        choices=ResourceType.values, required=False,
        help_text="Follows from the action; refused when it does not match.",
    )  # fmt: skip
    resource = StrictCharField(max_length=_TEXT_MAX, help_text="A slug, or a model name.")
    # DRF takes declared fields off the class, so these names do not shadow Field attributes.
    context = ContextInputSerializer()  # type: ignore[assignment]
    draft_text = StrictCharField(
        max_length=POLICY_TEXT_MAX, required=False, allow_blank=True, trim_whitespace=False,
        help_text="Cedar text tried as if it were in force.",
    )  # fmt: skip
    draft_policy = serializers.SlugField(
        max_length=SLUG_MAX, required=False, allow_blank=True,
        help_text="The policy the draft stands in for (its current text is left out).",
    )  # fmt: skip

    class Meta:
        ref_name = "PolicySimulation"


class FiredOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    effect = serializers.ChoiceField(choices=["permit", "forbid"])
    origin = serializers.ChoiceField(choices=Origin.values)
    policy = serializers.CharField(help_text="The admin policy's slug; empty for built-ins.")
    text = serializers.CharField()

    class Meta:
        ref_name = "FiredStatement"


class SimulationOutputSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["allow", "deny"])
    allowed = serializers.BooleanField()
    policies = serializers.ListField(child=serializers.CharField())
    errors = serializers.ListField(child=serializers.CharField())  # type: ignore[assignment]
    fired = FiredOutputSerializer(many=True)
    context = serializers.DictField(  # type: ignore[assignment]
        help_text="The context evaluated, defaults filled in."
    )
    draft_statements = serializers.IntegerField()

    class Meta:
        ref_name = "PolicySimulationResult"
