#!/usr/bin/env bash
# Debian packages the test suite runs for real: PostgreSQL (the team database), Chromium
# (the dashboard, driven by Playwright) and OpenSSH's server (test boxes the plane reaches over
# SSH; the package starts no daemon, each test runs its own), and rsync (`brev run` syncs a
# job's directory with it; the tests also run the tar fallback).
# Installs only what is missing, and only as root; otherwise says what is missing.
set -euo pipefail

missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
[[ -x /usr/bin/rsync ]] || missing+=(rsync)

((${#missing[@]} == 0)) && exit 0
if [[ $(id -u) != 0 ]]; then
    echo "missing Debian packages: ${missing[*]}; install them (as root) to run every test" >&2
    exit 0
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
