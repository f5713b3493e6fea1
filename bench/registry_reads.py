"""How the registry's read paths scale: console pages and API lists over a large registry.

Builds (once) a registry of AGENTS agents with ~6 grants each over 60 tools in its own PostgreSQL
database, then times each read path over REPEAT requests and counts its SQL queries. The
reference, measured in the same run, is ``/healthz``: the cost of the stack itself (middleware,
routing, session) with no registry work. A read path whose query count grows with the number of
agents would show here first.

    .venv/bin/python bench/registry_reads.py [--agents 1000] [--repeat 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tether_bench")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def seed(agent_count: int) -> None:
    from apps.accounts.models import Department, Team, User
    from apps.accounts.services import role_assign
    from apps.registry.models import Agent, Tool, ToolGrant

    if Agent.objects.count() >= agent_count:
        return
    print(f"seeding {agent_count} agents ...", flush=True)
    admin = User.objects.filter(username="bench-admin").first() or User.objects.create_user(
        "bench-admin", password="bench-password-123"
    )
    role_assign(actor=None, user=admin, role="admin")
    departments = []
    for d in range(8):
        dept, _ = Department.objects.get_or_create(slug=f"dept-{d}", defaults={"name": f"Dept {d}"})
        Team.objects.get_or_create(slug=f"team-{d}", defaults={"department": dept, "name": "Ops"})
        departments.append(dept)
    risks = ["low", "medium", "high", "critical"]
    tools = [
        Tool.objects.get_or_create(
            slug=f"tool-{t}",
            defaults={
                "name": f"Tool {t}",
                "description": "bench",
                "risk_class": risks[t % 4],
                "actions": ["read", "update"],
                "input_schema": {"type": "object"},
            },
        )[0]
        for t in range(60)
    ]
    start = Agent.objects.count()
    agents = Agent.objects.bulk_create(
        Agent(
            slug=f"agent-{i}",
            name=f"Agent {i}",
            mission="Benchmark agent",
            department=departments[i % 8],
            owner=admin if i % 10 else None,
            status="active",
            environments=["dev", "prod"],
        )
        for i in range(start, agent_count)
    )
    ToolGrant.objects.bulk_create(
        ToolGrant(agent=a, tool=tools[(i * 7 + g) % 60], actions=["read"], environments=["dev"])
        for i, a in enumerate(agents)
        for g in range(6)
    )


def measure(client, path: str, repeat: int) -> tuple[float, float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(path)  # warm caches
    times = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            began = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client

    settings.STORAGES["staticfiles"] = {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
    }
    call_command("migrate", verbosity=0)
    seed(args.agents)

    from apps.accounts.models import User

    client = Client()
    client.force_login(User.objects.get(username="bench-admin"))
    paths = [
        ("reference: /healthz", "/healthz"),
        ("home", "/"),
        ("agent list (all)", "/agents/"),
        ("agent list, q=agent-1", "/agents/?q=agent-1"),
        ("agent list, risk=critical", "/agents/?risk=critical"),
        ("tool list", "/tools/"),
        ("agent detail", "/agents/agent-7/"),
        ("API agents (limit 100)", "/api/v1/agents/?limit=100"),
    ]
    print(f"\n{args.agents} agents, {args.repeat} requests each (PostgreSQL, in-process client)\n")
    print(f"{'read path':30} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8} {'x reference':>12}")
    reference = None
    for label, path in paths:
        p50, p95, queries = measure(client, path, args.repeat)
        reference = reference or p50
        print(f"{label:30} {p50:8.1f} {p95:8.1f} {queries:8d} {p50 / reference:12.1f}")


if __name__ == "__main__":
    main()
