"""Remove pgmon from the processing host: its containers, networks and files; its data volumes stay unless asked
(README, "Removing pgmon").

    pyinfra inventory.py uninstall.py
    pyinfra inventory.py uninstall.py --data pgmon_uninstall_delete_data=true   # Prometheus's history and Grafana's data too

Same inventory and group_data as the deploy; reads no secret. From another project: ``from pgmon import uninstall_pgmon``.
"""

import sys
from pathlib import Path

# This checkout's tasks/, whichever folder pyinfra runs in (pyinfra puts only its working folder on the path).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from tasks import uninstall_pgmon  # noqa: E402

uninstall_pgmon()
