#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 with trust auth for user postgres
# (install Debian's and start its cluster if not). Tests create and drop their own databases.
set -euo pipefail
ready() { pg_isready -q -h 127.0.0.1 -p 5432 -U postgres 2>/dev/null; }
if command -v pg_isready >/dev/null 2>&1 && ready; then
  exit 0
fi
if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  version=$(ls /etc/postgresql | sort -V | tail -1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  # Loopback only, trust: the test server is reachable from this machine alone.
  printf 'local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n' > "$hba"
fi
version=$(ls /etc/postgresql | sort -V | tail -1)
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
for _ in $(seq 1 100); do
  ready && exit 0
  sleep 0.1
done
echo "PostgreSQL did not start on 127.0.0.1:5432" >&2
exit 1
