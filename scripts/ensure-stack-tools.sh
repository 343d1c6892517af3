#!/usr/bin/env bash
# Makes sure the stack's test tools are on the PATH: amtool (Debian's prometheus-alertmanager)
# to validate alertmanager.yml, and VictoriaMetrics (Debian's victoria-metrics) for the
# controller's second query backend. Installs them when root; otherwise says what to run.
set -euo pipefail
missing=()
command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
command -v victoria-metrics >/dev/null || missing+=(victoria-metrics)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "Missing ${missing[*]}: run 'sudo apt-get install ${missing[*]}' (Debian/Ubuntu)" >&2
  exit 1
fi
