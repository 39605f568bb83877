#!/usr/bin/env bash
# Prepares what tests/hosts (bare Debian test hosts) needs, once, in a cache:
#
#   rootfs/         Debian 13 (trixie) minbase with systemd, sshd, python3, sudo (debootstrap)
#   repo/           a flat apt repository: docker.io, docker-compose, containerd, runc,
#                   postgresql and everything they pull (Depends and Recommends) that the
#                   root file system lacks; the hosts mount it read-only at /repo
#   images          pgmon-test/host:trixie             the root file system, prepared as a bare server
#                   pgmon-test/host:trixie-postgresql  the same with `apt-get install postgresql` done
#                   pgmon-test/registry:2              Debian's docker-registry in a busybox image
#   manifest.json   what tests/hosts/__init__.py reads (image names, repo path)
#
# Cache: ${PGMON_TEST_CACHE:-/var/cache/pgmon-test}/hosts. Each step writes a marker
# holding the fingerprint of its inputs and is skipped when the marker matches, so a
# second run takes seconds and does not touch the network (rm -rf the cache folder to
# rebuild from the mirror's current packages). Only the Debian mirror is
# contacted (debootstrap, apt), never a container registry.
# Needs root and a running Docker engine (it never starts or stops one).
# See shared/MACHINE-NOTES.md, "Test hosts: a bare Debian server in a container".
set -euo pipefail

CACHE=${PGMON_TEST_CACHE:-/var/cache/pgmon-test}/hosts
SUITE=trixie
HOST_IMAGE=pgmon-test/host:$SUITE
REGISTRY_IMAGE=pgmon-test/registry:2
# What a bare Debian server has: systemd, sshd, python3 (pyinfra's facts), sudo, curl.
# No Docker: pgmon's deploy installs it from repo/.
INCLUDE=systemd,systemd-sysv,dbus,openssh-server,sudo,ca-certificates,iproute2,iputils-ping,procps,python3,gnupg,curl,less
# Offered by the local apt repository (plus dependencies and recommendations).
REPO_PACKAGES=(docker.io docker-compose containerd runc postgresql)
BUSYBOX=/bin/busybox
LIBDIR=/lib/x86_64-linux-gnu

die() { echo "prepare (tests/hosts): $*" >&2; exit 1; }
say() { echo "prepare (tests/hosts): $*"; }
fp() { sha256sum | cut -c1-16; }
started_all=$SECONDS

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, file owners inside images)"
docker info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd, or set DOCKER_HOST)"
export DEBIAN_FRONTEND=noninteractive
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v dpkg-scanpackages >/dev/null || need+=(dpkg-dev)
[ -x "$BUSYBOX" ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} (Debian)"
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w 1800 9 || die "another prepare.sh holds $CACHE/.lock"

# The machine's own Debian mirror (the only outside address this script uses).
MIRROR=$(awk '/^URIs:/ && /debian$/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}

marker_ok() { [ -f "$CACHE/$1.done" ] && [ "$(cat "$CACHE/$1.done")" = "$2" ]; }
mark() { echo "$2" >"$CACHE/$1.done"; }

# ------------------------------------------------------------ private apt state for trixie
# The machine's apt setup stays untouched: own sources, lists, caches.
APT_DIR=$CACHE/apt
apt_trixie=(-o "Dir::Etc::SourceList=$APT_DIR/$SUITE.sources" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State=$APT_DIR/state" -o "Dir::State::Lists=$APT_DIR/lists"
            -o "Dir::Cache=$APT_DIR/cache" -o "Dir::Cache::archives=$APT_DIR/archives"
            -o APT::Install-Recommends=true -o APT::Install-Suggests=false -o APT::Sandbox::User=root)
FP_APT=$(echo "$SUITE $MIRROR" | fp)
mkdir -p "$APT_DIR"/{lists/partial,state,cache,archives/partial}
printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
  "$MIRROR" "$SUITE" >"$APT_DIR/$SUITE.sources"
apt_updated=
apt_update() { # once per run, and only by a step that downloads: the mirror keeps current versions only
  [ -n "$apt_updated" ] && return
  say "apt lists for $SUITE from $MIRROR"
  apt-get "${apt_trixie[@]}" update -qq
  apt_updated=1
}

# ------------------------------------------------------------ root file system
ROOTFS=$CACHE/rootfs
FP_ROOTFS=$(echo "$FP_APT minbase $INCLUDE" | fp)
if ! marker_ok rootfs "$FP_ROOTFS"; then
  say "debootstrap $SUITE (minbase + $INCLUDE)"
  t=$SECONDS
  rm -rf "$ROOTFS" "$ROOTFS.new" "$CACHE/rootfs.done"
  mkdir -p "$CACHE/debootstrap-debs"
  debootstrap --variant=minbase --include="$INCLUDE" --cache-dir="$CACHE/debootstrap-debs" \
    "$SUITE" "$ROOTFS.new" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
    die "debootstrap failed; see $CACHE/debootstrap.log"
  mv "$ROOTFS.new" "$ROOTFS"
  mark rootfs "$FP_ROOTFS"
  say "debootstrap: $((SECONDS - t))s, $(du -sm "$ROOTFS" | cut -f1) MB"
fi

# ------------------------------------------------------------ the host image
# A bare server as an admin receives it. Idempotent edits of the root file system.
customize_rootfs() {
  local r=$1
  # systemd makes a machine id at each boot of each container (a different machine each).
  : >"$r/etc/machine-id"
  rm -f "$r/var/lib/dbus/machine-id"
  # No kernel modules to load in a container; the unit would fail and leave systemd "degraded".
  ln -sfn /dev/null "$r/etc/systemd/system/systemd-modules-load.service"
  # apt sees only the local repository (mounted at /repo); there is no internet.
  rm -f "$r/etc/apt/sources.list.d/"*
  echo 'deb [trusted=yes] file:/repo ./' >"$r/etc/apt/sources.list"
  rm -rf "$r/var/lib/apt/lists/"* "$r/var/cache/apt/archives/"*.deb
  # Host keys are made at first boot, so each host has its own, as real machines do.
  rm -f "$r/etc/ssh/ssh_host_"*
  cat >"$r/etc/systemd/system/pgmon-test-ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Generate this machine's SSH host keys (pgmon test host)
Before=ssh.service ssh.socket
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target ssh.service
UNIT
  # (Debian's own sshd-keygen.service runs on a "first boot" only, which an empty machine-id is not.)
  local wants
  for wants in multi-user.target.wants ssh.service.wants; do
    mkdir -p "$r/etc/systemd/system/$wants"
    ln -sfn /etc/systemd/system/pgmon-test-ssh-hostkeys.service "$r/etc/systemd/system/$wants/"
  done
  # Keys only (the test's key is put in authorized_keys when a host is created, never here).
  mkdir -p "$r/root/.ssh" && chmod 700 "$r/root/.ssh" && rm -f "$r/root/.ssh/authorized_keys"
  sed -i 's/^#\?PasswordAuthentication .*/PasswordAuthentication no/' "$r/etc/ssh/sshd_config"
  grep -q '^PasswordAuthentication no' "$r/etc/ssh/sshd_config" || echo 'PasswordAuthentication no' >>"$r/etc/ssh/sshd_config"
  # Journal in memory: a test host's logs are read with journalctl while it runs.
  mkdir -p "$r/etc/systemd/journald.conf.d"
  printf '[Journal]\nStorage=volatile\n' >"$r/etc/systemd/journald.conf.d/pgmon-test.conf"
  echo "pgmon test host (tests/hosts), Debian $SUITE" >"$r/etc/pgmon-test-host"
}
FP_HOST=$(echo "$FP_ROOTFS $(declare -f customize_rootfs)" | fp)
have=$(docker image inspect -f '{{ index .Config.Labels "pgmon.testhost" }}' "$HOST_IMAGE" 2>/dev/null || true)
if [ "$have" != "$FP_HOST" ]; then
  t=$SECONDS
  customize_rootfs "$ROOTFS"
  old=$(docker image inspect -f '{{ .Id }}' "$HOST_IMAGE" 2>/dev/null || true)
  tar --numeric-owner -C "$ROOTFS" -c . |
    docker import --change "LABEL pgmon.testhost=$FP_HOST" --change 'CMD ["/sbin/init"]' - "$HOST_IMAGE" >/dev/null
  [ -n "$old" ] && docker rmi "$old" >/dev/null 2>&1 || true
  say "$HOST_IMAGE: imported ($((SECONDS - t))s)"
else
  say "$HOST_IMAGE: up to date"
fi

# ------------------------------------------------------------ local apt repository
REPO=$CACHE/repo
FP_REPO=$(echo "$FP_ROOTFS ${REPO_PACKAGES[*]}" | fp)
if ! marker_ok repo "$FP_REPO"; then
  t=$SECONDS
  say "local apt repository: ${REPO_PACKAGES[*]} and what they pull, for the root file system's dpkg status"
  rm -rf "$REPO" "$CACHE/repo.done"
  mkdir -p "$REPO/partial"
  apt_update
  # Resolved against the root file system's dpkg status: exactly what the host lacks.
  apt-get "${apt_trixie[@]}" -o "Dir::State::status=$ROOTFS/var/lib/dpkg/status" \
    -o "Dir::Cache::archives=$REPO" -qq -y install --download-only "${REPO_PACKAGES[@]}" >/dev/null
  rm -rf "$REPO/partial" "$REPO/lock"
  (cd "$REPO" && dpkg-scanpackages -m . /dev/null >Packages 2>/dev/null)
  mark repo "$FP_REPO"
  say "local apt repository: $(ls "$REPO"/*.deb | wc -l) packages, $(du -sm "$REPO" | cut -f1) MB ($((SECONDS - t))s)"
else
  say "local apt repository: up to date ($(ls "$REPO"/*.deb | wc -l) packages)"
fi

# ------------------------------------------------------------ registry image
REG_DEB_DIR=$CACHE/registry-deb
if ! marker_ok registry-deb "$FP_APT"; then
  rm -rf "$REG_DEB_DIR" && mkdir -p "$REG_DEB_DIR/root"
  apt_update
  (cd "$REG_DEB_DIR" && apt-get "${apt_trixie[@]}" -qq download docker-registry)
  dpkg -x "$REG_DEB_DIR"/docker-registry_*.deb "$REG_DEB_DIR/root"
  mark registry-deb "$FP_APT"
fi
REGISTRY_BIN=$REG_DEB_DIR/root/usr/bin/docker-registry
[ -x "$REGISTRY_BIN" ] || die "no $REGISTRY_BIN in Debian's docker-registry package"
fill_registry() {
  local d=$1 applet
  mkdir -p "$d"/{bin,etc/docker/registry,lib64,tmp,var/lib/registry,proc,sys,dev} "$d$LIBDIR"
  chmod 1777 "$d/tmp"
  cp "$BUSYBOX" "$d/bin/busybox"
  for applet in sh wget ls cat; do ln -s busybox "$d/bin/$applet"; done
  cp -L "$LIBDIR/libc.so.6" "$d$LIBDIR/libc.so.6"
  cp -L /lib64/ld-linux-x86-64.so.2 "$d/lib64/ld-linux-x86-64.so.2"
  install -m 0755 "$REGISTRY_BIN" "$d/bin/registry"
  printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$d/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$d/etc/group"
  cat >"$d/etc/docker/registry/config.yml" <<'YAML'
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: ":80"
YAML
}
FP_REGISTRY=$(echo "$(cat "$REG_DEB_DIR"/docker-registry_*.deb | sha256sum) $(declare -f fill_registry)
  $(stat -L -c '%n %s %Y' "$BUSYBOX" "$LIBDIR/libc.so.6" /lib64/ld-linux-x86-64.so.2)" | fp)
have=$(docker image inspect -f '{{ index .Config.Labels "pgmon.testhost" }}' "$REGISTRY_IMAGE" 2>/dev/null || true)
if [ "$have" != "$FP_REGISTRY" ]; then
  # The binary must run on this machine's glibc (it is copied, not Debian 13's).
  bad=$(ldd "$REGISTRY_BIN" 2>&1 | grep -v -E 'linux-vdso|libc\.so\.6|ld-linux-x86-64|statically|not a dynamic' || true)
  [ -z "$bad" ] || die "docker-registry needs more than libc: $bad"
  work=$(mktemp -d "${TMPDIR:-/tmp}/pgmon-registry.XXXXXX")
  fill_registry "$work"
  old=$(docker image inspect -f '{{ .Id }}' "$REGISTRY_IMAGE" 2>/dev/null || true)
  tar --numeric-owner -C "$work" -c . | docker import --change "LABEL pgmon.testhost=$FP_REGISTRY" \
    --change 'EXPOSE 80' --change 'VOLUME ["/var/lib/registry"]' \
    --change 'ENTRYPOINT ["/bin/registry"]' --change 'CMD ["serve", "/etc/docker/registry/config.yml"]' \
    - "$REGISTRY_IMAGE" >/dev/null
  rm -rf "$work"
  [ -n "$old" ] && docker rmi "$old" >/dev/null 2>&1 || true
  if ! docker run --rm "$REGISTRY_IMAGE" --version 2>&1 | grep -q 'distribution 2\.'; then
    docker rmi "$REGISTRY_IMAGE" >/dev/null 2>&1 || true  # so that the next run builds it again
    die "$REGISTRY_IMAGE does not run (docker run --rm $REGISTRY_IMAGE --version)"
  fi
  say "$REGISTRY_IMAGE: built ($(docker run --rm "$REGISTRY_IMAGE" --version 2>&1 | head -1))"
else
  say "$REGISTRY_IMAGE: up to date"
fi

# ------------------------------------------------------------ database host image
# The host image with PostgreSQL installed from repo/, as `apt-get install postgresql` does on a
# server (saves ~13 s per database host). Installed without booting systemd, so that no machine
# id, SSH host key or journal ends up in the image; tests/hosts configures each host at start.
DB_IMAGE=pgmon-test/host:$SUITE-postgresql
# policy-rc.d: the package must not start a server in the build container.
DB_BUILD='set -e
printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
rm -f /usr/sbin/policy-rc.d
apt-get clean && rm -rf /var/lib/apt/lists/*
pg_lsclusters'
FP_DB=$(echo "$FP_HOST $FP_REPO $DB_BUILD" | fp)
have=$(docker image inspect -f '{{ index .Config.Labels "pgmon.testhost" }}' "$DB_IMAGE" 2>/dev/null || true)
if [ "$have" != "$FP_DB" ]; then
  t=$SECONDS
  build=pgmon-test-build-postgresql-$$
  docker rm -f -v "$build" >/dev/null 2>&1 || true
  docker run --name "$build" --network none -v "$REPO:/repo:ro" "$HOST_IMAGE" /bin/sh -c "$DB_BUILD" \
    >"$CACHE/build-postgresql.log" 2>&1 ||
    { docker rm -f -v "$build" >/dev/null 2>&1; die "installing postgresql failed; see $CACHE/build-postgresql.log"; }
  old=$(docker image inspect -f '{{ .Id }}' "$DB_IMAGE" 2>/dev/null || true)
  docker commit --change "LABEL pgmon.testhost=$FP_DB" --change 'CMD ["/sbin/init"]' \
    "$build" "$DB_IMAGE" >/dev/null
  docker rm -v "$build" >/dev/null
  [ -n "$old" ] && docker rmi "$old" >/dev/null 2>&1 || true
  say "$DB_IMAGE: built ($((SECONDS - t))s; $(grep -E '^[0-9]+ +main' "$CACHE/build-postgresql.log" | awk '{print "PostgreSQL " $1}'))"
else
  say "$DB_IMAGE: up to date"
fi

# ------------------------------------------------------------ manifest for tests/hosts
cat >"$CACHE/manifest.json.new" <<JSON
{
  "suite": "$SUITE",
  "host_image": "$HOST_IMAGE",
  "host_fingerprint": "$FP_HOST",
  "database_image": "$DB_IMAGE",
  "database_fingerprint": "$FP_DB",
  "registry_image": "$REGISTRY_IMAGE",
  "registry_fingerprint": "$FP_REGISTRY",
  "repo": "$REPO",
  "repo_fingerprint": "$FP_REPO",
  "repo_packages": "$(echo "${REPO_PACKAGES[*]}")"
}
JSON
mv "$CACHE/manifest.json.new" "$CACHE/manifest.json"
say "ready in $((SECONDS - started_all))s (cache: $CACHE)"
