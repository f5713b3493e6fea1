"""Spend for the costs tests: agents in departments, and priced model calls stored through the
real ingest (so the rollups are the ones production keeps)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apps.costs.rollups import forget_month_spend
from apps.registry import services as registry
from apps.registry.models import Agent
from apps.runtime import services as runtime
from apps.runtime.models import AgentCredential, Run
from apps.traces.services import spans_ingest
from tests.traces.conftest import export, span_at


@dataclass
class Spender:
    agent: Agent
    credential: AgentCredential

    def call(
        self,
        when: datetime,
        *,
        model: str = "gpt-4o",
        tokens: tuple[int, int] = (1_000_000, 0),
        run: Run | None = None,
    ) -> None:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "gen_ai.provider.name": "anthropic" if model.startswith("claude") else "openai",
            "gen_ai.usage.input_tokens": tokens[0],
            "gen_ai.usage.output_tokens": tokens[1],
        }
        if run is not None:
            attributes["tether.run.id"] = str(run.pk)
        spans_ingest(
            request=export(
                span_at(when, f"chat {model}", attributes=attributes),
                resource={"service.name": self.agent.slug},
            ),
            credential=self.credential,
        )
        # The ingest forgets this month's spend once it commits; a test's transaction never does.
        forget_month_spend()

    def run(self, task: str = "A task") -> Run:
        return runtime.run_start(credential=self.credential, task=task)[0]


def spender(org: Any, slug: str, department: Any, **more: Any) -> Spender:
    agent = registry.agent_create(
        actor=org.admin,
        data={
            "name": slug.replace("-", " ").title(),
            "slug": slug,
            "mission": "Spend.",
            "department": department,
            "environments": ["prod"],
            "status": "active",
            "autonomy_level": 3,
            **more,
        },
    )
    credential, _ = runtime.credential_issue(
        actor=org.admin, agent=agent, environment="prod", name="worker"
    )
    return Spender(agent, credential)
