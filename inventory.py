"""The processing host: the machine that runs the monitoring stack in Docker.

Set PGMON_HOST to its SSH address (user@host or host; SSH options as usual in
~/.ssh/config or group_data), or replace the list below. Without PGMON_HOST the
stack targets this machine (@local).
"""

import os

pgmon_hosts = [os.environ.get("PGMON_HOST") or "@local"]
