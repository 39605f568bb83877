"""Copy the processing host's data (a Prometheus snapshot, Grafana's and Alertmanager's data) into an archive on
this machine (README, "Moving to a new server").

    pyinfra inventory.py backup.py        # -> pgmon-backups/pgmon-<host>-<UTC time>.tar.gz (pgmon_backup_dir)

Same inventory and group_data as the deploy; reads no secret. From another project: ``from pgmon import backup_pgmon``.
"""

import sys
from pathlib import Path

# This checkout's tasks/, whichever folder pyinfra runs in (pyinfra puts only its working folder on the path).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from tasks import backup_pgmon  # noqa: E402

backup_pgmon()
