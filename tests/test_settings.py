"""The embedded default and the production stores are chosen by the environment alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "db": settings.DATABASES["default"]["ENGINE"],
    "channels": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "broker": settings.CELERY_BROKER_URL,
}))
"""


def settings_with(**env: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    clean.update(DJANGO_SETTINGS_MODULE="controlplane.settings", SECRET_KEY="x" * 50, **env)
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_without_database_or_redis_urls_the_embedded_default_needs_no_server(tmp_path):
    chosen = settings_with(TETHER_VAR_DIR=str(tmp_path))
    assert chosen == {
        "db": "django.db.backends.sqlite3",
        "channels": "channels.layers.InMemoryChannelLayer",
        "broker": "filesystem://",
    }


def test_with_urls_set_postgresql_and_redis_are_used():
    chosen = settings_with(
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/tether",
        REDIS_URL="redis://127.0.0.1:6379/3",
    )
    assert chosen == {
        "db": "django.db.backends.postgresql",
        "channels": "channels_redis.core.RedisChannelLayer",
        "broker": "redis://127.0.0.1:6379/3",
    }


def test_production_without_a_secret_key_refuses_to_start():
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    env["DJANGO_SETTINGS_MODULE"] = "controlplane.settings"
    out = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "SECRET_KEY is required" in out.stderr
