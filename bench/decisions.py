"""Decision service speed: in process, and over HTTP with 16 concurrent clients (issue 3, sec. 9).

Builds an active agent with a granted tool (``lookup``/``read`` in ``prod``), 3 budgets and 3 admin
Cedar policies (none of which forbids it) in its own PostgreSQL database
``tether_bench_decisions`` (dropped and made afresh) and Redis db 6 (flushed), then measures:

- in process: ``decide()`` for an ``allow`` (wall and CPU) and the endpoint's whole answer
  without HTTP (``apps.runtime.api.asgi._answer``), 2,000 times each (median, p99);
- over HTTP, the server as ``python -m controlplane.serve --workers 2`` runs it (uvicorn, one
  ``SO_REUSEPORT`` socket per worker) on 127.0.0.1, loaded by ``wrk``
  (16 connections, 1 thread; ``--latency``) for a 2 s warm-up and then a 10 s measured window
  per target, one target at a time, with the same settings for all three:
  1. the floor: the same server's minimal JSON endpoint ``GET /healthz``;
  2. the decision: ``POST /api/v1/runtime/decisions/`` with the run's Bearer token and a fresh
     ``arguments.id`` per request (the circuit breaker denies identical calls after 5);
  3. the reference gateway: LiteLLM's proxy (bench/_litellm.py), ``POST /chat/completions``
     for a ``mock_response`` model, with a master key and a global ``max_budget``, 2 workers;
  and once more the decision, paced at ``--rate`` (1,000/s) offered by the same 16 connections:
  at saturation a closed loop's latency is the clients divided by the throughput (16 / 1,300 s
  is 12 ms on average), so the p99 is also given at the target rate, as wrk2 would measure it.

One sample decision is checked to be an ``allow`` before any load, and the wrk script checks
every response: any socket error, non-2xx response, or decision that is not an ``allow`` stops
the bench with the first such response (LiteLLM's failures are reported in its row instead).
The CPU that other work on the machine (not the server under test, not wrk) takes is sampled
before and during each window: above 15% the row is marked, since its figures are then low. Prints one table (req/s, p50, p99) and the targets, each
PASS/FAIL: >= 1,000 decisions/s, decision p99 <= 15 ms (at saturation, and at 1,000/s
offered), >= 50% of the floor's throughput,
>= 3x LiteLLM's, in-process median <= 1 ms. It is a report: the exit code is 0 whatever the
marks say (non-zero only when the measurement itself could not be made).

    .venv/bin/python bench/decisions.py [--seconds 10] [--warmup 2] [--clients 16]
                                        [--threads 1] [--skip-litellm]

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) and Redis on 127.0.0.1:6379.
Installs what it lacks from the package registries only: Debian's ``wrk`` with apt-get (as
root, or with sudo) and, on the first run, ``litellm[proxy]`` into ``.bench/litellm-venv``
(git-ignored; about a minute). After that a run takes about 70 s, and downloads nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import _cpu, _wrk  # noqa: E402
from bench._serve import wait_ready  # noqa: E402

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
DATABASE = "tether_bench_decisions"
LITELLM_PORT = 8932
BUSY = 0.15  # share of the CPU used by other work (not our server, not wrk) that spoils a row
BUSY_OTHERS: dict[str, tuple[float, float]] = {}  # name: (before, during)
DECISIONS = "/api/v1/runtime/decisions/"
DECISION_BODY = {"action": "tool.invoke", "tool": "lookup", "tool_action": "read"}
# Three admin Cedar policies, none of which forbids this allow: bench/policy_eval.py's.
from bench.policy_eval import POLICIES  # noqa: E402


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
    from apps.policy.services import policy_create

    for slug, text in POLICIES.items():
        policy_create(actor=admin, data={"name": slug, "slug": slug, "text": text})
    _, issued = services.credential_issue(actor=admin, agent=agent, environment="prod", name="b")
    _run, token = services.run_start(
        credential=services.credential_authenticate(issued.plaintext), task="bench"
    )
    return issued.plaintext, token


def in_process(token: str, count: int = 2000) -> dict[str, tuple[float, float]]:
    """Median and p99 (ms) of ``decide()`` alone, wall and CPU, and of the whole answer the
    ASGI endpoint gives (token, JSON, validation, decide, payload) without the HTTP around it.

    ``decide()``'s wall time includes waiting for PostgreSQL to make the decision durable
    (its commit is flushed to disk before the answer), which is not CPU time here."""
    from apps.runtime.api.asgi import _answer
    from apps.runtime.decisions import DecisionRequest, decide
    from apps.runtime.services import run_authenticate

    run = run_authenticate(token, recheck=False)  # as the endpoint does (see decide())
    walls, cpus, answers = [], [], []
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    for i in range(count):
        request = DecisionRequest(
            action="tool.invoke", tool="lookup", tool_action="read", arguments={"id": str(i)}
        )
        began, began_cpu = time.perf_counter(), time.process_time()
        decision = decide(run=run, request=request)
        walls.append((time.perf_counter() - began) * 1000)
        cpus.append((time.process_time() - began_cpu) * 1000)
        assert decision.disposition == "allow", decision.reasoning
        body = json.dumps({**DECISION_BODY, "arguments": {"id": f"answer-{i}"}}).encode()
        began = time.perf_counter()
        status, payload = _answer(headers, body, "bench-request-0001")
        answers.append((time.perf_counter() - began) * 1000)
        assert status == 200 and payload["disposition"] == "allow", payload

    def spread(values: list[float]) -> tuple[float, float]:
        values.sort()
        return statistics.median(values), values[int(len(values) * 0.99)]

    return {"decide": spread(walls), "decide_cpu": spread(cpus), "answer": spread(answers)}


def sample_decision(token: str) -> dict:
    """One decision over HTTP, checked to be an ``allow`` before any load is sent."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{PORT}{DECISIONS}",
        data=json.dumps({**DECISION_BODY, "arguments": {"id": "sample"}}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode(errors="replace")
    if status != 200:
        raise SystemExit(f"sample decision: HTTP {status}: {text[:300]}")
    payload = json.loads(text)
    if payload.get("disposition") != "allow":
        raise SystemExit(f"sample decision is not an allow: {text[:500]}")
    return payload


def helpers() -> set[int]:
    """The processes that serve our server: its PostgreSQL backends, and Redis."""
    import psycopg

    with psycopg.connect(ENV["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres") as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", [DATABASE]
        ).fetchall()
    return {pid for (pid,) in rows} | _cpu.by_name("redis-server")


def load(
    url: str, args: argparse.Namespace, name: str, server: int, uses_db: bool = True, **request
) -> _wrk.Result:
    """A short warm-up, then the measured window, with the same wrk settings for every target.
    ``server`` is the pid of the server under test: its process tree, and with ``uses_db`` our
    database's backends and Redis, are not "other work"."""
    settings: dict[str, Any] = {"connections": args.clients, "threads": args.threads}
    busy = _cpu.settle(server)
    if args.warmup > 0:
        _wrk.measure(url, seconds=args.warmup, tag=f"warm-{name}", **settings, **request)
    serving = helpers() if uses_db else set()
    before = _cpu.snapshot(server, serving)
    result = _wrk.measure(url, seconds=args.seconds, tag=f"run-{name}", **settings, **request)
    serving |= helpers() if uses_db else set()
    during, _ = _cpu.others_between(before, _cpu.snapshot(server, serving))
    if max(busy, during) > BUSY:
        BUSY_OTHERS[name] = (busy, during)
    note = f"; other work: {busy:.0%} of the CPU before, {during:.0%} during"
    print(f"  {name}: {result.rps:.0f} req/s ({result.requests} requests{note})", flush=True)
    return result


def measure_tether(
    token: str, args: argparse.Namespace
) -> tuple[_wrk.Result, _wrk.Result, _wrk.Result]:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controlplane.serve",  # uvicorn, one SO_REUSEPORT socket per worker
            "--host",
            "127.0.0.1",
            "--port",
            str(PORT),
            "--workers",
            "2",
        ],
        cwd=ROOT,
        # ServeStatic warns once per worker that collectstatic has not run; it costs nothing here.
        env={**os.environ, **ENV, "PYTHONWARNINGS": "ignore:No directory at:UserWarning"},
    )
    base = f"http://127.0.0.1:{PORT}"
    try:
        wait_ready(base + "/healthz", server)
        sample = sample_decision(token)
        print(f"sample decision over HTTP: {sample['disposition']}", flush=True)
        floor = load(
            base + "/healthz", args, "floor: /healthz", server.pid, uses_db=False, expect='"ok"'
        )
        decision = {
            "method": "POST",
            "headers": {"Authorization": f"Bearer {token}"},
            "body": DECISION_BODY,
            "vary_id": True,
            "expect": '"disposition":%s*"allow"',
        }
        decisions = load(base + DECISIONS, args, "decision (allow)", server.pid, **decision)
        paced = load(
            base + DECISIONS,
            args,
            f"decision at {args.rate:.0f}/s offered",
            server.pid,
            rate=args.rate,
            **decision,
        )
    finally:
        server.terminate()
        server.wait(15)
    return floor, decisions, paced


def measure_litellm(args: argparse.Namespace) -> tuple[_wrk.Result | None, str]:
    from bench import _litellm

    try:
        with _litellm.proxy(LITELLM_PORT, workers=2) as target:
            result = load(
                target.url,
                args,
                "LiteLLM /chat/completions",
                target.pid,
                uses_db=False,
                method="POST",
                headers=target.headers,
                body=target.body,
                expect=target.expect,
            )
    except _litellm.Unavailable as exc:
        return None, str(exc)
    except _wrk.LoadError as exc:
        return None, f"FAILED: {exc}"
    return result, ""


def mark(ok: bool | None) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "FAIL")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10, help="measured window per target")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up before each window")
    parser.add_argument("--clients", type=int, default=16, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument(
        "--rate", type=float, default=1000, help="offered decisions/s for the paced run"
    )
    parser.add_argument("--skip-litellm", action="store_true", help="no LiteLLM reference")
    args = parser.parse_args()
    os.environ.update(ENV)
    _wrk.ensure_wrk()
    if not args.skip_litellm:
        from bench import _litellm

        try:
            _litellm.ensure_installed()  # before any timing: the first run installs it
        except _litellm.Unavailable as exc:
            print(f"LiteLLM reference unavailable: {exc}")
            args.skip_litellm = True
    began = time.monotonic()
    _, token = setup()
    before = _cpu.snapshot(os.getpid(), helpers())
    timings = in_process(token)
    busy, _ = _cpu.others_between(before, _cpu.snapshot(os.getpid(), helpers()))
    median, p99 = timings["decide"]
    print(f"in-process decide(): median {median:.3f} ms, p99 {p99:.3f} ms (wall)")
    cpu_median, cpu_p99 = timings["decide_cpu"]
    print(f"  of which CPU: median {cpu_median:.3f} ms, p99 {cpu_p99:.3f} ms; the rest is waiting")
    print("  for Redis and for PostgreSQL to flush the decision's commit to disk")
    answer_median, answer_p99 = timings["answer"]
    print(
        f"in-process answer (token, JSON, validation, decide, payload): median {answer_median:.3f}"
    )
    print(f"  ms, p99 {answer_p99:.3f} ms", end="")
    print(f" (other work: {busy:.0%} of the CPU during it)", flush=True)
    if busy > BUSY:
        BUSY_OTHERS["in-process"] = (0.0, busy)

    print(f"over HTTP with wrk: {args.clients} connections, {args.threads} thread(s), ", end="")
    print(f"{args.warmup:.0f} s warm-up + {args.seconds:.0f} s measured per target", flush=True)
    floor, decisions, paced = measure_tether(token, args)
    litellm, why = (
        (None, "skipped (--skip-litellm)") if args.skip_litellm else measure_litellm(args)
    )

    rows = [("floor: /healthz", floor), ("decision (allow)", decisions)]
    rows.append((f"decision at {args.rate:.0f}/s offered", paced))
    rows.append(("LiteLLM /chat/completions", litellm))
    print()
    print(f"{'endpoint':30} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, result in rows:
        if result is None:
            print(f"{name:30} {'-':>8} {'-':>8} {'-':>8}   ({why})")
        else:
            flag = "  *" if name in BUSY_OTHERS else ""
            print(f"{name:30} {result.rps:8.0f} {result.p50_ms:8.2f} {result.p99_ms:8.2f}{flag}")
    if BUSY_OTHERS:
        print(
            f"* other work on the machine took over {BUSY:.0%} of the CPU (before/during): "
            + ", ".join(f"{name} {b:.0%}/{d:.0%}" for name, (b, d) in BUSY_OTHERS.items())
            + "; such a row is lower than on an idle machine, and so are ratios using it"
        )
    print()
    share = decisions.rps / floor.rps
    versus = decisions.rps / litellm.rps if litellm else None
    checks = [
        (f"decisions/s >= 1000: {decisions.rps:.0f}", decisions.rps >= 1000),
        (f"decision p99 <= 15 ms at saturation: {decisions.p99_ms:.2f} ms", decisions.p99_ms <= 15),
        (
            f"decision p99 <= 15 ms at {args.rate:.0f}/s offered: {paced.p99_ms:.2f} ms "
            f"({paced.rps:.0f}/s served)",
            paced.p99_ms <= 15 and paced.rps >= 0.98 * args.rate,
        ),
        (f"decisions >= 50% of the floor: {share:.0%}", share >= 0.5),
        (
            f"decisions >= 3x LiteLLM: {versus:.1f}x" if versus else "decisions >= 3x LiteLLM",
            None if versus is None else versus >= 3,
        ),
        (f"in-process median <= 1 ms: {median:.3f} ms", median <= 1),
    ]
    for text, ok in checks:
        print(f"[{mark(ok)}] {text}")
    print(f"\n(bench took {time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
