#!/usr/bin/env bash
# README command 1: install, migrate, load the demo organisation and start the web server,
# a Celery worker and beat. Embedded default (SQLite, in-memory channel layer, file-system
# broker) unless DATABASE_URL / REDIS_URL are set. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_common.sh

echo "==> Installing Tether into .venv"
ensure_venv ""

mkdir -p var/broker/processed var/broker/control
if [ ! -s var/secret_key ]; then
  .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))' > var/secret_key
  chmod 600 var/secret_key
fi
# A local demo: production settings, but plain HTTP on localhost.
export SECRET_KEY_FILE="$PWD/var/secret_key"
export DEBUG="${DEBUG:-false}"
export SECURE_SSL_REDIRECT=false SESSION_COOKIE_SECURE=false CSRF_COOKIE_SECURE=false
export SECURE_HSTS_SECONDS=0
export TETHER_PORT="${TETHER_PORT:-8000}"

echo "==> Migrating and loading the demo organisation"
.venv/bin/python manage.py migrate --noinput -v 0
.venv/bin/python manage.py collectstatic --noinput -v 0
.venv/bin/python manage.py load_demo
.venv/bin/python manage.py load_demo_runs
.venv/bin/python manage.py load_demo_approvals
.venv/bin/python manage.py load_demo_kills
.venv/bin/python manage.py load_demo_costs
.venv/bin/python manage.py load_demo_drift

cat <<MSG

==> Tether is starting at http://127.0.0.1:${TETHER_PORT}/
    Sign in with one of the demo logins above. Ctrl-C stops the web server, worker and beat.

MSG
exec .venv/bin/honcho -f Procfile start
