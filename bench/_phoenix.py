"""The reference trace store for bench/ingest.py: Arize Phoenix, in a virtualenv of its own.

``ensure_installed()`` makes ``.bench/phoenix-venv`` (ignored by git) and runs
``pip install 'arize-phoenix[pg]'`` into it (the ``pg`` extra brings ``asyncpg``, which Phoenix
needs for PostgreSQL), only when ``phoenix`` is not there yet. ``server()`` starts
``phoenix serve`` on 127.0.0.1 with its database in PostgreSQL (``PHOENIX_SQL_DATABASE_URL``, a
database of its own, made afresh), telemetry off, and waits for ``/healthz``. Phoenix needs
nothing from the network once installed.

Phoenix answers an OTLP export as soon as it has queued the spans; a background task writes
them to its ``spans`` table. So the bench counts spans *saved* by polling that table.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".bench"
VENV = HOME / "phoenix-venv"
RUN = HOME / "phoenix"
PHOENIX = VENV / "bin" / "phoenix"
PACKAGE = "arize-phoenix[pg]"


class Unavailable(RuntimeError):
    pass


@dataclass
class Server:
    url: str  # the OTLP/HTTP traces endpoint
    database_url: str  # its PostgreSQL database (psycopg form)
    pid: int


def ensure_installed() -> None:
    python = VENV / "bin" / "python"
    if PHOENIX.exists():
        probe = subprocess.run([str(python), "-c", "import asyncpg"], capture_output=True)
        if probe.returncode == 0:
            return
    print(f"installing {PACKAGE} into {VENV.relative_to(ROOT)} (first run only) ...", flush=True)
    HOME.mkdir(exist_ok=True)
    if not python.exists():
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "--quiet", "--disable-pip-version-check"]
    done = subprocess.run([*pip, "install", PACKAGE], capture_output=True, text=True)
    if done.returncode != 0 or not PHOENIX.exists():
        errors = [line for line in done.stderr.splitlines() if not line.startswith("WARNING:")]
        raise Unavailable(f"pip install '{PACKAGE}' failed: " + "\n".join(errors[-10:]))


def _ready(base: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise Unavailable(f"phoenix exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise Unavailable(f"phoenix not ready after {timeout:.0f} s; see {log}")


@contextlib.contextmanager
def server(port: int, *, postgres: str, database: str) -> Iterator[Server]:
    """``postgres`` is a server URL without a database (postgres://user@host:port)."""
    import psycopg

    ensure_installed()
    with psycopg.connect(postgres + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    RUN.mkdir(parents=True, exist_ok=True)
    log = RUN / "server.log"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(
        {
            "PHOENIX_SQL_DATABASE_URL": postgres.replace("postgres://", "postgresql://", 1)
            + "/"
            + database,
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(port),
            "PHOENIX_GRPC_PORT": str(port + 1),
            "PHOENIX_WORKING_DIR": str(RUN),
            "PHOENIX_TELEMETRY_ENABLED": "false",
        }
    )
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(PHOENIX), "serve"],
            cwd=RUN,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _ready(base, process, log)
        yield Server(
            url=base + "/v1/traces", database_url=f"{postgres}/{database}", pid=process.pid
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
