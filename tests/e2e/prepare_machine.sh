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
apt_private=(-o "Dir::Etc::SourceList=$CACHE/apt/trixie.sources" -o Dir::Etc::SourceParts=/dev/null
             -o "Dir::State::Lists=$CACHE/apt/lists" -o "Dir::Cache::archives=$CACHE/debs")
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
  apt-get "${apt_private[@]}" update -qq
  (cd "$CACHE/debs" && apt-get "${apt_private[@]}" download "${TRIXIE_PKGS[@]}")
  for deb in "$CACHE"/debs/*.deb; do dpkg -x "$deb" "$CACHE/root"; done
  touch "$CACHE/trixie.done"
fi

# PostgreSQL 17 for the suite's second server version: trixie's build needs trixie's glibc, so it runs
# in an image (tests/e2e/images/build_images.sh) made from these packages, extracted on their own.
PG17_PKGS=(postgresql-17 postgresql-client-17 libc6 libgcc-s1 libstdc++6 libgssapi-krb5-2 libkrb5-3
           libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1 libicu76 libldap2 libsasl2-2 libgnutls30t64
           libp11-kit0 libidn2-0 libunistring5 libtasn1-6 libnettle8t64 libhogweed6t64 libgmp10 libffi8
           liblz4-1 libpam0g libaudit1 libcap-ng0 libcap2 libpq5 libselinux1 libpcre2-8-0 libssl3t64
           libsystemd0 libuuid1 libxml2 liblzma5 libzstd1 zlib1g libxxhash0 libreadline8t64 libtinfo6 tzdata)
if [ ! -f "$CACHE/pg17.done" ]; then
  mkdir -p "$CACHE/pg17-debs" && rm -rf "$CACHE/pg17-root" && mkdir -p "$CACHE/pg17-root"
  (cd "$CACHE/pg17-debs" && apt-get "${apt_private[@]}" -o "Dir::Cache::archives=$CACHE/pg17-debs" \
     download "${PG17_PKGS[@]}")
  for deb in "$CACHE"/pg17-debs/*.deb; do dpkg -x "$deb" "$CACHE/pg17-root"; done
  touch "$CACHE/pg17.done"
fi

install -D -m 0755 "$CACHE/root/usr/libexec/docker/cli-plugins/docker-compose" \
  /usr/libexec/docker/cli-plugins/docker-compose
for tool in promtool amtool; do
  install -m 0755 "$CACHE/root/usr/bin/$tool" /usr/local/bin/$tool
done
echo "prepare_machine: ok ($(docker compose version), $(promtool --version 2>&1 | head -1))"
