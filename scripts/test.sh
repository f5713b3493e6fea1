#!/usr/bin/env bash
# README command 2: install what the tests need (Python packages, Debian's chromium), make sure
# PostgreSQL and Redis are up, run the static checks, then the whole suite against them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_common.sh

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  as_root apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q "$@" >/dev/null
}

echo "==> Browser for the browser tests"
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium
fi

echo "==> PostgreSQL and Redis"
if ! command -v pg_ctlcluster >/dev/null 2>&1; then apt_install postgresql; fi
if ! command -v redis-server >/dev/null 2>&1; then apt_install redis-server; fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
for _ in $(seq 1 30); do
  pg_isready -h 127.0.0.1 -p 5432 -q && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
  sleep 1
done
pg_isready -h 127.0.0.1 -p 5432
redis-cli -h 127.0.0.1 -p 6379 ping

echo "==> Installing Tether with its test extras into .venv"
ensure_venv "[test]"

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/tether}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/15}"

echo "==> ruff, mypy"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
DEBUG=true .venv/bin/mypy apps
DEBUG=true .venv/bin/mypy --strict sdk/tether

echo "==> Django checks (production settings) and migrations"
(
  export DEBUG=false ALLOWED_HOSTS=tether.example.com DB_POOL=false
  SECRET_KEY="$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))')"
  export SECRET_KEY
  .venv/bin/python manage.py check --deploy --fail-level WARNING
  .venv/bin/python manage.py makemigrations --check --dry-run
)

echo "==> pytest"
# Each test has its own limit (pyproject); this one bounds the whole run, so that a thread
# left hanging cannot keep the process from exiting after the summary.
status=0
timeout --kill-after=30 "${TETHER_TEST_LIMIT:-1800}" .venv/bin/pytest "$@" || status=$?
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
  echo "pytest did not finish within ${TETHER_TEST_LIMIT:-1800} s" >&2
fi
exit "$status"
