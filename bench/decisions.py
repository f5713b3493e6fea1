"""Decision service speed: in process, and over HTTP with 16 concurrent clients.

Builds an active agent with a granted tool, 3 budgets and the registry-compiled Cedar policies
in its own PostgreSQL database (Redis db 6), then prints:
- in-process ``decide()`` time (median, p99) for an ``allow``;
- over HTTP (uvicorn, 2 workers): requests/s and p50/p99 for the decision endpoint, next to
  the same server's minimal JSON endpoint ``/healthz`` (the floor), measured in the same run.

    .venv/bin/python bench/decisions.py [--seconds 10] [--clients 16]

Targets (issue 3): >= 1,000 decisions/s, p99 <= 15 ms, >= 50% of the floor, in-process
median <= 1 ms. The LiteLLM proxy reference is not part of this script yet.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ENV = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/tether_bench_decisions",
    "REDIS_URL": "redis://127.0.0.1:6379/6",
    "SECRET_KEY": "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "ALLOWED_HOSTS": "127.0.0.1,testserver",
    "SECURE_SSL_REDIRECT": "false",
    "DJANGO_SETTINGS_MODULE": "controlplane.settings",
    "LOG_LEVEL": "WARNING",
}
PORT = 8931


def setup() -> tuple[str, str]:
    """Fresh database with one agent; returns (credential secret, run token)."""
    import psycopg

    base = ENV["DATABASE_URL"].rsplit("/", 1)[0]
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS tether_bench_decisions")
        conn.execute("CREATE DATABASE tether_bench_decisions")
    import django

    django.setup()
    import redis
    from django.core.management import call_command

    redis.Redis.from_url(ENV["REDIS_URL"]).flushdb()
    call_command("migrate", verbosity=0)
    from apps.accounts.models import Department, User
    from apps.accounts.services import role_assign
    from apps.registry import services as registry
    from apps.registry.models import Tool
    from apps.runtime import services
    from apps.runtime.models import Budget

    admin = User.objects.create_user("bench", password="bench-password-123")
    role_assign(actor=None, user=admin, role="admin")
    dept = Department.objects.create(name="Bench", slug="bench")
    tool = Tool.objects.create(
        name="Lookup",
        slug="lookup",
        description="d",
        actions=["read"],
        input_schema={"type": "object", "properties": {"id": {"type": "string"}}},
    )
    agent = registry.agent_create(
        actor=admin,
        data={
            "name": "Bench",
            "slug": "bench-agent",
            "mission": "m",
            "department": dept,
            "environments": ["prod"],
            "status": "active",
            "autonomy_level": 3,
        },
    )
    registry.grant_set(actor=admin, agent=agent, tool=tool, actions=["read"], environments=["prod"])
    for kind, scope in (
        ("tool_calls", "agent_day"),
        ("risk", "agent_month"),
        ("scope", "agent_day"),
    ):
        Budget.objects.create(name=kind, kind=kind, scope=scope, agent=agent, limit=10**9)
    _, issued = services.credential_issue(actor=admin, agent=agent, environment="prod", name="b")
    _run, token = services.run_start(
        credential=services.credential_authenticate(issued.plaintext), task="bench"
    )
    return issued.plaintext, token


def in_process(token: str, count: int = 2000) -> tuple[float, float]:
    from apps.runtime.decisions import DecisionRequest, decide
    from apps.runtime.services import run_authenticate

    times = []
    for i in range(count):
        began = time.perf_counter()
        run = run_authenticate(token)
        decision = decide(
            run=run,
            request=DecisionRequest(
                action="tool.invoke", tool="lookup", tool_action="read", arguments={"id": str(i)}
            ),
        )
        times.append((time.perf_counter() - began) * 1000)
        assert decision.disposition == "allow", decision.reasoning
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)]


async def load(
    path: str, body: dict | None, token: str, seconds: float, clients: int
) -> tuple[float, float, float]:
    import httpx

    url = f"http://127.0.0.1:{PORT}{path}"
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            i = 0
            while time.perf_counter() < deadline:
                i += 1
                began = time.perf_counter()
                if body is None:
                    response = await client.get(url)
                else:
                    payload = {**body, "arguments": {"id": f"{n}-{i}"}}
                    response = await client.post(url, json=payload, headers=headers)
                latencies.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, response.text[:200]

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(clients)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return (
        len(latencies) / elapsed,
        statistics.median(latencies),
        latencies[int(len(latencies) * 0.99)],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    os.environ.update(ENV)
    _, token = setup()
    median, p99 = in_process(token)
    print(f"in-process decide(): median {median:.3f} ms, p99 {p99:.3f} ms")

    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "controlplane.asgi:application",
            "--port",
            str(PORT),
            "--workers",
            "2",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env={**os.environ, **ENV},
    )
    try:
        time.sleep(4)
        floor = asyncio.run(load("/healthz", None, token, args.seconds, args.clients))
        body = {"action": "tool.invoke", "tool": "lookup", "tool_action": "read"}
        decisions = asyncio.run(
            load("/api/v1/runtime/decisions/", body, token, args.seconds, args.clients)
        )
    finally:
        server.terminate()
        server.wait(10)
    print(f"\nover HTTP, {args.clients} concurrent clients, {args.seconds:.0f} s each")
    print(f"{'endpoint':28} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'floor: /healthz':28} {floor[0]:8.0f} {floor[1]:8.2f} {floor[2]:8.2f}")
    print(f"{'decision (allow)':28} {decisions[0]:8.0f} {decisions[1]:8.2f} {decisions[2]:8.2f}")
    print(f"decisions / floor: {decisions[0] / floor[0]:.0%}")


if __name__ == "__main__":
    main()
