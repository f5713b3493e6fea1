"""Trace ingest speed: saved spans per second over OTLP/HTTP (issue 4, sec. 8), printed.

Builds, once, batches of 512 realistic GenAI spans (bench/_genai.py: agent, workflow, LLM,
tool and retrieval spans with tokens, models, tool arguments and results, messages; about
1.7 KB of attributes a span) as OTLP protobuf ``ExportTraceServiceRequest`` bodies, then, in
the same run and on the same batches:

1. **Tether**: ``python -m controlplane.serve --workers 3`` (uvicorn, one ``SO_REUSEPORT``
   socket per worker) on PostgreSQL (database ``tether_bench_ingest``, made afresh; Redis db 13,
   flushed). Three processes on 2 cores: an export alternates between Python (mapping its
   spans, one core) and waiting for PostgreSQL (its ``COPY``, its commit); with two processes a
   core idles while both wait, a third keeps it busy (measured: about 10-15% more than 2).
   Sent by 4 concurrent exporters, each posting its batches one after the
   other (``POST /v1/traces``, ``application/x-protobuf``, an ingest key; one connection per
   export, as behind a load balancer, so the kernel spreads exports over the workers). An
   exporter honours ``429``/``503`` + ``Retry-After`` as stock exporters do (the retries are
   counted). The clock stops when ``traces_span`` holds every span: spans *saved*, not merely
   accepted. Every span is then checked to be stored exactly once.
2. **The physical floor**: the very rows Tether stored, per batch, pre-encoded as binary
   ``COPY`` (outside the clock), written by 4 concurrent connections with ``COPY ... FROM STDIN
   (FORMAT BINARY)``, one transaction per batch, into a table equivalent to ``traces_span``
   but not partitioned (same columns, types, lz4 compression, primary key, unique key and
   indexes: ``LIKE traces_span INCLUDING ALL``). Also shown, for context: the same into a bare
   table (no index at all).
3. **Arize Phoenix** (bench/_phoenix.py: ``pip install 'arize-phoenix[pg]'`` into
   ``.bench/phoenix-venv``, ``phoenix serve`` on PostgreSQL, database
   ``tether_bench_ingest_phoenix``): the first ``--phoenix-batches`` of the same bodies posted
   by 4 concurrent exporters to its ``/v1/traces``; the clock stops when its ``spans`` table
   holds them all (Phoenix queues spans and writes them in the background).

Each is measured ``--rounds`` times (3; new spans every round, the floor on each round's rows)
and the median round is reported, with every round printed: the figures of this 2-core
virtual machine vary by a quarter from one run to the next even when it looks idle. The floor's
writes start on a fresh ``CHECKPOINT``, so that they do not pay for flushing what Tether wrote
just before. A column gives the CPU time a span cost, all
processes together (server, PostgreSQL, Redis, the clients): with 2 cores the rate cannot
exceed 2 / that, and it varies less than the rate when the machine is shared.

The CPU that other work on the machine takes (not the server under test, its database backends,
Redis, or this process) is sampled before and during each window: above 15% the row is marked
and its figures are provisional (they are then low). Prints the figures side by side and the
targets, each PASS/FAIL: >= 20,000 saved spans/s, >= 25% of the raw COPY rate (the equivalent
table), >= 50x Phoenix. It is a report: the exit code is 0 whatever the marks say.

    .venv/bin/python bench/ingest.py [--batches 32] [--rounds 3] [--exporters 4] [--workers 3]
                                     [--phoenix-batches 16] [--skip-phoenix]
    .venv/bin/python bench/ingest.py --fill 1000000 [--fill-days 7] [--database NAME]

``--fill N`` only loads N realistic spans (with their traces and runs, over ``--fill-days``
days) into the bench database through the same ``COPY`` path, for the runs-list bench;
``fill()`` does the same from Python.

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) and Redis on 127.0.0.1:6379.
The first run installs Phoenix (a minute or two); after that it downloads nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import _cpu  # noqa: E402
from bench._serve import wait_ready  # noqa: E402

POSTGRES = "postgres://postgres@127.0.0.1:5432"
DATABASE = "tether_bench_ingest"
PHOENIX_DATABASE = "tether_bench_ingest_phoenix"
ENV = {
    "DATABASE_URL": f"{POSTGRES}/{DATABASE}",
    "REDIS_URL": "redis://127.0.0.1:6379/13",
    "SECRET_KEY": "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "ALLOWED_HOSTS": "127.0.0.1,testserver",
    "SECURE_SSL_REDIRECT": "false",
    "DJANGO_SETTINGS_MODULE": "controlplane.settings",
    "LOG_LEVEL": "WARNING",
}
PORT = 8951
PHOENIX_PORT = 8953
BATCH = 512
AGENTS = [f"claims-agent-{i}" for i in range(8)]
BUSY = 0.15
TARGET_RATE = 20_000
TARGET_FLOOR_SHARE = 0.25
TARGET_PHOENIX = 50


# --- the Tether side -----------------------------------------------------------------------------


def create_database(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def django_setup(database: str = DATABASE) -> None:
    os.environ.update({**ENV, "DATABASE_URL": f"{POSTGRES}/{database}", "DB_POOL": "false"})
    import django

    django.setup()


def setup_registry(*, runs_per_agent: int = 4) -> tuple[str, dict[str, list[str]]]:
    """Agents, a few runs each, an ingest key; the day partitions ahead (as beat makes them).
    Returns (ingest key plaintext, {agent slug: [run ids]})."""
    from apps.accounts.models import Department, User
    from apps.accounts.services import role_assign
    from apps.registry import services as registry
    from apps.runtime import services as runtime
    from apps.traces import partitions, services

    admin = User.objects.create_user("bench", password="bench-password-123")
    role_assign(actor=None, user=admin, role="admin")
    department = Department.objects.create(name="Claims", slug="claims")
    runs: dict[str, list[str]] = {}
    for slug in AGENTS:
        agent = registry.agent_create(
            actor=admin,
            data={
                "name": slug.replace("-", " ").title(),
                "slug": slug,
                "mission": "Triage claims.",
                "department": department,
                "environments": ["dev", "staging", "prod"],
                "status": "active",
                "autonomy_level": 3,
            },
        )
        _, issued = runtime.credential_issue(
            actor=admin, agent=agent, environment="prod", name="bench"
        )
        credential = runtime.credential_authenticate(issued.plaintext)
        runs[slug] = [
            str(runtime.run_start(credential=credential, task=f"claim {n}")[0].pk)
            for n in range(runs_per_agent)
        ]
    _, key = services.ingest_key_issue(actor=admin, name="bench collector", environment="prod")
    partitions.partitions_ensure_ahead()
    return key.plaintext, runs


def make_bodies(count: int, runs: dict[str, list[str]], *, seed: int) -> list[bytes]:
    from bench._genai import export_bodies

    # An hour ago: today's partition (or yesterday's just after midnight), like live traffic.
    start_ns = time.time_ns() - 3600 * 10**9
    return export_bodies(
        count=count, agents=AGENTS, runs=runs, start_ns=start_ns, batch=BATCH, seed=seed
    )


@dataclass
class Load:
    spans: int
    seconds: float  # first send to the last span saved
    accepted_seconds: float  # first send to the last answer
    retries: int = 0
    busy: tuple[float, float] = (0.0, 0.0)  # other work: before, during
    latencies: list[float] = field(default_factory=list)
    cpu: float = 0.0  # CPU seconds of the server, its database and cache processes, the client

    @property
    def rate(self) -> float:
        return self.spans / self.seconds

    @property
    def cpu_us(self) -> float:
        """CPU microseconds a span costs, all processes together: on an idle machine with
        ``cores`` cores the rate cannot exceed ``cores / cpu``."""
        return self.cpu / self.spans * 1e6


class ExportFailed(RuntimeError):
    pass


def post_all(
    host: str, port: int, path: str, bodies: list[bytes], *, exporters: int, headers: dict
) -> tuple[float, int, list[float]]:
    """Post every body, ``exporters`` at a time; returns (seconds, retries, latencies)."""
    shares = [bodies[i::exporters] for i in range(exporters)]
    retries = [0] * exporters
    latencies: list[list[float]] = [[] for _ in range(exporters)]
    errors: list[str] = []

    def exporter(n: int) -> None:
        for body in shares[n]:
            while not errors:
                began = time.perf_counter()
                conn = http.client.HTTPConnection(host, port, timeout=60)
                try:
                    conn.request("POST", path, body=body, headers=headers)
                    response = conn.getresponse()
                    text = response.read()
                finally:
                    conn.close()
                if response.status in (429, 502, 503, 504):
                    retries[n] += 1
                    time.sleep(float(response.getheader("Retry-After") or 1))
                    continue
                if response.status != 200:
                    errors.append(f"HTTP {response.status}: {text[:300]!r}")
                    return
                latencies[n].append(time.perf_counter() - began)
                break

    threads = [threading.Thread(target=exporter, args=(n,)) for n in range(exporters)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise ExportFailed(errors[0])
    return time.perf_counter() - began, sum(retries), [x for lane in latencies for x in lane]


def count_rows(database_url: str, table: str) -> int:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def wait_saved(
    database_url: str, table: str, expected: int, began: float, *, stall: float = 60
) -> float:
    """Poll until ``table`` holds ``expected`` rows; the seconds since ``began``."""
    import psycopg

    last, last_change = -1, time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            if count >= expected:
                return time.perf_counter() - began
            if count != last:
                last, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > stall:
                raise ExportFailed(f"{table}: {count} of {expected} rows after {stall:.0f} s idle")
            time.sleep(0.05)


def backends(database: str) -> set[int]:
    """The processes that serve a server under test: its database's backends, PostgreSQL's own
    background processes (WAL writer, checkpointer, autovacuum: they work for our writes), and
    Redis."""
    import psycopg

    with psycopg.connect(POSTGRES + "/postgres", autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s"
            " OR (datname IS NULL AND backend_type <> 'client backend')",
            [database],
        ).fetchall()
    return {pid for (pid,) in rows} | _cpu.by_name("redis-server")


def cpu_seconds(before: _cpu.Snapshot, after: _cpu.Snapshot) -> float:
    """CPU time our processes (as the snapshots count them) used between two snapshots."""
    ticks = sum(max(0, t - before[2].get(pid, 0)) for pid, t in after[2].items())
    return ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def tether_server(workers: int) -> Iterator[subprocess.Popen]:
    server = subprocess.Popen(
        [sys.executable, "-m", "controlplane.serve", "--host", "127.0.0.1", "--port", str(PORT),
         "--workers", str(workers)],
        cwd=ROOT,
        env={**os.environ, **ENV, "DB_POOL": "true",
             "PYTHONWARNINGS": "ignore:No directory at:UserWarning"},
    )  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{PORT}/healthz", server)
        yield server
    finally:
        server.terminate()
        server.wait(20)


def measure_tether(
    server: subprocess.Popen, key: str, bodies: list[bytes], args: argparse.Namespace
) -> Load:
    """One round: every body posted by the exporters, timed until all its spans are saved."""
    headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {key}"}
    stored_before = count_rows(ENV["DATABASE_URL"], "traces_span")
    busy = _cpu.settle(server.pid)
    serving = backends(DATABASE)
    before = _cpu.snapshot(server.pid, serving)
    began = time.perf_counter()
    accepted, retries, latencies = post_all(
        "127.0.0.1", PORT, "/v1/traces", bodies, exporters=args.exporters, headers=headers
    )
    expected = stored_before + len(bodies) * BATCH
    saved = wait_saved(ENV["DATABASE_URL"], "traces_span", expected, began)
    after = _cpu.snapshot(server.pid, serving | backends(DATABASE))
    during, _ = _cpu.others_between(before, after)
    return Load(
        spans=len(bodies) * BATCH,
        seconds=saved,
        accepted_seconds=accepted,
        retries=retries,
        busy=(busy, during),
        latencies=latencies,
        cpu=cpu_seconds(before, after),
    )


def checkpoint() -> None:
    """A checkpoint now, so that no window pays for the previous one's full-page writes."""
    import psycopg

    with psycopg.connect(ENV["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def median_load(loads: list[Load]) -> Load:
    """The round with the median rate (an odd number of rounds: the middle one)."""
    return sorted(loads, key=lambda load: load.rate)[len(loads) // 2]


def check_stored_once(expected: int) -> None:
    import psycopg

    with psycopg.connect(ENV["DATABASE_URL"], autocommit=True) as conn:
        total, unique = conn.execute(
            "SELECT count(*), count(DISTINCT (trace_id, span_id)) FROM traces_span"
        ).fetchone()
        traced = conn.execute("SELECT sum(span_count) FROM traces_trace").fetchone()[0]
    if not (total == unique == expected == traced):
        raise SystemExit(
            f"stored {total} spans ({unique} distinct, {traced} in rollups), expected {expected}"
        )


# --- the physical floor ------------------------------------------------------------------------


def floor_payloads(bodies: list[bytes]) -> tuple[list[str], list[bytes]]:
    """The rows Tether stored for each body, as binary COPY payloads (and the column list)."""
    import psycopg
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from apps.traces.storage import COLUMNS

    columns = ", ".join(COLUMNS)
    payloads = []
    with psycopg.connect(ENV["DATABASE_URL"], autocommit=True) as conn, conn.cursor() as cur:
        for body in bodies:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            trace_ids = sorted(
                {
                    span.trace_id.hex()
                    for rs in request.resource_spans
                    for ss in rs.scope_spans
                    for span in ss.spans
                }
            )
            data = bytearray()
            query = (
                f"COPY (SELECT {columns} FROM traces_span WHERE trace_id = ANY(%s)"
                " ORDER BY trace_id, span_id) TO STDOUT (FORMAT BINARY)"
            )
            with cur.copy(query, [trace_ids]) as copy:
                for chunk in copy:
                    data += chunk
            payloads.append(bytes(data))
    return list(COLUMNS), payloads


def measure_floor(columns: list[str], payloads: list[bytes], *, table: str, indexed: bool,
                  exporters: int) -> Load:  # fmt: skip
    import psycopg

    including = "INCLUDING ALL" if indexed else "INCLUDING DEFAULTS INCLUDING COMPRESSION"
    with psycopg.connect(ENV["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (LIKE traces_span {including})")
    checkpoint()
    shares = [payloads[i::exporters] for i in range(exporters)]
    connections = [psycopg.connect(ENV["DATABASE_URL"]) for _ in range(exporters)]
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"

    def writer(n: int) -> None:
        conn = connections[n]
        for payload in shares[n]:
            with conn.cursor() as cur, cur.copy(sql) as copy:
                copy.write(payload)
            conn.commit()

    serving = backends(DATABASE)
    busy = _cpu.settle(os.getpid())
    before = _cpu.snapshot(os.getpid(), serving)
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(exporters)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    after = _cpu.snapshot(os.getpid(), serving | backends(DATABASE))
    during, _ = _cpu.others_between(before, after)
    for conn in connections:
        conn.close()
    spans = count_rows(ENV["DATABASE_URL"], table)
    with psycopg.connect(ENV["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(f"DROP TABLE {table}")
    return Load(
        spans=spans,
        seconds=seconds,
        accepted_seconds=seconds,
        busy=(busy, during),
        cpu=cpu_seconds(before, after),
    )


# --- Phoenix -------------------------------------------------------------------------------------


def measure_phoenix(bodies: list[bytes], warm: list[bytes], exporters: int) -> tuple[Load | None, str]:  # fmt: skip
    from bench import _phoenix

    try:
        _phoenix.ensure_installed()
        with _phoenix.server(PHOENIX_PORT, postgres=POSTGRES, database=PHOENIX_DATABASE) as target:
            headers = {"Content-Type": "application/x-protobuf"}
            post_all("127.0.0.1", PHOENIX_PORT, "/v1/traces", warm[:1], exporters=1,
                     headers=headers)  # fmt: skip
            wait_saved(target.database_url, "spans", BATCH, time.perf_counter())
            busy = _cpu.settle(target.pid)
            serving = backends(PHOENIX_DATABASE)
            before = _cpu.snapshot(target.pid, serving)
            began = time.perf_counter()
            accepted, retries, latencies = post_all(
                "127.0.0.1", PHOENIX_PORT, "/v1/traces", bodies, exporters=exporters,
                headers=headers,
            )  # fmt: skip
            saved = wait_saved(
                target.database_url, "spans", BATCH + len(bodies) * BATCH, began, stall=120
            )
            after = _cpu.snapshot(target.pid, serving | backends(PHOENIX_DATABASE))
            during, _ = _cpu.others_between(before, after)
    except (_phoenix.Unavailable, ExportFailed) as exc:
        return None, f"Phoenix unavailable: {exc}"
    return Load(
        spans=len(bodies) * BATCH,
        seconds=saved,
        accepted_seconds=accepted,
        retries=retries,
        busy=(busy, during),
        latencies=latencies,
        cpu=cpu_seconds(before, after),
    ), ""


# --- filling a database for the runs list ------------------------------------------------------


def fill(spans: int, *, days: int = 7, traces_per_run: int = 2, seed: int = 11) -> int:
    """Load about ``spans`` realistic spans (whole traces of 16), their trace rollups and runs
    (``traces_per_run`` traces each, finished), spread over the last ``days`` days, through the
    ingest's own COPY path. Django must be set up on the target database (``django_setup``)
    with the registry made (``setup_registry``). Returns the spans stored."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from django.db import transaction
    from django.utils import timezone

    from apps.common.tokens import issue_token
    from apps.registry.models import Agent, AgentVersion
    from apps.runtime.constants import RunState
    from apps.runtime.models import Run
    from apps.traces import partitions
    from apps.traces.models import IngestKey
    from apps.traces.otlp import decode_request
    from apps.traces.rollups import traces_merge
    from apps.traces.services import _rows, map_span
    from apps.traces.storage import spans_insert
    from bench._genai import export_bodies

    key = IngestKey.objects.first()
    # Templates: a few exports' worth of mapped spans, cloned with fresh ids and times.
    template: list[Any] = []
    for body in export_bodies(count=4, agents=AGENTS, start_ns=time.time_ns(), seed=seed):
        request = decode_request(body, "application/x-protobuf")
        from apps.traces.otlp import attributes_dict, resource_facts

        for rs in request.resource_spans:
            facts = resource_facts(attributes_dict(rs.resource.attributes))
            for ss in rs.scope_spans:
                records = [map_span(span, facts, ss.scope.name) for span in ss.spans]
                rows, _ = _rows(records, credential=None, ingest_key=key, default_environment="")
                template += rows
    per_trace = 16
    traces = max(1, spans // per_trace)
    agents = {a.slug: a for a in Agent.objects.filter(slug__in=AGENTS)}
    versions = {v.agent_id: v for v in AgentVersion.objects.filter(agent__in=agents.values())}
    now = datetime.now(UTC)
    first = now - timedelta(days=days)
    step = (now - first) / traces
    partitions.partitions_ensure(
        {(first + timedelta(days=d)).date() for d in range(days + 2)}, today=now.date()
    )
    token = issue_token("run")
    received_at = timezone.now()
    stored = 0
    chunk_traces = 2048
    for start in range(0, traces, chunk_traces):
        count = min(chunk_traces, traces - start)
        runs = []
        for n in range(0, count, traces_per_run):
            slug = AGENTS[(start + n) % len(AGENTS)]
            agent = agents[slug]
            began = first + step * (start + n)
            runs.append(
                Run(
                    id=uuid.uuid4(),
                    agent=agent,
                    version=versions[agent.pk],
                    environment="prod",
                    task=f"claim {start + n}",
                    state=RunState.FINISHED,
                    token_lookup=uuid.uuid4().hex[:16],
                    token_digest=token.digest,
                    token_expires_at=began + timedelta(hours=1),
                    ended_at=began + timedelta(seconds=30),
                )
            )
        rows = []
        for n in range(count):
            run = runs[n // traces_per_run]
            trace_id = uuid.uuid4().hex
            base = template[((start + n) * per_trace) % len(template)].start_time
            shift = first + step * (start + n) - base
            root = uuid.uuid4().hex[:16]
            for i in range(per_trace):
                row = template[((start + n) * per_trace + i) % len(template)]
                rows.append(
                    row._replace(
                        trace_id=trace_id,
                        span_id=root if i == 0 else uuid.uuid4().hex[:16],
                        parent_span_id="" if i == 0 else root,
                        start_time=row.start_time + shift,
                        end_time=row.end_time + shift,
                        agent_id=run.agent_id,
                        agent_name=run.agent.slug,
                        run_id=run.id,
                        run_ref=str(run.id),
                        received_at=received_at,
                    )
                )
        with transaction.atomic():
            Run.objects.bulk_create(runs)
            Run.objects.filter(pk__in=[r.pk for r in runs]).update(started_at=first)
            inserted = spans_insert(rows)
            traces_merge(inserted)
        stored += len(inserted)
        print(f"  filled {stored} spans", end="\r", flush=True)
    print()
    return stored


# --- the report --------------------------------------------------------------------------------


def mark(ok: bool | None) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "FAIL")


def row(name: str, load: Load | None, why: str = "") -> None:
    if load is None:
        print(f"{name:44} {'-':>10} {'-':>9}   ({why})")
        return
    flag = "  *" if max(load.busy) > BUSY else ""
    p50 = f"{statistics.median(load.latencies) * 1000:7.0f}" if load.latencies else "      -"
    print(
        f"{name:44} {load.rate:10,.0f} {load.seconds:8.2f}s {load.spans:9,} {p50}"
        f" {load.retries:7} {load.cpu_us:8.0f}{flag}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=32, help="batches per exporter")
    parser.add_argument("--exporters", type=int, default=4)
    parser.add_argument("--workers", type=int, default=3, help="web processes")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (the median)")
    parser.add_argument("--phoenix-batches", type=int, default=16, help="batches sent to Phoenix")
    parser.add_argument("--skip-phoenix", action="store_true")
    parser.add_argument("--fill", type=int, default=0, help="only load N spans, then exit")
    parser.add_argument("--fill-days", type=int, default=7)
    parser.add_argument("--database", default=DATABASE, help="with --fill: the database to fill")
    args = parser.parse_args()
    began = time.monotonic()
    os.environ.update(ENV)

    if args.fill:
        create_database(args.database)
        django_setup(args.database)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        setup_registry()
        stored = fill(args.fill, days=args.fill_days)
        print(f"{stored:,} spans in {args.database} ({time.monotonic() - began:.0f} s)")
        return

    phoenix_why = "skipped (--skip-phoenix)"
    if not args.skip_phoenix:
        from bench import _phoenix

        try:
            _phoenix.ensure_installed()  # before any timing: the first run installs it
            phoenix_why = ""
        except _phoenix.Unavailable as exc:
            phoenix_why = f"Phoenix unavailable: {exc}"
            args.skip_phoenix = True

    create_database(DATABASE)
    django_setup()
    import redis
    from django.core.management import call_command

    redis.Redis.from_url(ENV["REDIS_URL"]).flushdb()
    call_command("migrate", verbosity=0)
    key, runs = setup_registry()
    from django.db import connections

    connections.close_all()

    total = args.batches * args.exporters
    print(f"building {args.rounds} x {total} + 8 batches of {BATCH} spans ...", flush=True)
    warm = make_bodies(8, runs, seed=1)
    rounds = [make_bodies(total, runs, seed=2 + n) for n in range(args.rounds)]
    size = sum(map(len, rounds[0])) / total
    print(f"  {size / 1024:.0f} KiB a batch, {size / BATCH / 1024:.2f} KiB a span (protobuf)")

    print(
        f"{args.rounds} rounds, each: Tether ({args.exporters} exporters, {args.batches}"
        f" batches each, {args.workers} workers), then the raw COPY floor on the same rows",
        flush=True,
    )
    tethers, floors, bares = [], [], []
    headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {key}"}
    with tether_server(args.workers) as server:
        # Warm every worker (imports, connection pools, prepared plans).
        post_all("127.0.0.1", PORT, "/v1/traces", warm, exporters=args.exporters, headers=headers)
        for n, bodies in enumerate(rounds, 1):
            tethers.append(measure_tether(server, key, bodies, args))
            columns, payloads = floor_payloads(bodies)
            floors.append(
                measure_floor(
                    columns, payloads, table="bench_floor", indexed=True, exporters=args.exporters
                )
            )
            bares.append(
                measure_floor(
                    columns, payloads, table="bench_bare", indexed=False, exporters=args.exporters
                )
            )
            print(
                f"  round {n}: Tether {tethers[-1].rate:,.0f} saved spans/s; raw COPY"
                f" {floors[-1].rate:,.0f} rows/s (equivalent table), {bares[-1].rate:,.0f}"
                " (bare)",
                flush=True,
            )
    check_stored_once((len(warm) + total * args.rounds) * BATCH)
    tether, floor, bare = median_load(tethers), median_load(floors), median_load(bares)
    bodies = rounds[0]

    phoenix = None
    if not args.skip_phoenix:
        print(f"Phoenix: {args.phoenix_batches} batches ...", flush=True)
        phoenix, phoenix_why = measure_phoenix(bodies[: args.phoenix_batches], warm, args.exporters)
        if phoenix:
            print(f"  {phoenix.rate:,.0f} saved spans/s", flush=True)

    print()
    print(
        f"{'':44} {'spans/s':>10} {'time':>9} {'spans':>9} {'p50 ms':>7} {'retries':>7}"
        f" {'CPU us/span':>8}"
    )
    print(f"(the median of {args.rounds} rounds; all rounds above)")
    row(f"Tether POST /v1/traces, saved ({args.workers} workers)", tether)
    row("raw COPY, equivalent table (the floor)", floor)
    row("raw COPY, bare table (no indexes)", bare)
    row("Arize Phoenix /v1/traces, saved", phoenix, phoenix_why)
    busy = [
        (name, load.busy)
        for name, load in (
            ("Tether", tether),
            ("floor", floor),
            ("bare", bare),
            ("Phoenix", phoenix),
        )
        if load and max(load.busy) > BUSY
    ]
    if busy:
        print(
            f"* other work on the machine took over {BUSY:.0%} of the CPU (before/during): "
            + ", ".join(f"{name} {b:.0%}/{d:.0%}" for name, (b, d) in busy)
            + "; such figures are provisional (lower than on an idle machine)"
        )
    print(
        f"Tether accepted every export in {tether.accepted_seconds:.2f} s; all saved at "
        f"{tether.seconds:.2f} s (the receiver answers after the commit)."
    )
    print(
        "CPU us/span: CPU time of the server, its database processes, Redis and the clients"
        f" per span; {os.cpu_count()} cores bound the rate at cores / that."
    )
    print()
    share = tether.rate / floor.rate
    versus = tether.rate / phoenix.rate if phoenix else None
    checks = [
        (f"saved spans/s >= {TARGET_RATE:,}: {tether.rate:,.0f}", tether.rate >= TARGET_RATE),
        (
            f"Tether >= {TARGET_FLOOR_SHARE:.0%} of raw COPY (equivalent table): {share:.0%}",
            share >= TARGET_FLOOR_SHARE,
        ),
        (
            f"Tether >= {TARGET_PHOENIX}x Phoenix: {versus:.0f}x"
            if versus
            else f"Tether >= {TARGET_PHOENIX}x Phoenix",
            None if versus is None else versus >= TARGET_PHOENIX,
        ),
    ]
    for text, ok in checks:
        print(f"[{mark(ok)}] {text}")
    print(f"\n(bench took {time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
