#!/usr/bin/env bash
# Make sure a PostgreSQL server is running on 127.0.0.1:5432 with a role the tests
# can use (ferry/ferry, allowed to create databases). Idempotent.
#
# As root on Debian (CI): start the packaged cluster with pg_ctlcluster and create
# the role through the postgres superuser (peer authentication refuses root).
# Otherwise: expect a server already reachable at FERRY_TEST_POSTGRES_DSN.
set -euo pipefail

dsn="${FERRY_TEST_POSTGRES_DSN:-postgresql://ferry:ferry@127.0.0.1:5432/postgres}"

reachable() { PGCONNECT_TIMEOUT=3 psql "$dsn" -Atqc 'select 1' >/dev/null 2>&1; }

if reachable; then
  echo "postgres: reachable at ${dsn%%@*}@..."; exit 0
fi

if [ "$(id -u)" = 0 ] && command -v pg_ctlcluster >/dev/null; then
  version=$(pg_lsclusters -h | awk 'NR==1{print $1}')
  cluster=$(pg_lsclusters -h | awk 'NR==1{print $2}')
  if [ -z "$version" ]; then
    echo "postgres: no cluster found (pg_lsclusters is empty)" >&2; exit 1
  fi
  if ! pg_lsclusters -h | awk 'NR==1{print $4}' | grep -q online; then
    pg_ctlcluster "$version" "$cluster" start
  fi
  for _ in $(seq 1 30); do
    su postgres -c "psql -Atqc 'select 1'" >/dev/null 2>&1 && break
    sleep 0.5
  done
  su postgres -c "psql -v ON_ERROR_STOP=1 -Atq" <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ferry') THEN
    CREATE ROLE ferry LOGIN SUPERUSER PASSWORD 'ferry';
  END IF;
END $$;
SQL
fi

for _ in $(seq 1 20); do
  if reachable; then echo "postgres: ready"; exit 0; fi
  sleep 0.5
done
echo "postgres: not reachable at $dsn; start a server or set FERRY_TEST_POSTGRES_DSN" >&2
exit 1
