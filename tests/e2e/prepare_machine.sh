#!/usr/bin/env bash
# Installs what the end-to-end suite needs on a fresh Debian 12 machine of this
# kind: Docker engine, Compose v2, PostgreSQL, sshd, and the Prometheus-family
# binaries (from Debian trixie) used for promtool/amtool and stand-in images; also
# Debian sid's newer Prometheus family and PostgreSQL 18, for images of those versions
# (tests/e2e/images/build_images.sh), left in $CACHE/sid-root and $CACHE/pg18-root, and sid's
# VictoriaMetrics in $CACHE/vm-root.
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

mirror=$(awk '/^URIs:/ && /debian$/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}

# private_suite SUITE LISTS: a sources file with only Debian SUITE, its package lists in LISTS (a private
# apt state, so the machine's own sources stay as they are).
private_suite() {
  mkdir -p "$2/partial"
  cat > "$CACHE/apt/$1.sources" <<SRC
Types: deb
URIs: $mirror
Suites: $1
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
}

# fetch_extract APT_OPTS_ARRAY DEBS ROOT PKG...: download PKGs into an emptied DEBS (sid moves: only what
# this download brought) and unpack them into a fresh ROOT.
fetch_extract() {
  local -n opts=$1
  local debs=$2 root=$3 deb
  shift 3
  mkdir -p "$debs" && rm -f "$debs"/*.deb && rm -rf "$root" && mkdir -p "$root"
  (cd "$debs" && apt-get "${opts[@]}" -o "Dir::Cache::archives=$debs" download "$@")
  for deb in "$debs"/*.deb; do dpkg -x "$deb" "$root"; done
}

# Debian trixie: the Prometheus family the deploy pins today, and Compose v2.
TRIXIE_PKGS=(docker-compose prometheus promtool prometheus-alertmanager
             prometheus-postgres-exporter prometheus-node-exporter)
apt_private=(-o "Dir::Etc::SourceList=$CACHE/apt/trixie.sources" -o Dir::Etc::SourceParts=/dev/null
             -o "Dir::State::Lists=$CACHE/apt/lists" -o "Dir::Cache::archives=$CACHE/debs")
if [ ! -f "$CACHE/trixie.done" ]; then
  private_suite trixie "$CACHE/apt/lists"
  apt-get "${apt_private[@]}" update -qq
  fetch_extract apt_private "$CACHE/debs" "$CACHE/root" "${TRIXIE_PKGS[@]}"
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
  fetch_extract apt_private "$CACHE/pg17-debs" "$CACHE/pg17-root" "${PG17_PKGS[@]}"
  touch "$CACHE/pg17.done"
fi

# Debian sid: the newer builds, for images next to the current ones (an upgrade test). Its own package
# lists, so that sid's versions never leak into the trixie downloads above; no pkgcache.bin either.
SID_PKGS=(prometheus promtool prometheus-alertmanager prometheus-postgres-exporter prometheus-node-exporter)
apt_sid=(-o "Dir::Etc::SourceList=$CACHE/apt/sid.sources" -o Dir::Etc::SourceParts=/dev/null
         -o "Dir::State::Lists=$CACHE/apt/sid-lists" -o "Dir::Cache::archives=$CACHE/sid-debs"
         -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=)
if [ ! -f "$CACHE/sid.done" ]; then
  private_suite sid "$CACHE/apt/sid-lists"
  apt-get "${apt_sid[@]}" update -qq
  fetch_extract apt_sid "$CACHE/sid-debs" "$CACHE/sid-root" "${SID_PKGS[@]}"
  touch "$CACHE/sid.done"
fi

# VictoriaMetrics from sid: the long-term store of tests/e2e/test_remote_write.py, run as a process on this
# machine (it links only libc and libzstd, which Debian 12 has). Its own marker: a cache made before it stays.
if [ ! -f "$CACHE/vm.done" ]; then
  private_suite sid "$CACHE/apt/sid-lists"
  apt-get "${apt_sid[@]}" update -qq
  fetch_extract apt_sid "$CACHE/vm-debs" "$CACHE/vm-root" victoria-metrics
  touch "$CACHE/vm.done"
fi

# PostgreSQL 18 from sid, with sid's libraries (glibc 2.43, libxml2 16, ICU 78, liburing): an image
# like the PostgreSQL 17 one. The list is the libraries' dependency closure without maintainer-script tools.
PG18_PKGS=(postgresql-18 postgresql-client-18 libc6 libgcc-s1 libstdc++6 libgssapi-krb5-2 libkrb5-3
           libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1 libicu78 libldap2 libsasl2-2
           libsasl2-modules-db libdb5.3t64 libssl3t64 liblz4-1 libnuma1 libpam0g libaudit1 libcap-ng0 libpq5
           libselinux1 libpcre2-8-0 libsystemd0 liburing2 libuuid1 libxml2-16 libxslt1.1 libgcrypt20
           libgpg-error0 libzstd1 zlib1g libxxhash0 libreadline8t64 libtinfo6 tzdata)
if [ ! -f "$CACHE/pg18.done" ]; then
  fetch_extract apt_sid "$CACHE/pg18-debs" "$CACHE/pg18-root" "${PG18_PKGS[@]}"
  touch "$CACHE/pg18.done"
fi

# The quick start's `pip install .` (tests/e2e/test_quick_start.py) runs with no package index: pgmon's
# dependencies and its build backend (for pip's isolated build) as wheels for this Python, fetched once.
# The marker holds what they were fetched for, so a change of pyproject.toml's requirements fetches again.
wheel_requirements=$(python3 -c 'import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))
print("\n".join(project["build-system"]["requires"] + project["project"]["dependencies"]))' \
  "$(dirname "$0")/../../pyproject.toml")
wheel_fingerprint=$(printf '%s\n%s\n' "$(python3 -VV)" "$wheel_requirements" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$CACHE/wheelhouse.done" 2>/dev/null)" != "$wheel_fingerprint" ]; then
  rm -rf "$CACHE/wheelhouse"
  mapfile -t wheel_args <<<"$wheel_requirements"
  python3 -m pip download --quiet --only-binary=:all: --dest "$CACHE/wheelhouse" "${wheel_args[@]}"
  echo "$wheel_fingerprint" > "$CACHE/wheelhouse.done"
fi

install -D -m 0755 "$CACHE/root/usr/libexec/docker/cli-plugins/docker-compose" \
  /usr/libexec/docker/cli-plugins/docker-compose
# The checkers of the versions the stack runs (sid's builds: Prometheus 3, Alertmanager 0.33).
for tool in promtool amtool; do
  install -m 0755 "$CACHE/sid-root/usr/bin/$tool" /usr/local/bin/$tool
done
echo "prepare_machine: ok ($(docker compose version), $(promtool --version 2>&1 | head -1))"
echo "prepare_machine: sid packages in $CACHE/sid-root, $CACHE/pg18-root:"
for deb in "$CACHE"/sid-debs/*.deb "$CACHE"/pg18-debs/postgresql-18_*.deb "$CACHE"/vm-debs/*.deb; do
  echo "  $(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)"
done
echo "  promtool (sid): $CACHE/sid-root/usr/bin/promtool ($("$CACHE/sid-root/usr/bin/promtool" --version 2>&1 | head -1))"
echo "  amtool (sid):   $CACHE/sid-root/usr/bin/amtool ($("$CACHE/sid-root/usr/bin/amtool" --version 2>&1 | head -1))"
