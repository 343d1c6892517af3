#!/usr/bin/env bash
# Creates .venv with pvebalance and its pinned dependencies. Usage: scripts/setup.sh [test]
# (`test` adds the test tools and the `ai` extra, whose SDKs the advisor tests drive.)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "pvebalance needs python3 >= 3.10" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv || { echo "python3 -m venv failed: install the Debian package python3-venv" >&2; exit 1; }
fi
extras="[progress]"
[ "${1:-}" = "test" ] && extras="[progress,test,ai]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"
