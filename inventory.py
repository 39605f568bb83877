"""The processing host: the machine that runs the monitoring stack in Docker.

Set PGMON_HOST to its SSH address, as for ssh: host, user@host or user@host:port (an IPv6 address in
brackets). Keys and other SSH options as usual, in ~/.ssh/config or group_data. Without PGMON_HOST the
stack targets this machine (@local). Or replace the list below with your own hosts.
"""

import os
import sys
from pathlib import Path

# This checkout's tasks/, whichever folder pyinfra runs in (pyinfra puts only its working folder on the path).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from tasks.ssh_target import ssh_target  # noqa: E402

pgmon_hosts = [ssh_target(os.environ.get("PGMON_HOST"))]
