#!/usr/bin/env bash
# Install the system packages RocketWS's tools need, with apt-get, only when missing.
# Usage: scripts/sysdeps.sh [venv]   ("venv": only what `python3 -m venv` needs)
# Without an argument: what the test suite needs (redis-server for the Redis broker tests,
# chromium for the headless browser tests, nginx for the handshake and reverse-proxy tests, Node.js for the `ws` client tests).
set -euo pipefail
need=()
if [ "${1:-}" = venv ]; then
  need+=("python3-venv")
else
  command -v redis-server >/dev/null 2>&1 || need+=("redis-server")
  command -v chromium >/dev/null 2>&1 || need+=("chromium")  # browser tests (headless)
  # nginx: a proxy run by the handshake and liveness tests (never as a service); Debian
  # puts it in /usr/sbin, which a non-root PATH may lack
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=("nginx")
  command -v npm >/dev/null 2>&1 || need+=("nodejs" "npm")  # the `ws` client (tests/node)
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "sysdeps: missing ${need[*]}; install them with: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
echo "sysdeps: installing ${need[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
