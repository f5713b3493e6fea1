"""Serializers the registry's API views share.

Output serializers give each object the keys of its manifest ``spec`` (``snapshots.py``) plus
``name``, ``slug``, ``url`` and timestamps, so what the API shows, what a manifest says and what
the audit trail records read alike. Input serializers only parse: types, lengths, slugs to
objects. Every business rule (who may, which environments, JSON Schema validity, unique slugs)
is the services' job.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.accounts.models import Department, Team, User
from apps.common.api import AbsoluteUrlField, StrictCharField, StrictSerializer

from ..constants import (
    INSTRUCTIONS_MAX,
    NAME_MAX,
    RUN_TOKEN_TTL_MAX,
    RUN_TOKEN_TTL_MIN,
    SLUG_MAX,
    TAG_MAX,
    TAGS_MAX_COUNT,
    TOOL_ACTIONS_MAX,
    AgentStatus,
    AutonomyLevel,
    Environment,
    FailurePosture,
    MemoryAccess,
    MemoryClass,
    PreviewFormat,
    RiskClass,
)
from ..models import DataClass
from ..services import COST_PER_CALL_MAX
from ..snapshots import blast_radius_spec, shutdown_spec
from ..validators import BLAST_RADIUS_KEYS, WEBHOOK_SECRET_MAX, validate_webhook_url

TEXT_MAX = 2000
ACTION_MAX = 40
INT_MAX = 2**31 - 1


# --- fields ----------------------------------------------------------------------------------


@extend_schema_field({"type": "object", "additionalProperties": True})
class JSONObjectField(serializers.DictField):
    """A JSON object kept as is (parameters, constraints, JSON Schemas)."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise serializers.ValidationError("Must be a JSON object (key: value pairs).")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


def _owner_field(**options: Any) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(
        slug_field="username",
        queryset=User.objects.filter(is_active=True),
        allow_null=True,
        help_text="The owner's username. Only admins may name someone other than themselves.",
        **options,
    )


@extend_schema_field(serializers.ListField(child=serializers.CharField()))
class DataClassSlugsField(serializers.Field):
    """The slugs of a tool's or memory store's data classes, sorted (read-only)."""

    def __init__(self, **options: Any) -> None:
        options["read_only"] = True
        super().__init__(**options)

    def to_representation(self, value: Any) -> list[str]:
        return sorted(dc.slug for dc in value.all())


def _data_classes_field() -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(
        slug_field="slug",
        queryset=DataClass.objects.all(),
        many=True,
        required=False,
        help_text="Data class slugs, e.g. pii, financial (see /api/v1/data-classes/).",
    )


def _agent_url(agent: Any) -> dict[str, Any]:
    return {"slug": agent.slug}


# Keys every output carries that no input may set.
READ_ONLY_HINTS = {"url": "Read-only.", "created_at": "Read-only.", "updated_at": "Read-only."}


# --- agents: output --------------------------------------------------------------------------


class GrantOutputSerializer(serializers.Serializer):
    tool = serializers.CharField(source="tool.slug")
    url = AbsoluteUrlField(
        "registry-api:agent-tool-detail",
        lambda g: {"slug": g.agent.slug, "tool_slug": g.tool.slug},
    )
    tool_url = AbsoluteUrlField("registry-api:tool-detail", lambda g: {"slug": g.tool.slug})
    actions = serializers.ListField(child=serializers.CharField())
    environments = serializers.ListField(child=serializers.CharField())
    constraints = JSONObjectField()
    expires_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "ToolGrant"


class MemoryBindingOutputSerializer(serializers.Serializer):
    store = serializers.CharField(source="store.slug")
    url = AbsoluteUrlField(
        "registry-api:agent-memory-detail",
        lambda b: {"slug": b.agent.slug, "store_slug": b.store.slug},
    )
    store_url = AbsoluteUrlField(
        "registry-api:memory-store-detail", lambda b: {"slug": b.store.slug}
    )
    access = serializers.ChoiceField(choices=MemoryAccess.choices)

    class Meta:
        ref_name = "MemoryBinding"


class PathOutputSerializer(serializers.Serializer):
    """A shutdown or rollback path; ``prefix`` names the model fields it reads."""

    action = serializers.CharField()
    contact = serializers.CharField()
    notes = serializers.CharField()

    def __init__(self, *args: Any, prefix: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("source", "*")
        super().__init__(*args, **kwargs)
        self.prefix = prefix

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return {
            key: getattr(instance, f"{self.prefix}_{key}") for key in ("action", "contact", "notes")
        }

    class Meta:
        ref_name = "AgentPath"


class ShutdownOutputSerializer(PathOutputSerializer):
    """The shutdown path as the manifest states it: ``webhook`` only when one is set, and
    never its signing secret."""

    webhook = serializers.URLField(
        required=False, help_text="The safe-state webhook the kill switch calls, if set."
    )

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return shutdown_spec(instance)

    class Meta:
        ref_name = "AgentShutdownPath"


class AgentOutputSerializer(serializers.Serializer):
    """An agent: its manifest spec plus name, slug, url, timestamps and current version."""

    name = serializers.CharField()
    slug = serializers.CharField()
    url = AbsoluteUrlField("registry-api:agent-detail", _agent_url)
    mission = serializers.CharField()
    owner = serializers.CharField(source="owner.username", allow_null=True)
    department = serializers.CharField(source="department.slug")
    team = serializers.CharField(source="team.slug", allow_null=True)
    business_process = serializers.CharField()
    status = serializers.ChoiceField(choices=AgentStatus.choices)
    autonomy_level = serializers.ChoiceField(choices=AutonomyLevel.choices)
    environments = serializers.ListField(child=serializers.CharField())
    model_family = serializers.CharField()
    default_model = serializers.CharField()
    providers = serializers.ListField(child=serializers.CharField())
    failure_posture = serializers.ChoiceField(choices=FailurePosture.choices)
    shutdown = ShutdownOutputSerializer(prefix="shutdown")
    rollback = PathOutputSerializer(prefix="rollback")
    tags = serializers.ListField(child=serializers.CharField())
    knowledge_base_version = serializers.CharField()
    parameters = JSONObjectField()
    run_token_ttl_seconds = serializers.IntegerField()
    delegates_to = serializers.ListField(child=serializers.CharField())
    instructions = serializers.CharField()
    tools = GrantOutputSerializer(source="grants", many=True, read_only=True)
    memory = MemoryBindingOutputSerializer(source="memory_bindings", many=True, read_only=True)
    current_version = serializers.IntegerField(
        allow_null=True, read_only=True, help_text="The latest version number."
    )
    versions_url = AbsoluteUrlField("registry-api:agent-version-list", _agent_url)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Agent"


class VersionOutputSerializer(serializers.Serializer):
    agent = serializers.CharField(source="agent.slug")
    number = serializers.IntegerField()
    url = AbsoluteUrlField(
        "registry-api:agent-version-detail", lambda v: {"slug": v.agent.slug, "number": v.number}
    )
    change_summary = serializers.CharField()
    created_by = serializers.CharField(source="created_by_name")
    created_at = serializers.DateTimeField()
    snapshot_hash = serializers.CharField()
    instructions_hash = serializers.CharField()

    class Meta:
        ref_name = "AgentVersion"


class VersionDetailOutputSerializer(VersionOutputSerializer):
    snapshot = JSONObjectField(help_text="Everything that drives the agent's behaviour.")

    class Meta:
        ref_name = "AgentVersionDetail"


# --- agents: input ---------------------------------------------------------------------------


class PathInputSerializer(StrictSerializer):
    action = StrictCharField(max_length=500, required=False, allow_blank=True)
    contact = StrictCharField(max_length=200, required=False, allow_blank=True)
    notes = StrictCharField(max_length=TEXT_MAX, required=False, allow_blank=True)

    class Meta:
        ref_name = "AgentPathInput"


class ShutdownInputSerializer(PathInputSerializer):
    webhook = StrictCharField(
        max_length=500, required=False, allow_blank=True, validators=[validate_webhook_url],
        help_text="An http(s) URL the kill switch POSTs to, signed; empty to remove it.",
    )  # fmt: skip
    webhook_secret = StrictCharField(
        max_length=WEBHOOK_SECRET_MAX, required=False, allow_blank=True, write_only=True,
        help_text="Signs each call (HMAC-SHA256). Write-only; left out, the current one is kept.",
    )  # fmt: skip

    class Meta:
        ref_name = "AgentShutdownPathInput"


def environments_field(**options: Any) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.ChoiceField(choices=Environment.choices),
        max_length=len(Environment.choices),
        **options,
    )


class AgentInputSerializer(StrictSerializer):
    """The writable keys of an agent. Grants and memory bindings have their own endpoints."""

    read_only_hints = {
        **READ_ONLY_HINTS,
        "current_version": "Read-only.",
        "versions_url": "Read-only.",
        "tools": "Read-only here; grant tools at /api/v1/agents/{slug}/tools/{tool}/.",
        "memory": "Read-only here; bind memory at /api/v1/agents/{slug}/memory/{store}/.",
    }

    name = StrictCharField(max_length=NAME_MAX)
    slug = serializers.SlugField(max_length=SLUG_MAX)
    mission = StrictCharField(max_length=TEXT_MAX)
    owner = _owner_field(required=False)
    department = serializers.SlugRelatedField(slug_field="slug", queryset=Department.objects.all())
    team = serializers.SlugRelatedField(
        slug_field="slug", queryset=Team.objects.all(), allow_null=True, required=False
    )
    business_process = StrictCharField(max_length=200, required=False, allow_blank=True)
    status = serializers.ChoiceField(choices=AgentStatus.choices, required=False)
    autonomy_level = serializers.ChoiceField(choices=AutonomyLevel.choices, required=False)
    environments = environments_field(required=False)
    model_family = StrictCharField(max_length=100, required=False, allow_blank=True)
    default_model = StrictCharField(max_length=100, required=False, allow_blank=True)
    providers = serializers.ListField(
        child=StrictCharField(max_length=60), max_length=10, required=False
    )
    failure_posture = serializers.ChoiceField(choices=FailurePosture.choices, required=False)
    shutdown = ShutdownInputSerializer(required=False)
    rollback = PathInputSerializer(required=False)
    tags = serializers.ListField(
        child=StrictCharField(max_length=TAG_MAX), max_length=TAGS_MAX_COUNT, required=False
    )
    knowledge_base_version = StrictCharField(max_length=100, required=False, allow_blank=True)
    parameters = JSONObjectField(required=False)
    run_token_ttl_seconds = serializers.IntegerField(
        min_value=RUN_TOKEN_TTL_MIN, max_value=RUN_TOKEN_TTL_MAX, required=False
    )
    delegates_to = serializers.ListField(
        child=StrictCharField(max_length=SLUG_MAX),
        max_length=50,
        required=False,
        help_text="Slugs of the agents this agent may start as sub-agents.",
    )
    instructions = StrictCharField(
        max_length=INSTRUCTIONS_MAX, required=False, allow_blank=True, trim_whitespace=False
    )

    class Meta:
        ref_name = "AgentInput"


def agent_service_data(validated: dict[str, Any]) -> dict[str, Any]:
    """The service's field names: ``shutdown: {action}`` becomes ``shutdown_action``."""
    data = dict(validated)
    for path in ("shutdown", "rollback"):
        for key, value in (data.pop(path, None) or {}).items():
            data[f"{path}_{key}"] = value
    return data


class GrantInputSerializer(StrictSerializer):
    actions = serializers.ListField(
        child=StrictCharField(max_length=ACTION_MAX), max_length=TOOL_ACTIONS_MAX,
        help_text="The tool's actions this agent may use, e.g. [\"read\"].",
    )  # fmt: skip
    environments = environments_field(help_text="Where the grant holds; the agent must run there.")
    constraints = JSONObjectField(required=False, help_text='e.g. {"max_amount": 500}')
    expires_at = serializers.DateTimeField(required=False, allow_null=True)

    class Meta:
        ref_name = "ToolGrantInput"


class MemoryBindingInputSerializer(StrictSerializer):
    access = serializers.ChoiceField(choices=MemoryAccess.choices)

    class Meta:
        ref_name = "MemoryBindingInput"


# --- tools -----------------------------------------------------------------------------------

_BLAST_RADIUS_SCHEMA = {
    "type": "object",
    "properties": {key: {"type": "string"} for key in BLAST_RADIUS_KEYS},
    "additionalProperties": False,
    "example": {"money": "/amount", "currency": "/currency", "people": "/claimant_email"},
}


@extend_schema_field(_BLAST_RADIUS_SCHEMA)
class BlastRadiusField(serializers.Field):
    """Only the keys a tool declares, in reading order (records, people, money, currency)."""

    def __init__(self, **options: Any) -> None:
        options["read_only"] = True
        super().__init__(**options)

    def to_representation(self, value: Any) -> dict[str, Any]:
        return blast_radius_spec(value)


class BlastRadiusInputSerializer(StrictSerializer):
    """JSON pointers into a call's arguments; the service checks their form."""

    records = StrictCharField(max_length=200, required=False, help_text="e.g. /ids")
    people = StrictCharField(max_length=200, required=False, help_text="e.g. /to")
    money = StrictCharField(max_length=200, required=False, help_text="e.g. /amount")
    currency = StrictCharField(
        max_length=200, required=False, help_text="A pointer such as /currency, or a code: EUR."
    )

    class Meta:
        ref_name = "BlastRadiusInput"


class ToolOutputSerializer(serializers.Serializer):
    """A tool's boundary contract: its manifest spec plus name, slug, url and timestamps."""

    name = serializers.CharField()
    slug = serializers.CharField()
    url = AbsoluteUrlField("registry-api:tool-detail", lambda t: {"slug": t.slug})
    description = serializers.CharField()
    owner = serializers.CharField(source="owner.username", allow_null=True)
    risk_class = serializers.ChoiceField(choices=RiskClass.choices)
    actions = serializers.ListField(child=serializers.CharField())
    capabilities = serializers.CharField()
    prohibitions = serializers.CharField()
    data_classes = DataClassSlugsField()
    rate_limit_per_minute = serializers.IntegerField(allow_null=True)
    cost_per_call_usd = serializers.DecimalField(
        max_digits=12,
        decimal_places=6,
        normalize_output=True,
        help_text='What one call costs in US dollars, as a decimal string: "0.002"; "0" for none.',
    )
    approval_required = serializers.BooleanField()
    reversible = serializers.BooleanField()
    rollback_hint = serializers.CharField()
    preview_format = serializers.ChoiceField(choices=PreviewFormat.choices, allow_blank=True)
    blast_radius = BlastRadiusField()
    systems = serializers.ListField(child=serializers.CharField())
    downstream_tools = serializers.ListField(child=serializers.CharField())
    audit_event = serializers.CharField()
    input_schema = JSONObjectField()
    output_schema = JSONObjectField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Tool"


class ToolInputSerializer(StrictSerializer):
    read_only_hints = READ_ONLY_HINTS

    name = StrictCharField(max_length=NAME_MAX)
    slug = serializers.SlugField(max_length=SLUG_MAX)
    description = StrictCharField(max_length=TEXT_MAX)
    owner = _owner_field(required=False)
    risk_class = serializers.ChoiceField(choices=RiskClass.choices, required=False)
    actions = serializers.ListField(
        child=StrictCharField(max_length=ACTION_MAX), max_length=TOOL_ACTIONS_MAX,
        help_text="The operations a grant can allow, e.g. [\"read\", \"update\", \"close\"].",
    )  # fmt: skip
    capabilities = StrictCharField(max_length=TEXT_MAX, required=False, allow_blank=True)
    prohibitions = StrictCharField(max_length=TEXT_MAX, required=False, allow_blank=True)
    data_classes = _data_classes_field()
    rate_limit_per_minute = serializers.IntegerField(
        min_value=0, max_value=INT_MAX, allow_null=True, required=False
    )
    # No precision limits here: the service rounds to six places, whatever a client sends.
    cost_per_call_usd = serializers.DecimalField(
        max_digits=None, decimal_places=None, min_value=0, max_value=COST_PER_CALL_MAX,
        required=False,
        help_text="What one call costs in US dollars, a number or a decimal string (0.002); "
        "0 for none. Rounded to six places; spend budgets count it.",
    )  # fmt: skip
    approval_required = serializers.BooleanField(required=False)
    reversible = serializers.BooleanField(required=False)
    rollback_hint = StrictCharField(max_length=500, required=False, allow_blank=True)
    preview_format = serializers.ChoiceField(
        choices=PreviewFormat.choices,
        allow_blank=True,
        required=False,
        error_messages={
            "invalid_choice": f'Unknown preview format "{{input}}"; use '
            f'{", ".join(PreviewFormat.values)}, or "" when the agent supplies none.'
        },
        help_text='The preview an agent supplies with a gated call; "" for none.',
    )
    blast_radius = BlastRadiusInputSerializer(
        required=False,
        help_text='Where the arguments say the reach, e.g. {"money": "/amount", '
        '"currency": "EUR"}; {} for none.',
    )
    systems = serializers.ListField(
        child=StrictCharField(max_length=60), max_length=10, required=False,
        help_text='The systems a call reaches, e.g. ["Stripe", "Ledger"].',
    )  # fmt: skip
    downstream_tools = serializers.ListField(
        child=StrictCharField(max_length=SLUG_MAX), max_length=10, required=False,
        help_text="Slugs of the registered tools a call sets off.",
    )  # fmt: skip
    audit_event = StrictCharField(max_length=100, required=False, allow_blank=True)
    input_schema = JSONObjectField(required=False, help_text="A JSON Schema (2020-12).")
    output_schema = JSONObjectField(required=False, help_text="A JSON Schema (2020-12).")

    class Meta:
        ref_name = "ToolInput"


# --- memory stores ---------------------------------------------------------------------------


class MemoryStoreOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    slug = serializers.CharField()
    url = AbsoluteUrlField("registry-api:memory-store-detail", lambda s: {"slug": s.slug})
    description = serializers.CharField()
    owner = serializers.CharField(source="owner.username", allow_null=True)
    store_class = serializers.ChoiceField(choices=MemoryClass.choices)
    retention_days = serializers.IntegerField(allow_null=True)
    data_classes = DataClassSlugsField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    class Meta:
        ref_name = "MemoryStore"


class MemoryStoreInputSerializer(StrictSerializer):
    read_only_hints = READ_ONLY_HINTS

    name = StrictCharField(max_length=NAME_MAX)
    slug = serializers.SlugField(max_length=SLUG_MAX)
    description = StrictCharField(max_length=TEXT_MAX, required=False, allow_blank=True)
    owner = _owner_field(required=False)
    store_class = serializers.ChoiceField(choices=MemoryClass.choices)
    retention_days = serializers.IntegerField(
        min_value=0, max_value=INT_MAX, allow_null=True, required=False
    )
    data_classes = _data_classes_field()

    class Meta:
        ref_name = "MemoryStoreInput"


# --- data classes ----------------------------------------------------------------------------


class DataClassOutputSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    url = AbsoluteUrlField("registry-api:data-class-detail", lambda d: {"slug": d.slug})
    description = serializers.CharField()
    sensitivity = serializers.IntegerField()

    class Meta:
        ref_name = "DataClass"
