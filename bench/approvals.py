"""Approval latency: how soon after the approver's click a waiting agent knows, and may go on.

Builds, in its own PostgreSQL database ``tether_bench_approvals`` (dropped and made afresh) and
Redis db 9 (flushed), an active agent with a critical tool (``payments-refund``/``create``:
ask, two distinct approvers) and a low-risk one (``crm-lookup``/``read``), its owner and two
approvers with passwords; starts the server as production runs it (``python -m
controlplane.serve --workers 2``: uvicorn, one ``SO_REUSEPORT`` socket per worker, the Redis
channel layer, so the click and the waiting agent usually land on different processes); signs
both approvers in to the console over HTTP; and then, one trial at a time (``--trials``, 30):

1. long-poll: the SDK (``tether.Client``, in a thread) asks for a refund and is told ``ask``;
   it waits with ``run.wait_for_approval(id)`` (``GET /api/v1/approvals/<id>/wait/``) and,
   once approved, asks again with ``approval=<id>`` and gets ``allow``. Meanwhile, "the
   click": the bench POSTs ``verdict=approve`` to the console's ``/approvals/<id>/answer/``
   as the first approver, then as the second (a logged-in session, with its CSRF token).
   Measured from the second POST's answer (and from its being sent) to the wait returning
   ``approved``, and to the re-asked decision returning ``allow``;
2. websocket: the same, with the agent holding ``/ws/agents/approvals/<id>/`` (the
   ``websockets`` client, run token in the handshake) until the ``approved`` message;
3. the reference, measured in the same run: a plain decision round trip (an ``allow`` of
   ``crm-lookup``) by the same SDK client, ``--trials`` times.

Before each click the agent has been waiting for ``--settle`` seconds (0.3), so the wait is
surely parked on the channel layer. The target: the agent learns the outcome within 1 s of the
click (p95). Prints p50 / p95 / max in ms; a figure below 0 means the agent knew before the
approver's own page had its answer (the message goes out on commit, before the redirect).
The CPU that other work on the machine takes meanwhile is sampled (bench/_cpu.py): above 15%
the figures are marked. It is a report: the exit code is 0 whatever the marks say.

    .venv/bin/python bench/approvals.py [--trials 30] [--settle 0.3] [--workers 2]

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) and Redis on 127.0.0.1:6379.
The console pages are rendered from the source tree (``DEBUG=true``, as bench/live_views.py).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "sdk"))
from bench import _cpu  # noqa: E402
from bench._serve import free_port, wait_ready  # noqa: E402

ENV = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/tether_bench_approvals",
    "REDIS_URL": "redis://127.0.0.1:6379/9",
    "SECRET_KEY": "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    # The login page is rendered from the source tree's static files (no collectstatic).
    "DEBUG": "true",
    "DJANGO_SETTINGS_MODULE": "controlplane.settings",
    "LOG_LEVEL": "WARNING",
}
DATABASE = "tether_bench_approvals"
PASSWORD = "bench-password-123"
APPROVERS = ("bench-approver-1", "bench-approver-2")
TARGET_MS = 1000.0
BUSY = 0.15  # share of the CPU used by other work that marks the figures


def fresh_database() -> None:
    import psycopg

    base = ENV["DATABASE_URL"].rsplit("/", 1)[0]
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')


def seed() -> str:
    """The agent, its tools, owner and two approvers; returns the agent credential's secret."""
    from apps.accounts.models import Department, User
    from apps.accounts.services import role_assign
    from apps.registry import services as registry
    from apps.registry.models import Tool
    from apps.runtime import services as runtime

    owner = User.objects.create_user("bench-owner", password=PASSWORD)
    department = Department.objects.create(slug="payments", name="Payments")
    role_assign(actor=None, user=owner, role="owner", department=department)
    for name in APPROVERS:
        approver = User.objects.create_user(name, password=PASSWORD)
        role_assign(actor=None, user=approver, role="approver", department=department)
    agent = registry.agent_create(
        actor=owner,
        data={
            "name": "Refunds", "slug": "refunds-agent", "mission": "Refund customers.",
            "department": department, "environments": ["prod"], "status": "active",
            "autonomy_level": 3,
        },
    )  # fmt: skip
    refund = Tool.objects.create(
        slug="payments-refund", name="Refund", description="Refunds an order.",
        risk_class="critical", actions=["create"], owner=owner,
        input_schema={"type": "object", "properties": {"order": {"type": "string"},
                                                       "amount": {"type": "number"}}},
        output_schema={"type": "object"},
    )  # fmt: skip
    lookup = Tool.objects.create(
        slug="crm-lookup", name="CRM lookup", description="Looks up.", risk_class="low",
        actions=["read"], input_schema={"type": "object"}, output_schema={"type": "object"},
        owner=owner,
    )  # fmt: skip
    for tool, action in ((refund, "create"), (lookup, "read")):
        registry.grant_set(
            actor=owner, agent=agent, tool=tool, actions=[action], environments=["prod"]
        )
    _credential, issued = runtime.credential_issue(
        actor=owner, agent=agent, environment="prod", name="bench"
    )
    return issued.plaintext


class Approver:
    """A person signed in to the console: a session cookie and its CSRF token."""

    def __init__(self, base: str, username: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=base, timeout=10, follow_redirects=False)
        self.http.get("/accounts/login/").raise_for_status()
        token = self.http.cookies["csrftoken"]
        signed_in = self.http.post(
            "/accounts/login/",
            data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token},
        )
        if signed_in.status_code != 302 or "sessionid" not in self.http.cookies:
            raise SystemExit(f"{username} could not sign in: HTTP {signed_in.status_code}")

    def approve(self, approval_id: str) -> None:
        """The click: the console's answer form, as the page posts it."""
        answered = self.http.post(
            f"/approvals/{approval_id}/answer/",
            data={
                "verdict": "approve",
                "comment": "",
                "csrfmiddlewaretoken": self.http.cookies["csrftoken"],
            },
        )
        if answered.status_code != 302:
            raise SystemExit(f"answer refused: HTTP {answered.status_code}: {answered.text[:300]}")


def click(approvers: list[Approver], approval_id: str) -> tuple[float, float]:
    """Both approvers approve; (the second POST sent, the second POST answered)."""
    approvers[0].approve(approval_id)
    sent = time.perf_counter()
    approvers[1].approve(approval_id)
    return sent, time.perf_counter()


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def go() -> None:
        try:
            out["result"] = work()
        except BaseException as exc:  # reported by the trial
            out["error"] = exc

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, out


def long_poll_trial(run: Any, approvers: list[Approver], i: int, settle: float) -> dict[str, float]:
    import tether

    arguments = {"order": f"LP-{i}", "amount": 10 + i}
    asked: queue.Queue[str] = queue.Queue()

    def agent() -> dict[str, float]:
        try:
            run.check_tool("payments-refund", arguments, action="create")
        except tether.ApprovalRequired as exc:
            assert exc.approval_id
            asked.put(exc.approval_id)
            approval = run.wait_for_approval(exc.approval_id, timeout=30)
            waited = time.perf_counter()
            if approval.status != "approved":
                raise SystemExit(f"the wait returned {approval.status}") from None
            decision = run.check_tool(
                "payments-refund", arguments, action="create", approval=exc.approval_id
            )
            allowed = time.perf_counter()
            if decision.disposition != "allow":
                raise SystemExit(f"the re-asked decision is {decision.disposition}") from None
            return {"waited": waited, "allowed": allowed}
        raise SystemExit("the critical step did not ask")

    thread, out = in_thread(agent)
    approval_id = asked.get(timeout=30)
    time.sleep(settle)  # the long-poll is parked on the channel layer by now
    sent, answered = click(approvers, approval_id)
    thread.join(timeout=60)
    if "error" in out:
        raise SystemExit(f"long-poll trial {i}: {out['error']!r}")
    return {
        "wait_answered": out["result"]["waited"] - answered,
        "allow_answered": out["result"]["allowed"] - answered,
        "wait_sent": out["result"]["waited"] - sent,
        "allow_sent": out["result"]["allowed"] - sent,
    }


def websocket_trial(
    run: Any, base_port: int, approvers: list[Approver], i: int, settle: float
) -> dict[str, float]:
    import tether
    from websockets.sync.client import connect

    try:
        run.check_tool("payments-refund", {"order": f"WS-{i}", "amount": 5}, action="create")
        raise SystemExit("the critical step did not ask")
    except tether.ApprovalRequired as exc:
        approval_id = exc.approval_id
    url = f"ws://127.0.0.1:{base_port}/ws/agents/approvals/{approval_id}/"
    with connect(
        url,
        additional_headers={"Authorization": f"Bearer {run.token}"},
        origin=f"http://127.0.0.1:{base_port}",  # the origin validator refuses none
        proxy=None,
    ) as ws:
        first = json.loads(ws.recv(timeout=10))
        assert first["status"] == "pending", first

        def follow() -> float:
            while True:
                message = json.loads(ws.recv(timeout=30))
                if message["decided"]:
                    if message["status"] != "approved":
                        raise SystemExit(f"the socket said {message['status']}")
                    return time.perf_counter()

        thread, out = in_thread(follow)
        time.sleep(settle)
        sent, answered = click(approvers, str(approval_id))
        thread.join(timeout=60)
    if "error" in out:
        raise SystemExit(f"websocket trial {i}: {out['error']!r}")
    return {"ws_answered": out["result"] - answered, "ws_sent": out["result"] - sent}


def reference_trials(run: Any, count: int) -> list[float]:
    """A plain decision round trip (``allow``), in ms."""
    times = []
    for i in range(count):
        began = time.perf_counter()
        decision = run.check_tool("crm-lookup", {"id": f"ref-{i}"}, action="read")
        times.append((time.perf_counter() - began) * 1000)
        assert decision.disposition == "allow", decision
    return times


def spread(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    p95 = ordered[max(int(len(ordered) * 0.95 + 0.5) - 1, 0)]
    return statistics.median(ordered), p95, ordered[-1]


def helpers() -> set[int]:
    """The processes that serve our server: its PostgreSQL backends, and Redis."""
    import psycopg

    with psycopg.connect(ENV["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres") as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", [DATABASE]
        ).fetchall()
    return {pid for (pid,) in rows} | _cpu.by_name("redis-server")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--settle", type=float, default=0.3, help="s the agent waits before")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn processes")
    args = parser.parse_args()
    os.environ.update(ENV)

    fresh_database()
    import django

    django.setup()
    import redis
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(ENV["REDIS_URL"]).flushdb()
    secret = seed()

    import tether

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controlplane.serve",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore:No directory at:UserWarning"},
    )
    polls: list[dict[str, float]] = []
    sockets: list[dict[str, float]] = []
    try:
        wait_ready(base + "/healthz", server)
        busy_before = _cpu.settle(server.pid)
        approvers = [Approver(base, name) for name in APPROVERS]
        client = tether.Client(base, secret, timeout=10)
        with client.run("Bench: refunds waiting for approval") as run:
            reference_trials(run, 5)  # warm-up: each worker's caches and connections
            before = _cpu.snapshot(server.pid, helpers())
            reference = reference_trials(run, args.trials)
            for i in range(args.trials):
                polls.append(long_poll_trial(run, approvers, i, args.settle))
            for i in range(args.trials):
                sockets.append(websocket_trial(run, port, approvers, i, args.settle))
            during, _ = _cpu.others_between(before, _cpu.snapshot(server.pid, helpers()))
    finally:
        server.terminate()
        server.wait(timeout=15)

    def column(rows: list[dict[str, float]], key: str) -> list[float]:
        return [row[key] * 1000 for row in rows]

    print(
        f"\n{args.trials} trials each, one at a time; server: controlplane.serve --workers "
        f"{args.workers} (PostgreSQL, Redis channel layer)"
    )
    busy = max(busy_before, during)
    print(f"other work on the machine: {busy_before:.0%} of the CPU before, {during:.0%} during")
    print("\nms from the click: the second approver's POST /approvals/<id>/answer/ ...")
    print(f"{'':44} {'p50':>8} {'p95':>8} {'max':>8}")
    rows = [
        ("long-poll: the wait returns approved", column(polls, "wait_answered"),
         column(polls, "wait_sent")),
        ("long-poll: the re-asked decision is allow", column(polls, "allow_answered"),
         column(polls, "allow_sent")),
        ("websocket: the approved message", column(sockets, "ws_answered"),
         column(sockets, "ws_sent")),
    ]  # fmt: skip
    for suffix, index in (("answered", 1), ("sent", 2)):
        print(f"... {suffix}:")
        for name, *values in rows:
            p50, p95, top = spread(values[index - 1])
            print(f"  {name:42} {p50:8.0f} {p95:8.0f} {top:8.0f}")
    p50, p95, top = spread(reference)
    print(f"\nreference: a plain decision round trip     {p50:8.1f} {p95:8.1f} {top:8.1f}")
    mark = "  (* other work took over 15% of the CPU: figures are high)" if busy > BUSY else ""
    print("\ntargets (p95, from the second POST being answered):")
    for name, values, _ in rows:
        p95 = spread(values)[1]
        verdict = "PASS" if p95 <= TARGET_MS else "FAIL"
        print(f"  {name} within {TARGET_MS:.0f} ms: {p95:.0f} ms {verdict}{mark}")


if __name__ == "__main__":
    main()
