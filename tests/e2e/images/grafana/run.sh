#!/bin/sh
# Entrypoint of the grafana/grafana stand-in image. It does what the official image's
# /run.sh does before starting Grafana, so that mistakes with mounts, permissions and
# secrets show up here as they would there:
#   - warns when the config is not readable or the data dir not writable (a warning only);
#   - creates $GF_PATHS_PLUGINS, and with `set -e` fails the container when it cannot;
#   - turns every GF_<NAME>__FILE=<path> into GF_<NAME>=<content of path>.
#     As in the official script, a file that cannot be read is reported by cat on
#     stderr but does NOT stop the container: `export` hides cat's exit status, so
#     the server starts with an empty value (an empty admin password: no login works).
set -e

warned=0
if [ ! -r "$GF_PATHS_CONFIG" ]; then echo "GF_PATHS_CONFIG='$GF_PATHS_CONFIG' is not readable."; warned=1; fi
if [ ! -w "$GF_PATHS_DATA" ]; then echo "GF_PATHS_DATA='$GF_PATHS_DATA' is not writable."; warned=1; fi
if [ ! -r "$GF_PATHS_HOME" ]; then echo "GF_PATHS_HOME='$GF_PATHS_HOME' is not readable."; warned=1; fi
if [ "$warned" = 1 ]; then
    echo "You may have issues with file permissions, more information here: http://docs.grafana.org/installation/docker/#migrate-to-v51-or-later"
fi

if [ ! -d "$GF_PATHS_PLUGINS" ]; then mkdir "$GF_PATHS_PLUGINS"; fi

for name in $(env | grep '^GF_[^=]*__FILE=.' | sed 's/__FILE=.*//'); do
    eval "value=\${$name:-}"
    if [ -n "$value" ]; then
        echo >&2 "ERROR: Both $name and ${name}__FILE are set (but are exclusive)"
        exit 1
    fi
    eval "file=\${${name}__FILE}"
    echo "Getting secret $name from $file"
    export "$name"="$(cat "$file")"
    unset "${name}__FILE"
done

export HOME="$GF_PATHS_HOME"

if [ -n "${GF_INSTALL_PLUGINS:-}" ]; then
    echo >&2 "WARN: GF_INSTALL_PLUGINS is ignored: the Grafana stand-in cannot install plugins"
fi

exec grafana server \
  --homepath="$GF_PATHS_HOME" \
  --config="$GF_PATHS_CONFIG" \
  --packaging=docker \
  "$@" \
  cfg:default.log.mode="console" \
  cfg:default.paths.data="$GF_PATHS_DATA" \
  cfg:default.paths.logs="$GF_PATHS_LOGS" \
  cfg:default.paths.plugins="$GF_PATHS_PLUGINS" \
  cfg:default.paths.provisioning="$GF_PATHS_PROVISIONING"
