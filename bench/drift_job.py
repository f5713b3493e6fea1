"""The drift job at volume: 1,000 agents and 30 days of ended runs, timed (issue 8 §7).

Builds, in its own PostgreSQL database (``tether_drift_bench``), an organisation whose agents
all run in prod:

- 8 departments, 6 owners, 6 tools; ``--agents`` agents (1,000), each with 1-3 tool grants,
  its first AgentVersion (the registry's own snapshot) and a prod credential;
- ``--days`` days (30) of ended runs, ``--runs-per-day`` (25) an agent on average (each agent
  busier or quieter than that: a lognormal spread), written with binary ``COPY`` one day a
  transaction: per run an outcome (approved / rejected / escalated at the agent's own rates,
  some failed), 2-4 governed tool calls (Decision rows: mostly allow, some deny and ask), one
  Trace with its tokens and cost, a decided ApprovalRequest for each ask, and for a tenth of
  the agents a custom metric (RunMetric ``claim_amount``);
- the drift the job must find: ``--drifting`` agents (20) got a second AgentVersion
  ``--drift-hours`` (6) ago whose runs approve 15 points more (taken from rejected); everyone
  else behaves as before;
- five more minutes of runs after the last cycle's moment (~90), for the steady cycle.

The drifting agents are busier than the average one, because the job could not see their
drift otherwise: a stream is compared only with DRIFT_MIN_CURRENT_SAMPLES (50) runs in its
last day, and a 15-point shift of the outcome mix against a baseline of DRIFT_BASELINE_RUNS
(500) runs reaches p < 0.001 every time only with ~500 or more current runs (against a
175-run baseline, never reliably). So they run ``--drift-base-per-day`` (100) a day before the
change (their baselines are 500 runs) and the new version works off a backlog of
``--drift-per-hour`` (150) runs an hour; in the steady minutes they are back to 100 a day.

Then, with the settings' defaults (DRIFT_BASELINE_RUNS 500, DRIFT_BASELINE_DAYS 7,
DRIFT_COLLECT_BATCH 500,000, ...; like any setting, each can be given in the environment, e.g.
DRIFT_COLLECT_BATCH=1000000 to sample the whole backlog in one cycle), in this process, each
timed with ``time.perf_counter``:

1. the cold job: ``drift_cycle(now=...)`` run until a cycle samples nothing new (the backlog
   takes more than one cycle when it exceeds DRIFT_COLLECT_BATCH): the first job over 30 days
   of recorded runs, sampling every run, setting every baseline, detecting;
2. the same job again from nothing (the drift tables emptied), its three steps called apart
   in drift_cycle's order (``samples_collect``, ``drift_detect``, ``baselines_advance``), so
   the time of each shows; its alerts must be the first pass's;
3. correctness: the live alerts must name each drifting agent's new version's outcome
   metric; misses and false alerts are counted and printed (FAIL if any miss, or false alerts
   on more than 2% of the agents), and how far each alert's onset lies from the change;
4. the steady cycle: the next five minutes' runs sampled, one ``drift_cycle``;
5. the references, measured in the same run: one SELECT over the 30 days of samples
   (``count(*), avg(latency_ms)``) and the runs' rows read once into Python (the columns the
   job reads, ended in the 30 days).

Prints each cycle and phase, a summary with the references beside the job's figures, PASS /
FAIL for the issue's target (the cold job, and the steady cycle, each at most 60 s on this
machine) and for correctness, and the row counts and sizes of the tables. Exits 1 on a FAIL.

The database is built once: a marker table (``bench_drift_seed``) records a finished seed, and
a later run with the same size and seed reuses it (its drift tables are emptied before the
job runs; the runs are the seed's, at the moment it was built). ``--fresh`` rebuilds it.

    .venv/bin/python bench/drift_job.py [--agents 1000] [--days 30] [--runs-per-day 25]
                                        [--drifting 20] [--drift-hours 6] [--drift-per-hour 150]
                                        [--drift-base-per-day 100] [--seed 7]
                                        [--database tether_drift_bench] [--fresh]

Deterministic for a seed (times are relative to the moment it seeds). Needs PostgreSQL on
127.0.0.1:5432 (user postgres, trust auth) and Redis on 127.0.0.1:6379 (db 13, flushed). On
this 2-core machine the seed takes about 3 minutes and 2.5 GB of disk, the measures 2 minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import statistics
import sys
import time
import uuid
from bisect import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._volume import ENV as VOLUME_ENV  # noqa: E402
from bench._volume import database_exists, database_url  # noqa: E402
from bench.seed_volume import copy_rows, recreate_database  # noqa: E402

DATABASE = "tether_drift_bench"
MARKER_TABLE = "bench_drift_seed"
ENV = {
    **VOLUME_ENV,
    "REDIS_URL": "redis://127.0.0.1:6379/13",
    "TETHER_VAR_DIR": "/tmp/var_drift_bench",
    # Production runs the job without DEBUG (which would keep every SQL statement in memory).
    "DEBUG": "false",
}
TARGET_SECONDS = 60.0
FALSE_ALERT_SHARE = 0.02  # of the agents, at most
MAX_CYCLES = 10
DAY = timedelta(days=1)
STEADY = timedelta(minutes=5)
START_MARGIN = timedelta(minutes=10)  # the oldest runs, inside the job's 30-day lookback
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEPARTMENTS = (
    "Claims", "Underwriting", "Customer Service", "Finance", "Legal", "Operations",
    "Sales", "Human Resources",
)  # fmt: skip
OWNERS = ("ana.smith", "ben.garcia", "chloe.novak", "dev.okafor", "emma.tanaka", "farid.smith")
# (slug, name, risk class, the action agents call)
TOOLS = (
    ("crm-lookup", "CRM lookup", "low", "read"),
    ("policy-search", "Policy search", "low", "search"),
    ("document-store", "Document store", "medium", "read"),
    ("email-send", "E-mail", "medium", "send"),
    ("payments", "Payments", "high", "refund"),
    ("ledger", "General ledger", "high", "post"),
)
# (model, USD per input token, per output token)
MODELS = (
    ("gpt-4o", 2.5e-6, 10e-6),
    ("gpt-4o-mini", 0.15e-6, 0.6e-6),
    ("claude-sonnet-4-5", 3e-6, 15e-6),
)
RATE_SPREAD = 0.7  # sigma of the lognormal spread of agents' runs a day
CUSTOM_SHARE = 0.1  # agents reporting a custom metric
CUSTOM_METRIC = "claim_amount"
SHIFT = 0.15  # the drift: approved share up, rejected share down, by this much
RUN_COLUMNS = (
    "id", "agent_id", "version_id", "credential_id", "environment", "task", "intent", "state",
    "outcome", "envelope", "token_lookup", "token_digest", "token_expires_at", "started_at",
    "last_heartbeat_at", "ended_at",
)  # fmt: skip
DECISION_COLUMNS = (
    "created_at", "run_id", "agent_id", "environment", "action", "target", "tool_action",
    "disposition", "reasons", "reasoning", "policies", "budgets", "arguments_sha256",
    "on_behalf_of_name", "request_id", "idempotency_key", "duration_us",
)  # fmt: skip
TRACE_COLUMNS = (
    "trace_id", "run_id", "agent_id", "agent_name", "environment", "name", "has_root",
    "started_at", "ended_at", "span_count", "error_count", "input_tokens", "output_tokens",
    "cost_usd", "updated_at",
)  # fmt: skip
APPROVAL_COLUMNS = (
    "id", "run_id", "agent_id", "agent_version", "department_id", "owner_id", "environment",
    "tool_id", "tool_action", "arguments", "arguments_sha256", "reason", "gate_reasoning",
    "risk_class", "policies", "blast_radius", "rollback", "status", "approvals_required", "tier",
    "expires_at", "on_expiry", "feedback", "created_at", "decided_at", "used_at",
)  # fmt: skip
METRIC_COLUMNS = ("run_id", "name", "value", "recorded_at")
TABLES = {
    "runtime_run": RUN_COLUMNS,
    "runtime_decision": DECISION_COLUMNS,
    "traces_trace": TRACE_COLUMNS,
    "approvals_approvalrequest": APPROVAL_COLUMNS,
    "drift_runmetric": METRIC_COLUMNS,
}
COUNTED = (
    "runtime_run", "runtime_decision", "traces_trace", "approvals_approvalrequest",
    "drift_runmetric", "drift_runsample", "drift_baseline", "drift_driftalert",
    "drift_driftalertnotice",
)  # fmt: skip
DRIFT_TABLES = ("drift_runsample", "drift_baseline", "drift_driftalert", "drift_driftalertnotice")
REASONS = {"allow": ["allowed"], "deny": ["policy_denied"], "ask": ["approval_required"]}
REASONING = {
    "allow": "Granted in prod; no policy objects.",
    "deny": "Denied by policy: outside the agent's limits.",
    "ask": "High-risk step: a person approves it first.",
}


def configure(database: str) -> None:
    os.environ.update({**ENV, "DATABASE_URL": database_url(database)})
    os.makedirs(ENV["TETHER_VAR_DIR"], exist_ok=True)
    import django

    django.setup()


def us(moment: datetime) -> int:
    return int((moment - EPOCH).total_seconds() * 1e6)


def at(microseconds: float) -> datetime:
    return EPOCH + timedelta(microseconds=int(microseconds))


# --- the marker ----------------------------------------------------------------------------------


def size_of(args: argparse.Namespace) -> dict[str, int]:
    """What makes one seed another: its size, its drift and its random seed."""
    return {
        "agents": args.agents,
        "days": args.days,
        "runs_per_day": args.runs_per_day,
        "drifting": args.drifting,
        "drift_hours": args.drift_hours,
        "drift_per_hour": args.drift_per_hour,
        "drift_base_per_day": args.drift_base_per_day,
        "seed": args.seed,
    }


def seed_marker(name: str) -> dict[str, Any] | None:
    """The finished seed in database ``name`` (its size, the moment its runs lead up to, its
    figures), or None."""
    import psycopg

    if not database_exists(name):
        return None
    with psycopg.connect(database_url(name), autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", [MARKER_TABLE]).fetchone()[0] is None:
            return None
        row = conn.execute(
            f"SELECT size, seeded_for, finished_at, figures FROM {MARKER_TABLE}"
            " WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
    if row is None:
        return None
    return {"size": row[0], "now": row[1], "finished_at": row[2], "figures": row[3]}


def marker_start(cursor: Any, size: dict[str, int], now: datetime) -> None:
    from psycopg.types.json import Jsonb

    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (id serial PRIMARY KEY, size jsonb NOT NULL,"
        " seeded_for timestamptz NOT NULL, started_at timestamptz NOT NULL DEFAULT now(),"
        " finished_at timestamptz, figures jsonb)"
    )
    cursor.execute(
        f"INSERT INTO {MARKER_TABLE} (size, seeded_for) VALUES (%s, %s)", [Jsonb(size), now]
    )


def marker_finish(cursor: Any, figures: dict[str, Any]) -> None:
    from psycopg.types.json import Jsonb

    cursor.execute(
        f"UPDATE {MARKER_TABLE} SET finished_at = now(), figures = %s"
        f" WHERE id = (SELECT max(id) FROM {MARKER_TABLE})",
        [Jsonb(figures)],
    )


def column_types(cursor: Any, table: str, wanted: tuple[str, ...]) -> list[str]:
    """The PostgreSQL types of ``wanted`` columns of ``table``, for binary COPY; exits if the
    table has a NOT NULL column without a default that the seed does not fill."""
    cursor.execute(
        "SELECT column_name, udt_name, is_nullable = 'NO' AND column_default IS NULL"
        " AND is_identity = 'NO' FROM information_schema.columns WHERE table_name = %s",
        [table],
    )
    found = {name: (udt, required) for name, udt, required in cursor.fetchall()}
    unknown = [name for name in wanted if name not in found]
    unfilled = [name for name, (_, required) in found.items() if required and name not in wanted]
    if unknown or unfilled:
        raise SystemExit(
            f"{table} changed: the seed writes no column {unfilled} and the table has no"
            f" column {unknown}; update bench/drift_job.py"
        )
    return [found[name][0] for name in wanted]


# --- the organisation ----------------------------------------------------------------------------


@dataclass
class Profile:
    """One agent as the generator sees it: its ids and how its runs behave."""

    pk: int
    slug: str
    department_id: int
    owner_id: int
    credential_id: int
    version: tuple[int, int]  # (id, number) of its first version
    envelope: dict[str, Any]
    tools: list[tuple[int, str, str, str]]  # (id, slug, action, risk class)
    tool_weights: list[float]  # cumulative
    per_day: float
    failed: float
    approved: float
    rejected: float  # escalated: the rest
    deny: float
    ask: float
    rejects_approvals: float
    latency_s: float
    tokens: float
    prices: tuple[float, float]
    custom: float | None  # the custom metric's median, for those that report one
    drift: tuple[int, int] | None = None  # (id, number) of the new version
    task: str = ""
    digest: dict[str, str] = field(default_factory=dict)


def build_organisation(
    rng: random.Random, args: argparse.Namespace, now: datetime
) -> list[Profile]:
    """Departments, owners, tools, agents with their grants, credentials and first version in
    bulk (a bench seeder: the services would write an audit event per row); then the new
    version of the drifting agents, made the same way after their knowledge base changed."""
    from django.db import transaction

    from apps.accounts.models import Department, User
    from apps.registry.models import Agent, AgentVersion, Tool, ToolGrant
    from apps.registry.snapshots import behaviour_snapshot, canonical_json, sha256_text
    from apps.runtime.models import AgentCredential
    from apps.runtime.services import envelope_of

    def version_of(agent: Any, number: int, summary: str) -> Any:
        snapshot = behaviour_snapshot(agent)
        return AgentVersion(
            agent=agent,
            number=number,
            snapshot=snapshot,
            snapshot_hash=sha256_text(canonical_json(snapshot)),
            instructions_hash=snapshot["instructions_sha256"],
            change_summary=summary,
            created_by_name="bench",
        )

    with transaction.atomic():
        departments = Department.objects.bulk_create(
            Department(name=name, slug=name.lower().replace(" ", "-")) for name in DEPARTMENTS
        )
        owners = User.objects.bulk_create(
            User(
                username=name,
                first_name=name.split(".")[0].title(),
                last_name=name.split(".")[1].title(),
                email=f"{name}@example.com",
                password="!",  # unusable: nobody logs in as them
            )
            for name in OWNERS
        )
        tools = Tool.objects.bulk_create(
            Tool(
                name=name,
                slug=slug,
                description=f"{name} for agents.",
                owner=owners[0],
                risk_class=risk,
                actions=[action],
                input_schema={"type": "object"},
            )
            for slug, name, risk, action in TOOLS
        )
        agents, granted = [], []
        for n in range(args.agents):
            department = departments[n % len(departments)]
            model = MODELS[n % len(MODELS)][0]
            slug = f"{department.slug}-agent-{n:04d}"
            agents.append(
                Agent(
                    name=f"{department.name} agent {n:04d}",
                    slug=slug,
                    mission=f"Handles {department.name.lower()} cases.",
                    owner=rng.choice(owners),
                    department=department,
                    business_process=f"{department.slug}-cases",
                    model_family=model.split("-")[0],
                    default_model=model,
                    providers=["openai" if model.startswith("gpt") else "anthropic"],
                    environments=["prod"],
                    status="active",
                    instructions=f"You handle {department.name.lower()} cases.",
                    knowledge_base_version="kb-2026-01",
                )
            )
            granted.append(rng.sample(tools, rng.randint(1, 3)))
        agents = Agent.objects.bulk_create(agents)
        ToolGrant.objects.bulk_create(
            ToolGrant(agent=agent, tool=tool, actions=tool.actions, environments=["prod"])
            for agent, tools_of in zip(agents, granted, strict=True)
            for tool in tools_of
        )
        versions = AgentVersion.objects.bulk_create(
            version_of(agent, 1, "Registered") for agent in agents
        )
        AgentVersion.objects.filter(pk__in=[v.pk for v in versions]).update(
            created_at=now - timedelta(days=args.days + 1)
        )
        digest = hashlib.sha256(b"bench credential").hexdigest()
        credentials = AgentCredential.objects.bulk_create(
            AgentCredential(
                agent=agent,
                environment="prod",
                name="prod worker",
                lookup=f"c{n:015x}",
                digest=digest,
                created_by_name="bench",
            )
            for n, agent in enumerate(agents)
        )
        drifting = set(rng.sample(range(args.agents), min(args.drifting, args.agents)))
        weights = [rng.lognormvariate(-(RATE_SPREAD**2) / 2, RATE_SPREAD) for _ in agents]
        steady = [w for n, w in enumerate(weights) if n not in drifting] or [1.0]
        mean_weight = sum(steady) / len(steady)
        profiles = []
        for n, (agent, version, credential, tools_of) in enumerate(
            zip(agents, versions, credentials, granted, strict=True)
        ):
            weights_of = [rng.uniform(1, 4) for _ in tools_of]
            failed = rng.uniform(0.02, 0.06)
            approved = rng.uniform(0.45, 0.60)
            escalated = rng.uniform(0.05, 0.15)
            model = MODELS[n % len(MODELS)]
            profiles.append(
                Profile(
                    pk=agent.pk,
                    slug=agent.slug,
                    department_id=agent.department_id,
                    owner_id=agent.owner_id,
                    credential_id=credential.pk,
                    version=(version.pk, 1),
                    envelope=envelope_of(agent, "prod"),
                    tools=[(t.pk, t.slug, t.actions[0], t.risk_class) for t in tools_of],
                    tool_weights=[sum(weights_of[: i + 1]) for i in range(len(weights_of))],
                    per_day=(
                        args.drift_base_per_day
                        if n in drifting
                        else args.runs_per_day * weights[n] / mean_weight
                    ),
                    failed=failed,
                    approved=approved,
                    rejected=1 - failed - approved - escalated,
                    deny=rng.uniform(0.01, 0.06),
                    ask=rng.uniform(0.02, 0.08),
                    rejects_approvals=rng.uniform(0.1, 0.3),
                    latency_s=rng.uniform(15, 90),
                    tokens=rng.uniform(800, 6000),
                    prices=(model[1], model[2]),
                    custom=rng.uniform(500, 5000) if rng.random() < CUSTOM_SHARE else None,
                    task=f"{agent.business_process.replace('-', ' ')} case",
                    digest={t.slug: hashlib.sha256(t.slug.encode()).hexdigest() for t in tools_of},
                )
            )
        changed = [agents[n] for n in sorted(drifting)]
        Agent.objects.filter(pk__in=[a.pk for a in changed]).update(
            knowledge_base_version="kb-2026-02"
        )
        fresh = Agent.objects.in_bulk([a.pk for a in changed])
        news = AgentVersion.objects.bulk_create(
            version_of(fresh[a.pk], 2, "Knowledge base refresh") for a in changed
        )
        AgentVersion.objects.filter(pk__in=[v.pk for v in news]).update(
            created_at=now - timedelta(hours=args.drift_hours)
        )
        for n, new in zip(sorted(drifting), news, strict=True):
            profiles[n].drift = (new.pk, 2)
    return profiles


# --- runs and what they leave --------------------------------------------------------------------


@dataclass
class Chunk:
    """The rows of one transaction, by table."""

    rows: dict[str, list[tuple[Any, ...]]] = field(
        default_factory=lambda: {table: [] for table in TABLES}
    )


class Generator:
    """The runs of each agent over a span of time, and their decisions, trace, approvals and
    metric, deterministic for a seed."""

    def __init__(self, seed: int, args: argparse.Namespace, now: datetime) -> None:
        self.rng = random.Random(seed)
        self.args = args
        self.now = now
        self.change = now - timedelta(hours=args.drift_hours)
        self.counter = 0
        self.token_digest = hashlib.sha256(b"bench run token").hexdigest()

    def moments(self, begin: datetime, end: datetime, per_day: float) -> list[int]:
        """When the runs ended in ``[begin, end)`` (microseconds), at ``per_day`` on average."""
        expected = per_day * (end - begin) / DAY
        count = int(expected) + (self.rng.random() < expected - int(expected))
        low, high = us(begin), us(end)
        return [self.rng.randrange(low, high) for _ in range(count)]

    def plan(self, profiles: list[Profile], begin: datetime, end: datetime) -> list[tuple]:
        """(ended, agent, version, drifted) of every run that ended in ``[begin, end)``, oldest
        first; after the change a drifting agent runs its new version (working off a backlog
        until ``now``, at its ordinary rate after)."""
        planned = []
        for profile in profiles:
            segments = [(begin, end, profile.version, False, profile.per_day)]
            if profile.drift is not None:
                backlog = self.args.drift_per_hour * 24
                segments = [
                    (begin, min(end, self.change), profile.version, False, profile.per_day),
                    (max(begin, self.change), min(end, self.now), profile.drift, True, backlog),
                    (max(begin, self.now), end, profile.drift, True, profile.per_day),
                ]
            for low, high, version, drifted, per_day in segments:
                if high > low:
                    for moment in self.moments(low, high, per_day):
                        planned.append((moment, profile, version, drifted))
        planned.sort(key=lambda p: p[0])
        return planned

    def fill(self, planned: list[tuple], chunk: Chunk) -> None:
        rng = self.rng
        runs, decisions = chunk.rows["runtime_run"], chunk.rows["runtime_decision"]
        traces, approvals = chunk.rows["traces_trace"], chunk.rows["approvals_approvalrequest"]
        metrics = chunk.rows["drift_runmetric"]
        for ended_us, p, (version_id, number), drifted in planned:
            self.counter += 1
            run_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            seconds = min(1800.0, max(1.0, rng.lognormvariate(math.log(p.latency_s), 0.5)))
            started_us = ended_us - int(seconds * 1e6)
            started, ended = at(started_us), at(ended_us)
            approved = p.approved + (SHIFT if drifted else 0.0)
            rejected = p.rejected - (SHIFT if drifted else 0.0)
            r = rng.random()
            if r < p.failed:
                state, outcome = "failed", ""
            elif r < p.failed + approved:
                state, outcome = "finished", "approved"
            elif r < p.failed + approved + rejected:
                state, outcome = "finished", "rejected"
            else:
                state, outcome = "finished", "escalated"
            runs.append(
                (run_id, p.pk, version_id, p.credential_id, "prod",
                 f"{p.task} #{self.counter}", "", state, outcome, p.envelope,
                 f"d{self.counter:015x}", self.token_digest, ended + timedelta(minutes=15),
                 started, ended, ended)
            )  # fmt: skip
            steps = rng.choice((2, 3, 3, 4))
            for step in range(steps):
                tool_id, slug, action, risk = p.tools[
                    bisect(p.tool_weights, rng.random() * p.tool_weights[-1])
                ]
                d = rng.random()
                disposition = "deny" if d < p.deny else "ask" if d < p.deny + p.ask else "allow"
                when = at(started_us + (step + 1) * (ended_us - started_us) // (steps + 1))
                decisions.append(
                    (when, run_id, p.pk, "prod", "tool.invoke", slug, action, disposition,
                     REASONS[disposition], REASONING[disposition], [], {}, p.digest[slug], "",
                     "", "", rng.randrange(200, 3000))
                )  # fmt: skip
                if disposition == "ask":
                    status = "rejected" if rng.random() < p.rejects_approvals else "approved"
                    decided = when + timedelta(seconds=rng.uniform(20, 300))
                    approvals.append(
                        (uuid.UUID(int=rng.getrandbits(128), version=4), run_id, p.pk, number,
                         p.department_id, p.owner_id, "prod", tool_id, action, {},
                         p.digest[slug], "The case needs it.", REASONING["ask"], risk, [], {}, {},
                         status, 1, 1, when + timedelta(hours=1), "deny", "", when, decided,
                         decided + timedelta(seconds=1) if status == "approved" else None)
                    )  # fmt: skip
            inputs = int(rng.lognormvariate(math.log(p.tokens), 0.4))
            outputs = int(inputs * rng.uniform(0.1, 0.3))
            cost = Decimal(f"{inputs * p.prices[0] + outputs * p.prices[1]:.6f}")
            traces.append(
                (run_id.hex, run_id, p.pk, p.slug, "prod", f"invoke_agent {p.slug}", True,
                 started, ended, 2 + 2 * steps, int(state == "failed"), inputs, outputs, cost,
                 ended + timedelta(seconds=2))
            )  # fmt: skip
            if p.custom is not None:
                value = round(rng.lognormvariate(math.log(p.custom), 0.6), 2)
                metrics.append((run_id, CUSTOM_METRIC, value, ended))


def load(conn: Any, profiles: list[Profile], args: argparse.Namespace, now: datetime) -> dict:
    """Generate and ``COPY`` the runs, one day a transaction, then the steady minutes'."""
    generator = Generator(args.seed + 1, args, now)
    with conn.cursor() as cursor:
        types = {table: column_types(cursor, table, cols) for table, cols in TABLES.items()}
    first = now - timedelta(days=args.days) + START_MARGIN
    spans = [
        (max(first, now - timedelta(days=args.days - d)), now - timedelta(days=args.days - d - 1))
        for d in range(args.days)
    ]
    spans.append((now, now + STEADY))  # after the cold job's moment: the steady cycle's
    counts = dict.fromkeys(TABLES, 0)
    build = write = 0.0
    began = time.perf_counter()
    for n, (begin, end) in enumerate(spans):
        t0 = time.perf_counter()
        chunk = Chunk()
        generator.fill(generator.plan(profiles, begin, end), chunk)
        t1 = time.perf_counter()
        with conn.transaction(), conn.cursor() as cursor:
            for table, columns in TABLES.items():
                copy_rows(cursor, table, columns, types[table], chunk.rows[table])
                counts[table] += len(chunk.rows[table])
        t2 = time.perf_counter()
        build, write = build + t1 - t0, write + t2 - t1
        print(
            f"  {n + 1:>3}/{len(spans)} {begin:%Y-%m-%d %H:%M}: {counts['runtime_run']:>9,} runs,"
            f" {counts['runtime_decision']:>10,} decisions ({time.perf_counter() - began:.0f} s)",
            end="\r",
            flush=True,
        )
    print()
    rows = sum(counts.values())
    print(
        f"  {rows:,} rows in {build + write:.0f} s = {rows / (build + write):,.0f} rows/s"
        f" (generate {build:.0f} s, COPY {write:.0f} s): "
        + ", ".join(f"{table} {count:,}" for table, count in counts.items())
    )
    return {"rows": counts, "generate_s": round(build, 1), "copy_s": round(write, 1)}


def seed(args: argparse.Namespace, size: dict[str, int]) -> datetime:
    """Build the database afresh; the moment its runs lead up to."""
    import psycopg
    from django.core.management import call_command
    from django.db import connection

    print(
        f"seeding {args.database}: {args.agents:,} agents, {args.days} days of runs at"
        f" {args.runs_per_day} a day, {args.drifting} drifting (seed {args.seed})",
        flush=True,
    )
    recreate_database(args.database)
    configure(args.database)
    step = time.perf_counter()
    call_command("migrate", verbosity=0)
    print(f"  migrated in {time.perf_counter() - step:.0f} s", flush=True)
    now = datetime.now(UTC).replace(microsecond=0)
    with connection.cursor() as cursor:
        marker_start(cursor, size, now)
    step = time.perf_counter()
    profiles = build_organisation(random.Random(args.seed), args, now)
    print(
        f"  organisation: {len(DEPARTMENTS)} departments, {len(OWNERS)} owners, {len(TOOLS)}"
        f" tools, {len(profiles):,} agents with a credential and their versions in"
        f" {time.perf_counter() - step:.0f} s",
        flush=True,
    )
    connection.close()
    with psycopg.connect(database_url(args.database)) as conn:
        # A bench seed: losing the last transactions on a crash is fine, waiting for each
        # flush is not.
        conn.execute("SET synchronous_commit = off")
        conn.commit()
        figures = load(conn, profiles, args, now)
    with psycopg.connect(database_url(args.database), autocommit=True) as conn:
        step = time.perf_counter()
        # As autovacuum leaves a live database: statistics, hint bits, the visibility map.
        conn.execute("VACUUM ANALYZE")
        figures["vacuum_analyze_s"] = round(time.perf_counter() - step, 1)
        print(f"  VACUUM ANALYZE in {figures['vacuum_analyze_s']:.0f} s", flush=True)
        marker_finish(conn.cursor(), figures)
    return now


# --- the job -------------------------------------------------------------------------------------


@dataclass
class Cycle:
    seconds: float
    sampled: int
    streams: int
    raised: int
    updated: int
    baselines_set: int
    phases: dict[str, float] = field(default_factory=dict)


def drift_reset() -> None:
    """The drift job's tables emptied (samples, baselines, alerts and their notices) and the
    queued notices dropped: the next cycle is the first the database ever saw."""
    import redis
    from django.conf import settings
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(DRIFT_TABLES)} RESTART IDENTITY CASCADE")
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    began = time.perf_counter()
    result = call()
    return result, time.perf_counter() - began


def cold_job(now: datetime, *, phased: bool) -> list[Cycle]:
    """``drift_cycle(now=now)`` until a cycle samples nothing new; with ``phased``, its three
    steps called one after the other instead, in its order, each timed."""
    from apps.drift.collect import samples_collect
    from apps.drift.services import baselines_advance, drift_cycle, drift_detect

    cycles: list[Cycle] = []
    while len(cycles) < MAX_CYCLES:
        if phased:
            sampled, collect_s = timed(lambda: samples_collect(now=now))
            (streams, raised, updated), detect_s = timed(lambda: drift_detect(now=now))
            baselines_set, baselines_s = timed(lambda: baselines_advance(now=now))
            phases = {"collect": collect_s, "detect": detect_s, "baselines": baselines_s}
            cycle = Cycle(
                sum(phases.values()), sampled, streams, len(raised), len(updated), baselines_set,
                phases,
            )  # fmt: skip
        else:
            report, seconds = timed(lambda: drift_cycle(now=now))
            cycle = Cycle(
                seconds, report.sampled, report.streams, len(report.raised), len(report.updated),
                report.baselines_set,
            )  # fmt: skip
        cycles.append(cycle)
        split = ", ".join(f"{name} {s:.1f} s" for name, s in cycle.phases.items())
        print(
            f"  cycle {len(cycles)}: {cycle.seconds:6.1f} s{f' ({split})' if split else ''};"
            f" {cycle.sampled:,} runs sampled, {cycle.streams:,} streams compared,"
            f" {cycle.raised} alerts raised, {cycle.updated} updated, {cycle.baselines_set:,}"
            " baselines set",
            flush=True,
        )
        if cycle.sampled == 0:
            break
    return cycles


def live_alerts() -> list[dict[str, Any]]:
    from apps.drift.constants import LIVE_STATUSES
    from apps.drift.models import DriftAlert

    return list(
        DriftAlert.objects.filter(status__in=LIVE_STATUSES)
        .order_by("agent_id", "metric", "key")
        .values(
            "agent_id", "version_id", "metric", "key", "window", "severity", "p_value",
            "subject", "baseline_value", "current_value", "current_n", "onset_at", "shares",
        )
    )  # fmt: skip


def alert_keys(alerts: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {(a["agent_id"], a["version_id"], a["metric"], a["key"]) for a in alerts}


def correctness(
    alerts: list[dict[str, Any]], expected: set[tuple[int, int]], agents: int, change: datetime
) -> tuple[bool, int, int]:
    """Print misses, false alerts and the onsets' error; (passed, misses, false agents)."""
    found = {
        (a["agent_id"], a["version_id"])
        for a in alerts
        if a["metric"] == "outcome" and a["key"] == ""
    }
    misses = sorted(expected - found)
    false = [
        a
        for a in alerts
        if (a["agent_id"], a["version_id"]) not in expected or a["metric"] != "outcome"
    ]
    false_agents = {a["agent_id"] for a in false}
    hits = [a for a in alerts if (a["agent_id"], a["version_id"]) in expected - set(misses)]
    errors = [abs((a["onset_at"] - change).total_seconds()) / 60 for a in hits]
    print(
        f"  {len(alerts)} live alerts: {len(expected) - len(misses)} of the {len(expected)}"
        f" drifting agents' outcome drift found, {len(misses)} missed; {len(false)} false"
        f" alerts on {len(false_agents)} agents (at most {FALSE_ALERT_SHARE:.0%} of {agents:,}"
        f" = {int(agents * FALSE_ALERT_SHARE)})"
    )
    for agent_id, version_id in misses:
        print(f"    missed: agent {agent_id} version {version_id}")
    for a in false:
        print(
            f"    false: agent {a['agent_id']} version {a['version_id']} {a['metric']}"
            f"{':' + a['key'] if a['key'] else ''} ({a['window']}, p {a['p_value']:.1e},"
            f" {a['subject']} {a['baseline_value']:.3g} -> {a['current_value']:.3g},"
            f" n {a['current_n']})"
        )
    if errors:
        shares = [a["shares"].get("approved", [0, 0]) for a in hits if a["metric"] == "outcome"]
        before = statistics.mean(b for b, _ in shares)
        after = statistics.mean(c for _, c in shares)
        print(
            f"  found: {', '.join(sorted({a['severity'] for a in hits}))}; approved share"
            f" {before:.2f} -> {after:.2f} on average; onset {statistics.median(errors):.0f} min"
            f" from the change (median, worst {max(errors):.0f} min)"
        )
    passed = not misses and len(false_agents) <= agents * FALSE_ALERT_SHARE
    return passed, len(misses), len(false_agents)


def references(since: datetime, until: datetime) -> dict[str, tuple[float, int]]:
    """(seconds, rows) of one SELECT over the samples and of the runs' rows read once."""
    from django.db import connection

    out = {}
    with connection.cursor() as cursor:
        began = time.perf_counter()
        cursor.execute("SELECT count(*), avg(latency_ms) FROM drift_runsample")
        count, _ = cursor.fetchone()
        out["samples"] = (time.perf_counter() - began, count)
        began = time.perf_counter()
        cursor.execute(
            "SELECT id, agent_id, version_id, environment, started_at, ended_at, state, outcome"
            " FROM runtime_run WHERE ended_at > %s AND ended_at <= %s AND state <> 'running'",
            [since, until],
        )
        read = 0
        while rows := cursor.fetchmany(10_000):
            read += len(rows)
        out["runs"] = (time.perf_counter() - began, read)
    return out


def table_figures() -> list[tuple[str, int, int]]:
    from django.db import connection

    with connection.cursor() as cursor:
        found = []
        for table in COUNTED:
            cursor.execute(f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}")
            rows, size = cursor.fetchone()
            found.append((table, rows, size))
    return found


def mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def measure(args: argparse.Namespace, now: datetime) -> bool:
    from django.conf import settings

    from apps.registry.models import AgentVersion
    from apps.runtime.models import Run

    settle = timedelta(seconds=settings.DRIFT_SETTLE_SECONDS)
    cold_now, steady_now = now + settle, now + STEADY + settle
    history = Run.objects.filter(ended_at__lte=now).count()
    steady_runs = Run.objects.filter(ended_at__gt=now, ended_at__lte=now + STEADY).count()
    expected = set(AgentVersion.objects.filter(number=2).values_list("agent_id", "pk"))
    agents = AgentVersion.objects.filter(number=1).count()
    print(
        f"\n{history:,} ended runs over {args.days} days up to {now:%Y-%m-%d %H:%M} UTC, of"
        f" {agents:,} agents; {len(expected)} drifting since {args.drift_hours} h before;"
        f" settings: DRIFT_BASELINE_RUNS {settings.DRIFT_BASELINE_RUNS}, DRIFT_BASELINE_DAYS"
        f" {settings.DRIFT_BASELINE_DAYS}, DRIFT_COLLECT_BATCH {settings.DRIFT_COLLECT_BATCH:,},"
        f" DRIFT_MIN_CURRENT_SAMPLES {settings.DRIFT_MIN_CURRENT_SAMPLES}, DRIFT_P_VALUE"
        f" {settings.DRIFT_P_VALUE}"
    )

    drift_reset()
    print("\ncold job: drift_cycle() until a cycle samples nothing new", flush=True)
    plain = cold_job(cold_now, phased=False)
    first_alerts = live_alerts()
    drift_reset()
    print("the same job from nothing, its steps timed apart", flush=True)
    phased = cold_job(cold_now, phased=True)
    alerts = live_alerts()

    print("\ncorrectness")
    sampled = sum(c.sampled for c in plain)
    all_sampled = sampled == history == sum(c.sampled for c in phased)
    print(
        f"  [{mark(all_sampled)}] every ended run sampled once: {sampled:,} and"
        f" {sum(c.sampled for c in phased):,} of {history:,}"
    )
    same = alert_keys(first_alerts) == alert_keys(alerts)
    print(f"  [{mark(same)}] both passes raised the same alerts")
    found_ok, _, _ = correctness(alerts, expected, agents, now - timedelta(hours=args.drift_hours))
    print(f"  [{mark(found_ok)}] the drifting agents' outcome drift, and little else")

    print(f"\nsteady cycle: {steady_runs} runs ended in the next five minutes", flush=True)
    from apps.drift.services import drift_cycle

    report, steady_s = timed(lambda: drift_cycle(now=steady_now))
    print(
        f"  {steady_s:.1f} s; {report.sampled} runs sampled, {report.streams} streams compared,"
        f" {len(report.raised)} alerts raised, {len(report.updated)} updated"
    )
    steady_sampled = report.sampled == steady_runs
    refs = references(cold_now - timedelta(days=settings.DRIFT_LOOKBACK_DAYS), now)

    # The cold job is every cycle up to the first that finds nothing new: the first detection
    # against set baselines may come in any of them (a cycle detects before it sets baselines).
    cold_s = sum(c.seconds for c in plain)
    phased_s = sum(c.seconds for c in phased)
    phase_total = {name: sum(c.phases[name] for c in phased) for name in phased[0].phases}
    cold_ok, steady_ok = cold_s <= TARGET_SECONDS, steady_s <= TARGET_SECONDS
    width = 58
    print(f"\n{'':{width}} {'seconds':>8} {'runs':>10}  target <= {TARGET_SECONDS:.0f} s")
    print(
        f"{f'cold job: drift_cycle() until nothing new ({len(plain)} cycles)':{width}}"
        f" {cold_s:8.1f} {sampled:>10,}  {mark(cold_ok)}"
    )
    for n, cycle in enumerate(plain, 1):
        print(f"{f'  cycle {n}':{width}} {cycle.seconds:8.1f} {cycle.sampled:>10,}")
    print(
        f"{f'the same, steps timed apart ({len(phased)} cycles)':{width}}"
        f" {phased_s:8.1f} {sum(c.sampled for c in phased):>10,}"
    )
    labels = {
        "collect": "samples_collect",
        "detect": "drift_detect",
        "baselines": "baselines_advance",
    }
    for name, seconds in phase_total.items():
        print(f"{'  ' + labels[name]:{width}} {seconds:8.1f}")
    print(
        f"{'steady cycle: the next five minutes':{width}} {steady_s:8.1f}"
        f" {report.sampled:>10,}  {mark(steady_ok)}"
    )
    samples_s, samples_n = refs["samples"]
    runs_s, runs_n = refs["runs"]
    print(
        f"{'reference: SELECT count(*), avg(latency_ms) FROM samples':{width}} {samples_s:8.2f}"
        f" {samples_n:>10,}"
    )
    print(
        f"{'reference: the runs rows read once (30 days, 8 columns)':{width}} {runs_s:8.2f}"
        f" {runs_n:>10,}"
    )
    print(
        f"\nper run sampled: the cold job {cold_s / max(sampled, 1) * 1e6:,.0f} us, reading a"
        f" run's row {runs_s / max(runs_n, 1) * 1e6:,.1f} us"
    )

    print(f"\n{'table':28} {'rows':>12} {'size':>10}")
    for table, rows, size in table_figures():
        print(f"{table:28} {rows:>12,} {size / 2**20:>7,.0f} MB")

    checks = [
        (cold_ok, f"the cold job over {args.days} days in {cold_s:.1f} s (<= 60 s)"),
        (steady_ok, f"the steady cycle in {steady_s:.1f} s (<= 60 s)"),
        (all_sampled and steady_sampled, "every ended run sampled once"),
        (found_ok and same, "the drift found: no miss, false alerts on <= 2% of the agents"),
    ]
    print()
    for ok, text in checks:
        print(f"[{mark(ok)}] {text}")
    return all(ok for ok, _ in checks)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs-per-day", type=int, default=25, help="an agent's, on average")
    parser.add_argument("--drifting", type=int, default=20, help="agents whose outcomes drift")
    parser.add_argument("--drift-hours", type=int, default=6, help="since their new version")
    parser.add_argument(
        "--drift-per-hour", type=int, default=150, help="runs of a new version an hour"
    )
    parser.add_argument(
        "--drift-base-per-day", type=int, default=100, help="a drifting agent's runs a day"
    )
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--seed", type=int, default=7, help="the random seed (deterministic)")
    parser.add_argument("--fresh", action="store_true", help="drop and rebuild the database")
    args = parser.parse_args()
    if args.agents < 1 or args.days < 2 or args.drift_hours >= 24 * args.days:
        parser.error("need --agents >= 1, --days >= 2, --drift-hours within the days")
    size = size_of(args)
    marker = None if args.fresh else seed_marker(args.database)
    if marker is not None and marker["size"] == size:
        print(
            f"{args.database} holds a finished seed of this size (built"
            f" {marker['finished_at']:%Y-%m-%d %H:%M} UTC, its runs up to"
            f" {marker['now']:%Y-%m-%d %H:%M}): reusing it (--fresh rebuilds it)"
        )
        configure(args.database)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)  # a seed older than the code's last migration
        now = marker["now"]
    else:
        if marker is not None:
            print(f"{args.database} holds a seed of another size ({marker['size']}): rebuilding")
        now = seed(args, size)
    passed = measure(args, now)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
