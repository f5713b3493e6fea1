"""Output of the trace fabric's API: a run's timeline, step by step."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.common.api import AbsoluteUrlField


class SpanOutput(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    trace_id = serializers.CharField()
    span_id = serializers.CharField()
    parent_span_id = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.CharField()
    agent_name = serializers.CharField()
    model = serializers.CharField()
    provider = serializers.CharField()
    input_tokens = serializers.IntegerField(allow_null=True)
    output_tokens = serializers.IntegerField(allow_null=True)
    cached_tokens = serializers.IntegerField(allow_null=True)
    reasoning_tokens = serializers.IntegerField(allow_null=True)
    tool_name = serializers.CharField()
    arguments = serializers.CharField(
        help_text="As sent; a cut one ends in …[truncated N characters]."
    )
    result = serializers.CharField()
    status = serializers.CharField()
    status_message = serializers.CharField()
    start_time = serializers.DateTimeField()
    end_time = serializers.DateTimeField()
    duration_ns = serializers.IntegerField()
    conversation_id = serializers.CharField()
    environment = serializers.CharField()
    attributes = serializers.JSONField()
    events = serializers.JSONField()

    class Meta:
        ref_name = "TimelineSpan"


class DecisionOutput(serializers.Serializer):
    url = AbsoluteUrlField("runtime:decision-detail", lambda d: {"decision_id": d.pk})
    id = serializers.IntegerField(source="pk")
    created_at = serializers.DateTimeField()
    action = serializers.CharField()
    target = serializers.CharField()
    tool_action = serializers.CharField()
    disposition = serializers.CharField()
    reasons = serializers.JSONField()
    reasoning = serializers.CharField()
    policies = serializers.JSONField()
    budgets = serializers.JSONField()
    modified = serializers.JSONField(allow_null=True)
    on_behalf_of = serializers.CharField(source="on_behalf_of_name")
    duration_us = serializers.IntegerField()

    class Meta:
        ref_name = "TimelineDecision"


class EventOutput(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    occurred_at = serializers.DateTimeField()
    action = serializers.CharField()
    actor_type = serializers.CharField()
    actor_name = serializers.CharField()
    message = serializers.CharField()
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)

    class Meta:
        ref_name = "TimelineEvent"


class StepOutput(serializers.Serializer):
    number = serializers.IntegerField(help_text="The step's place in the replay, from 1.")
    id = serializers.CharField(
        help_text="span-<id>, decision-<id>, audit-<id>, request, identity or outcome."
    )
    type = serializers.ChoiceField(
        choices=["request", "identity", "span", "decision", "audit", "outcome"]
    )
    phase = serializers.CharField(help_text="What the step is in the run's story, e.g. Model call.")
    kind = serializers.CharField(help_text="The span kind, or the decision's disposition.")
    # DRF's metaclass moves declared fields off the class, so these names shadow nothing.
    label = serializers.CharField()  # type: ignore[assignment]
    detail = serializers.CharField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField(allow_null=True, help_text="Null for a point in time.")
    duration_ms = serializers.FloatField(allow_null=True)
    depth = serializers.IntegerField(help_text="Nesting under parent spans, from 0.")
    parent = serializers.CharField(  # type: ignore[assignment]
        source="parent_key", help_text="<trace id>:<span id> of the enclosing span, or empty."
    )
    error = serializers.BooleanField(help_text="On the error path: an errored span or a denial.")
    span = serializers.SerializerMethodField()
    decision = serializers.SerializerMethodField()
    event = serializers.SerializerMethodField()

    class Meta:
        ref_name = "TimelineStep"

    @extend_schema_field(SpanOutput(allow_null=True))
    def get_span(self, step: Any) -> dict[str, Any] | None:
        return SpanOutput(step.obj).data if step.type == "span" else None

    @extend_schema_field(DecisionOutput(allow_null=True))
    def get_decision(self, step: Any) -> dict[str, Any] | None:
        if step.type != "decision":
            return None
        return DecisionOutput(step.obj, context=self.context).data

    @extend_schema_field(EventOutput(allow_null=True))
    def get_event(self, step: Any) -> dict[str, Any] | None:
        return EventOutput(step.obj).data if step.type == "audit" else None


class RunOutput(serializers.Serializer):
    url = AbsoluteUrlField("traces-api:run-timeline", lambda r: {"run_id": r.pk})
    console_url = AbsoluteUrlField("traces:run-detail", lambda r: {"run_id": r.pk})
    id = serializers.UUIDField()
    agent = serializers.CharField(source="agent.slug")
    agent_name = serializers.CharField(source="agent.name")
    version = serializers.IntegerField(source="version.number")
    environment = serializers.CharField()
    task = serializers.CharField()
    intent = serializers.CharField()
    state = serializers.CharField()
    outcome = serializers.CharField()
    owner = serializers.CharField(source="agent.owner.get_username", default=None, allow_null=True)
    on_behalf_of = serializers.CharField(
        source="on_behalf_of.get_username", default=None, allow_null=True
    )
    parent = serializers.UUIDField(source="parent_id", allow_null=True)  # type: ignore[assignment]
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "TimelineRun"


class TotalsOutput(serializers.Serializer):
    spans = serializers.IntegerField()
    errors = serializers.IntegerField()  # type: ignore[assignment]
    decisions = serializers.IntegerField()
    denials = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost_usd = serializers.DecimalField(max_digits=14, decimal_places=6, allow_null=True)

    class Meta:
        ref_name = "TimelineTotals"


class TimelineOutput(serializers.Serializer):
    run = RunOutput()
    totals = TotalsOutput()
    duration_ms = serializers.FloatField(help_text="From the first step to the last.")
    spans_total = serializers.IntegerField()
    truncated = serializers.BooleanField(help_text="True when more spans exist than are listed.")
    steps = StepOutput(many=True)

    class Meta:
        ref_name = "RunTimeline"
