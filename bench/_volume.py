"""What the benches on the finance volume share: the database bench/seed_volume.py builds
(10M spans, 1M runs, their rollups), how Django is set up on it, and the marker that says a
seed there is finished and of which size.

A bench that times reads against that volume does::

    from bench._volume import DATABASE, django_setup, seed_marker

    marker = seed_marker(DATABASE)  # None: run bench/seed_volume.py first
    django_setup(DATABASE)
"""

from __future__ import annotations

import os
from typing import Any

POSTGRES = "postgres://postgres@127.0.0.1:5432"
DATABASE = "tether_volume"
MARKER_TABLE = "bench_volume_seed"
ENV = {
    "REDIS_URL": "redis://127.0.0.1:6379/12",
    "SECRET_KEY": "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "TETHER_VAR_DIR": "/tmp/var_volume",
    "DEBUG": "true",
    "ALLOWED_HOSTS": "127.0.0.1,testserver",
    "SECURE_SSL_REDIRECT": "false",
    "DJANGO_SETTINGS_MODULE": "controlplane.settings",
    "LOG_LEVEL": "WARNING",
    "DB_POOL": "false",
    # Spans are kept forever here: with the 30-day default, days older than that would get no
    # partition of their own (apps/traces/partitions.py) and would all land in DEFAULT.
    "TRACE_RETENTION_DAYS": "0",
}
# Who the seed makes to read the dashboards as (role finance / admin), with this password.
FINANCE_USER = "bench-finance"
ADMIN_USER = "bench-admin"
PASSWORD = "bench-password-123"


def database_url(name: str) -> str:
    return f"{POSTGRES}/{name}"


def django_setup(name: str = DATABASE) -> None:
    os.environ.update({**ENV, "DATABASE_URL": database_url(name)})
    os.makedirs(ENV["TETHER_VAR_DIR"], exist_ok=True)
    import django

    django.setup()


def database_exists(name: str) -> bool:
    import psycopg

    with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
    return found is not None


def seed_marker(name: str = DATABASE) -> dict[str, Any] | None:
    """The finished seed in database ``name`` (its size, when, its figures), or None when the
    database, or a finished seed in it, does not exist."""
    import psycopg

    if not database_exists(name):
        return None
    with psycopg.connect(database_url(name), autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", [MARKER_TABLE]).fetchone()[0] is None:
            return None
        row = conn.execute(
            f"SELECT spans, runs, days, seed, finished_at, figures FROM {MARKER_TABLE}"
            " WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
    if row is None:
        return None
    spans, runs, days, seed, finished_at, figures = row
    return {
        "spans": spans,
        "runs": runs,
        "days": days,
        "seed": seed,
        "finished_at": finished_at,
        "figures": figures,
    }
