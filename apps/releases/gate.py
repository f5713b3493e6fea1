"""The promotion gate: a version goes to an environment only when every enabled evaluation
suite of its agent passes, without regressing against the version serving there.

:func:`promotion_gate` is called by ``version_promote`` (apps/releases/services.py) *before*
the release's transaction, never inside it: the gate calls the agent's eval hooks (seconds),
and the evaluation runs it records must be kept when it blocks, which a rolled-back release
transaction would take with it. It saves them, with one audit event, in its own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from apps.accounts.models import User
from apps.audit.services import Actor, audit_record
from apps.registry.models import Agent, AgentVersion

from .evals import blocking_reasons, suite_assess
from .models import EvalRun, EvalSuite, EvalVerdict

DETAILS_MAX = 50  # lines of a blocked verdict's details; the evaluation runs keep every case


@dataclass(frozen=True)
class Verdict:
    """The gate's answer. ``message``: a sentence a person can act on when blocked;
    ``details``: one line per failing suite and failing case; ``summary``: what the promotion's
    audit event keeps (each suite's pass rate and its reference)."""

    passed: bool
    message: str
    details: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _suite_summary(run: EvalRun) -> dict[str, Any]:
    return {
        "suite": run.suite.slug,
        "eval_run": run.pk,
        "passed": run.passed,
        "total": run.total,
        "pass_rate": _rate(run.pass_rate),
        "min_pass_rate": run.suite.min_pass_rate,
        "reference_version": run.reference_version.number if run.reference_version else None,
        "reference_rate": _rate(run.reference_rate),
        "verdict": run.verdict,
    }


def _details(blocked: list[EvalRun]) -> list[str]:
    lines = []
    for run in blocked:
        slug = run.suite.slug
        lines += [f"{slug}: {reason}" for reason in blocking_reasons(run)]
        lines += [f"{slug} / {r['case']}: {r['why']}" for r in run.results if not r["passed"]]
    if len(lines) > DETAILS_MAX:
        more = len(lines) - (DETAILS_MAX - 1)
        lines = [*lines[: DETAILS_MAX - 1], f"… and {more} more (see the evaluation runs)"]
    return lines


def promotion_gate(
    *, agent: Agent, version: AgentVersion, environment: str, actor: User
) -> Verdict:
    """Evaluate every enabled suite of ``agent`` on ``version`` for ``environment``.

    Blocked when a suite passes fewer cases than its ``min_pass_rate``, or falls more than its
    ``max_regression_points`` below its latest run for the version now serving in
    ``environment`` (when there is one, and it is another version). Every evaluation run is
    saved, passed or blocked. Call it outside any transaction (see the module's docstring)."""
    suites = list(
        EvalSuite.objects.filter(agent=agent, enabled=True)
        .select_related("agent")
        .order_by("name", "pk")
    )
    if not suites:
        return Verdict(passed=True, message="no evaluation suites", summary={"suites": []})
    who = Actor.user(actor)
    runs = [
        suite_assess(suite=suite, version=version, actor_name=who.name, environment=environment)
        for suite in suites
    ]
    blocked = [run for run in runs if run.verdict == EvalVerdict.BLOCKED]
    passed = not blocked
    if passed:
        count = f"{len(runs)} evaluation suite" + ("s" if len(runs) > 1 else "")
        message = f"{'all ' if len(runs) > 1 else ''}{count} passed"
    else:
        why = "; ".join(
            f"suite {run.suite.name} " + " and ".join(blocking_reasons(run)) for run in blocked
        )
        message = (
            f"v{version.number} cannot go to {environment}: {why}. Fix the failing cases "
            "listed (or the suite), then promote again."
        )
    with transaction.atomic():
        for run in runs:
            run.save()
        summary = {
            "verdict": EvalVerdict.PASSED if passed else EvalVerdict.BLOCKED,
            "suites": [_suite_summary(run) for run in runs],
        }
        audit_record(
            actor=who, action="releases.version.evaluated", target_type="agent",
            target_id=agent.pk, target_repr=agent.slug,
            after={"version": version.number, "environment": environment, **summary},
            message=f"v{version.number} evaluated for {environment}: "
            + ("passed" if passed else f"blocked by {', '.join(r.suite.slug for r in blocked)}"),
        )  # fmt: skip
    return Verdict(passed=passed, message=message, details=_details(blocked), summary=summary)
