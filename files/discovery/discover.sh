#!/bin/sh
# pgmon's database discovery (tasks/render/discovery.py), started beside postgres_exporter in a discovered
# server's own exporter container: every INTERVAL seconds, the rows of that exporter's pgmon_discovery
# query become OUT, the file Prometheus discovers the server's databases from. Each row already is a
# file-discovery entry, JSON built by PostgreSQL; this only undoes the exposition format's escapes
# (\\ and \") and joins the rows.
#
# OUT is replaced whenever the listing ran, even unchanged: its age is what the DiscoveryFailing alert
# measures. When it did not run (server down, query failed, exporter not answering), OUT keeps the last
# list, so a server that cannot be listed loses none of its databases.
#
# Usage: discover.sh OUT INTERVAL METRICS_URL
out=$1 interval=$2 url=$3
while :; do
  rows=$(timeout "$interval" wget -q -O - "$url" 2>/dev/null | grep '^pgmon_discovery_listed{')
  # The query's row of 0 is there only if the listing ran.
  if printf '%s\n' "$rows" | grep -q ' 0$'; then
    printf '%s\n' "$rows" | grep ' 1$' \
      | sed -nE 's/.*[{,]target_group="(([^"\\]|\\.)*)".*/\1/p' \
      | sed 's/\\\(.\)/\1/g' \
      | awk 'BEGIN { printf "[" } NR > 1 { printf "," } { printf "\n%s", $0 } END { print "\n]" }' \
      >"$out.tmp" && mv "$out.tmp" "$out"
  fi
  sleep "$interval"
done
