"""A demo incident, so the embedded demo's kill-switch pages are not empty.

One demo agent's run goes wrong the way runs do — it keeps asking for a step outside its
grants — and the kill switch stops that run, engaged by Tether itself as an automatic rule
would. The agent's other work goes on (the switch is scoped to the run). Loaded once: with any
kill switch in the database it changes nothing.
"""

from __future__ import annotations

from typing import Any

from apps.registry.constants import AgentStatus
from apps.registry.models import Agent
from apps.runtime import services as runtime
from apps.runtime.decisions import DecisionRequest, decide
from apps.traces.demo import DEMO_ENVIRONMENT

from .constants import KillScope
from .models import KillSwitch
from .services import kill_engage

DENIALS = 6


def demo_kills_load(*, actor: Any) -> int:
    """Stop one demo run; returns how many switches were engaged (0 when any exists)."""
    if KillSwitch.objects.exists():
        return 0
    agent = (
        Agent.objects.filter(status=AgentStatus.ACTIVE, grants__isnull=False)
        .order_by("-slug")
        .distinct()
        .first()
    )
    if agent is None or DEMO_ENVIRONMENT not in agent.environments:
        return 0
    grant = agent.grants.select_related("tool").first()
    assert grant is not None
    credential, _ = runtime.credential_issue(
        actor=actor, agent=agent, environment=DEMO_ENVIRONMENT, name="demo kill switch"
    )
    run, _ = runtime.run_start(credential=credential, task="Demo: a run stuck in a loop")
    for _ in range(DENIALS):  # the same step outside its grants, again and again
        decide(
            run=run,
            request=DecisionRequest(
                action="tool.invoke", tool=grant.tool.slug, tool_action="delete"
            ),
        )
    kill_engage(
        actor=None,
        scope=KillScope.RUN,
        run=run,
        trigger="repeated denials",
        reason=(
            f"Automatic: {DENIALS} denials of {grant.tool.slug}/delete within a minute on run "
            f"{str(run.pk)[:8]}; stopped before it tries anything else."
        ),
    )
    return 1
