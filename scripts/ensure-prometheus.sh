#!/usr/bin/env bash
# Makes sure prometheus and promtool are on the PATH, installing Debian's package when root.
set -euo pipefail
command -v prometheus >/dev/null && command -v promtool >/dev/null && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
else
  echo "Prometheus is missing: run 'sudo apt-get install prometheus' (Debian/Ubuntu)" >&2
  exit 1
fi
