#!/usr/bin/env bash
# manage.py with the settings scripts/run.sh serves with (the same database, artifacts and
# secret key), for commands beside a running installation:
#   bash scripts/manage.sh import_comparisons examples/demo-week.jsonl --annotator annotator
#   bash scripts/manage.sh create_api_token admin --name demo
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
exec .venv/bin/python manage.py "$@"
