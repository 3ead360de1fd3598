#!/usr/bin/env bash
# Sets up everything the test suite needs and runs it: the README's test command and what CI runs
# (.ci/run calls this script). Safe to run again: each step only adds what is missing.
#   bash scripts/test.sh                 the whole suite
#   bash scripts/test.sh tests/unit -x   any pytest arguments
set -euo pipefail
cd "$(dirname "$0")/.."

# Independent protocol peers and services the interop tests use (Debian packages):
# openssl s_client/s_server, gnutls-cli, libcoap's coap-client, mosquitto (the MQTT sink's broker),
# redis-server (the Redis store's contract tests start one on a free port), chromium (the web
# UI's browser tests drive it headless through Playwright; no browser download).
packages=(openssl gnutls-bin libcoap3-bin mosquitto redis-server chromium)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "note: without ${missing[*]} (Debian packages; install them as root) the interop" \
             "tests that need them are skipped" >&2
    fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'

exec .venv/bin/python -m pytest -q -n 2 "$@"
