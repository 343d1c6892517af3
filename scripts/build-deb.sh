#!/usr/bin/env bash
# Builds the Debian package pvebalance_<version>_<arch>.deb from the files git tracks (a clean
# copy: no .venv, no build/ left-overs), into DIR (default: dist/). Needs debhelper, dpkg-dev,
# python3-venv and network access to PyPI for the pinned wheels (packaging/requirements.lock).
# Usage: bash scripts/build-deb.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-dist}")
for tool in dpkg-buildpackage dh; do
  command -v "$tool" >/dev/null || { echo "build-deb: $tool is missing: apt-get install debhelper dpkg-dev python3-venv" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/pvebalance"
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$work/pvebalance"
(cd "$work/pvebalance" && dpkg-buildpackage --build=binary --no-sign >"$work/build.log" 2>&1) || {
  tail -n 40 "$work/build.log" >&2; echo "build-deb: dpkg-buildpackage failed (last 40 lines above)" >&2; exit 1; }
mkdir -p "$out"
cp "$work"/*.deb "$work"/*.changes "$work"/*.buildinfo "$out"/
ls "$out"/pvebalance_*.deb
