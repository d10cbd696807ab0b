#!/usr/bin/env bash
# Set up and run Tandem on the embedded default: SQLite, a filesystem broker and a file cache
# under var/ (no server needed), the web app on http://127.0.0.1:8000 and Celery workers for
# the `default`/`generate` and the `train` queues. The first start imports the base model,
# opens a batch and creates demo logins. Ctrl-C stops everything.
#   bash scripts/run.sh            # PORT=8080 bash scripts/run.sh for another port
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
source scripts/env.sh  # the secret key, HTTPS=0, DEBUG=0 (shared with manage.sh)
port="${PORT:-8000}"

.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py collectstatic --noinput -v0
.venv/bin/python manage.py setup_demo

pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
celery=(.venv/bin/celery -A tandem worker --concurrency 1 --loglevel INFO)
# This worker also runs beat (-B): the weekly rollover and the reaper of interrupted iterations.
"${celery[@]}" -Q default,generate -n "generate@%h" -B --schedule var/celerybeat-schedule \
  >var/worker-generate.log 2>&1 &
pids+=($!)
# Training: a fresh child process per iteration (its memory is returned when it ends).
"${celery[@]}" -Q train -n "train@%h" --max-tasks-per-child 1 >var/worker-train.log 2>&1 &
pids+=($!)
echo "Tandem is at http://127.0.0.1:$port/ (admin: /admin/); worker logs in var/worker-*.log"
.venv/bin/gunicorn tandem.wsgi --bind "127.0.0.1:$port" --workers 2 --worker-class gthread \
  --threads 4 --access-logfile - &
pids+=($!)
wait -n
