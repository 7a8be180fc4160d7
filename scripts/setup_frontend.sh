#!/usr/bin/env bash
# Build the web page into static/dist/ from the locked npm dependencies (idempotent).
#  - `npm ci` when static/node_modules is missing or older than static/package-lock.json;
#  - `node build.mjs` when static/dist is missing or older than any source file.
# Needs Node.js >= 18 and npm on PATH. FORCE=1 rebuilds everything.
set -euo pipefail
cd "$(dirname "$0")/../static"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "setup_frontend: node and npm are needed to build the web page (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi

stamp=node_modules/.package-lock.json
if [ "${FORCE:-0}" = 1 ] || [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ package.json -nt "$stamp" ]; then
  echo "setup_frontend: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

built=dist/index.html
stale=0
if [ "${FORCE:-0}" = 1 ] || [ ! -f "$built" ]; then
  stale=1
elif [ -n "$(find src build.mjs package-lock.json "$stamp" -newer "$built" -print -quit)" ]; then
  stale=1
fi
if [ "$stale" = 1 ]; then
  node build.mjs
else
  echo "setup_frontend: static/dist is up to date"
fi
