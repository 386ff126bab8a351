#!/usr/bin/env bash
# One-time setup: a virtual environment in .venv with switchyard and its dev tools, and
# redis-server (from apt, when run as root and missing) for the Redis-backed tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "note: redis-server not found; install it (apt-get install redis-server) for the Redis tests" >&2
  fi
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: the CPU wheel; an unpinned torch would pull several GB of CUDA.
.venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
.venv/bin/python -m pip install -q -e ".[dev,triton]"
echo "setup done: .venv/bin/switchyard --help"
