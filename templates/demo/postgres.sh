#!/bin/sh
# The demo's PostgreSQL (tasks/demo.py), the same on the official image and on the test suite's: the
# first start creates the cluster and the database "demo"; every start sets the two roles' passwords
# from the files mounted in /demo, so the files stay the only place they are kept.
set -eu
single() { # SQL on stdin, as the superuser in single-user mode; a failing statement is never logged
  postgres --single -D "$PGDATA" -c log_min_error_statement=panic "$1" >/dev/null
}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  # No password for the superuser: it logs in on the local socket only.
  initdb -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 --no-locale -E UTF8 >/dev/null
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "CREATE DATABASE demo" | single postgres
fi
monitoring=$(cat /demo/monitoring_password)
workload=$(cat /demo/workload_password)
single postgres <<SQL
DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgmon') THEN CREATE ROLE pgmon LOGIN; END IF; IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'demo_app') THEN CREATE ROLE demo_app LOGIN; END IF; END \$\$
ALTER ROLE pgmon PASSWORD '$monitoring' CONNECTION LIMIT 5
GRANT pg_monitor TO pgmon
ALTER ROLE demo_app PASSWORD '$workload'
ALTER DATABASE demo OWNER TO demo_app
SQL
echo "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" | single demo
exec postgres -D "$PGDATA" -c listen_addresses='*' -c shared_preload_libraries=pg_stat_statements \
  -c track_io_timing=on
