"""Private servers that a test may stop and start: a redis-server and a PostgreSQL cluster.

The shared PostgreSQL and Redis serve everyone's tests, so they are never stopped; these are
started per test (Redis) or per module (PostgreSQL) on free ports and thrown away after.
A missing binary fails the test with the path it looked for: nothing is skipped.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from apps.policy.evaluation import reset_snapshot
from apps.runtime.decisions import forget_caches

REDIS_SERVER = "/usr/bin/redis-server"
POSTGRES_BINS = "/usr/lib/postgresql/*/bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _require(path: str, what: str) -> str:
    if not os.access(path, os.X_OK):
        pytest.fail(f"{what} is needed at {path} for this test (install it; nothing is skipped).")
    return path


class RedisServer:
    """``redis-server --save '' --appendonly no``: it keeps nothing, so a restart starts empty."""

    def __init__(self) -> None:
        self.binary = _require(REDIS_SERVER, "redis-server")
        self.port = free_port()
        self.workdir = tempfile.mkdtemp(prefix="tether-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.workdir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)
            finally:
                client.close()

    def kill(self) -> None:
        """SIGKILL: the data in memory is gone, as in a crash."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


class PostgresCluster:
    """A throwaway cluster (initdb, trust auth) on a free port.

    initdb and postgres refuse to run as root, so under root they run as the ``postgres``
    user (``runuser``), with the data directory handed to that user.
    """

    def __init__(self) -> None:
        found = sorted(glob.glob(POSTGRES_BINS), key=lambda p: int(Path(p).parent.name))
        bindir = found[-1] if found else POSTGRES_BINS.replace("*", "<version>")
        self.initdb = _require(f"{bindir}/initdb", "PostgreSQL's initdb")
        self.pg_ctl = _require(f"{bindir}/pg_ctl", "PostgreSQL's pg_ctl")
        self.port = free_port()
        self.workdir = tempfile.mkdtemp(prefix="tether-pg-")
        self.data = f"{self.workdir}/data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            _require("/usr/sbin/runuser", "runuser (to run PostgreSQL as a non-root user)")
            self._as = ["/usr/sbin/runuser", "-u", "postgres", "--"]
            shutil.chown(self.workdir, user="postgres")

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stdout}{done.stderr}")

    def init(self) -> None:
        self._run(self.initdb, "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync")  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.workdir} "
            "-c fsync=off -c full_page_writes=off"  # a test cluster: a clean stop keeps its data
        )
        self._run(self.pg_ctl, "-D", self.data, "-o", options, "-l", f"{self.workdir}/log", "-w",
                  "start")  # fmt: skip

    def stop(self) -> None:
        """``-m fast``: the server ends every session and shuts down at once."""
        self._run(self.pg_ctl, "-D", self.data, "-m", "fast", "-w", "stop")

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # it was not running
            self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def settings_for(self, base: dict) -> dict:
        """A DATABASES entry like ``base`` but on this cluster."""
        return {
            **base,
            "NAME": "postgres",
            "USER": "postgres",
            "PASSWORD": "",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
        }


# --- a fixture: the whole importing module on a private cluster -------------------------------


def _forget_process_state() -> None:
    forget_caches()
    reset_snapshot()
    ContentType.objects.clear_cache()


def _close(wrapper: BaseDatabaseWrapper) -> None:
    wrapper.close()
    if getattr(wrapper, "pool", None) is not None:
        wrapper.close_pool()


@pytest.fixture(scope="module", autouse=True)
def private_postgres(django_db_setup, django_db_blocker) -> Iterator[PostgresCluster]:
    """Point the ``default`` database at a private cluster for the module that imports this
    fixture (autouse there), migrated like the session's test database."""
    cluster = PostgresCluster()
    try:
        cluster.init()
        cluster.start()
        shared_settings = connections.settings["default"]
        shared_connection = connections["default"]
        # Django keeps a psycopg pool per alias at class level: close it, or the new wrapper
        # would borrow connections to the shared server.
        _close(shared_connection)
        connections.settings["default"] = cluster.settings_for(shared_settings)
        del connections["default"]
        with django_db_blocker.unblock():
            call_command("migrate", run_syncdb=True, interactive=False, verbosity=0)
            with connection.cursor() as cursor:
                cursor.execute("SELECT inet_server_port()")
                assert cursor.fetchone()[0] == cluster.port, "not on the private cluster"
        _forget_process_state()
        yield cluster
        _close(connections["default"])
        connections.settings["default"] = shared_settings
        connections["default"] = shared_connection
        _forget_process_state()
    finally:
        cluster.close()
