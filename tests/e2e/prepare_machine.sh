#!/usr/bin/env bash
# Installs what the end-to-end suite needs on a fresh Debian 12 machine of this
# kind: Docker engine, Compose v2, PostgreSQL, sshd, and the Prometheus-family
# binaries (from Debian trixie) used for promtool/amtool and stand-in images.
# Idempotent: each step is skipped when its result is already there.
set -euo pipefail

CACHE=${PGMON_TEST_CACHE:-/var/cache/pgmon-test}
mkdir -p "$CACHE"
export DEBIAN_FRONTEND=noninteractive

need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_apt+=(postgresql postgresql-contrib)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v openssl >/dev/null || need_apt+=(openssl)
[ -x /bin/busybox ] || need_apt+=(busybox-static)  # the stand-in images' /bin
[ -d /usr/lib/python3/dist-packages/yaml ] || need_apt+=(python3-yaml)  # the Grafana stand-in
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Debian trixie, in a private apt state so the machine's own sources stay as they are.
TRIXIE_PKGS=(docker-compose prometheus promtool prometheus-alertmanager
             prometheus-postgres-exporter prometheus-node-exporter)
if [ ! -f "$CACHE/trixie.done" ]; then
  mirror=$(awk '/^URIs:/ && /debian$/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  mkdir -p "$CACHE/apt/lists/partial" "$CACHE/debs" "$CACHE/root"
  cat > "$CACHE/apt/trixie.sources" <<SRC
Types: deb
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt_private=(-o "Dir::Etc::SourceList=$CACHE/apt/trixie.sources" -o Dir::Etc::SourceParts=/dev/null
               -o "Dir::State::Lists=$CACHE/apt/lists" -o "Dir::Cache::archives=$CACHE/debs")
  apt-get "${apt_private[@]}" update -qq
  (cd "$CACHE/debs" && apt-get "${apt_private[@]}" download "${TRIXIE_PKGS[@]}")
  for deb in "$CACHE"/debs/*.deb; do dpkg -x "$deb" "$CACHE/root"; done
  touch "$CACHE/trixie.done"
fi

install -D -m 0755 "$CACHE/root/usr/libexec/docker/cli-plugins/docker-compose" \
  /usr/libexec/docker/cli-plugins/docker-compose
for tool in promtool amtool; do
  install -m 0755 "$CACHE/root/usr/bin/$tool" /usr/local/bin/$tool
done
echo "prepare_machine: ok ($(docker compose version), $(promtool --version 2>&1 | head -1))"
