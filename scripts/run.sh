#!/usr/bin/env bash
# Set up, import the base model once, and answer a chat prompt with it (streamed).
#   bash scripts/run.sh ["your prompt"]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
model="${TANDEM_BASE_MODEL_DIR:-var/models/smollm2-135m-instruct}"
[ -d "$model" ] || .venv/bin/python -m modelcore import smollm2 "$model"
.venv/bin/python -m modelcore generate "$model" \
  --prompt "${1:-Give me three tips for writing a good bug report.}"
