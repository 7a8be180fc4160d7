#!/usr/bin/env bash
# Install Debian's nginx for the tests that run chatd behind it (the tests start their own
# nginx with a rendered config on loopback ports; the system service is not used).
set -euo pipefail
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null 2>&1 \
  || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
# The package may start its default site on port 80; the tests need nothing of it.
service nginx stop >/dev/null 2>&1 || nginx -s stop >/dev/null 2>&1 || true
