#!/usr/bin/env bash
# The main command: sets up, then runs the whole pvebalance loop on the built-in demo cluster
# (simulator, a day of history, exporter, Prometheus, pvebalance plan). Options: --apply to
# carry the plan out, --stay to keep it running, --help for the rest (docs/demo.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/pvebalance-demo "$@"
