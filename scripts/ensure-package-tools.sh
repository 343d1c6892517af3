#!/usr/bin/env bash
# Makes sure the Debian package's test tools are here (tests/package/test_deb.py): debhelper and
# the build dependencies, lintian, mmdebstrap, systemd-analyze. Installs them when root; the
# test needs root anyway (mmdebstrap's root mode, chroot) and is skipped otherwise.
set -euo pipefail
[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || exit 0
wanted=(debhelper dpkg-dev python3-venv python3-dev libyaml-dev lintian mmdebstrap systemd)
missing=()
for package in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
