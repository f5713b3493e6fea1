"""The promotion gate's evaluation suites (apps/releases/gate.py): what a version must do well
enough before it may serve in an environment, and the record of every time it was assessed."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from apps.accounts.models import slug_validator
from apps.registry.constants import Environment
from apps.registry.models import Agent, AgentVersion
from apps.runtime.constants import OUTCOME_MAX, TASK_MAX

SUITE_NAME_MAX = 100
SUITE_SLUG_MAX = 60
CASE_NAME_MAX = 100
HOOK_URL_MAX = 500
HOOK_SECRET_MAX = 200


class EvalMode(models.TextChoices):
    RECORDED = "recorded", "Recorded runs (assess the version's own runs)"
    HOOK = "hook", "Eval hook (replay each case through the agent owner's endpoint)"


class EvalVerdict(models.TextChoices):
    PASSED = "passed", "Passed"
    BLOCKED = "blocked", "Blocked"


class EvalSuite(models.Model):
    """A set of cases a version of one agent must pass before it is promoted.

    ``recorded``: each case is judged on the version's latest ended run of the case's task
    (what really happened, in any environment). ``hook``: each case is sent, signed with
    ``hook_secret``, to ``hook_url``, an endpoint the agent's owner runs that replays it with
    the version's behaviour and says what the agent did. A version is held back when it passes
    fewer than ``min_pass_rate`` percent of the cases, or falls more than
    ``max_regression_points`` below the version serving in the target environment.
    """

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="eval_suites")
    name = models.CharField(max_length=SUITE_NAME_MAX)
    slug = models.SlugField(max_length=SUITE_SLUG_MAX, validators=[slug_validator])
    mode = models.CharField(max_length=16, choices=EvalMode.choices, default=EvalMode.RECORDED)
    hook_url = models.URLField(
        "eval hook URL",
        max_length=HOOK_URL_MAX,
        blank=True,
        help_text="Hook mode: the http(s) endpoint that replays a case. Empty for recorded runs.",
    )
    hook_secret = models.CharField(
        max_length=HOOK_SECRET_MAX,
        blank=True,
        help_text="Signs every call (HMAC-SHA256, X-Tether-Signature). Write-only.",
    )
    min_pass_rate = models.PositiveSmallIntegerField(
        "minimum pass rate (%)",
        default=90,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
    )
    max_regression_points = models.PositiveSmallIntegerField(
        "largest allowed regression (points)",
        default=5,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="How far below the serving version's pass rate a new version may fall.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["agent", "name"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "slug"], name="eval_suite_slug_per_agent")
        ]

    def __str__(self) -> str:
        return f"{self.agent.slug} · {self.name}"


class EvalCase(models.Model):
    """One task of a suite and what a good answer to it looks like.

    ``task`` is the input; in a recorded suite it is matched exactly to ``Run.task``. A case
    passes when the run finished (unless ``must_finish`` is off), ended with
    ``expected_outcome`` (empty: any), called every tool of ``required_tools`` and none of
    ``forbidden_tools``. ``input`` is extra input sent to an eval hook.
    """

    suite = models.ForeignKey(EvalSuite, on_delete=models.CASCADE, related_name="cases")
    name = models.CharField(max_length=CASE_NAME_MAX)
    task = models.TextField(max_length=TASK_MAX)
    input = models.JSONField(default=dict, blank=True)
    expected_outcome = models.CharField(max_length=OUTCOME_MAX, blank=True)
    required_tools = models.JSONField(default=list, blank=True)
    forbidden_tools = models.JSONField(default=list, blank=True)
    must_finish = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["suite", "id"]
        constraints = [
            models.UniqueConstraint(fields=["suite", "name"], name="eval_case_name_per_suite")
        ]

    def __str__(self) -> str:
        return f"{self.suite.slug} · {self.name}"


class EvalRun(models.Model):
    """One assessment of one version against one suite, kept whether it passed or blocked.

    ``environment`` is where the version was being promoted to (empty when it was assessed
    outside a promotion). ``reference_rate`` is the pass rate of the suite's latest run for
    the version then serving there (``reference_version``), the bar for a regression.
    ``results`` holds one ``{"case", "passed", "why"}`` per case, in the suite's order.
    """

    suite = models.ForeignKey(EvalSuite, on_delete=models.CASCADE, related_name="runs")
    version = models.ForeignKey(AgentVersion, on_delete=models.CASCADE, related_name="eval_runs")
    environment = models.CharField(max_length=16, choices=Environment.choices, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    passed = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    pass_rate = models.FloatField(default=0.0)
    reference_version = models.ForeignKey(
        AgentVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reference_rate = models.FloatField(null=True, blank=True)
    verdict = models.CharField(max_length=8, choices=EvalVerdict.choices)
    results = models.JSONField(default=list)
    actor_name = models.CharField(max_length=200)

    class Meta:
        ordering = ["-finished_at", "-id"]
        indexes = [
            models.Index(fields=["suite", "version", "-finished_at"], name="evalrun_suite_version")
        ]

    def __str__(self) -> str:
        return f"{self.suite} on v{self.version.number}: {self.verdict} ({self.pass_rate:.1f}%)"
