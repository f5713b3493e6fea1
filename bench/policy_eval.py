"""How fast ``policy_evaluate`` answers once warm, over the demo registry.

Loads the demo organisation (``manage.py load_demo``) into its own PostgreSQL database, adds
three admin policies, then times ``policy_evaluate`` in-process over a mix of requests built
from the registry (granted tools, ungranted tools, model calls, memory reads and writes,
delegation). Also prints what a rebuild costs after a bump. ``--extra-agents N`` adds N
synthetic agents with six grants each, to show how the per-agent policy sets scale.

    .venv/bin/python bench/policy_eval.py [--calls 20000] [--extra-agents 0]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tether_policy_bench")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

POLICIES = {
    "large-refunds": (
        'forbid(principal, action == Action::"tool.invoke", resource)\n'
        "  when { context has amount && context.amount > 1000 };"
    ),
    "no-prod-at-night": (
        'forbid(principal, action == Action::"tool.invoke", resource is Tool)\n'
        '  when { context.environment == "prod" && resource.risk_class == "critical" &&\n'
        "         (context.hour < 6 || context.hour > 21) };"
    ),
    "low-autonomy-no-delegation": (
        'forbid(principal, action == Action::"delegate", resource)\n'
        "  when { principal.autonomy_level < 2 };"
    ),
}


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def ensure_policies() -> None:
    from apps.accounts.models import User
    from apps.policy.models import Policy
    from apps.policy.services import policy_create

    admin = User.objects.get(username="admin")
    for slug, text in POLICIES.items():
        if not Policy.objects.filter(slug=slug).exists():
            policy_create(actor=admin, data={"name": slug, "slug": slug, "text": text})


def ensure_extra_agents(count: int) -> None:
    from apps.accounts.models import Department
    from apps.registry.models import Agent, Tool, ToolGrant

    extra = Agent.objects.filter(slug__startswith="bench-agent-")
    existing = extra.count()
    if existing > count:  # a smaller run than the last: drop the surplus
        keep = [f"bench-agent-{i}" for i in range(count)]
        extra.exclude(slug__in=keep).delete()
    if existing >= count:
        return
    department = Department.objects.order_by("slug").first()
    tools = list(Tool.objects.order_by("slug"))
    agents = Agent.objects.bulk_create(
        Agent(
            slug=f"bench-agent-{i}",
            name=f"Bench agent {i}",
            mission="Benchmark agent",
            department=department,
            status="active",
            environments=["dev", "prod"],
        )
        for i in range(existing, count)
    )
    ToolGrant.objects.bulk_create(
        ToolGrant(
            agent=agent,
            tool=tools[(i * 7 + g) % len(tools)],
            actions=list(tools[(i * 7 + g) % len(tools)].actions[:1]),
            environments=["dev"],
        )
        for i, agent in enumerate(agents)
        for g in range(min(6, len(tools)))
    )


def requests() -> list:
    """A realistic mix, half expected to be allowed."""
    from apps.policy.evaluation import PolicyRequest
    from apps.registry.models import Agent, MemoryBinding, ToolGrant

    mix = []
    for grant in ToolGrant.objects.select_related("agent", "tool").filter(
        agent__slug__in=Agent.objects.exclude(slug__startswith="bench-agent-").values("slug")
    ):
        context = {"environment": grant.environments[0], "tool_action": grant.actions[0]}
        mix.append(PolicyRequest(grant.agent.slug, "tool.invoke", "Tool", grant.tool.slug, context))
        large = {**context, "amount": 5000}
        mix.append(PolicyRequest(grant.agent.slug, "tool.invoke", "Tool", grant.tool.slug, large))
    for binding in MemoryBinding.objects.select_related("agent", "store"):
        for action in ("memory.read", "memory.write"):
            store = binding.store.slug
            prod = {"environment": "prod"}
            mix.append(PolicyRequest(binding.agent.slug, action, "MemoryStore", store, prod))
    for agent in Agent.objects.exclude(slug__startswith="bench-agent-"):
        model = agent.default_model or "gpt-4.1-mini"
        mix.append(PolicyRequest(agent.slug, "model.call", "Model", model, {"environment": "prod"}))
        for target in agent.delegates_to:
            mix.append(
                PolicyRequest(agent.slug, "delegate", "Agent", target, {"environment": "prod"})
            )
    return mix


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--extra-agents", type=int, default=0)
    args = parser.parse_args()

    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("load_demo", verbosity=0, stdout=io.StringIO())
    ensure_policies()
    ensure_extra_agents(args.extra_agents)

    from django.conf import settings

    from apps.common import generation
    from apps.policy import evaluation
    from apps.policy.constants import GENERATION
    from apps.registry.models import Agent, ToolGrant

    mix = requests()
    began = time.perf_counter()
    evaluation.reset_snapshot()
    evaluation.current_snapshot()
    cold_build = (time.perf_counter() - began) * 1000
    began = time.perf_counter()
    results = [evaluation.policy_evaluate(r) for r in mix]  # compiles each agent's set once
    first_pass = (time.perf_counter() - began) * 1000
    errors = [r.errors for r in results if r.errors]
    allowed = sum(r.allowed for r in results)

    times = []
    for n in range(args.calls):
        request = mix[n % len(mix)]
        t0 = time.perf_counter()
        evaluation.policy_evaluate(request)
        times.append((time.perf_counter() - t0) * 1e6)
    times.sort()

    generation.bump(GENERATION)
    t0 = time.perf_counter()
    evaluation.policy_evaluate(mix[0])
    rebuild = (time.perf_counter() - t0) * 1000

    print(
        f"\nRegistry: {Agent.objects.count()} agents, {ToolGrant.objects.count()} grants, "
        f"{len(POLICIES)} admin policies; {len(mix)} distinct requests "
        f"({allowed} allowed, {len(mix) - allowed} denied, {len(errors)} with errors)"
    )
    print(f"Refresh check every {settings.POLICY_REFRESH_MS} ms; Redis: {bool(settings.REDIS_URL)}")
    print(f"\npolicy_evaluate, warm, {args.calls} calls:")
    print(f"  median {statistics.median(times):7.1f} us")
    print(f"  p99    {percentile(times, 0.99):7.1f} us")
    print(f"  max    {times[-1]:7.1f} us")
    print(f"\ncold snapshot build          {cold_build:7.1f} ms")
    print(f"first pass (per-agent sets)  {first_pass:7.1f} ms for {len(mix)} requests")
    print(f"first call after a bump      {rebuild:7.1f} ms (rebuild + that agent's set)")
    if errors:
        print("\nerrors:", errors[:3])


if __name__ == "__main__":
    main()
