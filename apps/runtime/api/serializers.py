from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from apps.approvals.services import approval_of_decision, approval_state
from apps.common.api import StrictCharField, StrictSerializer
from apps.common.errors import ApplicationError

from ..constants import OUTCOME_MAX, TASK_MAX, Action, Disposition, RunState
from ..models import Decision

SLUG_MAX = 60
JSON_ARGUMENTS_MAX_KEYS = 200


class RunStartInput(StrictSerializer):
    task = StrictCharField(max_length=TASK_MAX)
    intent = StrictCharField(max_length=300, required=False, allow_blank=True)
    on_behalf_of = StrictCharField(max_length=150, required=False, allow_blank=True)
    parent_run = serializers.UUIDField(required=False, allow_null=True)


class RunOutput(serializers.Serializer):
    id = serializers.UUIDField()
    agent = serializers.CharField(source="agent.slug")
    version = serializers.IntegerField(source="version.number")
    environment = serializers.CharField()
    state = serializers.ChoiceField(choices=RunState.choices)
    outcome = serializers.CharField()
    task = serializers.CharField()
    on_behalf_of = serializers.CharField(source="on_behalf_of.username", allow_null=True)
    parent_run = serializers.UUIDField(source="parent_id", allow_null=True)
    started_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(source="token_expires_at")
    ended_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "Run"


class RunStartOutput(serializers.Serializer):
    run = RunOutput()
    token = serializers.CharField(help_text="The run token, shown once: Bearer tth_run_…")
    failure_posture = serializers.CharField()
    envelope = serializers.DictField()
    behaviour = serializers.DictField(
        help_text="What the run's version says to run with: model, instructions, knowledge-base "
        "version, parameters (a rollback changes these for new runs at once)."
    )


class RunFinishInput(StrictSerializer):
    state = serializers.ChoiceField(choices=[RunState.FINISHED, RunState.FAILED])
    outcome = StrictCharField(max_length=OUTCOME_MAX, required=False, allow_blank=True)


class DecisionInput(StrictSerializer):
    """One governed step. Which fields apply depends on ``action``."""

    action = serializers.ChoiceField(choices=Action.choices)
    tool = StrictCharField(max_length=SLUG_MAX, required=False)
    tool_action = StrictCharField(max_length=40, required=False, default="invoke")
    arguments = serializers.DictField(required=False, default=dict)
    reason = StrictCharField(max_length=2000, required=False, allow_blank=True)
    model = StrictCharField(max_length=100, required=False)
    estimated_input_tokens = serializers.IntegerField(
        min_value=0, max_value=10**8, required=False, default=0
    )
    estimated_output_tokens = serializers.IntegerField(
        min_value=0, max_value=10**8, required=False, default=0
    )
    estimated_cost_usd = serializers.DecimalField(
        max_digits=12, decimal_places=6, min_value=0, required=False, allow_null=True
    )
    store = StrictCharField(max_length=SLUG_MAX, required=False)
    agent = StrictCharField(max_length=SLUG_MAX, required=False)
    approval = serializers.UUIDField(
        required=False,
        help_text="Coming back after an ask: the approval request's id. Allowed only if it was "
        "approved for exactly this tool, action and arguments, and not used yet.",
    )
    preview = serializers.DictField(
        required=False,
        help_text="For a gated tool call: what would change, shown to the approver as a diff. "
        '{"format": "json"|"text"|"table", "current": ..., "proposed": ...} or '
        '{"format": "unified", "diff": "..."}.',
    )

    _REQUIRED = {
        Action.TOOL_INVOKE: "tool",
        Action.MODEL_CALL: "model",
        Action.MEMORY_READ: "store",
        Action.MEMORY_WRITE: "store",
        Action.DELEGATE: "agent",
    }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        needed = self._REQUIRED[attrs["action"]]
        if not attrs.get(needed):
            raise serializers.ValidationError({needed: [f"Required for {attrs['action']}."]})
        if len(attrs.get("arguments", {})) > JSON_ARGUMENTS_MAX_KEYS:
            raise serializers.ValidationError({"arguments": ["Too many keys."]})
        if "approval" in attrs:
            attrs["approval"] = str(attrs["approval"])
        if "preview" in attrs:
            from apps.approvals.diffs import PreviewInvalid, validate_preview

            try:
                attrs["preview"] = validate_preview(attrs["preview"])
            except PreviewInvalid as exc:
                raise serializers.ValidationError({"preview": [str(exc)]}) from None
        return attrs


class DecisionOutput(serializers.Serializer):
    id = serializers.IntegerField(
        allow_null=True, help_text="Null only when it could not be recorded (then it is a deny)."
    )
    disposition = serializers.ChoiceField(choices=Disposition.choices)
    reasons = serializers.ListField(child=serializers.CharField())
    reasoning = serializers.CharField()
    policies = serializers.ListField(child=serializers.CharField())
    budgets = serializers.DictField()
    arguments = serializers.DictField(allow_null=True, source="modified_arguments")
    model = serializers.CharField(allow_null=True, source="modified_model")
    on_behalf_of = serializers.CharField(source="on_behalf_of_name")
    retry_after = serializers.IntegerField(
        allow_null=True,
        source="retry_after_seconds",
        help_text="For defer: seconds to wait before asking again.",
    )
    created_at = serializers.DateTimeField()
    approval = serializers.DictField(
        required=False,
        help_text="With ask (and with an answer about an approval): the request's id, status, "
        "approvals so far, deadline and page. Wait for it with GET /api/v1/approvals/<id>/wait/.",
    )

    class Meta:
        ref_name = "Decision"


_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

IDEMPOTENCY_KEY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="1-64 characters of A-Z a-z 0-9 . _ : -, the same on every retry of one request: "
    "a retry then gets the first answer and is charged nothing more.",
)


def idempotency_key(header: str | None) -> str:
    """The request's Idempotency-Key ('' when absent); a malformed one is a 400."""
    if header is None:
        return ""
    if not _IDEMPOTENCY_KEY.match(header):
        raise ApplicationError(
            "Idempotency-Key must be 1-64 characters of A-Z a-z 0-9 . _ : -",
            details={"Idempotency-Key": ["Invalid."]},
        )
    return header


def decision_payload(decision: Decision) -> dict[str, Any]:
    """``DecisionOutput`` as a plain dict: the serializer documents it, this builds it cheaply
    (a serializer deep-copies its fields on every instance, on the hottest path there is)."""
    payload = {
        "id": decision.pk,
        "disposition": decision.disposition,
        "reasons": decision.reasons,
        "reasoning": decision.reasoning,
        "policies": decision.policies,
        "budgets": decision.budgets,
        "arguments": decision.modified_arguments,
        "model": decision.modified_model,
        "on_behalf_of": decision.on_behalf_of_name,
        "retry_after": decision.retry_after_seconds,
        "created_at": decision.created_at.isoformat().replace("+00:00", "Z"),
    }
    approval = getattr(decision, "approval", None)
    if approval is None and decision.disposition == Disposition.ASK and decision.pk:
        approval = approval_of_decision(decision.pk)  # a retry answered from the first row
    if approval is not None:
        payload["approval"] = approval_state(approval)
    return payload


class UsageInput(StrictSerializer):
    decision = serializers.IntegerField(min_value=1)
    input_tokens = serializers.IntegerField(min_value=0, max_value=10**8)
    output_tokens = serializers.IntegerField(min_value=0, max_value=10**8)
    cached_tokens = serializers.IntegerField(
        min_value=0,
        max_value=10**8,
        required=False,
        default=0,
        help_text="Of the input tokens, those read from the provider's prompt cache.",
    )
    provider = StrictCharField(max_length=100, required=False, default="")
    cost_usd = serializers.DecimalField(
        max_digits=12,
        decimal_places=6,
        min_value=0,
        required=False,
        allow_null=True,
        help_text="Accepted and not used: Tether prices the tokens itself, so the budgets "
        "charge what finance sees.",
    )
