"""Kill switch propagation: how soon after an admin presses it a run is refused, and its SDK aborts.

Builds, in its own PostgreSQL database ``tether_bench_kill`` (dropped and made afresh) and
Redis db 8 (flushed), an active agent with a low-risk tool (``crm-lookup``/``read``), its owner
and an admin with a password; starts TWO web processes as production runs each of them
(``python -m controlplane.serve --workers 1``, each on its own port, the Redis channel layer
between them): process A serves the console, where the admin presses; process B serves the
agent, its decisions and its control socket. So the press and the agent are always on
different processes, and the kill reaches B only through PostgreSQL (the decision's write
checks the run is still running, apps/runtime/decisions.py ``_write``) and the channel layer
(``control.push_killed``). The admin signs in to A over HTTP. Then, one trial at a time
(``--trials``, 50, after two unmeasured warm-up trials):

1. the SDK (``tether.Client`` on B) starts a run with its control socket (``control=True``, the
   default) and the bench waits until ``run.control_connected`` (the server said it listens
   for the run's kill on ``/ws/agents/runs/<id>/control/``);
2. a thread asks B for decisions as fast as it can, one at a time: a raw ``httpx`` client with
   the run token POSTing ``/api/v1/runtime/decisions/`` (an ``allow`` of ``crm-lookup``, a fresh
   ``arguments.id`` each time), not ``run.check_tool``: the SDK refuses locally, without
   asking, once ``run.killed`` is set, and what is measured here is the server's answer;
3. after ``--settle`` seconds (0.3) of that, the press: the admin POSTs the console's form
   ``/kill/run/?target=<run id>`` (``reason``, ``memory_reads=allow``, CSRF token) to A; it
   answers 302 (to the incident page) once the kill is committed. t0 is taken just before the
   POST is sent, t1 when its answer arrived;
4. measured: **first deny**, the receive time of the first decision answer that is a ``deny``
   (reason ``run_killed``) or a 401 (``run_killed``: the killed run's token), and **SDK
   abort**, the moment the SDK learns of the kill over its control socket (the ``run.on_kill``
   callback, called in the control thread right after ``run.killed`` is set), each from three
   moments: t0 and t1, and tc, just before the kill committed: from just before the press the
   bench reads the run's row on its own PostgreSQL connection every 0.5 ms, and tc is when the
   last read that still said ``running`` began (the read after it said ``killed``; the span
   between the two, tc's resolution, is printed too). The kill commits between t0 and t1, and A
   sends the push after the commit, before its redirect: "from t0" over-states the time from
   the commit (by the press's own work before it), "from t1" under-states it (often below 0),
   and "from tc" over-states it by at most tc's resolution: the verdicts are judged from tc.

The reference, measured in the same run by the same raw client under the same conditions: the
plain decision round trip (``allow``), every one that completed before a press was sent.

Targets: the first deny within 100 ms of the kill committing, and the SDK abort within 1 s
(p99, judged from tc; the verdicts from t1 and t0 are given beside it, for comparison). The
p99 is taken by nearest rank: with 50 trials it is the slowest one, the max. Prints p50 / p99
/ max in ms of each, beside the reference, the press's own time and tc's resolution, and the
slowest trial's timeline. The CPU that other work on the machine takes meanwhile is sampled
(bench/_cpu.py; both servers, their PostgreSQL backends and Redis count as ours): above 15% the
figures are marked. It is a report: the exit code is 0 whatever the marks say (non-zero only
when the measurement itself could not be made). A web process that has not stopped 15 s after
SIGTERM is said so on stderr and stopped harder. About a minute for 50 trials.

    .venv/bin/python bench/killswitch.py [--trials 50] [--settle 0.3]

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) and Redis on 127.0.0.1:6379.
The console pages are rendered from the source tree (``DEBUG=true``, as bench/approvals.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "sdk"))
from bench import _cpu  # noqa: E402
from bench._serve import free_port, wait_ready  # noqa: E402

ENV = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/tether_bench_kill",
    "REDIS_URL": "redis://127.0.0.1:6379/8",
    "SECRET_KEY": "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    # The login page is rendered from the source tree's static files (no collectstatic).
    "DEBUG": "true",
    "DJANGO_SETTINGS_MODULE": "controlplane.settings",
    "LOG_LEVEL": "WARNING",
}
DATABASE = "tether_bench_kill"
PASSWORD = "bench-password-123"
ADMIN = "bench-admin"
DECISIONS = "/api/v1/runtime/decisions/"
DENY_TARGET_MS = 100.0
ABORT_TARGET_MS = 1000.0
WARMUP_TRIALS = 2
WATCH_POLL = 0.0005  # s between the commit watch's reads
STOP_TIMEOUT = 15.0  # s a web process is given to stop
TRIAL_TIMEOUT = 10.0  # s: a trial whose kill is not seen by then stops the bench
BUSY = 0.15  # share of the CPU used by other work that marks the figures

# How each measured trial's first refusal came, e.g. {"deny run_killed": 50}.
refusals: dict[str, int] = {}


def fresh_database() -> None:
    import psycopg

    base = ENV["DATABASE_URL"].rsplit("/", 1)[0]
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')


def seed() -> str:
    """The agent, its tool, its owner and an admin; returns the agent credential's secret."""
    from apps.accounts.models import Department, User
    from apps.accounts.services import role_assign
    from apps.registry import services as registry
    from apps.registry.models import Tool
    from apps.runtime import services as runtime

    owner = User.objects.create_user("bench-owner", password=PASSWORD)
    department = Department.objects.create(slug="support", name="Support")
    role_assign(actor=None, user=owner, role="owner", department=department)
    admin = User.objects.create_user(ADMIN, password=PASSWORD)
    role_assign(actor=None, user=admin, role="admin")
    agent = registry.agent_create(
        actor=owner,
        data={
            "name": "Support", "slug": "support-agent", "mission": "Answer customers.",
            "department": department, "environments": ["prod"], "status": "active",
            "autonomy_level": 3,
        },
    )  # fmt: skip
    lookup = Tool.objects.create(
        slug="crm-lookup", name="CRM lookup", description="Looks up.", risk_class="low",
        actions=["read"], input_schema={"type": "object"}, output_schema={"type": "object"},
        owner=owner,
    )  # fmt: skip
    registry.grant_set(
        actor=owner, agent=agent, tool=lookup, actions=["read"], environments=["prod"]
    )
    _credential, issued = runtime.credential_issue(
        actor=owner, agent=agent, environment="prod", name="bench"
    )
    return issued.plaintext


class Admin:
    """The admin signed in to the console (process A): a session cookie and its CSRF token."""

    def __init__(self, base: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=base, timeout=10, follow_redirects=False)
        self.http.get("/accounts/login/").raise_for_status()
        token = self.http.cookies["csrftoken"]
        signed_in = self.http.post(
            "/accounts/login/",
            data={"username": ADMIN, "password": PASSWORD, "csrfmiddlewaretoken": token},
        )
        if signed_in.status_code != 302 or "sessionid" not in self.http.cookies:
            raise SystemExit(f"{ADMIN} could not sign in: HTTP {signed_in.status_code}")

    def press(self, run_id: str, marks: dict[str, float]) -> None:
        """The press: the console's confirmation form for one run, as the page posts it.
        ``marks["t0"]`` just before it is sent, ``marks["t1"]`` once its answer is back."""
        data = {
            "target": run_id,
            "reason": "bench: stop this run",
            "memory_reads": "allow",
            "csrfmiddlewaretoken": self.http.cookies["csrftoken"],
        }
        marks["t0"] = time.perf_counter()
        pressed = self.http.post("/kill/run/", params={"target": run_id}, data=data)
        marks["t1"] = time.perf_counter()
        if pressed.status_code != 302 or "/kill/" not in pressed.headers.get("location", ""):
            raise SystemExit(
                f"the press was refused: HTTP {pressed.status_code}: {pressed.text[:300]}"
            )


class CommitWatch:
    """Sees when the kill is committed: a direct read of the run's row on the bench's own
    PostgreSQL connection, every ``WATCH_POLL`` s from just before the press until it says
    ``killed``. ``tc`` is when the read before that one began: surely before the commit, by at
    most ``tc_span`` (the read that saw it answered then)."""

    def __init__(self) -> None:
        import psycopg

        from apps.runtime.models import Run

        self.conn = psycopg.connect(ENV["DATABASE_URL"], autocommit=True)
        self.sql = f'SELECT state FROM "{Run._meta.db_table}" WHERE id = %s'

    def watch(self, run_id: Any, marks: dict[str, float]) -> threading.Thread:
        def go() -> None:
            deadline = time.monotonic() + TRIAL_TIMEOUT
            while time.monotonic() < deadline:
                sent = time.perf_counter()
                row = self.conn.execute(self.sql, [run_id]).fetchone()
                if row is not None and row[0] == "killed":
                    seen = time.perf_counter()
                    # Only the press (after t0) kills it: a first read that sees it has t0.
                    marks["tc"] = max(marks.get("running", marks["t0"]), marks["t0"])
                    marks["tc_span"] = seen - marks["tc"]
                    return
                marks["running"] = sent  # the commit came after this read began
                time.sleep(WATCH_POLL)

        watcher = threading.Thread(target=go, name=f"commit-watch-{run_id}", daemon=True)
        watcher.start()
        return watcher

    def close(self) -> None:
        self.conn.close()


class Asker(threading.Thread):
    """Decisions for one run, one at a time and as fast as B answers, until the first refusal:
    a ``deny`` or a 401. Keeps the round trips of the ``allow`` answers that completed before
    the press was sent (the reference)."""

    def __init__(self, base: str, token: str, trial: str, marks: dict[str, float]) -> None:
        super().__init__(name=f"asker-{trial}", daemon=True)
        import httpx

        self.http = httpx.Client(
            base_url=base,
            timeout=10,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        self.trial = trial
        self.marks = marks
        self.allows: list[float] = []
        self.refused_at: float | None = None
        self.refusal = ""
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self._ask()
        except BaseException as exc:  # reported by the trial
            self.error = exc
        finally:
            self.http.close()

    def _ask(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            body = {
                "action": "tool.invoke",
                "tool": "crm-lookup",
                "tool_action": "read",
                "arguments": {"id": f"{self.trial}-{n}"},  # fresh: no circuit breaker trips
            }
            sent = time.perf_counter()
            answer = self.http.post(DECISIONS, content=json.dumps(body))
            got = time.perf_counter()
            if answer.status_code == 401:
                self.refused_at = got
                self.refusal = f"401 {answer.json().get('error', {}).get('code', '')}"
                return
            answer.raise_for_status()
            data = answer.json()
            if data["disposition"] == "deny":
                self.refused_at = got
                self.refusal = "deny " + ",".join(data["reasons"])
                return
            if data["disposition"] != "allow":
                raise SystemExit(f"trial {self.trial}: a {data['disposition']} before the kill")
            if "t0" not in self.marks:  # completed before the press was sent
                self.allows.append((got - sent) * 1000)


def trial(
    client: Any, admin: Admin, commits: CommitWatch, base_b: str, name: str, settle: float
) -> tuple[dict[str, float], list[float]]:
    """One run killed while it asks; the figures (s) and the reference round trips (ms)."""
    marks: dict[str, float] = {}
    aborted: dict[str, float] = {}
    with client.run(f"Bench: kill trial {name}") as run:

        @run.on_kill
        def _aborted(killed_run: Any) -> None:
            aborted["at"] = time.perf_counter()
            aborted["flag"] = float(killed_run.killed.is_set())

        deadline = time.monotonic() + TRIAL_TIMEOUT
        while not run.control_connected:
            if time.monotonic() > deadline:
                raise SystemExit(f"trial {name}: the control socket never said it listens")
            time.sleep(0.005)
        asker = Asker(base_b, run.token, name, marks)
        asker.start()
        time.sleep(settle)
        if asker.error is not None or not asker.is_alive():
            raise SystemExit(
                f"trial {name}: the decisions stopped before the press: {asker.error!r}"
            )
        watcher = commits.watch(run.id, marks)
        admin.press(str(run.id), marks)
        watcher.join(timeout=TRIAL_TIMEOUT)
        if "tc" not in marks:
            raise SystemExit(f"trial {name}: the run was not killed in the database")
        asker.join(timeout=TRIAL_TIMEOUT)
        asker.stop.set()
        if asker.error is not None:
            raise SystemExit(f"trial {name}: {asker.error!r}")
        if asker.refused_at is None:
            raise SystemExit(
                f"trial {name}: no decision was refused {TRIAL_TIMEOUT:.0f} s after the kill"
            )
        if not run.killed.wait(TRIAL_TIMEOUT) or "at" not in aborted:
            raise SystemExit(
                f"trial {name}: run.killed was not set {TRIAL_TIMEOUT:.0f} s after the kill "
                f"(the decisions were refused: {asker.refusal}; control socket connected: "
                f"{run.control_connected})"
            )
        if not aborted["flag"]:
            raise SystemExit(f"trial {name}: on_kill was called before run.killed was set")
    figures = {
        "deny_tc": asker.refused_at - marks["tc"],
        "abort_tc": aborted["at"] - marks["tc"],
        "tc_span": marks["tc_span"],
        "deny_t0": asker.refused_at - marks["t0"],
        "deny_t1": asker.refused_at - marks["t1"],
        "abort_t0": aborted["at"] - marks["t0"],
        "abort_t1": aborted["at"] - marks["t1"],
        "press": marks["t1"] - marks["t0"],
        "t0_tc": marks["tc"] - marks["t0"],
    }
    refusals[asker.refusal] = refusals.get(asker.refusal, 0) + 1
    return figures, asker.allows


def spread(values: list[float]) -> tuple[float, float, float]:
    """p50, p99 (nearest rank) and max."""
    ordered = sorted(values)
    p99 = ordered[max(math.ceil(len(ordered) * 0.99) - 1, 0)]
    return statistics.median(ordered), p99, ordered[-1]


def helpers() -> set[int]:
    """The processes that serve our servers: their PostgreSQL backends, and Redis."""
    import psycopg

    with psycopg.connect(ENV["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres") as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", [DATABASE]
        ).fetchall()
    return {pid for (pid,) in rows} | _cpu.by_name("redis-server")


def serve(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "controlplane.serve", "--port", str(port), "--workers", "1"],
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore:No directory at:UserWarning"},
    )


def stop(servers: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM; then SIGINT, which uvicorn takes as "force quit" (after SIGTERM it waits for
    its connections' tasks with no time limit); then SIGKILL. Says so when SIGTERM was not
    enough: that is a finding, not the bench's to hide."""
    for server in servers.values():
        server.terminate()
    for name, server in servers.items():
        for then in (signal.SIGINT, signal.SIGKILL, None):
            try:
                server.wait(timeout=STOP_TIMEOUT)
                break
            except subprocess.TimeoutExpired:
                if then is None:
                    raise
                print(
                    f"note: web process {name} had not stopped {STOP_TIMEOUT:.0f} s after "
                    f"{'SIGTERM' if then == signal.SIGINT else 'SIGINT'}; sending {then.name}",
                    file=sys.stderr,
                )
                server.send_signal(then)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument(
        "--settle", type=float, default=0.3, help="s of decisions before each press"
    )
    args = parser.parse_args()
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    os.environ.update(ENV)

    fresh_database()
    import django

    django.setup()
    import redis
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(ENV["REDIS_URL"]).flushdb()
    secret = seed()
    commits = CommitWatch()

    import tether

    port_a, port_b = free_port(), free_port()
    while port_b == port_a:
        port_b = free_port()
    base_a, base_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    console, agents = serve(port_a), serve(port_b)
    rows: list[dict[str, float]] = []
    reference: list[float] = []
    try:
        wait_ready(base_a + "/healthz", console)
        wait_ready(base_b + "/healthz", agents)
        busy_before = max(_cpu.settle(console.pid), _cpu.settle(agents.pid))
        admin = Admin(base_a)
        client = tether.Client(base_b, secret, timeout=10)
        for i in range(WARMUP_TRIALS):  # each process's caches and connections
            trial(client, admin, commits, base_b, f"warm-{i}", args.settle)
        refusals.clear()
        before = _cpu.snapshot(console.pid, _cpu.tree(agents.pid) | helpers())
        began = time.monotonic()
        for i in range(args.trials):
            figures, allows = trial(client, admin, commits, base_b, str(i), args.settle)
            rows.append(figures)
            reference.extend(allows)
        took = time.monotonic() - began
        after = _cpu.snapshot(console.pid, _cpu.tree(agents.pid) | helpers())
        during, _ = _cpu.others_between(before, after)
        client.close()
    finally:
        commits.close()
        stop({"A (console)": console, "B (agent)": agents})

    def column(key: str) -> list[float]:
        return [row[key] * 1000 for row in rows]

    def line(label: str, values: list[float]) -> None:
        p50, p99, top = spread(values)
        print(f"{label:50} {p50:8.1f} {p99:8.1f} {top:8.1f}")

    print(
        f"\n{args.trials} trials, one at a time ({took:.0f} s); two web processes, "
        "controlplane.serve --workers 1 each (PostgreSQL, Redis channel layer):\n"
        "A serves the console's press, B the agent's decisions and control socket"
    )
    busy = max(busy_before, during)
    print(f"other work on the machine: {busy_before:.0%} of the CPU before, {during:.0%} during")
    how = ", ".join(f"{name} x{count}" for name, count in sorted(refusals.items()))
    print(f"the first refusal each trial: {how}")
    measures = [
        ("first denied decision (on B)", "deny"),
        ("SDK abort (run.killed set)", "abort"),
    ]
    points = [
        ("tc", "from just before the commit (tc: the last read of the run's row still running)"),
        ("t1", "from the press's answer (t1: after the commit and its push)"),
        ("t0", "from the press sent (t0: before the commit)"),
    ]
    print(f"\nms{'':48} {'p50':>8} {'p99':>8} {'max':>8}")
    for suffix, label in points:
        print(f"... {label}:")
        for name, key in measures:
            line(f"  {name}", column(f"{key}_{suffix}"))
    line("reference: a plain decision round trip (allow)", reference)
    print(f"  ({len(reference)} round trips by the same raw client, before the presses)")
    line("the press itself (POST on A, to its 302)", column("press"))
    line("tc's resolution (the commit came within tc + it)", column("tc_span"))
    for name, key in measures:
        worst = max(range(len(rows)), key=lambda i: rows[i][f"{key}_tc"])
        row = {k: v * 1000 for k, v in rows[worst].items()}
        print(
            f"the slowest {name.split(' (')[0]} (trial {worst}): t0 + {row['t0_tc']:.1f} = tc "
            f"(resolution {row['tc_span']:.1f}), tc + {row[f'{key}_tc']:.1f}; "
            f"the press answered at t0 + {row['press']:.1f}"
        )
    mark = "  (* other work took over 15% of the CPU: figures are high)" if busy > BUSY else ""
    print("\ntargets (p99 from tc; from t1 and t0 in brackets):")
    for name, key, target in (
        ("first deny", "deny", DENY_TARGET_MS),
        ("SDK abort", "abort", ABORT_TARGET_MS),
    ):
        verdicts = []
        for suffix, _ in points:
            p99 = spread(column(f"{key}_{suffix}"))[1]
            verdicts.append(f"{p99:.1f} ms {'PASS' if p99 <= target else 'FAIL'}")
        print(
            f"  {name} within {target:.0f} ms of the kill: {verdicts[0]} "
            f"(from t1 {verdicts[1]}; from t0 {verdicts[2]}){mark}"
        )


if __name__ == "__main__":
    main()
