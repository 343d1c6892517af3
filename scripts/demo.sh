#!/usr/bin/env bash
# The main command: sets up and runs pvebalance on the built-in demo cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/pvebalance-sim --scenario demo "$@"
