"""What drift detection keeps: one sample of metrics per ended run, the baselines runs are
compared against, custom metric values, and the alerts (docs/drift.md)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from apps.approvals.models import DeliveredNotice
from apps.registry.models import Agent, AgentVersion

from .constants import (
    LIVE_STATUSES,
    METRIC_NAME_MAX,
    AlertStatus,
    BaselineSource,
    BaselineState,
    Metric,
    Severity,
    Window,
)


class RunSample(models.Model):
    """The metrics of one ended run, collected once by the drift job (apps/drift/collect.py):
    what every detector and chart reads, so none of them scans runs, decisions or spans.

    Ids are plain integers, like the cost rollups': a sample outlives nothing it names.
    """

    run_id = models.UUIDField(primary_key=True)
    agent_id = models.BigIntegerField()
    version_id = models.BigIntegerField()
    environment = models.CharField(max_length=16)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()
    failed = models.BooleanField(default=False)
    outcome = models.CharField(max_length=100, blank=True)
    latency_ms = models.FloatField(default=0)
    tokens = models.BigIntegerField(default=0)
    cost_usd = models.FloatField(default=0)
    tool_calls = models.JSONField(default=dict, help_text="Tool slug → governed calls.")
    decisions = models.PositiveIntegerField(default=0)
    denials = models.PositiveIntegerField(default=0)
    asks = models.PositiveIntegerField(default=0)
    approvals = models.PositiveIntegerField(default=0, help_text="Approval requests decided.")
    rejections = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, help_text="Custom metric name → value.")

    class Meta:
        indexes = [
            models.Index(fields=["agent_id", "environment", "ended_at"], name="sample_agent_env"),
            models.Index(fields=["ended_at"], name="sample_ended"),
        ]

    def __str__(self) -> str:
        return f"sample of run {self.run_id}"


class RunMetric(models.Model):
    """A custom numeric metric an agent reported for one of its runs (SDK ``report_metric``,
    or a span attribute ``tether.metric.<name>``); the last value reported wins."""

    run_id = models.UUIDField()
    name = models.CharField(max_length=METRIC_NAME_MAX)
    value = models.FloatField()
    recorded_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run_id", "name"], name="one_metric_value_per_run")
        ]

    def __str__(self) -> str:
        return f"{self.name}={self.value} (run {self.run_id})"


class Baseline(models.Model):
    """What an agent's runs in one environment are compared against: the metrics of a window
    of one version's runs.

    Set automatically when a version starts serving (its first ``target_runs`` runs or its
    first ``target_days`` days, whichever comes first), or pinned by hand over a chosen
    window. The baseline in force for an agent and environment is the newest pinned one, else
    the newest set one; a new version is compared against it until its own is set, and its
    own is set only once a detection has compared it so (``compared_at``) without a drift.
    """

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="baselines")
    environment = models.CharField(max_length=16)
    version = models.ForeignKey(AgentVersion, on_delete=models.CASCADE, related_name="baselines")
    source = models.CharField(max_length=10, choices=BaselineSource.choices)
    state = models.CharField(
        max_length=8, choices=BaselineState.choices, default=BaselineState.FORMING
    )
    target_runs = models.PositiveIntegerField()
    target_days = models.PositiveIntegerField()
    window_start = models.DateTimeField()
    window_end = models.DateTimeField(null=True, blank=True)
    runs = models.PositiveIntegerField(default=0)
    stats = models.JSONField(default=dict, help_text="Counts and capped value samples.")
    set_by_name = models.CharField(max_length=200)
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    set_at = models.DateTimeField(null=True, blank=True)
    compared_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the version was first compared with the baseline it inherits.",
    )

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "environment", "version"],
                condition=Q(source=BaselineSource.AUTOMATIC) & ~Q(state=BaselineState.RETIRED),
                name="one_automatic_baseline_per_version",
            )
        ]

    def __str__(self) -> str:
        return f"baseline of {self.agent_id} v{self.version_id} in {self.environment}"


class DriftAlert(models.Model):
    """One drift: a metric of one agent version in one environment that moved away from its
    baseline. Open until a person resolves it; while open, every job cycle that still sees
    the drift updates it (figures, severity, last seen) instead of raising another."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="drift_alerts")
    environment = models.CharField(max_length=16)
    version = models.ForeignKey(AgentVersion, on_delete=models.CASCADE, related_name="+")
    baseline = models.ForeignKey(Baseline, on_delete=models.CASCADE, related_name="alerts")
    metric = models.CharField(max_length=16, choices=Metric.choices)
    key = models.CharField(max_length=METRIC_NAME_MAX, blank=True, help_text="A custom metric.")
    window = models.CharField(max_length=4, choices=Window.choices)
    status = models.CharField(max_length=12, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    test = models.CharField(max_length=40)
    statistic = models.FloatField()
    p_value = models.FloatField()
    psi = models.FloatField(null=True, blank=True)
    subject = models.CharField(max_length=140, help_text="What moved: a rate, a label, a median.")
    baseline_value = models.FloatField()
    current_value = models.FloatField()
    baseline_n = models.PositiveIntegerField()
    current_n = models.PositiveIntegerField()
    shares = models.JSONField(default=dict, help_text="A distribution: label → [before, now].")
    onset_at = models.DateTimeField()
    suspected_change = models.CharField(max_length=300, blank=True)
    suspected_event_id = models.BigIntegerField(null=True, blank=True)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    updates = models.PositiveIntegerField(default=1)
    acknowledged_by_name = models.CharField(max_length=200, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    snoozed_until = models.DateTimeField(null=True, blank=True)
    resolved_by_name = models.CharField(max_length=200, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=300, blank=True)
    kill_switch_engaged = models.BooleanField(default=False)

    class Meta:
        ordering = ["-last_seen_at", "-pk"]
        indexes = [models.Index(fields=["status", "-last_seen_at"], name="drift_alert_status")]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "environment", "version", "metric", "key"],
                condition=Q(status__in=LIVE_STATUSES),
                name="one_live_alert_per_drift",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_metric_display()} drift of {self.agent_id} ({self.status})"


class DriftAlertNotice(DeliveredNotice):
    """One telling of a drift alert (raised, or grown critical): an email to the agent's
    owner or an admin, or a message on a notification channel of its department."""

    alert = models.ForeignKey(DriftAlert, on_delete=models.CASCADE, related_name="notices")
    event = models.CharField(max_length=12, help_text="raised or critical")

    class Meta(DeliveredNotice.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["alert", "event", "kind", "target"], name="drift_notice_once_per_target"
            ),
        ]
