#!/usr/bin/env bash
# Builds local stand-ins for the images pgmon's docker-compose.yml names, and tags them
# with the official names, so the production compose file runs unchanged on a machine
# that reaches no container registry (see shared/MACHINE-NOTES.md).
#
#   prom/prometheus:v2.53.3, prom/alertmanager:v0.28.1, prom/node-exporter:v1.9.0,
#   quay.io/prometheuscommunity/postgres-exporter:v0.17.1: Debian trixie's builds of the
#     same upstream versions (extracted by tests/e2e/prepare_machine.sh) in a busybox
#     root file system laid out like the official image: same entrypoint, command,
#     user, workdir, ports, volumes and file owners.
#   grafana/grafana:12.2.1: NOT Grafana. grafana/standin.py on Debian's python3.11,
#     imitating the HTTP API pgmon uses (see the docstring there), behind a run.sh that
#     behaves like the official one. Real Grafana is not exercised by the offline tests.
#   pgmon-test/postgresql:17: not a stand-in but a second PostgreSQL version for the suite,
#     Debian trixie's PostgreSQL 17 on trixie's glibc.
#   pgmon-test/busybox:1.35: not a stand-in but busybox itself, for the demo's alert sink
#     (tasks/demo.py), laid out as the official busybox image.
#   Newer versions, next to those (for an upgrade test), from Debian sid the same way:
#     prom/prometheus:v3.5.3, prom/alertmanager:v0.33.1, prom/node-exporter:v1.11.1,
#     quay.io/prometheuscommunity/postgres-exporter:v0.19.1, and pgmon-test/postgresql:18
#     (sid's PostgreSQL 18 on sid's glibc).
#
# One set of functions per kind of image, called with the version and the extracted
# packages to build it from (the build list at the end).
#
# Each image carries the label pgmon.standin=<sha256 of its build inputs>; an image that
# already has the right label is left alone. Needs root (owners inside the images) and a
# reachable Docker engine (DOCKER_HOST or the default socket).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${PGMON_TEST_CACHE:-/var/cache/pgmon-test}
DEB=$CACHE/root            # Debian trixie packages, extracted
SID=$CACHE/sid-root        # Debian sid's newer builds of the same packages
LIBDIR=/lib/x86_64-linux-gnu
# Debian's busybox-static. Unlike the official images' busybox it cannot resolve
# DNS names (static glibc), so pgmon's in-container checks use IP addresses.
BUSYBOX=/bin/busybox
NOBODY=65534 GRAFANA_UID=472

die() { echo "build_images: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: file owners inside the images are set with chown"
docker info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd, or set DOCKER_HOST)"
for f in "$BUSYBOX" "$LIBDIR/libc.so.6" /lib64/ld-linux-x86-64.so.2 /etc/ssl/certs/ca-certificates.crt /usr/bin/python3.11 \
         "$CACHE/pg17-root/usr/lib/postgresql/17/bin/postgres" "$CACHE/pg18-root/usr/lib/postgresql/18/bin/postgres"; do
  [ -e "$f" ] || die "missing $f (run tests/e2e/prepare_machine.sh first)"
done
for root in "$DEB" "$SID"; do
  for f in prometheus promtool prometheus-alertmanager amtool prometheus-postgres-exporter prometheus-node-exporter; do
    [ -e "$root/usr/bin/$f" ] || die "missing $root/usr/bin/$f (run tests/e2e/prepare_machine.sh first)"
  done
done
# Grafana's provisioning files are YAML; the stand-in uses Debian's PyYAML.
if [ ! -d /usr/lib/python3/dist-packages/yaml ]; then
  echo "build_images: installing python3-yaml (Debian) for the Grafana stand-in"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-yaml >/dev/null
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pgmon-images.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------- fingerprints
# Our own files count by content; big system files by path, size and mtime (hashing
# ~400 MB of binaries on every run would make the "up to date" check slow).
own() { (cd "$HERE" && find "$@" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); }
sys_stat() { find -L "$@" -type f -printf '%p %s %T@\n' 2>/dev/null | LC_ALL=C sort; }

# Shared libraries a set of ELF files needs, as paths on this host (ldd's view).
lib_deps() {
  ldd "$@" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | LC_ALL=C sort -u
}

# ---------------------------------------------------------------- root file systems
base_rootfs() { # DIR [extra passwd line]: busybox + glibc + CA bundle + users, as in the official bases
  local d=$1 applet
  mkdir -p "$d"/{bin,sbin,usr/bin,usr/sbin,lib64,etc/ssl/certs,proc,sys,dev,root,home,run,var,tmp} "$d$LIBDIR"
  chmod 1777 "$d/tmp"; chmod 700 "$d/root"
  cp "$BUSYBOX" "$d/bin/busybox"
  for applet in $("$BUSYBOX" --list); do
    [ -e "$d/bin/$applet" ] || ln -s busybox "$d/bin/$applet"
  done
  cp -L "$LIBDIR/libc.so.6" "$d$LIBDIR/libc.so.6"
  cp -L /lib64/ld-linux-x86-64.so.2 "$d/lib64/ld-linux-x86-64.so.2"
  ln -s /lib64/ld-linux-x86-64.so.2 "$d$LIBDIR/ld-linux-x86-64.so.2"
  cp -L /etc/ssl/certs/ca-certificates.crt "$d/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n%s' "${2:-}" >"$d/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnogroup:x:65534:\n' >"$d/etc/group"
  echo 'hosts: files dns' >"$d/etc/nsswitch.conf"
}

copy_libs() { # DIR ELF...: the shared libraries they need, at the same paths
  local d=$1 lib; shift
  for lib in $(lib_deps "$@"); do
    [ -e "$d$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$d$lib"
  done
}

# ---------------------------------------------------------------- the images
# Per kind of image x: inputs_x ROOT (prints what the fingerprint covers), fill_x DIR ROOT VERSION
# (lays out the root file system), changes_x VERSION (Dockerfile-like lines for `docker import
# --change`), smoke_x TAG VERSION (proves the image runs), and PASSWD_x if it needs a user besides
# root and nobody. ROOT is the folder the Debian packages were extracted into.

# VERSION as an extended regex matching that version only (2.53.3, not 2.53.30).
version_re() { echo "${1//./\\.}([^0-9]|\$)"; }
major() { echo "${1%%.*}"; }

inputs_prometheus() { sys_stat "$1/usr/bin/prometheus" "$1/usr/bin/promtool" "$1/usr/share/prometheus/web"; own prometheus; }
fill_prometheus() {
  local d=$1 root=$2 version=$3
  install -m 0755 "$root/usr/bin/prometheus" "$d/bin/prometheus"
  install -m 0755 "$root/usr/bin/promtool" "$d/bin/promtool"
  install -D -m 0644 "$HERE/prometheus/prometheus.yml" "$d/etc/prometheus/prometheus.yml"
  mkdir -p "$d/usr/share/prometheus" "$d/prometheus"
  if [ "$(major "$version")" = 2 ]; then  # Prometheus 3 has no console templates (nor their folders)
    mkdir -p "$d/usr/share/prometheus/console_libraries" "$d/usr/share/prometheus/consoles"
    ln -s /usr/share/prometheus/console_libraries "$d/etc/prometheus/console_libraries"
    ln -s /usr/share/prometheus/consoles "$d/etc/prometheus/consoles"
  fi
  # Debian's build serves its web UI from --web.local-assets (default below).
  cp -a "$root/usr/share/prometheus/web" "$d/usr/share/prometheus/web"
  chown -R "$NOBODY:$NOBODY" "$d/etc/prometheus" "$d/prometheus"
  [ "$(major "$version")" = 2 ] || chmod g+w "$d/prometheus"  # as the official 3.x image
}
changes_prometheus() {
  cat <<'EOF'
USER nobody
EXPOSE 9090
VOLUME ["/prometheus"]
WORKDIR /prometheus
ENTRYPOINT ["/bin/prometheus"]
EOF
  if [ "$(major "$1")" = 2 ]; then
    echo 'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.console.libraries=/usr/share/prometheus/console_libraries", "--web.console.templates=/usr/share/prometheus/consoles"]'
  else
    echo 'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]'
  fi
}
smoke_prometheus() {
  docker run --rm "$1" --version 2>&1 | grep -Eq "^prometheus, version $(version_re "$2")" &&
  docker run --rm --entrypoint /bin/promtool "$1" check config /etc/prometheus/prometheus.yml >/dev/null 2>&1
}

inputs_alertmanager() { sys_stat "$1/usr/bin/prometheus-alertmanager" "$1/usr/bin/amtool" "$1/usr/share/prometheus/alertmanager"; own alertmanager; }
fill_alertmanager() {
  local d=$1 root=$2
  install -m 0755 "$root/usr/bin/prometheus-alertmanager" "$d/bin/alertmanager"
  install -m 0755 "$root/usr/bin/amtool" "$d/bin/amtool"
  install -D -m 0644 "$HERE/alertmanager/alertmanager.yml" "$d/etc/alertmanager/alertmanager.yml"
  mkdir -p "$d/alertmanager" "$d/usr/share/prometheus"
  # Debian's build looks for its UI and templates (default.tmpl) there (--web.ui-path).
  cp -a "$root/usr/share/prometheus/alertmanager" "$d/usr/share/prometheus/alertmanager"
  chown -R "$NOBODY:$NOBODY" "$d/etc/alertmanager" "$d/alertmanager"
}
changes_alertmanager() {
  cat <<'EOF'
USER nobody
EXPOSE 9093
VOLUME ["/alertmanager"]
WORKDIR /alertmanager
ENTRYPOINT ["/bin/alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
EOF
}
smoke_alertmanager() {
  docker run --rm "$1" --version 2>&1 | grep -Eq "^alertmanager, version $(version_re "$2")" &&
  docker run --rm --entrypoint /bin/amtool "$1" check-config /etc/alertmanager/alertmanager.yml >/dev/null 2>&1
}

inputs_postgres_exporter() { sys_stat "$1/usr/bin/prometheus-postgres-exporter"; }
fill_postgres_exporter() { install -m 0755 "$2/usr/bin/prometheus-postgres-exporter" "$1/bin/postgres_exporter"; }
changes_postgres_exporter() {
  cat <<'EOF'
USER nobody
EXPOSE 9187
ENTRYPOINT ["/bin/postgres_exporter"]
EOF
}
smoke_postgres_exporter() { docker run --rm "$1" --version 2>&1 | grep -Eq "^postgres_exporter, version $(version_re "$2")"; }

inputs_node_exporter() { sys_stat "$1/usr/bin/prometheus-node-exporter"; }
fill_node_exporter() { install -m 0755 "$2/usr/bin/prometheus-node-exporter" "$1/bin/node_exporter"; }
changes_node_exporter() {
  cat <<'EOF'
USER nobody
EXPOSE 9100
ENTRYPOINT ["/bin/node_exporter"]
EOF
}
smoke_node_exporter() { docker run --rm "$1" --version 2>&1 | grep -Eq "^node_exporter, version $(version_re "$2")"; }

# Not a stand-in: PostgreSQL itself (VERSION: the major version), Debian's build on the glibc of its
# own suite (a merged /usr as in Debian 13): 17 from trixie, whose pg_stat_bgwriter lost the checkpoint
# columns, and 18 from sid. Packages extracted by tests/e2e/prepare_machine.sh; postgresql17/run.sh
# serves both versions.
PG_UID=999
PASSWD_postgresql="postgres:x:$PG_UID:$PG_UID::/var/lib/postgresql:/bin/sh"$'\n'
inputs_postgresql() { sys_stat "$1/usr/lib/postgresql" "$1/usr/lib/x86_64-linux-gnu"; own postgresql17; }
fill_postgresql() {
  local d=$1 root=$2
  rm -rf "$d/lib" "$d/lib64"
  ln -s usr/lib "$d/lib"; ln -s usr/lib64 "$d/lib64"
  tar -C "$root" --exclude=./usr/share/doc --exclude=./usr/share/locale --exclude=./usr/share/man -c ./usr | tar -C "$d" -x
  install -m 0755 "$HERE/postgresql17/run.sh" "$d/run.sh"
  mkdir -p "$d/var/lib/postgresql/data" "$d/var/run/postgresql"
  chown -R "$PG_UID:$PG_UID" "$d/var/lib/postgresql" "$d/var/run/postgresql"
  chmod 700 "$d/var/lib/postgresql/data"
}
changes_postgresql() {
  cat <<EOF
ENV PATH=/usr/lib/postgresql/$1/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENV PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
VOLUME ["/var/lib/postgresql/data"]
ENTRYPOINT ["/run.sh"]
EOF
}
# Also: every program and module of the server loads with its shared libraries, but llvmjit.so
# (JIT: LLVM is left out) and pgxml.so (contrib xml2: the 17 image has no libxslt).
smoke_postgresql() {
  local broken
  docker run --rm --entrypoint postgres "$1" --version 2>&1 | grep -q "^postgres (PostgreSQL) $2\." || return 1
  broken=$(docker run --rm --entrypoint /bin/sh "$1" -c '
    for f in /usr/lib/postgresql/'"$2"'/bin/* /usr/lib/postgresql/'"$2"'/lib/*.so; do
      case $f in */llvmjit.so | */pgxml.so) continue ;; esac
      out=$(/lib64/ld-linux-x86-64.so.2 --list "$f" 2>&1) || echo "$out"
      case $out in *"not found"*) echo "$f: $out" ;; esac
    done' 2>&1)
  [ -z "$broken" ] || { echo "$broken" >&2; return 1; }
}

# Not a stand-in: busybox itself for the demo's alert sink (tasks/demo.py runs its httpd with CGI
# scripts), as the official busybox image lays it out (every applet in /bin, root and nobody, CMD sh),
# with Debian's busybox-static of this machine, the base of every image here: its version in the tag.
inputs_busybox() { :; }  # the common inputs cover busybox itself
fill_busybox() { :; }
changes_busybox() { echo 'CMD ["sh"]'; }
smoke_busybox() {
  local banner
  banner=$(docker run --rm "$1" busybox 2>&1) || return 1
  [[ $banner == "BusyBox v$2."* ]] &&
  docker run --rm "$1" httpd --help 2>&1 | grep -q 'Listen for incoming HTTP requests'
}

PASSWD_grafana="grafana:x:$GRAFANA_UID:0::/home/grafana:/sbin/nologin"$'\n'
PY_EXCLUDES=(--exclude=python3.11/test --exclude=python3.11/idlelib --exclude=python3.11/tkinter
             --exclude=python3.11/turtledemo --exclude=python3.11/ensurepip --exclude=python3.11/lib2to3
             --exclude=python3.11/pydoc_data --exclude='python3.11/config-3.11-*'
             --exclude='python3.11/lib-dynload/_test*' --exclude='python3.11/lib-dynload/_xx*'
             --exclude='python3.11/lib-dynload/xx*' --exclude='python3.11/lib-dynload/_ctypes_test*')
inputs_grafana() {
  sys_stat /usr/bin/python3.11 /usr/lib/python3.11 /usr/lib/python3/dist-packages/yaml /usr/lib/python3/dist-packages/_yaml
  sys_stat $(lib_deps /usr/bin/python3.11 /usr/lib/python3.11/lib-dynload/*.so /usr/lib/python3/dist-packages/yaml/*.so)
  own grafana
}
fill_grafana() {
  local d=$1 g=$1/usr/share/grafana p
  install -D -m 0755 /usr/bin/python3.11 "$d/usr/bin/python3.11"
  ln -s python3.11 "$d/usr/bin/python3"
  mkdir -p "$d/usr/lib"
  tar -C /usr/lib "${PY_EXCLUDES[@]}" -c python3.11 | tar -C "$d/usr/lib" -x
  mkdir -p "$d/usr/lib/python3/dist-packages"
  cp -a /usr/lib/python3/dist-packages/yaml /usr/lib/python3/dist-packages/_yaml "$d/usr/lib/python3/dist-packages/"
  copy_libs "$d" "$d/usr/bin/python3.11" "$d"/usr/lib/python3.11/lib-dynload/*.so "$d"/usr/lib/python3/dist-packages/yaml/*.so
  install -D -m 0755 "$HERE/grafana/run.sh" "$d/run.sh"
  install -D -m 0644 "$HERE/grafana/standin.py" "$g/standin.py"
  install -D -m 0755 -t "$g/bin" "$HERE"/grafana/bin/*
  install -D -m 0644 "$HERE/grafana/grafana.ini" "$g/conf/sample.ini"
  install -D -m 0644 "$HERE/grafana/grafana.ini" "$d/etc/grafana/grafana.ini"
  echo 12.2.1 >"$d/.grafana-version"
  # The official image: these belong to grafana:root with mode 777, recursively.
  for p in datasources dashboards notifiers plugins access-control alerting; do
    mkdir -p "$d/etc/grafana/provisioning/$p"
  done
  mkdir -p "$d/var/lib/grafana/plugins" "$d/var/log/grafana" "$g/.aws"
  chown -R "$GRAFANA_UID:0" "$d/var/lib/grafana" "$d/var/log/grafana" "$g/.aws" "$d/etc/grafana/provisioning"
  chmod -R 777 "$d/var/lib/grafana" "$d/var/log/grafana" "$g/.aws" "$d/etc/grafana/provisioning"
  mkdir -p "$d/home/grafana"; chown "$GRAFANA_UID:0" "$d/home/grafana"
}
changes_grafana() {
  cat <<'EOF'
ENV PATH=/usr/share/grafana/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENV GF_PATHS_CONFIG=/etc/grafana/grafana.ini
ENV GF_PATHS_DATA=/var/lib/grafana
ENV GF_PATHS_HOME=/usr/share/grafana
ENV GF_PATHS_LOGS=/var/log/grafana
ENV GF_PATHS_PLUGINS=/var/lib/grafana/plugins
ENV GF_PATHS_PROVISIONING=/etc/grafana/provisioning
ENV PYTHONDONTWRITEBYTECODE=1
WORKDIR /usr/share/grafana
USER 472
EXPOSE 3000
ENTRYPOINT ["/run.sh"]
EOF
}
smoke_grafana() {
  docker run --rm --entrypoint grafana "$1" server -v 2>&1 | grep -q '^Version 12\.2\.1' &&
  docker run --rm --entrypoint python3 "$1" -c 'import yaml, json, hashlib, http.server, ssl, urllib.request' >/dev/null 2>&1
}

# ---------------------------------------------------------------- build loop
COMMON_INPUTS=$( { sha256sum <"${BASH_SOURCE[0]}";  # stdin: the same whatever path it was started by
 sys_stat "$BUSYBOX" "$LIBDIR/libc.so.6" /lib64/ld-linux-x86-64.so.2 /etc/ssl/certs/ca-certificates.crt; } )

build() { # KIND TAG ROOT VERSION
  local kind=$1 tag=$2 root=$3 version=$4 passwdvar="PASSWD_$1" fp have old started d line
  fp=$( { echo "$COMMON_INPUTS"; echo "$tag $root $version"; "inputs_$kind" "$root"; } | sha256sum | cut -c1-64)
  have=$(docker image inspect -f '{{ index .Config.Labels "pgmon.standin" }}' "$tag" 2>/dev/null || true)
  if [ "$have" = "$fp" ]; then
    echo "$tag: up to date"
    return
  fi
  started=$SECONDS
  old=$(docker image inspect -f '{{ .Id }}' "$tag" 2>/dev/null || true)
  d=$WORK/$kind-$version
  base_rootfs "$d" "${!passwdvar:-}"
  "fill_$kind" "$d" "$root" "$version"
  local args=(--change "LABEL pgmon.standin=$fp")
  while IFS= read -r line; do args+=(--change "$line"); done < <("changes_$kind" "$version")
  tar --numeric-owner -C "$d" -c . | docker import "${args[@]}" - "$tag" >/dev/null
  rm -rf "$d"
  "smoke_$kind" "$tag" "$version" || die "$tag was built but does not run (try: docker run --rm $tag --version)"
  # The replaced image, now untagged, would only take space.
  if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{ .Id }}' "$tag")" ]; then
    docker rmi "$old" >/dev/null 2>&1 || true
  fi
  echo "$tag: built ($((SECONDS - started))s)"
}

#     kind               tag                                                    root                version
build prometheus         prom/prometheus:v2.53.3                                "$DEB"              2.53.3
build alertmanager       prom/alertmanager:v0.28.1                              "$DEB"              0.28.1
build postgres_exporter  quay.io/prometheuscommunity/postgres-exporter:v0.17.1  "$DEB"              0.17.1
build node_exporter      prom/node-exporter:v1.9.0                              "$DEB"              1.9.0
build grafana            grafana/grafana:12.2.1                                 /                   12.2.1
build postgresql         pgmon-test/postgresql:17                               "$CACHE/pg17-root"  17
build busybox            pgmon-test/busybox:1.35                                /                   1.35
# Debian sid's newer builds, next to the current ones for the upgrade test.
build prometheus         prom/prometheus:v3.5.3                                 "$SID"              3.5.3
build alertmanager       prom/alertmanager:v0.33.1                              "$SID"              0.33.1
build postgres_exporter  quay.io/prometheuscommunity/postgres-exporter:v0.19.1  "$SID"              0.19.1
build node_exporter      prom/node-exporter:v1.11.1                             "$SID"              1.11.1
build postgresql         pgmon-test/postgresql:18                               "$CACHE/pg18-root"  18

# Stand-ins replaced while a container still used them stay behind untagged; drop the
# ones no container uses any more.
for id in $(docker images -q -f dangling=true -f label=pgmon.standin); do
  docker rmi "$id" >/dev/null 2>&1 || true
done
