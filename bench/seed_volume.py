"""The finance dashboard's volume: 10M spans and 1M runs in PostgreSQL, with their rollups.

Builds, in its own database (``tether_volume``; bench/_volume.py says how another bench sets
Django up on it), an organisation shaped like a large customer's:

- 8 departments with 2-4 teams each, 50 people (20 of whom agents act for), a finance and an
  admin user to read the dashboards as (``bench-finance`` / ``bench-admin``);
- 12 tools, two of them with a cost per call; 1,000 agents, each in a department (most in a
  team), with a business process among 12, one or two environments, 2-4 tool grants and its
  first AgentVersion (the registry's own snapshot);
- ``--runs`` runs (1M) over the last ``--days`` days (120; fewer on weekends, growing over
  the period): most finished (approved / rejected / escalated), some failed, expired or
  killed, the newest few hundred still running; a fifth on behalf of a person;
- ``--spans`` spans (10M), about ten a run, one trace a run: the agent's root span, LLM calls
  (gpt-4o, gpt-4o-mini, claude-sonnet-4-5, gemini-2.5-flash, each agent mostly on its default
  model; 1% on ``in-house-llm-7``, which the catalogue does not know: priced at the worst
  case), tool calls and retrievals, each priced as the ingest prices it
  (apps/traces/costing.py ``span_cost``), and the Trace rollup of each run.

Runs, spans and traces are generated in time order, a chunk (``--chunk`` spans, 200k) at a
time, and written with binary ``COPY`` (spans through the ingest's own writer,
apps/traces/storage.py ``_copy``), one transaction a chunk: memory stays flat whatever the
size. Then, after an ``ANALYZE``, the cost rollups are built from the spans by the backfill
(apps/costs/backfill.py ``cost_rollups_rebuild``), timed phase by phase, and ``ANALYZE`` runs
again. The backfill's first step prices the spans stored without a price; it is timed on a
sample first, and left out when it would take longer than ``--pricing-budget`` (600 s): every
span here was priced when stored, so it would change nothing (``--full-rebuild`` runs it
anyway). Its figures are printed either way.

Prints the rows/s of each stage, the rollup rebuild's time and where it went, the peak memory
of this process, the row counts and the sizes of the tables, and checks that the rollups
add up to the spans. A marker table (``bench_volume_seed``) records a finished seed: run again
with the same size and seed, it says so and exits at once, so that a dashboard bench can reuse
the database. A database holding a seed of another size is kept unless ``--fresh``.

    .venv/bin/python bench/seed_volume.py [--spans 10000000] [--runs 1000000] [--days 120]
                                          [--database tether_volume] [--seed 7] [--fresh]
                                          [--chunk 200000] [--pricing-budget 600] [--full-rebuild]

Deterministic for a seed (the times are relative to the moment it runs). Needs PostgreSQL on
127.0.0.1:5432 (user postgres, trust auth) and Redis on 127.0.0.1:6379 (db 12). The full size
takes about 16 minutes on this 2-core machine (measured: load 8, rollups 4.5, ANALYZE 1),
1.7 GB of memory at its peak (the rollups of the runs) and 10 GB of disk.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import resource
import sys
import time
import uuid
from bisect import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._volume import (  # noqa: E402
    ADMIN_USER,
    DATABASE,
    FINANCE_USER,
    MARKER_TABLE,
    PASSWORD,
    database_exists,
    database_url,
    django_setup,
    seed_marker,
)

CHUNK = 200_000
DEPARTMENTS = (
    "Claims", "Underwriting", "Customer Service", "Finance", "Legal", "Operations",
    "Sales", "Human Resources",
)  # fmt: skip
TEAM_NAMES = ("North", "South", "Platform", "Intake", "Review", "Escalations")
PROCESSES = (
    "claims-triage", "fraud-screening", "policy-renewal", "quote-generation",
    "customer-support", "invoice-processing", "contract-review", "kyc-onboarding",
    "refund-handling", "lead-qualification", "employee-onboarding", "complaint-handling",
)  # fmt: skip
FIRST_NAMES = ("ana", "ben", "chloe", "dev", "emma", "farid", "grace", "hugo", "ines", "jonas")
LAST_NAMES = ("smith", "garcia", "novak", "okafor", "tanaka")
USERS = len(FIRST_NAMES) * len(LAST_NAMES)  # 50
BEHALF_USERS = 20  # the people runs act for
BEHALF_SHARE = 0.2
AGENTS = 1000
NO_TEAM_SHARE = 0.15
# (slug, name, risk class, actions, cost per call in USD)
TOOLS = (
    ("crm-lookup", "CRM lookup", "low", ["read"], "0"),
    ("policy-search", "Policy search", "low", ["search"], "0"),
    ("document-store", "Document store", "medium", ["read", "update"], "0"),
    ("email-send", "E-mail", "medium", ["send"], "0"),
    ("ticket-update", "Ticketing", "low", ["read", "update"], "0"),
    ("payments", "Payments", "high", ["read", "refund"], "0"),
    ("calendar", "Calendar", "low", ["read", "create"], "0"),
    ("address-verify", "Address verification", "low", ["lookup"], "0.004"),
    ("credit-bureau", "Credit bureau check", "high", ["query"], "0.35"),
    ("ledger", "General ledger", "high", ["read", "post"], "0"),
    ("hr-directory", "HR directory", "low", ["read"], "0"),
    ("translation", "Translation", "low", ["translate"], "0"),
)
COSTED_TOOL_SHARE = 0.4  # agents granted one of the costed tools
# (model, provider, weight as an agent's default model)
MODELS = (
    ("gpt-4o", "openai", 20),
    ("gpt-4o-mini", "openai", 35),
    ("claude-sonnet-4-5", "anthropic", 25),
    ("gemini-2.5-flash", "google", 20),
)
UNKNOWN_MODEL = ("in-house-llm-7", "internal")
UNKNOWN_SHARE = 0.01
DEFAULT_MODEL_SHARE = 0.7  # an agent's LLM calls on its default model; the rest on any
ENVIRONMENT_SETS = ((("prod",), 45), (("staging", "prod"), 30), (("dev",), 10),
                    (("dev", "staging"), 10), (("canary", "prod"), 5))  # fmt: skip
STATES = (("finished", 920), ("failed", 50), ("expired", 20), ("killed", 10))
OUTCOMES = {
    "finished": (("approved", 55), ("rejected", 25), ("escalated", 15), ("", 5)),
    "failed": (("error", 70), ("", 30)),
    "expired": (("", 1),),
    "killed": (("", 80), ("escalated", 20)),
}
RUNNING_MAX = 300  # the newest runs, still running
TOKEN_TTL = 15 * 60
WEEKEND_SHARE = 0.45  # a weekend day's runs against a weekday's
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RUN_COLUMNS = (
    "id", "agent_id", "version_id", "environment", "task", "intent", "on_behalf_of_id",
    "state", "outcome", "envelope", "token_lookup", "token_digest", "token_expires_at",
    "started_at", "last_heartbeat_at", "ended_at",
)  # fmt: skip
TRACE_COLUMNS = (
    "trace_id", "run_id", "agent_id", "agent_name", "environment", "name", "has_root",
    "started_at", "ended_at", "span_count", "error_count", "input_tokens", "output_tokens",
    "cost_usd", "updated_at",
)  # fmt: skip
COUNTED = (
    "runtime_run", "traces_span", "traces_trace", "costs_costdaily", "costs_personcostdaily",
    "costs_runcost", "costs_taskcostdaily",
)  # fmt: skip


def weighted(pairs: tuple[tuple[Any, int], ...]) -> tuple[list[Any], list[float]]:
    values = [value for value, _ in pairs]
    cumulative, total = [], 0.0
    for _, weight in pairs:
        total += weight
        cumulative.append(total)
    return values, cumulative


def pick(rng: random.Random, table: tuple[list[Any], list[float]]) -> Any:
    values, cumulative = table
    return values[bisect(cumulative, rng.random() * cumulative[-1])]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the database ---------------------------------------------------------------------------------


def recreate_database(name: str) -> None:
    import psycopg

    with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def table_columns(cursor: Any, table: str, wanted: tuple[str, ...]) -> list[str]:
    """The PostgreSQL types of ``wanted`` columns of ``table``, for binary COPY; exits if the
    table has a NOT NULL column without a default that the seed does not fill (a column added
    since this bench was written)."""
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
            f" column {unknown}; update bench/seed_volume.py"
        )
    return [found[name][0] for name in wanted]


def copy_rows(
    cursor: Any, table: str, columns: tuple[str, ...], types: list[str], rows: list
) -> None:
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def marker_start(cursor: Any, args: argparse.Namespace) -> None:
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (id serial PRIMARY KEY, spans bigint NOT NULL,"
        " runs bigint NOT NULL, days int NOT NULL, seed int NOT NULL, started_at timestamptz"
        " NOT NULL DEFAULT now(), finished_at timestamptz, figures jsonb)"
    )
    cursor.execute(
        f"INSERT INTO {MARKER_TABLE} (spans, runs, days, seed) VALUES (%s, %s, %s, %s)",
        [args.spans, args.runs, args.days, args.seed],
    )


def marker_finish(cursor: Any, figures: dict[str, Any]) -> None:
    from psycopg.types.json import Jsonb

    cursor.execute(
        f"UPDATE {MARKER_TABLE} SET finished_at = now(), figures = %s"
        f" WHERE id = (SELECT max(id) FROM {MARKER_TABLE})",
        [Jsonb(figures)],
    )


# --- the organisation -----------------------------------------------------------------------------


@dataclass
class AgentSeed:
    """What generating runs and spans needs of one agent."""

    pk: int
    slug: str
    version_id: int
    environments: list[str]
    default_model: tuple[str, str]
    tools: list[str]
    process: str
    envelopes: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Organisation:
    agents: list[AgentSeed]
    agent_weights: list[float]  # cumulative: a few agents run far more than the rest
    behalf_ids: list[int]


def build_organisation(rng: random.Random) -> Organisation:
    """Departments, teams, people, tools, agents with their grants and first version, in bulk
    (a bench seeder: the services would write an audit event per row)."""
    from django.db import transaction

    from apps.accounts.models import Department, Team, User
    from apps.accounts.services import role_assign
    from apps.registry.models import Agent, AgentVersion, Tool, ToolGrant
    from apps.registry.snapshots import behaviour_snapshot, canonical_json, sha256_text
    from apps.runtime.services import envelope_of

    with transaction.atomic():
        departments = Department.objects.bulk_create(
            Department(name=name, slug=name.lower().replace(" ", "-")) for name in DEPARTMENTS
        )
        teams: dict[int, list[Team]] = {}
        for department in departments:
            names = rng.sample(TEAM_NAMES, rng.randint(2, 4))
            teams[department.pk] = Team.objects.bulk_create(
                Team(department=department, name=name, slug=f"{department.slug}-{name.lower()}")
                for name in names
            )
        people = User.objects.bulk_create(
            User(
                username=f"{first}.{last}",
                first_name=first.title(),
                last_name=last.title(),
                email=f"{first}.{last}@example.com",
                password="!",  # unusable: nobody logs in as them
            )
            for first in FIRST_NAMES
            for last in LAST_NAMES
        )
        finance = User.objects.create_user(FINANCE_USER, password=PASSWORD)
        role_assign(actor=None, user=finance, role="finance")
        admin = User.objects.create_user(ADMIN_USER, password=PASSWORD)
        role_assign(actor=None, user=admin, role="admin")
        tools = Tool.objects.bulk_create(
            Tool(
                name=name,
                slug=slug,
                description=f"{name} for agents.",
                owner=admin,
                risk_class=risk,
                actions=actions,
                input_schema={"type": "object"},
                cost_per_call_usd=Decimal(cost),
            )
            for slug, name, risk, actions, cost in TOOLS
        )
        costed = [t for t in tools if t.cost_per_call_usd > 0]
        free = [t for t in tools if t.cost_per_call_usd == 0]
        environment_sets = weighted(ENVIRONMENT_SETS)
        models = weighted(tuple(((m, p), w) for m, p, w in MODELS))
        rows, seeds = [], []
        for n in range(AGENTS):
            department = departments[n % len(departments)]
            team = None if rng.random() < NO_TEAM_SHARE else rng.choice(teams[department.pk])
            process = rng.choice(PROCESSES)
            model = pick(rng, models)
            slug = f"{process}-{n:04d}"
            rows.append(
                Agent(
                    name=f"{process.replace('-', ' ').title()} {n:04d}",
                    slug=slug,
                    mission=f"Handles {process.replace('-', ' ')} for {department.name}.",
                    owner=rng.choice(people),
                    department=department,
                    team=team,
                    business_process=process,
                    model_family=model[0].split("-")[0],
                    default_model=model[0],
                    providers=[model[1]],
                    autonomy_level=rng.randint(1, 3),
                    environments=list(pick(rng, environment_sets)),
                    status="active",
                    instructions=f"You handle {process.replace('-', ' ')} cases.",
                )
            )
            granted = rng.sample(free, rng.randint(2, 3))
            if rng.random() < COSTED_TOOL_SHARE:
                granted.append(rng.choice(costed))
            seeds.append((model, granted))
        agents = Agent.objects.bulk_create(rows)
        ToolGrant.objects.bulk_create(
            ToolGrant(agent=agent, tool=tool, actions=tool.actions, environments=agent.environments)
            for agent, (_, granted) in zip(agents, seeds, strict=True)
            for tool in granted
        )
        versions = []
        for agent in agents:
            snapshot = behaviour_snapshot(agent)
            versions.append(
                AgentVersion(
                    agent=agent,
                    number=1,
                    snapshot=snapshot,
                    snapshot_hash=sha256_text(canonical_json(snapshot)),
                    instructions_hash=snapshot["instructions_sha256"],
                    change_summary="Registered",
                    created_by_name=admin.get_username(),
                )
            )
        versions = AgentVersion.objects.bulk_create(versions)
        result = []
        for agent, version, (model, granted) in zip(agents, versions, seeds, strict=True):
            seed = AgentSeed(
                pk=agent.pk,
                slug=agent.slug,
                version_id=version.pk,
                environments=list(agent.environments),
                default_model=model,
                tools=[t.slug for t in granted],
                process=agent.business_process,
            )
            for environment in agent.environments:
                seed.envelopes[environment] = envelope_of(agent, environment)
                seed.resources[environment] = {
                    "service.name": agent.slug,
                    "deployment.environment.name": environment,
                    "telemetry.sdk.language": "python",
                }
            result.append(seed)
    rng.shuffle(result)  # which agents are the busiest: not the first of each process
    cumulative, total = [], 0.0
    for rank in range(len(result)):
        total += 1 / (rank + 20) ** 0.9
        cumulative.append(total)
    return Organisation(result, cumulative, [p.pk for p in people[:BEHALF_USERS]])


# --- runs and spans -------------------------------------------------------------------------------


def run_times(
    rng: random.Random, runs: int, days: int, now: datetime
) -> Iterator[tuple[int, bool]]:
    """(start in microseconds since the epoch, still running) of every run, oldest first:
    the ended ones over ``days`` days up to an hour ago, fewer on weekends and growing over
    the period; then the running ones, started in the last 40 minutes."""
    running = min(RUNNING_MAX, runs // 50)
    ended = runs - running
    end = int((now - timedelta(hours=1) - EPOCH).total_seconds() * 1e6)
    width = days * 86_400_000_000
    begin = end - width
    slice_us = width // days
    weights = []
    for d in range(days):
        middle = EPOCH + timedelta(microseconds=begin + d * slice_us + slice_us // 2)
        weekend = WEEKEND_SHARE if middle.weekday() >= 5 else 1.0
        weights.append(weekend * (0.75 + 0.5 * d / days) * rng.uniform(0.9, 1.1))
    scale = ended / sum(weights)
    counts = [int(w * scale) for w in weights]
    # The remainder to the days the rounding down shorted most.
    shorted = sorted(range(days), key=lambda d: counts[d] - weights[d] * scale)
    for d in shorted[: ended - sum(counts)]:
        counts[d] += 1
    for d, count in enumerate(counts):
        start = begin + d * slice_us
        for moment in sorted(rng.randrange(slice_us) for _ in range(count)):
            yield start + moment, False
    now_us = int((now - EPOCH).total_seconds() * 1e6)
    ago = sorted((rng.randrange(60_000_000, 2_400_000_000) for _ in range(running)), reverse=True)
    for moment in ago:
        yield now_us - moment, True


def spans_of(index: int, runs: int, spans: int) -> int:
    """Spans of run ``index``: the average give or take a few, paired (run 2k has as many more
    as run 2k+1 fewer) so that the total is exactly ``spans``."""
    base, extra = divmod(spans, runs)
    spread = max(0, min(4, base - 2))
    pair = index // 2
    delta = 0
    if spread and not (runs % 2 and index == runs - 1):
        delta = (pair * 2654435761 >> 7) % (2 * spread + 1) - spread
        delta = delta if index % 2 == 0 else -delta
    bump = (index + 1) * extra // runs - index * extra // runs
    return base + delta + bump


@dataclass
class Totals:
    runs: int = 0
    spans: int = 0
    run_build: float = 0.0
    run_copy: float = 0.0
    span_build: float = 0.0
    span_copy: float = 0.0
    trace_copy: float = 0.0
    costs: dict[str, Decimal] = field(default_factory=dict)

    def add_cost(self, source: str, cost: Decimal) -> None:
        self.costs[source] = self.costs.get(source, Decimal(0)) + cost


class Generator:
    """Runs, their spans and their traces, chunk by chunk, deterministic for a seed."""

    def __init__(self, args: argparse.Namespace, org: Organisation, now: datetime) -> None:
        from apps.registry.tool_costs import tool_costs
        from apps.traces.costing import span_cost

        self.rng = random.Random(args.seed)
        self.args = args
        self.org = org
        self.now = now
        self.now_us = int((now - EPOCH).total_seconds() * 1e6)
        self.tools = tool_costs()
        self.span_cost = span_cost
        self.states = weighted(STATES)
        self.outcomes = {state: weighted(pairs) for state, pairs in OUTCOMES.items()}
        self.models = weighted(tuple(((m, p), w) for m, p, w in MODELS))
        self.digest = hashlib.sha256(b"bench run token").hexdigest()
        self.span_counter = 0
        self.attributes = {
            "agent": {"gen_ai.operation.name": "invoke_agent"},
            "llm": {"gen_ai.operation.name": "chat", "gen_ai.request.temperature": 0.2},
            "tool": {"gen_ai.operation.name": "execute_tool"},
            "retrieval": {"gen_ai.operation.name": "retrieve", "retrieval.top_k": 5},
        }
        self.events: list[dict[str, Any]] = []
        self.totals = Totals()

    def span_id(self) -> str:
        # A bijection of the counter on 64 bits (odd multiplier): unique, and random-looking.
        self.span_counter += 1
        return f"{self.span_counter * 0x9E3779B97F4A7C15 & 0xFFFF_FFFF_FFFF_FFFF:016x}"

    def run_row(self, index: int, start_us: int, running: bool) -> tuple[tuple, AgentSeed, int]:
        """The run's row (RUN_COLUMNS), its agent, and the end of its spans (microseconds)."""
        rng = self.rng
        org = self.org
        agent = org.agents[bisect(org.agent_weights, rng.random() * org.agent_weights[-1])]
        environments = agent.environments
        environment = environments[-1] if rng.random() < 0.7 else rng.choice(environments)
        duration = int(min(1800.0, max(2.0, rng.lognormvariate(math.log(40), 0.9))) * 1e6)
        started = EPOCH + timedelta(microseconds=start_us)
        if running:
            state, outcome, ended = "running", "", None
            spans_end = min(start_us + duration, self.now_us - 1_000_000)
            heartbeat = self.now - timedelta(seconds=rng.randint(1, 30))
            expires = heartbeat + timedelta(seconds=TOKEN_TTL)
        else:
            state = pick(rng, self.states)
            outcome = pick(rng, self.outcomes[state])
            spans_end = start_us + duration
            if state == "expired":  # stopped sending heartbeats; swept when its token lapsed
                heartbeat = EPOCH + timedelta(microseconds=spans_end)
                ended = expires = heartbeat + timedelta(seconds=TOKEN_TTL)
            else:
                ended = EPOCH + timedelta(microseconds=spans_end + 200_000)
                heartbeat = ended - timedelta(seconds=rng.randint(0, 20))
                expires = heartbeat + timedelta(seconds=TOKEN_TTL)
        behalf = rng.choice(org.behalf_ids) if rng.random() < BEHALF_SHARE else None
        row = (
            uuid.UUID(int=rng.getrandbits(128), version=4), agent.pk, agent.version_id,
            environment, f"{agent.process.replace('-', ' ')} case #{100_000 + index}", "",
            behalf, state, outcome, agent.envelopes[environment], f"v{index:015x}", self.digest,
            expires, started, heartbeat, ended,
        )  # fmt: skip
        return row, agent, spans_end

    def llm_model(self, agent: AgentSeed) -> tuple[str, str]:
        r = self.rng.random()
        if r < UNKNOWN_SHARE:
            return UNKNOWN_MODEL
        if r < UNKNOWN_SHARE + DEFAULT_MODEL_SHARE:
            return agent.default_model
        return pick(self.rng, self.models)

    def run_spans(self, run: tuple, agent: AgentSeed, count: int, end_us: int, out: list) -> tuple:
        """Append the run's spans to ``out`` (SpanRow, priced); returns its Trace row."""
        from apps.traces.storage import SpanRow

        rng = self.rng
        run_id, environment, state = run[0], run[3], run[7]
        trace_id = run_id.hex
        run_ref = str(run_id)
        started = run[13]
        start_us = int((started - EPOCH).total_seconds() * 1e6)
        resource = agent.resources[environment]
        failed = state == "failed"
        root_id = self.span_id()
        children = count - 1
        slot = (end_us - start_us) // children if children else 0
        kinds = ["llm"] + [
            "llm" if r < 0.58 else "tool" if r < 0.93 else "retrieval"
            for r in (rng.random() for _ in range(children - 1))
        ]
        spans = []
        for j, kind in enumerate(kinds[:children]):
            begin = start_us + j * slot + slot // 20
            finish = begin + max(1, slot * (9 if kind == "llm" else 6) // 10)
            model = provider = tool = arguments = result = ""
            inputs = outputs = cached = None
            status = "unset"
            if kind == "llm":
                model, provider = self.llm_model(agent)
                name = f"chat {model}"
                inputs = int(min(64_000, max(50, rng.lognormvariate(math.log(1500), 0.8))))
                outputs = int(min(8_000, max(1, rng.lognormvariate(math.log(300), 0.8))))
                if rng.random() < 0.3:
                    cached = int(inputs * rng.uniform(0.2, 0.8))
            elif kind == "tool":
                tool = rng.choice(agent.tools)
                name = f"execute_tool {tool}"
                arguments = f'{{"case": {run[4].rsplit("#", 1)[1]}}}'
                result = '{"status": "ok"}'
                if rng.random() < 0.01:
                    status = "error"
            else:
                name = "retrieve documents"
            if failed and j == children - 1:
                status = "error"
            spans.append(
                (kind, name, model, provider, tool, inputs, outputs, cached, arguments, result,
                 status, begin, finish)
            )  # fmt: skip
        root_status = "error" if failed else "unset" if state == "running" else "ok"
        root = ("agent", f"invoke_agent {agent.slug}", "", "", "", None, None, None, "", "",
                root_status, start_us, end_us)  # fmt: skip
        errors = input_sum = output_sum = 0
        cost_sum: Decimal | None = None
        add_cost = self.totals.add_cost
        for n, span in enumerate([root, *spans]):
            kind, name, model, provider, tool, inputs, outputs, cached = span[:8]
            arguments, result, status, begin, finish = span[8:]
            start = EPOCH + timedelta(microseconds=begin)
            end = EPOCH + timedelta(microseconds=finish)
            row = SpanRow(
                trace_id, root_id if n == 0 else self.span_id(), "" if n == 0 else root_id,
                name, kind, agent.pk, agent.slug, None, None, run_id, run_ref, environment,
                agent.slug, "openinference.instrumentation.langchain", model, provider, inputs,
                outputs, cached, None, tool, arguments, result, status, "", start, end,
                (finish - begin) * 1000, "", self.attributes[kind], resource, self.events,
                end + timedelta(milliseconds=1500), None, "",
            )  # fmt: skip
            cost, source = self.span_cost(row, self.tools)
            if cost is not None:
                row = row._replace(cost_usd=cost, cost_source=source)
                cost_sum = cost if cost_sum is None else cost_sum + cost
                add_cost(source, cost)
            out.append(row)
            errors += status == "error"
            input_sum += inputs or 0
            output_sum += outputs or 0
        return (
            trace_id, run_id, agent.pk, agent.slug, environment, root[1], True, started,
            EPOCH + timedelta(microseconds=end_us), count, errors, input_sum, output_sum,
            cost_sum, self.now,
        )  # fmt: skip

    def load(self, conn: Any, log: Callable[[str], None]) -> Totals:
        """Generate and ``COPY`` everything, one transaction a chunk."""
        from apps.traces.storage import _copy

        args = self.args
        self.totals = totals = Totals()
        runs_per_chunk = max(1, args.chunk * args.runs // max(1, args.spans))
        times = run_times(self.rng, args.runs, args.days, self.now)
        with conn.cursor() as cursor:
            run_types = table_columns(cursor, "runtime_run", RUN_COLUMNS)
            trace_types = table_columns(cursor, "traces_trace", TRACE_COLUMNS)
        began = time.perf_counter()
        index = 0
        while index < args.runs:
            stop = min(args.runs, index + runs_per_chunk)
            t0 = time.perf_counter()
            planned = []
            for n in range(index, stop):
                start_us, running = next(times)
                planned.append((n, *self.run_row(n, start_us, running)))
            t1 = time.perf_counter()
            spans: list[Any] = []
            traces = [
                self.run_spans(run, agent, spans_of(n, args.runs, args.spans), end_us, spans)
                for n, run, agent, end_us in planned
            ]
            t2 = time.perf_counter()
            with conn.transaction(), conn.cursor() as cursor:
                copy_rows(cursor, "runtime_run", RUN_COLUMNS, run_types, [p[1] for p in planned])
                t3 = time.perf_counter()
                _copy(cursor, "traces_span", spans)
                t4 = time.perf_counter()
                copy_rows(cursor, "traces_trace", TRACE_COLUMNS, trace_types, traces)
            t5 = time.perf_counter()
            totals.run_build += t1 - t0
            totals.span_build += t2 - t1
            totals.run_copy += t3 - t2
            totals.span_copy += t4 - t3
            totals.trace_copy += t5 - t4
            totals.runs += len(planned)
            totals.spans += len(spans)
            index = stop
            elapsed = time.perf_counter() - began
            log(
                f"  {totals.spans:>11,} spans, {totals.runs:>9,} runs"
                f" ({totals.spans / elapsed:,.0f} spans/s overall, {elapsed:.0f} s,"
                f" peak {peak_rss_mb():,.0f} MB)"
            )
        return totals


# --- the rollups ----------------------------------------------------------------------------------


PRICING_SAMPLE = 300  # spans the repricing pass is timed on before the rebuild


def pricing_estimate() -> tuple[int, float]:
    """(spans the backfill's repricing pass would visit, seconds it would take), measured by
    running that pass (apps/costs/backfill.py ``_price_spans``) over its first
    ``PRICING_SAMPLE`` spans only, in a transaction rolled back."""
    from django.db import transaction

    from apps.costs import backfill

    visited = backfill._costable(None, False).count()
    if not visited:
        return 0, 0.0
    batches, size = backfill._batches, backfill.PRICE_BATCH

    def first_batch(*args: Any) -> Iterator[Any]:
        yield next(batches(*args), [])

    backfill._batches, backfill.PRICE_BATCH = first_batch, PRICING_SAMPLE
    try:
        with transaction.atomic():
            began = time.perf_counter()
            backfill._price_spans(None, reprice=False)
            seconds = time.perf_counter() - began
            transaction.set_rollback(True)
    finally:
        backfill._batches, backfill.PRICE_BATCH = batches, size
    return visited, seconds / min(visited, PRICING_SAMPLE) * visited


def rebuild_rollups(*, skip_pricing: bool) -> tuple[float, dict[str, float], Any]:
    """``cost_rollups_rebuild()``, timed as a whole and by phase (its three steps are wrapped
    with a timer for the call; apps/costs itself is untouched). ``skip_pricing``: its first
    step, pricing the spans stored without a price, is left out -- every span here was priced
    as it was stored, so it would change nothing -- and the rollups are rebuilt as usual."""
    from django.test.utils import override_settings

    from apps.costs import backfill

    phases: dict[str, float] = {}

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                phases[name] = time.perf_counter() - began

        return wrapper

    def skipped(*args: Any, **kwargs: Any) -> int:
        return 0

    names = ("_price_spans", "_rebuild_days", "_rebuild_runs")
    originals = {name: getattr(backfill, name) for name in names}
    for name, function in originals.items():
        setattr(backfill, name, timed(name, function))
    if skip_pricing:
        backfill._price_spans = skipped
    began = time.perf_counter()
    try:
        # DEBUG keeps every SQL statement in memory (the runs phase sends one with an IN list
        # of every run id); production runs it without, and so does this measure.
        with override_settings(DEBUG=False):
            result = backfill.cost_rollups_rebuild()
    finally:
        for name, function in originals.items():
            setattr(backfill, name, function)
    seconds = time.perf_counter() - began
    phases["commit and the rest"] = seconds - sum(phases.values())
    return seconds, phases, result


# --- the report -----------------------------------------------------------------------------------


def figures_of(conn: Any) -> dict[str, Any]:
    counts, sizes = {}, {}
    for table in COUNTED:
        counts[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        # A partitioned table's size is its partitions' (a plain table is its own tree).
        sizes[table] = (
            conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(relid))::bigint, 0)"
                " FROM pg_partition_tree(%s)",
                [table],
            ).fetchone()[0]
            or conn.execute("SELECT pg_total_relation_size(%s)", [table]).fetchone()[0]
        )
    sums = {
        "spans": conn.execute("SELECT sum(cost_usd) FROM traces_span").fetchone()[0],
        "spans_of_runs": conn.execute(
            "SELECT sum(cost_usd) FROM traces_span WHERE run_id IS NOT NULL"
        ).fetchone()[0],
        "cost_daily": conn.execute("SELECT sum(cost_usd) FROM costs_costdaily").fetchone()[0],
        "person_daily": conn.execute("SELECT sum(cost_usd) FROM costs_personcostdaily").fetchone()[
            0
        ],
        "run_cost": conn.execute("SELECT sum(cost_usd) FROM costs_runcost").fetchone()[0],
        "task_daily": conn.execute("SELECT sum(cost_usd) FROM costs_taskcostdaily").fetchone()[0],
        "traces": conn.execute("SELECT sum(cost_usd) FROM traces_trace").fetchone()[0],
    }
    partitions = conn.execute(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'traces_span'::regclass"
    ).fetchone()[0]
    in_default = conn.execute("SELECT count(*) FROM traces_span_default").fetchone()[0]
    database = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return {
        "counts": counts,
        "sizes": sizes,
        "sums": sums,
        "partitions": partitions,
        "in_default": in_default,
        "database_bytes": database,
    }


def mb(size: int | None) -> str:
    return f"{(size or 0) / 2**20:,.0f} MB"


def report(figures: dict[str, Any]) -> bool:
    print(f"\n{'table':24} {'rows':>12} {'size':>10}")
    for table in COUNTED:
        print(f"{table:24} {figures['counts'][table]:>12,} {mb(figures['sizes'][table]):>10}")
    print(
        f"database {mb(figures['database_bytes'])}; traces_span: {figures['partitions']} day"
        f" partitions and DEFAULT ({figures['in_default']:,} spans in DEFAULT)"
    )
    sums = figures["sums"]
    checks = [
        ("sum(traces_span.cost_usd) = sum(costs_costdaily.cost_usd)", "spans", "cost_daily"),
        ("... = sum(costs_personcostdaily.cost_usd)", "spans", "person_daily"),
        ("spans of runs = sum(costs_runcost.cost_usd)", "spans_of_runs", "run_cost"),
        ("spans = sum(traces_trace.cost_usd)", "spans", "traces"),
    ]
    ok = True
    print()
    for text, left, right in checks:
        same = sums[left] == sums[right]
        ok &= same
        print(f"[{'PASS' if same else 'FAIL'}] {text}: {sums[left]} / {sums[right]}")
    print(f"       costs_taskcostdaily (ended runs only): {sums['task_daily']}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--seed", type=int, default=7, help="the random seed (deterministic)")
    parser.add_argument("--chunk", type=int, default=CHUNK, help="spans per COPY transaction")
    parser.add_argument("--fresh", action="store_true", help="drop and recreate the database")
    parser.add_argument(
        "--pricing-budget",
        type=float,
        default=600,
        help="seconds: leave out the rebuild's repricing pass when it is measured to take longer",
    )
    parser.add_argument(
        "--full-rebuild", action="store_true", help="run the repricing pass however long it takes"
    )
    args = parser.parse_args()
    if args.runs < 1 or args.spans < args.runs or args.days < 1:
        parser.error("need --runs >= 1, --spans >= --runs (a run has its root span), --days >= 1")
    began = time.perf_counter()

    if not args.fresh:
        marker = seed_marker(args.database)
        size = (args.spans, args.runs, args.days, args.seed)
        if marker is not None:
            held = (marker["spans"], marker["runs"], marker["days"], marker["seed"])
            if held == size:
                counts = marker["figures"]["counts"]
                print(
                    f"{args.database} holds a finished seed of {args.spans:,} spans and"
                    f" {args.runs:,} runs over {args.days} days (seed {args.seed}), built"
                    f" {marker['finished_at']:%Y-%m-%d %H:%M} UTC: "
                    + ", ".join(f"{table} {n:,}" for table, n in counts.items())
                    + ". Reusing it (--fresh rebuilds it)."
                )
                return
            raise SystemExit(
                f"{args.database} holds a seed of {held[0]:,} spans, {held[1]:,} runs, {held[2]}"
                f" days, seed {held[3]}; pass --fresh to replace it, or another --database"
            )
        if database_exists(args.database):
            print(f"{args.database} holds no finished seed: building it again")

    print(
        f"seeding {args.database}: {args.spans:,} spans, {args.runs:,} runs over {args.days}"
        f" days (seed {args.seed})",
        flush=True,
    )
    recreate_database(args.database)
    django_setup(args.database)
    import psycopg
    import redis
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from apps.traces.partitions import partitions_ensure

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    step = time.perf_counter()
    call_command("migrate", verbosity=0)
    print(f"  migrated in {time.perf_counter() - step:.0f} s", flush=True)

    now = datetime.now(UTC).replace(microsecond=0)
    with connection.cursor() as cursor:
        marker_start(cursor, args)
    first = (now - timedelta(days=args.days + 1)).date()
    days = [first + timedelta(days=d) for d in range((now.date() - first).days + 2)]
    step = time.perf_counter()
    partitions_ensure(days, today=now.date())
    print(f"  {len(days)} day partitions in {time.perf_counter() - step:.0f} s", flush=True)

    step = time.perf_counter()
    rng = random.Random(args.seed)
    org = build_organisation(rng)
    print(
        f"  organisation: {len(DEPARTMENTS)} departments, {USERS} people, {len(TOOLS)} tools,"
        f" {len(org.agents):,} agents with their versions in {time.perf_counter() - step:.0f} s",
        flush=True,
    )

    print(f"runs, spans and traces, {args.chunk:,} spans a transaction ...", flush=True)
    generator = Generator(args, org, now)
    with psycopg.connect(database_url(args.database)) as conn:
        # A bench seed: losing the last transactions on a crash is fine, waiting for each
        # flush is not.
        conn.execute("SET synchronous_commit = off")
        conn.commit()
        load_began = time.perf_counter()
        totals = generator.load(conn, lambda line: print(line, end="\r", flush=True))
        load_seconds = time.perf_counter() - load_began
    print()
    run_seconds = totals.run_build + totals.run_copy
    span_seconds = totals.span_build + totals.span_copy
    print(
        f"  runs:   {totals.runs:>11,} in {run_seconds:6.0f} s = {totals.runs / run_seconds:>9,.0f}"
        f" rows/s (generate {totals.run_build:.0f} s, COPY {totals.run_copy:.0f} s)"
    )
    print(
        f"  spans:  {totals.spans:>11,} in {span_seconds:6.0f} s = "
        f"{totals.spans / span_seconds:>9,.0f} rows/s (generate and price"
        f" {totals.span_build:.0f} s, COPY {totals.span_copy:.0f} s)"
    )
    print(
        f"  traces: {totals.runs:>11,} in {totals.trace_copy:6.0f} s (COPY);"
        f" all of it {load_seconds:.0f} s, {totals.spans / load_seconds:,.0f} spans/s overall"
    )
    print(
        "  priced: "
        + ", ".join(f"{source} ${cost:,.2f}" for source, cost in sorted(totals.costs.items()))
    )

    # Statistics first, as a live database has them: the rebuild's queries are planned on them.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    visited, estimate = pricing_estimate()
    skip_pricing = estimate > args.pricing_budget and not args.full_rebuild
    print(
        f"cost rollups: cost_rollups_rebuild(); its repricing pass would visit {visited:,}"
        f" spans stored without a price, measured on {min(visited, PRICING_SAMPLE)}:"
        f" {estimate:,.0f} s"
        + (
            f" (over --pricing-budget {args.pricing_budget:.0f} s: left out, as every span"
            " here was priced when stored; --full-rebuild runs it)"
            if skip_pricing
            else ""
        )
        + " ...",
        flush=True,
    )
    peak_before = peak_rss_mb()
    rebuild_seconds, phases, result = rebuild_rollups(skip_pricing=skip_pricing)
    print(
        f"  {rebuild_seconds:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in phases.items())});"
        f" repriced {result.priced:,} spans, {result.day_rows:,} day rows, {result.runs:,} runs,"
        f" {result.tasks:,} tasks; peak memory {peak_before:,.0f} MB before,"
        f" {peak_rss_mb():,.0f} MB after"
    )
    connection.close()

    step = time.perf_counter()
    with psycopg.connect(database_url(args.database), autocommit=True) as conn:
        conn.execute("ANALYZE")
        analyze_seconds = time.perf_counter() - step
        print(f"ANALYZE in {analyze_seconds:.0f} s", flush=True)
        figures = figures_of(conn)
        ok = report(figures)
        total = time.perf_counter() - began
        figures["seconds"] = {
            "load": round(load_seconds, 1),
            "runs": round(run_seconds, 1),
            "spans": round(span_seconds, 1),
            "rollups": round(rebuild_seconds, 1),
            "pricing_pass": {
                "spans": visited,
                "estimate": round(estimate, 1),
                "skipped": skip_pricing,
            },
            "rollup_phases": {k: round(v, 1) for k, v in phases.items()},
            "analyze": round(analyze_seconds, 1),
            "total": round(total, 1),
        }
        figures["sums"] = {k: str(v) for k, v in figures["sums"].items()}
        figures["built_at"] = now.isoformat()
        if ok:
            marker_finish(conn.cursor(), figures)
    print(f"\n(seed took {total:.0f} s; peak memory {peak_rss_mb():,.0f} MB)")
    if not ok:
        raise SystemExit("the rollups do not add up to the spans: the seed is not marked finished")


if __name__ == "__main__":
    main()
