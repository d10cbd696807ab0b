#!/usr/bin/env bash
# The test suite on a fresh machine: set-up, Debian's Chromium (browser tests) and
# docker-compose (checks docker-compose.yml), then two passes:
#   1. everything on the embedded default (SQLite, filesystem broker);
#   2. the Django tests again on PostgreSQL and Redis (127.0.0.1 unless TEST_DATABASE_URL /
#      TEST_REDIS_URL say otherwise), where the `services` tests (real worker on Redis,
#      browser end to end, load benchmark smoke) run.
# Extra arguments go to both pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v docker-compose >/dev/null || missing+=(docker-compose)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install Debian's ${missing[*]} (apt-get install ${missing[*]}) and run again" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

.venv/bin/python -m pytest "$@"
DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}" \
REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}" \
  .venv/bin/python -m pytest -p no:cacheprovider tests/tandem tests/annotation tests/admin_export tests/frontend tests/benchmarks tests/rlhf tests/loop "$@"
