"""The kill switch: a stop engaged over a scope (a run, an agent, a team, a department or
everything), in force until someone releases it."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.accounts.models import Department, Team
from apps.registry.models import Agent

from .constants import (
    REASON_MAX,
    KillScope,
    MemoryReads,
    NoticeKind,
    SafeStateStatus,
    TriggerKind,
    TriggerResponse,
)


class KillSwitch(models.Model):
    """One engagement of the kill switch. While ``released_at`` is empty nothing in its scope
    may start a run; the runs that were running when it was engaged are killed for good
    (release lets new runs start, it never revives a killed one)."""

    scope = models.CharField(max_length=12, choices=KillScope.choices)
    run = models.ForeignKey(
        "runtime.Run", null=True, blank=True, on_delete=models.CASCADE, related_name="kills"
    )
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="kills"
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    department = models.ForeignKey(
        Department, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    reason = models.TextField(max_length=REASON_MAX)
    automatic = models.BooleanField(default=False)
    trigger = models.CharField(
        max_length=100, blank=True, help_text="What engaged it, if automatic."
    )
    trigger_rule = models.ForeignKey(
        "KillTrigger", null=True, blank=True, on_delete=models.SET_NULL, related_name="kills"
    )
    frozen_stores = models.JSONField(
        default=list, blank=True, help_text="Slugs of the memory stores no run may write."
    )
    memory_reads = models.CharField(
        max_length=8, choices=MemoryReads.choices, default=MemoryReads.ALLOW
    )
    engaged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    engaged_by_name = models.CharField(max_length=150)
    engaged_at = models.DateTimeField()
    runs_killed = models.PositiveIntegerField(default=0)
    runs = models.ManyToManyField(
        "runtime.Run", blank=True, related_name="killed_by", help_text="The runs it stopped."
    )
    approvals_cancelled = models.PositiveIntegerField(default=0)
    released_at = models.DateTimeField(null=True, blank=True)
    released_by_name = models.CharField(max_length=150, blank=True)
    release_reason = models.TextField(max_length=REASON_MAX, blank=True)

    class Meta:
        ordering = ["-engaged_at"]
        indexes = [
            models.Index(
                fields=["scope"], condition=Q(released_at__isnull=True), name="kill_engaged"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(scope=KillScope.RUN, run__isnull=False)
                | Q(scope=KillScope.AGENT, agent__isnull=False)
                | Q(scope=KillScope.TEAM, team__isnull=False)
                | Q(scope=KillScope.DEPARTMENT, department__isnull=False)
                | Q(scope=KillScope.GLOBAL),
                name="kill_names_its_target",
            ),
        ]

    def __str__(self) -> str:
        return f"kill {self.scope} {self.target_name}"

    @property
    def engaged(self) -> bool:
        return self.released_at is None

    @property
    def target_name(self) -> str:
        if self.scope == KillScope.RUN:
            return str(self.run_id)[:8]
        if self.scope == KillScope.AGENT and self.agent is not None:
            return self.agent.slug
        if self.scope == KillScope.TEAM and self.team is not None:
            return self.team.slug
        if self.scope == KillScope.DEPARTMENT and self.department is not None:
            return self.department.slug
        return "everything"


class SafeStateAction(models.Model):
    """One agent's declared safe-state webhook called because a switch stopped it, and how
    that went (the incident shows it)."""

    kill = models.ForeignKey(KillSwitch, on_delete=models.CASCADE, related_name="safe_states")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+")
    url = models.URLField(max_length=500)
    status = models.CharField(
        max_length=10, choices=SafeStateStatus.choices, default=SafeStateStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["kill", "agent"], name="safe_state_once_per_kill"),
        ]

    def __str__(self) -> str:
        return f"safe state {self.agent_id} · {self.status}"


class KillNotice(models.Model):
    """One announcement of an engagement: an email to an affected agent's owner, or a post to
    a notification channel of an affected department."""

    kill = models.ForeignKey(KillSwitch, on_delete=models.CASCADE, related_name="notices")
    kind = models.CharField(max_length=8, choices=NoticeKind.choices)
    target = models.CharField(max_length=500, help_text="The address or the webhook URL.")
    channel = models.ForeignKey(
        "approvals.NotificationChannel",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    status = models.CharField(max_length=8, default="queued")
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["kill", "kind", "target"], name="kill_notice_once_per_target"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.target} · {self.status}"


class KillTrigger(models.Model):
    """An admin's rule: when this happens to an agent (any agent, a department's, or one),
    Tether engages the switch itself — the same effects and audit, marked automatic."""

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=TriggerKind.choices)
    response = models.CharField(max_length=16, choices=TriggerResponse.choices)
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="kill_triggers"
    )
    department = models.ForeignKey(
        Department, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    threshold = models.PositiveIntegerField(
        default=1, help_text="How many events within the window fire it (denials)."
    )
    window_seconds = models.PositiveIntegerField(default=300)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_fired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "pk"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind} → {self.response})"
