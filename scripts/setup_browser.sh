#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests when it is missing (idempotent; needs root).
# The tests drive /usr/bin/chromium with Playwright for Python (`executable_path`); they never
# download a browser (`playwright install` is not used).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version
