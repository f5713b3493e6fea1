"""Human approval gates: what each risk class does, and the requests people answer.

A gated step becomes an :class:`ApprovalRequest` bound to the exact action (run, agent, tool,
action, hash of the arguments). The decision service answers ``allow`` for that step only
against an approved, unexpired, unused request, and uses it up in the same statement
(apps/approvals/services.py ``approval_claim``).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.accounts.models import Department, Team
from apps.registry.constants import RiskClass
from apps.registry.models import Agent, Tool

from .constants import (
    ACTION_MAX,
    CRITICAL_APPROVALS_MIN,
    DEFAULT_EXPIRES_AFTER_SECONDS,
    FEEDBACK_MAX,
    REASON_MAX,
    ApprovalStatus,
    ExpiryOutcome,
    GateOutcome,
    Verdict,
)


class RiskGate(models.Model):
    """What steps of one risk class do: allow, ask a person, or forbid.

    One row per class for the whole organisation; a row with ``agent`` set overrides it for
    that agent. Critical steps can never be set to allow and always need at least two
    approvers. Without a row the class keeps its default (``DEFAULT_GATES``).
    """

    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="risk_gates"
    )
    risk_class = models.CharField(max_length=16, choices=RiskClass.choices)
    outcome = models.CharField(max_length=8, choices=GateOutcome.choices)
    approvals_required = models.PositiveSmallIntegerField(default=1)
    expires_after_seconds = models.PositiveIntegerField(default=DEFAULT_EXPIRES_AFTER_SECONDS)
    on_expiry = models.CharField(
        max_length=8, choices=ExpiryOutcome.choices, default=ExpiryOutcome.DENY
    )
    escalate_after_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Raise an unanswered request to the second tier then."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["agent_id", "risk_class"]
        constraints = [
            models.UniqueConstraint(
                fields=["risk_class"], condition=Q(agent__isnull=True), name="gate_one_per_class"
            ),
            models.UniqueConstraint(fields=["agent", "risk_class"], name="gate_one_per_agent"),
            models.CheckConstraint(
                condition=~Q(risk_class=RiskClass.CRITICAL, outcome=GateOutcome.ALLOW),
                name="gate_critical_never_allowed",
            ),
            models.CheckConstraint(
                condition=~Q(risk_class=RiskClass.CRITICAL)
                | Q(approvals_required__gte=CRITICAL_APPROVALS_MIN),
                name="gate_critical_four_eyes",
            ),
            models.CheckConstraint(
                condition=Q(approvals_required__gte=1, approvals_required__lte=5),
                name="gate_approvals_required_range",
            ),
        ]

    def __str__(self) -> str:
        who = self.agent.slug if self.agent is not None else "everyone"
        return f"{self.risk_class} → {self.outcome} ({who})"


class ActionRisk(models.Model):
    """The risk class of one tool's action (``action`` empty: every action of the tool), for
    every agent or, with ``agent`` set, for that agent only. Without a row, a step has its
    tool's own risk class."""

    tool = models.ForeignKey(Tool, on_delete=models.CASCADE, related_name="action_risks")
    action = models.CharField(max_length=ACTION_MAX, blank=True)
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="action_risks"
    )
    risk_class = models.CharField(max_length=16, choices=RiskClass.choices)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tool__slug", "action", "agent_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tool", "action"],
                condition=Q(agent__isnull=True),
                name="action_risk_one_global",
            ),
            models.UniqueConstraint(
                fields=["tool", "action", "agent"], name="action_risk_one_per_agent"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tool.slug}.{self.action or '*'} = {self.risk_class}"


class ApprovalRequestQuerySet(models.QuerySet["ApprovalRequest"]):
    def pending(self) -> ApprovalRequestQuerySet:
        return self.filter(status=ApprovalStatus.PENDING)


class ApprovalRequest(models.Model):
    """One gated step waiting for (or answered by) people.

    Everything an approver needs is frozen here when the step asks: who (agent, version,
    owner, on_behalf_of), what (tool, action, the exact arguments and their hash), why (the
    agent's reason, the gate's reason, the policies), the preview the agent supplied, the
    computed blast radius and the rollback path. ``used_at`` is set once, by the decision that
    the approval let through: an approval is good for one step.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey("runtime.Run", on_delete=models.CASCADE, related_name="approvals")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="approvals")
    agent_version = models.PositiveIntegerField()
    # The agent's place when it asked: who may approve follows it (department/team scope).
    department = models.ForeignKey(Department, on_delete=models.PROTECT, related_name="+")
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    on_behalf_of = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    environment = models.CharField(max_length=16)
    tool = models.ForeignKey(Tool, on_delete=models.PROTECT, related_name="approvals")
    tool_action = models.CharField(max_length=ACTION_MAX)
    arguments = models.JSONField(default=dict)
    arguments_sha256 = models.CharField(max_length=64)
    reason = models.TextField("the agent's reason", max_length=REASON_MAX, blank=True)
    gate_reasoning = models.TextField(blank=True)
    risk_class = models.CharField(max_length=16, choices=RiskClass.choices)
    policies = models.JSONField(default=list)
    preview = models.JSONField(null=True, blank=True)
    blast_radius = models.JSONField(default=dict)
    rollback = models.JSONField(default=dict)

    status = models.CharField(
        max_length=20, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING
    )
    approvals_required = models.PositiveSmallIntegerField(default=1)
    tier = models.PositiveSmallIntegerField(default=1)
    expires_at = models.DateTimeField()
    on_expiry = models.CharField(max_length=8, choices=ExpiryOutcome.choices)
    escalate_at = models.DateTimeField(null=True, blank=True)
    feedback = models.TextField(max_length=FEEDBACK_MAX, blank=True)

    ask_decision = models.ForeignKey(
        "runtime.Decision", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    used_decision = models.ForeignKey(
        "runtime.Decision", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    used_at = models.DateTimeField(null=True, blank=True)

    objects = ApprovalRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "expires_at"], name="approval_status_expires"),
            models.Index(fields=["run", "tool", "arguments_sha256"], name="approval_step"),
            models.Index(fields=["department", "status", "-created_at"], name="approval_inbox"),
        ]

    def __str__(self) -> str:
        return f"{self.agent.slug}: {self.tool.slug}.{self.tool_action} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status == ApprovalStatus.PENDING


class ApprovalVote(models.Model):
    """One person's answer to a request. Approvals count distinct people; any reject, request
    for changes or escalation takes effect at once. ``acting_for`` is set when the approver
    used authority delegated to them."""

    approval = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="votes")
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    approver_name = models.CharField(max_length=150)
    acting_for = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    verdict = models.CharField(max_length=20, choices=Verdict.choices)
    comment = models.TextField(max_length=FEEDBACK_MAX, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["approval", "approver"],
                condition=Q(verdict="approve"),
                name="vote_one_approval_per_person",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.approver_name} {self.verdict}"


class ApprovalDelegation(models.Model):
    """``delegator`` lends their approval authority to ``delegate`` for a period (a holiday):
    the delegate may then answer what the delegator could, marked as acting for them."""

    delegator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="approval_delegations_given",
    )
    delegate = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="approval_delegations_received",
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")), name="delegation_period"
            ),
            models.CheckConstraint(
                condition=~Q(delegator=models.F("delegate")), name="delegation_not_to_self"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.delegator} → {self.delegate}"


class ChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    SLACK = "slack", "Slack-compatible webhook"
    WEBHOOK = "webhook", "Generic webhook (HMAC-signed)"


class NotificationChannel(models.Model):
    """Where approval requests are announced: an email list, a Slack-compatible incoming
    webhook, or a generic webhook signed with ``secret`` (HMAC-SHA256). With ``department``
    set, only that department's requests."""

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=8, choices=ChannelKind.choices)
    target = models.CharField(
        max_length=500, help_text="Email addresses (comma-separated) or the webhook URL."
    )
    secret = models.CharField(max_length=200, blank=True)
    department = models.ForeignKey(
        Department, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed (retrying)"
    GAVE_UP = "gave_up", "Gave up"


class NoticeKind(models.TextChoices):
    EMAIL = "email", "Email"
    CHANNEL = "channel", "Notification channel"


class DeliveredNotice(models.Model):
    """One telling of an event (an alert, an engagement) to one target: an email address, or
    a notification channel (``target``: the channel's id), and how sending it went. Concrete
    notices add the event they tell and a uniqueness of (event, kind, target)."""

    kind = models.CharField(max_length=8, choices=NoticeKind.choices)
    target = models.CharField(max_length=254, help_text="The address, or the channel's id.")
    channel = models.ForeignKey(
        NotificationChannel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(
        max_length=8, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.kind} {self.target} · {self.status}"


class NotificationDelivery(models.Model):
    """One announcement of one request on one channel, and how sending it went."""

    channel = models.ForeignKey(
        NotificationChannel, on_delete=models.CASCADE, related_name="deliveries"
    )
    approval = models.ForeignKey(
        ApprovalRequest, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.CharField(max_length=20)
    status = models.CharField(
        max_length=8, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "approval", "event"], name="delivery_once_per_event"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} · {self.event} · {self.status}"
