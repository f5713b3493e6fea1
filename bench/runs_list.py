"""The trace fabric's console at scale: the runs list and its filters with 1M spans stored.

Builds (once, in its own PostgreSQL database ``tether_bench_console``) 40 agents in 4
departments, RUNS runs (the newest 200 still running) with about 5 decisions each (1 in 20 a
denial), one trace per run for 90% of them plus traces without a run, 20 spans per trace
(SPANS in all), and their Trace rollups. The rows are written with ``INSERT ... SELECT`` from
``generate_series`` (minutes, not hours); the data is shaped like the ingest's.

Then times each console read over REPEAT requests through Django's in-process client (server
time: the view, its queries and the template, no network) and counts its SQL queries. The
issue's target: with 1M spans stored, the runs list answers in at most 200 ms.

    .venv/bin/python bench/runs_list.py [--runs 50000] [--spans 1000000] [--repeat 20]
                                        [--explain]

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) and Redis on 127.0.0.1:6379.
The first run seeds for a few minutes; later runs reuse the data (drop the database to redo).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tether_bench_console")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/7")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("DB_POOL", "false")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

AGENTS = 40
DEPARTMENTS = 4
SPANS_PER_TRACE = 20
DECISIONS_PER_RUN = 5
RUNNING = 200
KINDS = ["agent", "llm", "retrieval", "tool", "llm", "memory", "tool", "llm", "guardrail", "other"]


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def seed(runs: int, spans: int) -> None:
    from django.db import connection, transaction

    from apps.runtime.models import Decision, Run
    from apps.traces.models import Span, Trace

    if Run.objects.count() >= runs:
        return
    began = time.monotonic()
    print(f"seeding {runs} runs, {spans} spans ...", flush=True)
    with transaction.atomic():
        _seed(runs, spans)
    with connection.cursor() as cursor:
        for model in (Run, Decision, Trace, Span):
            cursor.execute(f"ANALYZE {model._meta.db_table}")
    print(f"seeded in {time.monotonic() - began:.0f} s", flush=True)


def _seed(runs: int, spans: int) -> None:
    from django.db import connection

    from apps.accounts.models import Department, User
    from apps.accounts.services import role_assign
    from apps.registry import services as registry
    from apps.registry.models import Agent, AgentVersion
    from apps.runtime import services as runtime
    from apps.runtime.models import AgentCredential, Decision, Run
    from apps.traces.models import Span, Trace

    admin = User.objects.create_user("bench-admin", password="bench-password-123")
    role_assign(actor=None, user=admin, role="admin")
    departments = [
        Department.objects.create(slug=f"dept-{d}", name=f"Dept {d}") for d in range(DEPARTMENTS)
    ]
    reader = User.objects.create_user("bench-reader", password="bench-password-123")
    role_assign(actor=None, user=reader, role="approver", department=departments[0])
    for i in range(AGENTS):
        agent = registry.agent_create(
            actor=admin,
            data={
                "name": f"Agent {i}", "slug": f"agent-{i}", "mission": "Benchmark.",
                "department": departments[i % DEPARTMENTS], "environments": ["prod"],
                "status": "active",
            },
        )  # fmt: skip
        runtime.credential_issue(actor=admin, agent=agent, environment="prod", name="bench")

    traced = int(runs * 0.9)
    orphans = max(spans // SPANS_PER_TRACE - traced, 0)
    t_run, t_trace, t_span = Run._meta.db_table, Trace._meta.db_table, Span._meta.db_table
    t_decision = Decision._meta.db_table
    t_agent, t_version = Agent._meta.db_table, AgentVersion._meta.db_table
    t_credential = AgentCredential._meta.db_table
    kinds = "ARRAY[" + ", ".join(f"'{k}'" for k in KINDS) + "]"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            CREATE TEMP TABLE bench_agents AS
            SELECT row_number() OVER (ORDER BY a.id) - 1 AS n, a.id AS agent_id, a.slug,
                   v.id AS version_id, c.id AS credential_id
            FROM {t_agent} a JOIN {t_version} v ON v.agent_id = a.id
            JOIN {t_credential} c ON c.agent_id = a.id
            """
        )
        cursor.execute(
            f"""
            INSERT INTO {t_run} (id, agent_id, version_id, credential_id, environment, task, intent,
                on_behalf_of_id, delegation_id, parent_id, state, outcome, envelope, token_lookup,
                token_digest, token_expires_at, started_at, last_heartbeat_at, ended_at)
            SELECT md5('run' || i)::uuid, a.agent_id, a.version_id, a.credential_id, 'prod',
                'Bench task ' || i || ': triage the claim and answer the customer', '',
                NULL, NULL, NULL,
                CASE WHEN i > %(runs)s - {RUNNING} THEN 'running'
                     WHEN i %% 20 = 0 THEN 'failed' ELSE 'finished' END,
                '', '{{}}', substr(md5('lookup' || i), 1, 16), md5('digest' || i),
                now() + interval '1 hour',
                now() - (%(runs)s - i) * interval '30 seconds', NULL,
                CASE WHEN i > %(runs)s - {RUNNING} THEN NULL
                     ELSE now() - (%(runs)s - i) * interval '30 seconds'
                          + (5 + i %% 300) * interval '1 second' END
            FROM generate_series(1, %(runs)s) AS i
            JOIN bench_agents a ON a.n = i %% {AGENTS}
            """,
            {"runs": runs},
        )
        cursor.execute(
            f"""
            INSERT INTO {t_decision} (created_at, run_id, agent_id, environment, action, target,
                tool_action, disposition, reasons, reasoning, policies, budgets, arguments_sha256,
                modified, on_behalf_of_name, request_id, idempotency_key, retry_after_seconds,
                duration_us)
            SELECT r.started_at + k * interval '1 second', r.id, r.agent_id, 'prod',
                'tool.invoke', 'crm-lookup', 'read',
                CASE WHEN (hashtext(r.id::text) + k) %% 20 = 0 THEN 'deny' ELSE 'allow' END,
                '["allowed"]', 'Granted.', '[]', '{{}}', '', NULL, '', '', '', NULL, 120
            FROM {t_run} r, generate_series(1, {DECISIONS_PER_RUN}) AS k
            ORDER BY r.started_at, k
            """,
            {},
        )
        cursor.execute(
            f"""
            INSERT INTO {t_trace} (trace_id, run_id, agent_id, agent_name, environment, name,
                has_root, started_at, ended_at, span_count, error_count, input_tokens,
                output_tokens, cost_usd, updated_at)
            SELECT md5('trace' || i), CASE WHEN i <= %(traced)s THEN r.id END, r.agent_id,
                a.slug, 'prod', 'invoke_agent ' || a.slug, true, r.started_at,
                r.started_at + interval '2 seconds', {SPANS_PER_TRACE},
                CASE WHEN i %% 10 = 0 THEN 1 ELSE 0 END, {SPANS_PER_TRACE * 400},
                {SPANS_PER_TRACE * 40}, (i %% 100) / 50.0, now()
            FROM generate_series(1, %(traces)s) AS i
            JOIN {t_run} r ON r.id = md5('run' || (1 + (i - 1) %% %(runs)s))::uuid
            JOIN bench_agents a ON a.agent_id = r.agent_id
            """,
            {"traced": traced, "traces": traced + orphans, "runs": runs},
        )
        cursor.execute(
            f"""
            INSERT INTO {t_span} (trace_id, span_id, parent_span_id, name, kind, agent_id,
                agent_name, credential_id, ingest_key_id, run_id, run_ref, environment,
                service_name, scope_name, model, provider, input_tokens, output_tokens,
                cached_tokens, reasoning_tokens, tool_name, arguments, result, status,
                status_message, start_time, end_time, duration_ns, conversation_id, attributes,
                resource, events, received_at)
            SELECT t.trace_id, substr(md5(t.trace_id || j), 1, 16),
                CASE WHEN j = 0 THEN '' ELSE substr(md5(t.trace_id || 0), 1, 16) END,
                CASE WHEN j = 0 THEN t.name ELSE 'step ' || j END,
                ({kinds})[1 + j %% 10], t.agent_id, t.agent_name, NULL, NULL,
                CASE WHEN j = 0 THEN t.run_id END, COALESCE(t.run_id::text, ''), 'prod',
                t.agent_name, 'bench', 'gpt-4o', 'openai', 400, 40, NULL, NULL,
                CASE WHEN j %% 10 IN (3, 6) THEN 'crm-lookup' ELSE '' END, '', '',
                CASE WHEN j = 6 AND t.error_count > 0 THEN 'error' ELSE 'ok' END, '',
                t.started_at + j * interval '90 milliseconds',
                t.started_at + j * interval '90 milliseconds' + interval '80 milliseconds',
                80000000, '', '{{}}', '{{}}', '[]', t.started_at
            FROM {t_trace} t, generate_series(0, {SPANS_PER_TRACE - 1}) AS j
            ORDER BY t.started_at, j
            """,
            {},
        )


def measure(client: Any, path: str, repeat: int) -> tuple[float, float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert client.get(path).status_code == 200, path  # warm caches
    times = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            began = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    times.sort()
    return statistics.median(times), times[max(int(len(times) * 0.95) - 1, 0)], len(queries)


def explain(client: Any, path: str) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        client.get(path)
    slowest = sorted(queries.captured_queries, key=lambda q: float(q["time"]), reverse=True)[:2]
    with connection.cursor() as cursor:
        for query in slowest:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query["sql"])
            print(f"\n-- {path} ({query['time']} s)\n" + "\n".join(r[0] for r in cursor.fetchall()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50_000)
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--explain", action="store_true", help="EXPLAIN the slowest queries")
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
    seed(args.runs, args.spans)

    from apps.accounts.models import User
    from apps.runtime.models import Run
    from apps.traces.models import Span

    admin, reader = Client(), Client()
    admin.force_login(User.objects.get(username="bench-admin"))
    reader.force_login(User.objects.get(username="bench-reader"))
    run = Run.objects.filter(traces__isnull=False).order_by("-started_at").first()
    assert run is not None
    paths = [
        ("reference: /healthz", admin, "/healthz"),
        ("runs list (admin)", admin, "/runs/"),
        ("runs list, page 500", admin, "/runs/?page=500"),
        ("runs, agent=agent-7", admin, "/runs/?agent=agent-7"),
        ("runs, department=dept-1", admin, "/runs/?department=dept-1"),
        ("runs, status=failed", admin, "/runs/?state=failed"),
        ("runs, started last 24h", admin, "/runs/?period=24h"),
        ("runs, cost >= 1.5", admin, "/runs/?cost_min=1.5"),
        ("runs, has denials", admin, "/runs/?has_denials=on"),
        ("runs, has errors", admin, "/runs/?has_errors=on"),
        (
            "runs, dept+failed+denials",
            admin,
            "/runs/?department=dept-2&state=failed&has_denials=on",
        ),
        ("runs list (department role)", reader, "/runs/"),
        ("runs, dept role + denials", reader, "/runs/?has_denials=on&cost_min=1"),
        ("traces without a run", admin, "/traces/"),
        ("live fleet (200 running)", admin, "/runs/live/"),
        ("run detail (20 spans)", admin, f"/runs/{run.pk}/"),
        ("JSON timeline", admin, f"/api/v1/runs/{run.pk}/timeline/"),
    ]
    print(
        f"\n{Run.objects.count()} runs, {Span.objects.count()} spans; {args.repeat} requests each"
        " (PostgreSQL, in-process client: server time)\n"
    )
    print(f"{'read path':32} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8}  target")
    worst = 0.0
    for label, client, path in paths:
        p50, p95, queries = measure(client, path, args.repeat)
        mark = ""
        if (
            path.startswith(("/runs/", "/traces/"))
            and "live" not in path
            and label.startswith(("runs", "traces"))
        ):
            worst = max(worst, p95)
            mark = "PASS" if p95 <= 200 else "FAIL"
        print(f"{label:32} {p50:8.1f} {p95:8.1f} {queries:8d}  {mark}")
    print(
        f"\nruns list, worst p95: {worst:.1f} ms (target <= 200 ms): {'PASS' if worst <= 200 else 'FAIL'}"
    )
    if args.explain:
        for _label, client, path in paths[1:13]:
            explain(client, path)


if __name__ == "__main__":
    main()
