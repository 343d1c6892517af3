#!/usr/bin/env bash
# The test command: sets up everything on a fresh machine and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# The peers our contract tests run against the simulator (bench-only, see bench/requirements.txt).
.venv/bin/python -m pip install -q --disable-pip-version-check -r bench/requirements.txt
bash scripts/ensure-prometheus.sh
bash scripts/ensure-stack-tools.sh
bash scripts/ensure-package-tools.sh
# Lint and type-check the whole repository: packages, tests, benchmarks and scripts (which
# files mypy checks, and how strictly, is in pyproject.toml's [tool.mypy]).
.venv/bin/ruff check .
.venv/bin/mypy
# Most tests wait on processes, HTTP and simulated time, so eight workers share two cores well
# (measured: 4 workers left the cores half idle); a file stays on one worker (its module
# fixtures are set up once), and files start in the order tests/conftest.py gives them (the
# longest first).
exec .venv/bin/python -m pytest -n "${PVEBALANCE_TEST_WORKERS:-8}" --dist loadfile --no-loadscope-reorder "$@"
