from __future__ import annotations

from django.conf import settings
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
from .fields import JSONTextField


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

    Storage (docs/traces.md#storage). On PostgreSQL the table is partitioned by range of
    ``start_time``, one partition per UTC day plus a DEFAULT partition (apps/traces/partitions.py),
    and its primary key is ``(id, start_time)``: a partitioned table's unique indexes must include
    the partition key. The ORM still knows ``id`` as the primary key -- ids come from one
    sequence, so ``id`` alone names one span, ``Span.objects.get(pk=...)`` works, and a larger id
    was allocated later. On SQLite (the embedded default) it is one plain table.

    A retried export stores nothing twice: ``(trace_id, span_id, start_time)`` is unique, and
    rows are inserted skipping those already there (apps/traces/storage.py). That index also
    serves lookups by ``trace_id``.

    The foreign keys are relations for the ORM but not constraints in the database
    (``db_constraint=False``), and only ``agent`` and ``run`` are indexed (together with
    ``start_time``): every constraint check is a lookup per inserted row, which would double the
    cost of storing a span, and the ids written are the ones the ingest service has just read.
    Agents, runs, credentials and ingest keys are retired, not deleted; if one is deleted,
    Django's ``SET_NULL`` still clears the references.
    """

    trace_id = models.CharField(max_length=32)
    span_id = models.CharField(max_length=16)
    parent_span_id = models.CharField(max_length=16, blank=True)
    name = models.CharField(max_length=NAME_MAX)
    kind = models.CharField(max_length=16, choices=SpanKind.choices, default=SpanKind.OTHER)
    agent = models.ForeignKey(
        Agent,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="spans",
        db_constraint=False,
        db_index=False,  # span_agent_start leads with it
    )
    agent_name = models.CharField(max_length=IDENT_MAX, blank=True)
    credential = models.ForeignKey(
        AgentCredential,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
        db_index=False,
        help_text="The credential that sent the span: provenance, whatever agent it names.",
    )
    ingest_key = models.ForeignKey(
        IngestKey,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
        db_index=False,
        help_text="The ingest key that sent the span, when no agent credential did.",
    )
    run = models.ForeignKey(
        Run,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="spans",
        db_constraint=False,
        db_index=False,  # span_run_start leads with it
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
    # JSON kept as text on PostgreSQL (apps/traces/fields.py): cheaper to store by far.
    attributes = JSONTextField(default=dict, blank=True)
    resource = JSONTextField(default=dict, blank=True)
    events = JSONTextField(default=list, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    # Priced as it is stored (apps/traces/costing.py): a model call at its model's price then,
    # a tool call at its tool's cost per call; empty for spans that cost nothing themselves.
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    cost_source = models.CharField(max_length=9, blank=True)

    class Meta:
        ordering = ["start_time"]
        constraints = [
            models.UniqueConstraint(
                fields=["trace_id", "span_id", "start_time"], name="span_unique_per_trace"
            ),
        ]
        indexes = [
            models.Index(fields=["agent", "-start_time"], name="span_agent_start"),
            # Only spans linked to a run: most spans of a trace carry no tether.run.id (the
            # run's timeline finds them through its traces), and need not pay for this index.
            models.Index(
                fields=["run", "start_time"],
                name="span_run_start",
                condition=models.Q(run__isnull=False),
            ),
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


class LegalHold(models.Model):
    """Spans kept whatever the retention says: a run or a trace under incident.

    A hold names a run (every span linked to it, and every span of a trace linked to it), a
    trace id, or both. It is active until ``released_at``. Placed and released by admins only,
    through services that write an audit event (``legal_hold_place`` / ``legal_hold_release``);
    a released hold is kept as the record of what was held, by whom and why.
    """

    run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.PROTECT, related_name="legal_holds"
    )
    trace_id = models.CharField(max_length=32, blank=True)
    reason = models.TextField()
    # Empty when Tether placed it itself (an automatic kill switch); the name says who.
    placed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    placed_by_name = models.CharField(max_length=200)
    placed_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    released_by_name = models.CharField(max_length=200, blank=True)
    release_reason = models.TextField(blank=True)
    # When retention last looked at this hold's spans after its release (docs/traces.md).
    swept_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-placed_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(run__isnull=False) | ~models.Q(trace_id=""),
                name="legal_hold_names_a_run_or_trace",
            ),
        ]
        indexes = [
            models.Index(
                fields=["released_at"],
                name="legal_hold_active",
                condition=models.Q(released_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"Legal hold on {self.target}"

    @property
    def target(self) -> str:
        named = [f"run {self.run_id}"] if self.run_id else []
        named += [f"trace {self.trace_id}"] if self.trace_id else []
        return " and ".join(named)

    @property
    def is_active(self) -> bool:
        return self.released_at is None


class RetentionSweep(models.Model):
    """How far retention has deleted the spans of one environment class (apps/traces/retention.py).

    ``environments`` is the class's key: an environment name with its own retention, or ``*``
    for every environment without one. Spans older than ``swept_before`` (less the late-arrival
    margin) were deleted once already, so the next run looks only at what became older since:
    each day's spans are read once per class, not on every run.
    """

    environments = models.CharField(max_length=64, unique=True)
    swept_before = models.DateTimeField()
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.environments}: swept before {self.swept_before:%Y-%m-%d %H:%M}"
