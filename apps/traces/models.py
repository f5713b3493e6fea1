from __future__ import annotations

from django.db import models

from apps.registry.constants import Environment
from apps.registry.models import Agent
from apps.runtime.models import AgentCredential, Run

from .constants import (
    ENVIRONMENT_MAX,
    IDENT_MAX,
    INGEST_KEY_NAME_MAX,
    MESSAGE_MAX,
    NAME_MAX,
    SpanKind,
    SpanStatus,
)


class IngestKey(models.Model):
    """A secret that lets a collector or a fleet export spans for any agent.

    Unlike an agent credential it is tied to no agent: spans sent with it are attributed only by
    what they say (``gen_ai.agent.id``/``name``, ``service.name``). ``environment`` is the
    default for spans that name none; empty means they must name it themselves. Stored as a
    lookup plus an HMAC digest (apps.common.tokens); the plaintext is shown once.
    """

    name = models.CharField(max_length=INGEST_KEY_NAME_MAX)
    environment = models.CharField(max_length=16, choices=Environment.choices, blank=True)
    lookup = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created_by_name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class Span(models.Model):
    """One OpenTelemetry span, mapped from GenAI / OpenInference attributes to one shape.

    Ids are lowercase hex as in OTLP/JSON (32 characters for a trace, 16 for a span). ``agent``
    is the registered agent the span names (null when nobody registered it; see
    :class:`UnregisteredAgent`), ``agent_name`` what the span said. ``run`` links to a runtime
    run when the span carried ``tether.run.id`` for a run of the sending credential's agent (or,
    sent with an ingest key, of the agent the span names); ``run_ref`` keeps the id as sent
    either way. ``credential`` or ``ingest_key`` records who sent it. ``attributes`` and
    ``resource`` hold what the mapping did not lift into columns.

    Not yet partitioned: this slice stores spans in one plain table. Time partitioning
    (PostgreSQL declarative partitions on ``start_time``, with retention per environment and
    a legal hold) comes with the storage slice of issue 4; the primary key will then have to
    include ``start_time``. Ingest is at-least-once: an exporter that retries after a timeout
    on a request that did commit stores that batch twice (no unique key on the ids yet).
    """

    trace_id = models.CharField(max_length=32)
    span_id = models.CharField(max_length=16)
    parent_span_id = models.CharField(max_length=16, blank=True)
    name = models.CharField(max_length=NAME_MAX)
    kind = models.CharField(max_length=16, choices=SpanKind.choices, default=SpanKind.OTHER)
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="spans"
    )
    agent_name = models.CharField(max_length=IDENT_MAX, blank=True)
    credential = models.ForeignKey(
        AgentCredential,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The credential that sent the span: provenance, whatever agent it names.",
    )
    ingest_key = models.ForeignKey(
        IngestKey,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The ingest key that sent the span, when no agent credential did.",
    )
    run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="spans"
    )
    run_ref = models.CharField(max_length=64, blank=True)
    environment = models.CharField(max_length=ENVIRONMENT_MAX)
    service_name = models.CharField(max_length=IDENT_MAX, blank=True)
    scope_name = models.CharField(max_length=IDENT_MAX, blank=True)
    model = models.CharField(max_length=IDENT_MAX, blank=True)
    provider = models.CharField(max_length=IDENT_MAX, blank=True)
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    cached_tokens = models.PositiveIntegerField(null=True, blank=True)
    reasoning_tokens = models.PositiveIntegerField(null=True, blank=True)
    tool_name = models.CharField(max_length=IDENT_MAX, blank=True)
    arguments = models.TextField(blank=True)
    result = models.TextField(blank=True)
    status = models.CharField(max_length=8, choices=SpanStatus.choices, default=SpanStatus.UNSET)
    status_message = models.CharField(max_length=MESSAGE_MAX, blank=True)
    start_time = models.DateTimeField()
    end_time = models.DateTimeField()
    duration_ns = models.BigIntegerField()
    conversation_id = models.CharField(max_length=IDENT_MAX, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    resource = models.JSONField(default=dict, blank=True)
    events = models.JSONField(default=list, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["start_time"]
        indexes = [
            models.Index(fields=["agent", "-start_time"], name="span_agent_start"),
            models.Index(fields=["trace_id"], name="span_trace"),
            models.Index(fields=["run", "start_time"], name="span_run_start"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.name} ({self.trace_id}/{self.span_id})"


class Trace(models.Model):
    """One trace as the fabric sees it, rolled up from its spans as they are stored.

    The runs list, the fleet page and per-agent queries read these rows instead of grouping
    millions of spans. Spans of one trace may arrive over many exports, in any order, so every
    column is a commutative merge (counts and tokens add, times widen, the first run and agent
    seen stick); ``name`` is the root span's once the root has arrived. ``run`` is set when any
    span linked to a runtime run (``tether.run.id``).
    """

    trace_id = models.CharField(max_length=32, unique=True)
    run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="traces"
    )
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="traces"
    )
    agent_name = models.CharField(max_length=IDENT_MAX, blank=True)
    environment = models.CharField(max_length=ENVIRONMENT_MAX)
    name = models.CharField(max_length=NAME_MAX)
    has_root = models.BooleanField(default=False)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()
    span_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["-started_at"], name="trace_started"),
            models.Index(fields=["agent", "-started_at"], name="trace_agent_started"),
            models.Index(fields=["run", "started_at"], name="trace_run_started"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.trace_id})"


class UnregisteredAgent(models.Model):
    """An agent name seen in spans that matches no registered agent: a finding for admins.

    Its spans are kept (with ``agent`` null); this row says who is sending them and how much.
    """

    name = models.CharField(max_length=IDENT_MAX, unique=True)
    environment = models.CharField(max_length=ENVIRONMENT_MAX, blank=True)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    span_count = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-last_seen_at"]

    def __str__(self) -> str:
        return self.name
