"""The kill switch: a stop engaged over a scope (a run, an agent, a team, a department or
everything), in force until someone releases it."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.accounts.models import Department, Team
from apps.registry.models import Agent

from .constants import REASON_MAX, KillScope


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
    engaged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    engaged_by_name = models.CharField(max_length=150)
    engaged_at = models.DateTimeField()
    runs_killed = models.PositiveIntegerField(default=0)
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
