#!/usr/bin/env bash
# Runs the platform on the embedded defaults: SQLite, local files, a broker kept in a folder.
# Installs on first run, migrates, seeds the demo (users, inputs, demo models; once), starts a worker
# and the web server.
# Usage: scripts/run.sh   (PORT=8000 by default; Ctrl-C stops both)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-env.sh
PY=.venv/bin/python
PORT=${PORT:-8000}

$PY manage.py migrate --noinput
logins=$($PY -c 'import django, os; os.environ.setdefault("DJANGO_SETTINGS_MODULE", "onereward.settings"); django.setup(); from inputs.management.commands.seed_demo import logins_file; print(logins_file())')
# Safe to re-run: users keep their passwords, inputs and the demo models are made only when missing.
$PY manage.py seed_demo

# --beat: the same process sends the collection schedules' tick every minute (a deployment runs
# `celery -A onereward beat` apart).
mkdir -p var
$PY -m celery -A onereward worker -Q default,gpu --concurrency 1 --loglevel INFO --beat --schedule var/celerybeat-schedule &
worker=$!
trap 'kill $worker 2>/dev/null; wait $worker 2>/dev/null' EXIT INT TERM

echo
echo "OneReward is at http://127.0.0.1:$PORT/  (admin: http://127.0.0.1:$PORT/admin/, API: http://127.0.0.1:$PORT/api/docs/)"
echo "Logins (username, password, role), also in $logins:"
sed 's/^/  /' "$logins"
echo
$PY manage.py runserver "127.0.0.1:$PORT"
